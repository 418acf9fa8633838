// libFuzzer target for everything a peer or a client can send us: baidu_std frames (fed
// in arbitrary pieces), the braft messages inside them, snapshot metas and uris, and peer
// lists. Nothing may crash or leak, and whatever decodes must survive a re-encode:
// decode(encode(decode(x))) encodes to the same bytes.
//
// With FUZZ_SEED_DIR set, it first writes one well-formed frame per message into that
// directory, a seed corpus that starts the fuzzer inside the protocol.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "codec.h"
#include "file_service.h"
#include "frame.h"

using namespace raftstore;

namespace {

core::PeerId P(int i) { return *core::PeerId::parse("127.0.0.1:" + std::to_string(8100 + i)); }

core::Envelope Req(core::Payload p) { return {"Counter", P(0), P(1), 7, std::move(p)}; }

std::vector<core::Envelope> sample_requests() {
  core::Configuration conf;
  conf.peers = {P(0), P(1), P(2)};
  auto data = std::make_shared<const std::string>("\x08\x01");
  std::vector<core::Entry> entries = {{5, 2, core::EntryType::Data, data, nullptr},
                                      {6, 2, core::EntryType::Configuration, nullptr,
                                       std::make_shared<const core::Configuration>(conf)},
                                      {7, 2, core::EntryType::NoOp, nullptr, nullptr}};
  return {
      Req(core::RequestVoteRequest{true, 3, 2, 9, std::nullopt}),
      Req(core::RequestVoteRequest{false, 3, 2, 9, core::TermLeader{P(2), 2}}),
      Req(core::AppendEntriesRequest{2, 2, 4, entries, 4}),
      Req(core::AppendEntriesRequest{2, 2, 4, {}, 4}),
      Req(core::InstallSnapshotRequest{2, {100, 2, conf}, "remote://127.0.0.1:8100/-3434"}),
      Req(core::TimeoutNowRequest{2, true}),
      Req(core::ReadIndexRequest{2, 99}),
  };
}

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_wire: %s\n", what);
    std::abort();
  }
}

void check_request(const rpc::Frame& f) {
  const auto& r = f.meta.request();
  auto env = rpc::decode_request(r.service_name(), r.method_name(), f.payload, f.attachment);
  if (!env) return;
  rpc::WireMessage w1 = rpc::encode(*env);
  auto again = rpc::decode_request(w1.service, w1.method, w1.payload, w1.attachment);
  expect(again.has_value(), "a decoded request does not decode after re-encoding");
  rpc::WireMessage w2 = rpc::encode(*again);
  expect(w1.payload == w2.payload && w1.attachment == w2.attachment,
         "request re-encoding is not stable");
}

void check_response(const rpc::Frame& f) {
  static const std::vector<core::Envelope> requests = sample_requests();
  for (const auto& req : requests) {
    auto env = rpc::decode_response(req, f.meta.response().error_code(), f.payload);
    if (!env) continue;
    rpc::WireMessage w1 = rpc::encode(*env);
    auto again = rpc::decode_response(req, w1.error_code, w1.payload);
    expect(again.has_value(), "a decoded response does not decode after re-encoding");
    expect(rpc::encode(*again).payload == w1.payload, "response re-encoding is not stable");
  }
}

void write_seeds(const std::string& dir) {
  int n = 0;
  auto put = [&](const std::string& bytes) {
    std::ofstream(dir + "/seed-" + std::to_string(n++), std::ios::binary) << '\0' << bytes;
  };
  for (const auto& env : sample_requests()) {
    rpc::WireMessage w = rpc::encode(env);
    put(rpc::encode_frame(rpc::request_meta(w.service, w.method, 7), w.payload, w.attachment));
  }
  std::vector<core::Envelope> responses = {
      Req(core::RequestVoteResponse{false, 3, true, false}),
      Req(core::AppendEntriesResponse{2, false, 40, false}),
      Req(core::InstallSnapshotResponse{2, true}),
      Req(core::TimeoutNowResponse{3, true}),
      Req(core::ReadIndexResponse{2, 99, true, 50}),
  };
  for (const auto& env : responses) {
    rpc::WireMessage w = rpc::encode(env);
    put(rpc::encode_frame(rpc::response_meta(7, w.error_code), w.payload, w.attachment));
  }
  put(rpc::encode_frame(rpc::response_meta(7, 16, "busy"), "", ""));
  storage::SnapshotFile file{"data", 0x1234abcd};
  put(rpc::encode_frame(rpc::request_meta("braft.FileService", "get_file", 7),
                        storage::encode_snapshot_info({9, 2, {}}, {file})));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("FUZZ_SEED_DIR")) write_seeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks how the stream is cut into reads (0: all at once).
  size_t piece = data[0] == 0 ? size : data[0];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  rpc::FrameParser parser(64 * 1024);
  for (size_t at = 0; at < in.size() || at == 0; at += piece) {
    parser.feed(in.substr(at, piece));
    rpc::Frame f;
    std::string error;
    rpc::FrameParser::Result r;
    while ((r = parser.next(&f, &error)) == rpc::FrameParser::Result::Frame) {
      if (f.is_request())
        check_request(f);
      else
        check_response(f);
      // Payloads double as the other things peers send us.
      storage::SnapshotInfo info;
      storage::decode_snapshot_info(f.payload, &info);
      runtime::parse_snapshot_uri(f.payload);
      core::parse_peer_list(f.payload);
      f = rpc::Frame{};
    }
    if (r != rpc::FrameParser::Result::NeedMore) break;  // the connection would close
    if (in.empty()) break;
  }
  return 0;
}
