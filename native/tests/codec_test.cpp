// The core's messages survive braft's wire format, and bad requests are refused.
#include "codec.h"

#include <gtest/gtest.h>

#include <functional>

#include "raft.pb.h"

namespace raftstore::rpc {
namespace {

using namespace raftstore::core;

PeerId P(int i) { return *PeerId::parse("127.0.0.1:" + std::to_string(8100 + i) + ":0"); }

Envelope Req(Payload p) { return Envelope{"Counter", P(0), P(1), 4294967298, std::move(p)}; }

Entry DataEntry(uint64_t index, uint64_t term, std::string data) {
  return Entry{index, term, EntryType::Data, std::make_shared<const std::string>(std::move(data)),
               nullptr};
}

Entry ConfEntry(uint64_t index, uint64_t term) {
  Configuration c;
  c.peers = *parse_peer_list("127.0.0.1:8100:0,127.0.0.1:8101:0");
  c.old_peers = *parse_peer_list("127.0.0.1:8100:0,127.0.0.1:8102:0");
  c.learners = *parse_peer_list("127.0.0.1:8103:0");
  return Entry{index, term, EntryType::Configuration, nullptr,
               std::make_shared<const Configuration>(c)};
}

Envelope RoundTripRequest(const Envelope& e) {
  WireMessage w = encode(e);
  auto back = decode_request(w.service, w.method, w.payload, w.attachment);
  EXPECT_TRUE(back) << w.service << "/" << w.method;
  if (!back) return {};
  back->rpc_id = e.rpc_id;  // the correlation id travels in the frame, not the payload
  EXPECT_EQ(back->group, e.group);
  EXPECT_EQ(back->from, e.from);
  EXPECT_EQ(back->to, e.to);
  return *back;
}

TEST(Codec, VoteRequestsUseBraftMethodNames) {
  RequestVoteRequest pre{true, 5, 4, 100, std::nullopt};
  EXPECT_EQ(encode(Req(pre)).method, "pre_vote");
  RequestVoteRequest vote{false, 5, 4, 100, TermLeader{P(2), 4}};
  WireMessage w = encode(Req(vote));
  EXPECT_EQ(w.service, "braft.RaftService");
  EXPECT_EQ(w.method, "request_vote");
  auto back = std::get<RequestVoteRequest>(RoundTripRequest(Req(vote)).payload);
  EXPECT_FALSE(back.pre_vote);
  EXPECT_EQ(back.term, 5u);
  EXPECT_EQ(back.last_log_term, 4u);
  EXPECT_EQ(back.last_log_index, 100u);
  ASSERT_TRUE(back.disrupted_leader);
  EXPECT_EQ(back.disrupted_leader->peer_id, P(2));
}

TEST(Codec, AppendEntriesCarriesDataInTheAttachmentAndConfigsInEntryMeta) {
  AppendEntriesRequest r{
      7, 6, 10, {DataEntry(11, 7, "\x08\x01"), ConfEntry(12, 7), DataEntry(13, 7, "")}, 9};
  WireMessage w = encode(Req(r));
  EXPECT_EQ(w.attachment, "\x08\x01");
  braft::AppendEntriesRequest m;
  ASSERT_TRUE(m.ParseFromString(w.payload));
  EXPECT_EQ(m.server_id(), "127.0.0.1:8100:0:0");
  EXPECT_EQ(m.peer_id(), "127.0.0.1:8101:0:0");
  ASSERT_EQ(m.entries_size(), 3);
  EXPECT_EQ(m.entries(0).type(), braft::ENTRY_TYPE_DATA);
  EXPECT_EQ(m.entries(0).data_len(), 2);
  EXPECT_EQ(m.entries(1).type(), braft::ENTRY_TYPE_CONFIGURATION);
  EXPECT_EQ(m.entries(1).data_len(), 0);  // as braft: configurations travel in EntryMeta
  EXPECT_EQ(m.entries(1).peers_size(), 2);
  EXPECT_EQ(m.entries(1).old_peers_size(), 2);

  auto back = std::get<AppendEntriesRequest>(RoundTripRequest(Req(r)).payload);
  EXPECT_EQ(back.term, 7u);
  EXPECT_EQ(back.prev_log_term, 6u);
  EXPECT_EQ(back.prev_log_index, 10u);
  EXPECT_EQ(back.committed_index, 9u);
  ASSERT_EQ(back.entries.size(), 3u);
  EXPECT_EQ(back.entries[0].index, 11u);
  EXPECT_EQ(*back.entries[0].data, "\x08\x01");
  EXPECT_EQ(*back.entries[1].conf, *r.entries[1].conf);
  EXPECT_EQ(back.entries[2].index, 13u);
  EXPECT_EQ(*back.entries[2].data, "");
}

TEST(Codec, SnapshotTimeoutNowAndReadIndexRoundTrip) {
  SnapshotMeta meta{42, 3, ConfEntry(1, 1).conf ? *ConfEntry(1, 1).conf : Configuration{}};
  auto is = std::get<InstallSnapshotRequest>(
      RoundTripRequest(Req(InstallSnapshotRequest{4, meta, "remote://127.0.0.1:8100/-3434"}))
          .payload);
  EXPECT_EQ(is.meta.last_included_index, 42u);
  EXPECT_EQ(is.meta.conf, meta.conf);
  EXPECT_EQ(is.uri, "remote://127.0.0.1:8100/-3434");
  auto tn = std::get<TimeoutNowRequest>(RoundTripRequest(Req(TimeoutNowRequest{4, true})).payload);
  EXPECT_EQ(tn.term, 4u);
  EXPECT_TRUE(tn.old_leader_stepped_down);
  WireMessage w = encode(Req(ReadIndexRequest{4, 99}));
  EXPECT_EQ(w.service, "raftstore.RaftExtService");
  auto ri = std::get<ReadIndexRequest>(RoundTripRequest(Req(ReadIndexRequest{4, 99})).payload);
  EXPECT_EQ(ri.ctx, 99u);
}

TEST(Codec, ResponsesAreMatchedToTheirRequest) {
  Envelope req = Req(RequestVoteRequest{true, 5, 4, 100, std::nullopt});
  Envelope resp{"Counter", P(1), P(0), req.rpc_id, RequestVoteResponse{true, 5, true, false}};
  WireMessage w = encode(resp);
  EXPECT_TRUE(w.service.empty());
  auto back = decode_response(req, w.error_code, w.payload);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->from, P(1));
  EXPECT_EQ(back->to, P(0));
  EXPECT_EQ(back->rpc_id, req.rpc_id);
  auto v = std::get<RequestVoteResponse>(back->payload);
  EXPECT_TRUE(v.pre_vote);  // known from the request, as braft's closure knows it
  EXPECT_TRUE(v.granted);

