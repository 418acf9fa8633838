// The pure Raft state machine. No threads, clocks, sockets, files or randomness of its
// own: the caller passes the current time in milliseconds, delivers messages, and drains
// a Ready that says what to persist, send and apply. The persistence contract:
//   * Ready::hard_state must be durable before calling meta_persisted(seq). Messages that
//     depend on a term or vote are held inside the core until then, so a Ready's messages
//     may always be sent at once.
//   * Ready::log_write must be applied in order (truncate, then append); when it is durable
//     call log_persisted(write.seq). A follower acknowledges entries, and the leader counts
//     its own copy towards commit, only after that call.
//   * Within one Ready, storage applies log_reset, then log_write, then compact_before. An
//     installed snapshot is published (durable) before log_reset is applied.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "types.h"

namespace raftstore::core {

enum class Role : uint8_t { Follower, Candidate, Leader, Learner };
const char* role_name(Role r);

enum class Code : uint8_t {
  Ok,
  NotLeader,        // EPERM "Not leader"
  Busy,             // EBUSY: configuration change or leadership transfer in progress
  InvalidArgument,  // EINVAL
  CatchupFailed,    // ECATCHUP: a new peer could not catch up in time
  LeaderChanged,    // the request was abandoned because leadership was lost
  Shutdown,
  // Runtime only, never on the wire: the entry committed, but this replica passed it by
  // installing a snapshot, so its result here was never computed.
  ResultUnknown,
};
const char* code_name(Code c);

struct Status {
  Code code = Code::Ok;
  std::string message;
  bool ok() const { return code == Code::Ok; }
};

struct HardState {
  uint64_t term = 0;
  PeerId voted_for;
  friend bool operator==(const HardState&, const HardState&) = default;
};

struct Options {
  std::string group;
  PeerId self;
  uint64_t election_timeout_ms = 1000;      // T
  uint64_t max_election_delay_ms = 1000;    // timer is random in [T, T + min(T, this)]
  uint64_t election_heartbeat_factor = 10;  // heartbeat = max(T / factor, 10)
  uint64_t max_clock_drift_ms = 1000;       // followers' lease is T + drift (lease mode)
  bool leader_lease = false;                // braft's raft_enable_leader_lease
  uint32_t max_inflight_appends = 8;        // pipelined AppendEntries per follower
  uint32_t max_entries_per_rpc = 1024;      // braft raft_max_entries_size
  uint64_t max_bytes_per_rpc = 512 * 1024;  // braft raft_max_body_size
  uint64_t catchup_margin = 1000;           // a new peer is caught up within this many entries
  uint64_t catchup_timeout_ms = 0;          // 0 means T
  uint64_t snapshot_log_margin = 0;         // entries kept below a snapshot on compaction
  // Backpressure: refuse proposals (Busy) while this many entries are uncommitted. 0: no cap.
  uint64_t max_uncommitted_entries = 0;
  uint64_t install_snapshot_timeout_ms = 0;  // 0 means 10 * T
  // Tell followers about a new commit index at once (an empty AppendEntries) when no append
  // is due to carry it, rather than at the next heartbeat: a follower then applies, and a
  // proposal forwarded from it resolves, a round trip after commit instead of up to T/10.
  bool notify_commit = true;
  // Randomness is injected so that a seeded simulator replays bit for bit.
  std::function<uint64_t()> random;

