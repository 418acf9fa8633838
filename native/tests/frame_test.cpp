// baidu_std framing: byte-exact against what brpc puts on the wire
// (docs/braft-compatibility.md §1.6), incremental parsing, and every malformed frame refused
// without a crash.
#include "frame.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cli.pb.h"

namespace raftstore::rpc {
namespace {

std::string Hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size();) {
    if (hex[i] == ' ') {
      ++i;
      continue;
    }
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    i += 2;
  }
  return out;
}

// braft_cli `snapshot` to 127.0.0.1:8101, as captured from the real binaries.
const std::string kSnapshotRequest = Hex("50525043 00000049 0000002c") + Hex("0a1c 0a10") +
                                     "braft.CliService" + Hex("1208") + "snapshot" +
                                     Hex("1800 20 8280808010 5000 5800 6200") + Hex("0a07") +
                                     "Counter" + Hex("1212") + "127.0.0.1:8101:0:0";
const std::string kSnapshotResponse =
    Hex("50525043 00000012 00000012") + Hex("1202 0800 1800 20 8280808010 5000 5800 6200");

TEST(Frame, EncodesARequestExactlyAsBrpcDoes) {
  braft::SnapshotRequest req;
  req.set_group_id("Counter");
  req.set_peer_id("127.0.0.1:8101:0:0");
  auto meta = request_meta("braft.CliService", "snapshot", 4294967298);
  EXPECT_EQ(encode_frame(meta, req.SerializeAsString()), kSnapshotRequest);
}

TEST(Frame, EncodesAResponseExactlyAsBrpcDoes) {
  EXPECT_EQ(encode_frame(response_meta(4294967298), ""), kSnapshotResponse);
}

TEST(Frame, ParsesTheCapturedRequest) {
  FrameParser p;
  p.feed(kSnapshotRequest);
  Frame f;
  std::string error;
  ASSERT_EQ(p.next(&f, &error), FrameParser::Result::Frame) << error;
  EXPECT_TRUE(f.is_request());
  EXPECT_EQ(f.meta.request().service_name(), "braft.CliService");
  EXPECT_EQ(f.meta.request().method_name(), "snapshot");
  EXPECT_EQ(f.meta.correlation_id(), 4294967298);
  braft::SnapshotRequest req;
  ASSERT_TRUE(req.ParseFromString(f.payload));
  EXPECT_EQ(req.group_id(), "Counter");
  EXPECT_EQ(req.peer_id(), "127.0.0.1:8101:0:0");
  EXPECT_TRUE(f.attachment.empty());
  EXPECT_EQ(p.next(&f, &error), FrameParser::Result::NeedMore);
}

TEST(Frame, RoundTripsPayloadAndAttachmentFedOneByteAtATime) {
  auto meta = request_meta("braft.RaftService", "append_entries", 7);
  std::string payload = "payload-bytes", attachment(1000, '\x01');
  std::string wire = encode_frame(meta, payload, attachment) + encode_frame(response_meta(7), "r");
  FrameParser p;
  std::vector<Frame> frames;
  std::string error;
  for (char c : wire) {
    p.feed(std::string_view(&c, 1));
    Frame f;
    while (true) {
      auto r = p.next(&f, &error);
      ASSERT_NE(r, FrameParser::Result::Error) << error;
      ASSERT_NE(r, FrameParser::Result::NotBaiduStd);
      if (r != FrameParser::Result::Frame) break;
      frames.push_back(std::move(f));
    }
  }
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].payload, payload);
  EXPECT_EQ(frames[0].attachment, attachment);
  EXPECT_EQ(frames[0].meta.attachment_size(), 1000);
  EXPECT_FALSE(frames[1].is_request());
  EXPECT_EQ(frames[1].meta.response().error_code(), 0);
  EXPECT_EQ(frames[1].payload, "r");
}

TEST(Frame, ErrorResponsesCarryCodeAndTextWithoutPayload) {
  std::string wire = encode_frame(response_meta(9, 2, "Fail to find node"), "");
  FrameParser p;
  p.feed(wire);
  Frame f;
  std::string error;
  ASSERT_EQ(p.next(&f, &error), FrameParser::Result::Frame);
  EXPECT_EQ(f.meta.response().error_code(), 2);
  EXPECT_EQ(f.meta.response().error_text(), "Fail to find node");
  EXPECT_TRUE(f.payload.empty());
}