  Envelope ae = Req(AppendEntriesRequest{7, 6, 10, {}, 9});
  auto ok = decode_response(
      ae, 0,
      encode(Envelope{"", P(1), P(0), 1, AppendEntriesResponse{7, false, 8, false}}).payload);
  ASSERT_TRUE(ok);
  EXPECT_EQ(std::get<AppendEntriesResponse>(ok->payload).last_log_index, 8u);
  // braft answers EBUSY (an RPC error, no payload) while it installs a snapshot.
  WireMessage busy = encode(Envelope{"", P(1), P(0), 1, AppendEntriesResponse{7, false, 0, true}});
  EXPECT_EQ(busy.error_code, kEBUSY);
  EXPECT_TRUE(busy.payload.empty());
  auto b = decode_response(ae, busy.error_code, busy.payload);
  ASSERT_TRUE(b);
  EXPECT_TRUE(std::get<AppendEntriesResponse>(b->payload).busy);
  EXPECT_EQ(std::get<AppendEntriesResponse>(b->payload).term, 7u);
  EXPECT_FALSE(decode_response(ae, 22, ""));  // any other error is no answer
}

struct BadRequest {
  const char* name;
  std::string service, method;
  std::function<void(braft::AppendEntriesRequest&)> edit;
  std::string attachment;
};

class MalformedRequest : public testing::TestWithParam<BadRequest> {};

TEST_P(MalformedRequest, IsRefused) {
  const auto& c = GetParam();
  braft::AppendEntriesRequest m;
  m.set_group_id("g");
  m.set_server_id("127.0.0.1:8100:0");
  m.set_peer_id("127.0.0.1:8101:0");
  m.set_term(2);
  m.set_prev_log_term(1);
  m.set_prev_log_index(0);
  m.set_committed_index(0);
  auto* e = m.add_entries();
  e->set_term(2);
  e->set_type(braft::ENTRY_TYPE_DATA);
  e->set_data_len(3);
  if (c.edit) c.edit(m);
  EXPECT_FALSE(decode_request(c.service, c.method, m.SerializePartialAsString(), c.attachment));
}

INSTANTIATE_TEST_SUITE_P(
    Codec, MalformedRequest,
    testing::Values(
        BadRequest{"UnknownMethod", "braft.RaftService", "append_entriez", nullptr, "abc"},
        BadRequest{"UnknownService", "braft.Nope", "append_entries", nullptr, "abc"},
        BadRequest{"ShortAttachment", "braft.RaftService", "append_entries", nullptr, "ab"},
        BadRequest{"LongAttachment", "braft.RaftService", "append_entries", nullptr, "abcd"},
        BadRequest{"NegativeDataLen", "braft.RaftService", "append_entries",
                   [](auto& m) { m.mutable_entries(0)->set_data_len(-1); }, "abc"},
        BadRequest{"BadServerId", "braft.RaftService", "append_entries",
                   [](auto& m) { m.set_server_id("localhost:8100"); }, "abc"},
        BadRequest{"NegativeTerm", "braft.RaftService", "append_entries",
                   [](auto& m) { m.set_term(-5); }, "abc"},
        BadRequest{"MissingRequiredField", "braft.RaftService", "append_entries",
                   [](auto& m) { m.clear_committed_index(); }, "abc"},
        BadRequest{"UnknownEntryType", "braft.RaftService", "append_entries",
                   [](auto& m) { m.mutable_entries(0)->set_type(braft::ENTRY_TYPE_UNKNOWN); },
                   "abc"},
        BadRequest{"BadConfigPeer", "braft.RaftService", "append_entries",
                   [](auto& m) {
                     m.mutable_entries(0)->set_type(braft::ENTRY_TYPE_CONFIGURATION);
                     m.mutable_entries(0)->set_data_len(0);
                     m.mutable_entries(0)->add_peers("not-a-peer");
                   },
                   ""}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Codec, ShortServiceNameIsAccepted) {
  WireMessage w = encode(Req(TimeoutNowRequest{4, false}));
  EXPECT_TRUE(decode_request("RaftService", w.method, w.payload, w.attachment));
}

}  // namespace
}  // namespace raftstore::rpc