  uint64_t heartbeat_ms() const {
    uint64_t h = election_timeout_ms / (election_heartbeat_factor ? election_heartbeat_factor : 1);
    return h < 10 ? 10 : h;
  }
};

// What survives a restart, as read back from storage.
struct Boot {
  HardState hard_state;
  std::optional<SnapshotMeta> snapshot;
  std::vector<Entry> entries;  // consecutive, following the snapshot if there is one
  // The configuration to use when neither the snapshot nor the log holds one (a brand-new
  // replica started from a configuration string, as braft's initial_conf).
  Configuration initial_conf;
};

struct LogWrite {
  uint64_t seq = 0;            // hand back to log_persisted() once durable
  uint64_t from_index = 0;     // drop every stored entry with index >= from_index, then
  std::vector<Entry> entries;  // append these (entries[0].index == from_index)
};

struct ReadResult {
  uint64_t ctx = 0;
  Status status;
  uint64_t index = 0;  // read after the state machine has applied at least this index
};

struct ConfChangeResult {
  uint64_t id = 0;
  Status status;
  Configuration old_conf;
  Configuration new_conf;
};

struct SnapshotInstall {
  PeerId leader;
  SnapshotMeta meta;
  std::string uri;
};

struct Ready {
  std::optional<HardState> hard_state;  // persist, then meta_persisted(meta_seq)
  uint64_t meta_seq = 0;
  std::optional<LogWrite> log_write;       // persist, then log_persisted(seq)
  std::optional<uint64_t> compact_before;  // storage may drop entries below this index
  // Storage must discard the whole log: a snapshot replaced it (after snapshot_installed).
  std::optional<SnapshotMeta> log_reset;
  std::vector<Envelope> messages;                   // send now
  std::vector<Entry> committed;                     // apply in order
  std::optional<SnapshotInstall> install_snapshot;  // fetch, load, then snapshot_installed()
  std::vector<ReadResult> reads;
  std::vector<ConfChangeResult> conf_changes;
  bool role_changed = false;
  bool leader_changed = false;

  bool empty() const {
    return !hard_state && !log_write && !compact_before && !log_reset && messages.empty() &&
           committed.empty() && !install_snapshot && reads.empty() && conf_changes.empty() &&
           !role_changed && !leader_changed;
  }
};

struct ProposeResult {
  Status status;
  uint64_t index = 0;
  uint64_t term = 0;
};

// Bad or stale input, dropped and counted rather than trusted.
struct Counters {
  uint64_t wrong_group = 0;
  uint64_t wrong_target = 0;
  uint64_t unknown_sender = 0;
  uint64_t malformed = 0;
  uint64_t stale = 0;
  uint64_t total() const { return wrong_group + wrong_target + unknown_sender + malformed + stale; }
};

struct PeerStatus {
  PeerId id;
  uint64_t match_index = 0;
  uint64_t next_index = 0;
  uint64_t last_ack_ms = 0;
  const char* state = "";
};

struct NodeStatus {
  Role role = Role::Follower;
  uint64_t term = 0;
  PeerId leader;
  uint64_t first_index = 0;
  uint64_t last_index = 0;
  uint64_t commit_index = 0;
  uint64_t durable_index = 0;
  uint64_t applied_index = 0;  // as handed out in Ready::committed
  Configuration conf;
  std::vector<PeerStatus> peers;
};

class Raft {
 public:
  Raft(Options options, Boot boot, uint64_t now_ms);
  Raft(const Raft&) = delete;
  Raft& operator=(const Raft&) = delete;

  void tick(uint64_t now_ms);
  void step(const Envelope& message, uint64_t now_ms);

  ProposeResult propose(std::shared_ptr<const std::string> data, uint64_t now_ms);
  // Several proposals, appended together and replicated in one round of AppendEntries
  // (what a runtime does with proposals that queued up while it was busy). One result
  // each, in order; refusals as propose().
  std::vector<ProposeResult> propose_batch(std::vector<std::shared_ptr<const std::string>> data,
                                           uint64_t now_ms);
  // Answered later in Ready::reads with the same ctx.
  void read_index(uint64_t ctx, uint64_t now_ms);
  // Membership (braft CliService semantics). Answered later in Ready::conf_changes with `id`.
  Status change_peers(uint64_t id, const PeerList& new_peers, uint64_t now_ms);
  Status add_peer(uint64_t id, const PeerId& peer, uint64_t now_ms);
  Status remove_peer(uint64_t id, const PeerId& peer, uint64_t now_ms);
  Status change_learners(uint64_t id, const PeerList& learners, uint64_t now_ms);
  // Forced local configuration after quorum loss. Unsafe by design, as braft's reset_peers:
  // it can lose committed entries if the replaced majority comes back.
  Status reset_peers(const PeerList& new_peers, uint64_t now_ms);
  Status transfer_leader(const PeerId& target, uint64_t now_ms);