TEST(Frame, AnotherProtocolIsSniffedFromTheFirstBytes) {
  for (std::string start : {"G", "GET /raft_stat HTTP/1.1\r\n", "PRPX", "\x16\x03"}) {
    FrameParser p;
    p.feed(start);
    Frame f;
    std::string error;
    EXPECT_EQ(p.next(&f, &error), FrameParser::Result::NotBaiduStd) << start;
  }
  FrameParser p;
  p.feed("PR");
  Frame f;
  std::string error;
  EXPECT_EQ(p.next(&f, &error), FrameParser::Result::NeedMore);
}

TEST(Frame, UnknownMetaFieldsAreIgnored) {
  auto meta = request_meta("braft.CliService", "get_leader", 1);
  std::string meta_bytes = meta.SerializeAsString() + Hex("a006 2a");  // field 100 = 42
  std::string wire = "PRPC";
  for (uint32_t v :
       {static_cast<uint32_t>(meta_bytes.size()), static_cast<uint32_t>(meta_bytes.size())})
    for (int s = 24; s >= 0; s -= 8) wire.push_back(static_cast<char>((v >> s) & 0xff));
  wire += meta_bytes;
  FrameParser p;
  p.feed(wire);
  Frame f;
  std::string error;
  ASSERT_EQ(p.next(&f, &error), FrameParser::Result::Frame) << error;
  EXPECT_EQ(f.meta.request().method_name(), "get_leader");
}

std::string Header(uint32_t body, uint32_t meta) {
  std::string h = "PRPC";
  for (uint32_t v : {body, meta})
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>((v >> s) & 0xff));
  return h;
}

struct BadFrame {
  const char* name;
  std::string bytes;
};

class MalformedFrame : public testing::TestWithParam<BadFrame> {};

TEST_P(MalformedFrame, IsAnErrorNotACrash) {
  FrameParser p(1 << 20);
  p.feed(encode_frame(request_meta("s", "m", 1), "ok"));  // a good frame first
  p.feed(GetParam().bytes);
  Frame f;
  std::string error;
  ASSERT_EQ(p.next(&f, &error), FrameParser::Result::Frame);
  EXPECT_EQ(p.next(&f, &error), FrameParser::Result::Error);
  EXPECT_FALSE(error.empty());
}

std::string MetaWith(const std::function<void(brpc::policy::RpcMeta&)>& edit) {
  auto m = request_meta("s", "m", 1);
  edit(m);
  return m.SerializeAsString();
}

INSTANTIATE_TEST_SUITE_P(
    Frame, MalformedFrame,
    testing::Values(BadFrame{"BadMagicLater", "XXXX" + std::string(20, '\0')},
                    BadFrame{"BodyOverTheLimit", Header((1 << 20) + 1, 10)},
                    BadFrame{"MetaLargerThanBody", Header(10, 11) + std::string(10, '\0')},
                    BadFrame{"MetaNotProtobuf", Header(4, 4) + "\xff\xff\xff\xff"},
                    BadFrame{"NeitherRequestNor Response",
                             [] {
                               std::string m = MetaWith([](auto& x) { x.clear_request(); });
                               return Header(static_cast<uint32_t>(m.size()),
                                             static_cast<uint32_t>(m.size())) +
                                      m;
                             }()},
                    BadFrame{"AttachmentBeyondFrame",
                             [] {
                               std::string m =
                                   MetaWith([](auto& x) { x.set_attachment_size(100); });
                               return Header(static_cast<uint32_t>(m.size() + 5),
                                             static_cast<uint32_t>(m.size())) +
                                      m + "12345";
                             }()},
                    BadFrame{"NegativeAttachment",
                             [] {
                               std::string m = MetaWith([](auto& x) { x.set_attachment_size(-1); });
                               return Header(static_cast<uint32_t>(m.size()),
                                             static_cast<uint32_t>(m.size())) +
                                      m;
                             }()}),
    [](const auto& info) {
      std::string n = info.param.name;
      n.erase(std::remove(n.begin(), n.end(), ' '), n.end());
      return n;
    });

// Random bytes behind a plausible header: the parser answers, it never crashes or reads
// outside what it was given (ASan watches).
TEST(Frame, RandomGarbageNeverCrashes) {
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    uint32_t body = static_cast<uint32_t>(rng() % 64);
    uint32_t meta = static_cast<uint32_t>(rng() % 72);
    std::string bytes = Header(body, meta);
    for (uint32_t k = 0; k < body; ++k) bytes.push_back(static_cast<char>(rng()));
    FrameParser p(1024);
    p.feed(bytes.substr(0, rng() % (bytes.size() + 1)));
    Frame f;
    std::string error;
    p.next(&f, &error);
    p.feed(bytes.substr(0));
    p.next(&f, &error);
  }
}

}  // namespace
}  // namespace raftstore::rpc
