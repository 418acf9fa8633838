// Value types shared by the Raft core and everything around it: peer ids and
// configurations in braft's text form, log entries, and the RPC messages whose
// fields mirror braft's RaftService protos (docs/braft-compatibility.md §2.2).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace raftstore::core {

// braft PeerId: ip:port:idx:role. Equality and ordering ignore role, as braft's do.
struct PeerId {
  uint32_t ip = 0;  // host order
  uint16_t port = 0;
  int32_t idx = 0;
  uint8_t role = 0;  // 0 REPLICA, 1 WITNESS

  bool empty() const { return ip == 0 && port == 0 && idx == 0; }
  std::string to_string() const;  // always 4 fields, like braft
  // Accepts 2-4 colon-separated fields; ip must be a numeric IPv4 literal.
  static std::optional<PeerId> parse(std::string_view text);

  friend bool operator==(const PeerId& a, const PeerId& b) {
    return a.ip == b.ip && a.port == b.port && a.idx == b.idx;
  }
  friend bool operator<(const PeerId& a, const PeerId& b) {
    if (a.ip != b.ip) return a.ip < b.ip;
    if (a.port != b.port) return a.port < b.port;
    return a.idx < b.idx;
  }
};

using PeerList = std::vector<PeerId>;  // kept sorted and unique

bool contains(const PeerList& list, const PeerId& p);
void insert_sorted(PeerList& list, const PeerId& p);
void erase_peer(PeerList& list, const PeerId& p);
// braft text: comma separated, trailing comma allowed; printed sorted, no trailing comma.
std::optional<PeerList> parse_peer_list(std::string_view text);
std::string to_string(const PeerList& list);

// A configuration as recorded in the log. `old_peers` is non-empty only in the joint
// phase of a multi-peer change (braft's ConfigurationPBMeta). Learners receive the log
// but never vote; braft has no learners, so on the wire they travel in a field of our own.
struct Configuration {
  PeerList peers;
  PeerList old_peers;
  PeerList learners;

  bool joint() const { return !old_peers.empty(); }
  bool is_voter(const PeerId& p) const { return contains(peers, p) || contains(old_peers, p); }
  bool is_member(const PeerId& p) const { return is_voter(p) || contains(learners, p); }
  // Every peer that receives the log, the local one included if it is a member.
  PeerList all_members() const;
  // Joint quorum: a majority of `peers` and, when joint, also of `old_peers`.
  template <typename Pred>
  bool quorum(Pred&& granted) const {
    return majority(peers, granted) && (old_peers.empty() || majority(old_peers, granted));
  }
  std::string to_string() const;
  friend bool operator==(const Configuration&, const Configuration&) = default;

 private:
  template <typename Pred>
  static bool majority(const PeerList& set, Pred& granted) {
    size_t yes = 0;
    for (const auto& p : set)
      if (granted(p)) ++yes;
    return yes * 2 > set.size();
  }
};

enum class EntryType : uint8_t { Unknown = 0, NoOp = 1, Data = 2, Configuration = 3 };

struct Entry {
  uint64_t index = 0;
  uint64_t term = 0;
  EntryType type = EntryType::Data;
  std::shared_ptr<const std::string> data;    // shared: entries are copied into many messages
  std::shared_ptr<const Configuration> conf;  // set for Configuration entries

  size_t data_size() const { return data ? data->size() : 0; }
};

struct LogId {
  uint64_t index = 0;
  uint64_t term = 0;
  friend bool operator==(const LogId&, const LogId&) = default;
  // braft compares term first, then index.
  friend bool operator<(const LogId& a, const LogId& b) {
    return a.term != b.term ? a.term < b.term : a.index < b.index;
  }
};

struct SnapshotMeta {
  uint64_t last_included_index = 0;
  uint64_t last_included_term = 0;
  Configuration conf;
};

// --- messages (field names follow braft's raft.proto) -------------------------------

struct TermLeader {
  PeerId peer_id;
  uint64_t term = 0;
};

struct RequestVoteRequest {
  bool pre_vote = false;  // pre_vote and request_vote share the message, as in braft
  uint64_t term = 0;
  uint64_t last_log_term = 0;
  uint64_t last_log_index = 0;
  std::optional<TermLeader> disrupted_leader;
};
struct RequestVoteResponse {
  bool pre_vote = false;
  uint64_t term = 0;
  bool granted = false;
  bool rejected_by_lease = false;
};
struct AppendEntriesRequest {
  uint64_t term = 0;
  uint64_t prev_log_term = 0;
  uint64_t prev_log_index = 0;
  std::vector<Entry> entries;
  uint64_t committed_index = 0;
};
struct AppendEntriesResponse {
  uint64_t term = 0;
  bool success = false;
  uint64_t last_log_index = 0;
  bool busy = false;  // the follower is installing a snapshot (braft answers EBUSY)
};
struct InstallSnapshotRequest {
  uint64_t term = 0;
  SnapshotMeta meta;
  std::string uri;  // filled in by the runtime
};
struct InstallSnapshotResponse {
  uint64_t term = 0;
  bool success = false;
};
struct TimeoutNowRequest {
  uint64_t term = 0;
  bool old_leader_stepped_down = false;
};
struct TimeoutNowResponse {
  uint64_t term = 0;
  bool success = false;
};
// Our own (raftstore.ReadIndex): a follower asks the leader for a read index.
struct ReadIndexRequest {
  uint64_t term = 0;  // the follower's term, for staleness only
  uint64_t ctx = 0;
};
struct ReadIndexResponse {
  uint64_t term = 0;
  uint64_t ctx = 0;
  bool success = false;
  uint64_t index = 0;
};

using Payload =
    std::variant<RequestVoteRequest, RequestVoteResponse, AppendEntriesRequest,
                 AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
                 TimeoutNowRequest, TimeoutNowResponse, ReadIndexRequest, ReadIndexResponse>;

// One RPC (request or response). `rpc_id` is chosen by the requester and echoed in the
// response; the runtime maps it to brpc's correlation id.
struct Envelope {
  std::string group;
  PeerId from;
  PeerId to;
  uint64_t rpc_id = 0;
  Payload payload;
};

const char* payload_name(const Payload& p);

// Requests and their responses alternate in Payload: a request is at an even index.
inline bool is_request(const Payload& p) { return p.index() % 2 == 0; }
static_assert(std::is_same_v<std::variant_alternative_t<0, Payload>, RequestVoteRequest> &&
              std::is_same_v<std::variant_alternative_t<1, Payload>, RequestVoteResponse> &&
              std::is_same_v<std::variant_alternative_t<8, Payload>, ReadIndexRequest> &&
              std::is_same_v<std::variant_alternative_t<9, Payload>, ReadIndexResponse>);

}  // namespace raftstore::core