  // The runtime saw `peer`'s host go away (its connection refused, or closed by the other
  // end). If `peer` is our leader we stop vouching for it (pre-votes from others are no
  // longer refused on its behalf) and campaign after a short random delay, with a pre-vote,
  // instead of waiting out the election timeout. A wrong hint costs one refused pre-vote.
  // Ignored with leader leases: a lease must run out whatever the network says.
  void peer_unreachable(const PeerId& peer, uint64_t now_ms);
  // The request `rpc_id` to `peer` failed in transport (not connected, connection closed,
  // deadline passed): no answer will come. The leader retries after a heartbeat interval
  // instead of waiting out its timers (10 election timeouts for an InstallSnapshot).
  void rpc_failed(const PeerId& peer, uint64_t rpc_id, uint64_t now_ms);
  // `peer` fetched a chunk of the snapshot it is being sent (the runtime serves its
  // get_file calls): the install is alive, however long the copy takes, so its stall timer
  // (install_snapshot_timeout_ms) starts again. braft sends InstallSnapshot without a
  // deadline; this keeps a deadline for lost requests without one for large snapshots.
  void snapshot_progress(const PeerId& peer, uint64_t now_ms);

  void meta_persisted(uint64_t seq);
  void log_persisted(uint64_t write_seq);
  // A Boot that no correct storage can produce (gaps, a log not starting at 1 or right
  // after the snapshot). The runtime refuses to start with ERR_RAFT_CORRUPT_LOG; the core
  // itself ignores such a log rather than crash.
  static Status check_boot(const Boot& boot);
  // The state machine has a snapshot covering [1, meta.last_included_index].
  void snapshot_taken(const SnapshotMeta& meta);
  // The meta to record for a snapshot of the state machine at `index` (<= applied).
  std::optional<SnapshotMeta> snapshot_meta_at(uint64_t index) const;
  // Returns true if the core adopted the snapshot (the runtime then publishes it); a
  // snapshot overtaken by the local commit index is acknowledged but not adopted.
  bool snapshot_installed(const SnapshotMeta& meta, bool ok);

  bool has_ready() const {
    return !ready_.empty() || (read_round_needed_ && role_ == Role::Leader);
  }
  Ready take_ready();

  // --- inspection -------------------------------------------------------------------
  Role role() const { return role_; }
  uint64_t term() const { return hs_.term; }
  const PeerId& leader() const { return leader_; }
  const PeerId& self() const { return opt_.self; }
  bool transferring_leadership() const { return !transfer_target_.empty(); }
  const Configuration& conf() const { return conf_; }
  uint64_t conf_index() const { return conf_index_; }  // 0: from a snapshot or the start
  // The configuration in effect at `index` (>= first_index() - 1).
  Configuration conf_at(uint64_t index) const;
  uint64_t first_index() const { return first_index_; }
  uint64_t last_index() const { return first_index_ + log_.size() - 1; }
  uint64_t commit_index() const { return commit_; }
  uint64_t durable_index() const { return durable_; }
  uint64_t applied_index() const { return applied_; }
  const SnapshotMeta& snapshot() const { return snapshot_; }
  // Term of the entry at `index`, if still known (entries or the snapshot boundary).
  std::optional<uint64_t> term_at(uint64_t index) const;
  const Entry* entry_at(uint64_t index) const;
  const Counters& counters() const { return counters_; }
  bool lease_valid(uint64_t now_ms) const;
  NodeStatus status() const;
  const Options& options() const { return opt_; }

 private:
  struct Inflight {
    uint64_t rpc_id;
    uint64_t sent_ms;
    uint64_t last_index;  // last entry index carried (prev index for heartbeats)
    bool heartbeat;
    bool probe = false;  // an empty append asking where the peer's log ends
  };
  enum class ProgressState : uint8_t { Probe, Replicate, Snapshot };
  struct Progress {
    uint64_t match = 0;
    uint64_t next = 1;
    ProgressState state = ProgressState::Probe;
    std::deque<Inflight> inflight;  // every outstanding RPC, appends and heartbeats
    uint64_t appends_inflight = 0;
    uint64_t last_ack_ms = 0;       // receive time of the last same-term response
    uint64_t paused_until_ms = 0;   // back off after EBUSY or a failed snapshot
    uint64_t acked_sent_ms = 0;     // send time of the newest acknowledged RPC (lease)
    uint64_t acked_rpc = 0;         // newest rpc id acknowledged (ReadIndex)
    uint64_t snapshot_sent_ms = 0;  // or when the peer last fetched a chunk of it
    uint64_t snapshot_rpc = 0;
    uint64_t snapshot_index = 0;  // what that InstallSnapshot carried
    uint64_t commit_told = 0;     // the highest commit index our appends let it apply
  };
  struct PendingRead {
    uint64_t ctx;
    PeerId from;  // empty when local
    uint64_t from_rpc;
    uint64_t index;
    uint64_t need_rpc;  // confirmed once a quorum acked an RPC with id >= this
  };
  struct PendingAck {
    PeerId to;
    uint64_t rpc_id;
    uint64_t term;
    uint64_t index;
    bool snapshot = false;  // answers an InstallSnapshot rather than an AppendEntries
  };
  struct OutstandingWrite {
    uint64_t seq;
    uint64_t last_index;
    uint64_t cap;  // a later truncation: this write makes nothing above cap durable
  };
  struct ConfChange {
    uint64_t id = 0;
    bool active = false;
    enum Stage : uint8_t { CatchingUp, Joint, Stable } stage = CatchingUp;
    Configuration old_conf;
    PeerList new_peers;
    PeerList new_learners;
    uint64_t started_ms = 0;
    uint64_t entry_index = 0;  // config entry awaiting commit
    // Catch-up fails once a new peer made no progress for catchup_timeout_ms (braft re-arms
    // its wait while the peer advances): per peer, its match and when that last moved.
    std::map<PeerId, std::pair<uint64_t, uint64_t>> catchup;
  };

  // roles
  void become_follower(const PeerId& leader, uint64_t now);
  void become_candidate(uint64_t now, bool from_timeout_now);
  void become_leader(uint64_t now);
  void step_down_to(uint64_t term, uint64_t now);
  void start_pre_vote(uint64_t now);
  void reset_election_timer(uint64_t now);
  bool heard_from_leader_within(uint64_t ms, uint64_t now) const;
  bool can_campaign() const;
  void set_role(Role r);
  void set_leader(const PeerId& p);
  void set_hard_state(uint64_t term, const PeerId& vote);

  // handlers
  void handle(const Envelope& m, const RequestVoteRequest& r, uint64_t now);
  void handle(const Envelope& m, const RequestVoteResponse& r, uint64_t now);
  void handle(const Envelope& m, const AppendEntriesRequest& r, uint64_t now);
  void handle(const Envelope& m, const AppendEntriesResponse& r, uint64_t now);
  void handle(const Envelope& m, const InstallSnapshotRequest& r, uint64_t now);
  void handle(const Envelope& m, const InstallSnapshotResponse& r, uint64_t now);
  void handle(const Envelope& m, const TimeoutNowRequest& r, uint64_t now);
  void handle(const Envelope& m, const TimeoutNowResponse& r, uint64_t now);
  void handle(const Envelope& m, const ReadIndexRequest& r, uint64_t now);
  void handle(const Envelope& m, const ReadIndexResponse& r, uint64_t now);
  bool validate(const Envelope& m);

  // log
  uint64_t last_term() const;
  LogId last_log_id() const { return {last_index(), last_term()}; }
  void append_local(std::vector<Entry> entries);  // leader side
  void truncate_suffix(uint64_t from_index);
  void record_write(uint64_t from_index, const std::vector<Entry>& entries);
  void rebuild_conf();
  void maybe_commit(uint64_t now);
  void advance_commit(uint64_t index, uint64_t now);
  void emit_committed();
  void compact(uint64_t upto);

  // replication
  void send(const PeerId& to, Payload p, uint64_t rpc_id = 0);
  void send_response(const PeerId& to, uint64_t rpc_id, Payload p);
  void replicate(const PeerId& to, uint64_t now);
  void replicate_all(uint64_t now);
  void send_heartbeat(const PeerId& to, uint64_t now);
  void notify_commit(const PeerId& to, uint64_t now);
  void broadcast_heartbeat(uint64_t now);
  void send_snapshot(const PeerId& to, Progress& pr, uint64_t now);
  void reset_progress(uint64_t now);
  void sync_progress_with_conf(uint64_t now);
  void release_departing(uint64_t now);
  Progress* progress(const PeerId& p);
  bool pop_inflight(Progress& pr, uint64_t rpc_id, Inflight* out);
  void flush_acks();
  void check_quorum(uint64_t now);

  // reads, membership, transfer
  void confirm_reads();
  void fail_reads(Code code, const char* why);
  void answer_read(PendingRead& r, Status status);
  void serve_read(uint64_t ctx, const PeerId& from, uint64_t from_rpc, uint64_t now);
  bool committed_in_term() const;
  Status start_conf_change(uint64_t id, PeerList peers, PeerList learners, uint64_t now);
  void advance_conf_change(uint64_t now);
  void finish_conf_change(Status st);
  void append_conf(Configuration c, uint64_t now);
  void maybe_send_timeout_now(const PeerId& to, uint64_t now);
  void abort_transfer();

  Options opt_;
  Role role_ = Role::Follower;
  HardState hs_;
  uint64_t meta_seq_ = 0;          // latest hard state handed out
  uint64_t meta_durable_seq_ = 0;  // latest confirmed durable
  std::vector<Envelope> held_;     // messages waiting for meta durability
  PeerId leader_;

  std::deque<Entry> log_;  // entries [first_index_, last_index()]
  uint64_t first_index_ = 1;
  SnapshotMeta snapshot_;  // the boundary below first_index_
  uint64_t commit_ = 0;
  uint64_t durable_ = 0;
  uint64_t applied_ = 0;  // highest index handed out for apply
  std::vector<PendingAck> pending_acks_;
  std::deque<OutstandingWrite> writes_;  // handed out, not yet persisted
  uint64_t next_write_seq_ = 1;
  bool installing_snapshot_ = false;
  PendingAck install_ack_{};

  Configuration conf_;       // effective: the latest in the log
  uint64_t conf_index_ = 0;  // index of the entry holding conf_ (0: snapshot/initial)
  std::map<uint64_t, Configuration> conf_log_;  // config entries still in the log
  Configuration base_conf_;                     // from the snapshot, or the initial configuration
  std::optional<Configuration> reset_conf_;     // reset_peers override until a new entry

  // timers
  uint64_t election_deadline_ = 0;
  uint64_t last_leader_contact_ = 0;
  bool leader_unreachable_ = false;  // the runtime said so; cleared by the next contact
  uint64_t next_heartbeat_ = 0;
  uint64_t next_quorum_check_ = 0;

  // elections
  bool pre_voting_ = false;
  bool sole_voter_start_ = false;  // the only voter campaigns at its first tick (braft)
  PeerList votes_;
  uint64_t election_rpc_ = 0;  // rpc ids of this election's requests are > this

  // leader
  std::map<PeerId, Progress> progress_;
  // Peers a committed change removed, still sent heartbeats until they were told that
  // commit (or until this deadline): then they know they were removed.
  std::map<PeerId, uint64_t> departing_;
  uint64_t next_rpc_ = 1;
  std::deque<PendingRead> reads_;
  std::vector<std::pair<uint64_t, PendingRead>> reads_waiting_commit_;
  ConfChange cc_;
  PeerId transfer_target_;
  uint64_t transfer_deadline_ = 0;
  bool timeout_now_sent_ = false;
  uint64_t reset_conf_index_ = 0;
  bool lease_revoked_ = false;  // a TimeoutNow went out in this term

  // follower reads forwarded to the leader
  struct ForwardedRead {
    uint64_t ctx;
    uint64_t sent_ms;
  };
  std::map<uint64_t, ForwardedRead> forwarded_reads_;  // by rpc id

  bool read_round_needed_ = false;
  uint64_t read_round_rpc_ = 0;  // first rpc id of the latest heartbeat round
  bool round_acked(uint64_t rpc) const;
  void ack_when_durable(PendingAck ack);
  // The leader whose lease we last honoured; survives our own step-down (braft FollowerLease).
  PeerId lease_leader_;
  uint64_t lease_term_ = 0;
  uint64_t now_ = 0;
  Counters counters_;
  Ready ready_;
};

}  // namespace raftstore::core
