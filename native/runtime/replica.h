// A Replica is one member of a Raft group as its host runs it: the core plus every decision
// the runtime makes around it (draining the Ready in order, what to persist before what is
// sent or acknowledged, batching proposals, forwarding them, read barriers, membership calls,
// taking and installing snapshots, the stuck-apply guard). It does no I/O and owns no thread:
// its clock, network, disk and snapshot copies come through a ReplicaEnv. The threaded
// runtime (Node in node_host.h: Asio, sockets, a writer thread, files) and the simulator
// (native/sim: virtual time, a faulty network, a disk that loses unsynced writes) are the two
// environments, so the simulator runs this code as it ships.
//
// Every method runs on the replica's thread (the host's io_context, or the simulator's
// loop) unless it says it is thread-safe.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "metrics.h"
#include "proposals.h"
#include "raft.h"
#include "snapshot_transfer.h"
#include "storage.h"

namespace raftstore::runtime {

struct NodeOptions {
  std::string group;
  core::PeerId self;
  std::string data_dir;
  core::Configuration initial_conf;  // used when the data directory holds none
  core::Options raft;                // timeouts, batching; group/self/random are filled in
  uint32_t tick_ms = 10;
  // A proposal made at a replica that is not the leader goes to the leader over
  // raftstore.ForwardService (RaftNode); otherwise it is refused with NotLeader (braft).
  bool forward_proposals = false;
  uint32_t snapshot_interval_s = 0;  // take a snapshot this often (braft's default 3600); 0: never
  uint64_t snapshot_log_threshold = 0;  // or once this many entries were applied since; 0: never
  // A leader whose state machine reports no progress (report_applied) for this long while
  // entries wait for it hands leadership to an up-to-date follower; 0: never. For state
  // machines that apply off the host's thread (the Node binding's event loop).
  uint32_t stuck_apply_timeout_ms = 0;
  // The first kLeaderTimeBytes of every proposal are the leader's: the replica that appends
  // the entry (always the leader) overwrites them with its wall clock, in ms since the epoch
  // (u64 LE), so every replica applies the same time and it comes from one clock per term.
  // Shorter proposals are refused (InvalidArgument).
  bool stamp_leader_time = false;
  std::function<uint64_t()> wall_clock_ms;  // unset: the environment's wall clock
  // Structured log records at `log_level` and above (metrics.h), on the replica's thread.
  // Unset: only the status page's recent events keep them.
  LogSink log;
  LogLevel log_level = LogLevel::Info;
  uint32_t slow_fsync_ms = 500;  // a log fsync slower than this is logged as a warning
};
inline constexpr size_t kLeaderTimeBytes = 8;

// An InstallSnapshot's (and a forwarded proposal's) deadline.
inline uint32_t install_timeout_ms(const core::Options& o) {
  return static_cast<uint32_t>(o.install_snapshot_timeout_ms ? o.install_snapshot_timeout_ms
                                                             : 10 * o.election_timeout_ms);
}

// The application's replicated state. Every callback runs on the replica's thread.
struct StateMachine {
  using SaveDone = std::function<void(storage::Status)>;
  // Committed entries, in order.
  std::function<void(const std::vector<core::Entry>&)> apply;
  // Writes the state as of the last applied entry into `dir`: capture it before returning,
  // then write (on any thread) and call `done` (from any thread). Unset: no snapshots.
  std::function<void(const std::string& dir, SaveDone done)> save;
  // Replaces the state with the snapshot in `dir`; an error stops the replica.
  std::function<storage::Status(const std::string& dir)> load;
  // Role, term or leader changed (optional).
  std::function<void(core::Role role, uint64_t term, const core::PeerId& leader)> on_role;
};
// The outcome of a proposal on the replica that made it: applied at (index, term), or not.
using ProposeDone = std::function<void(core::Status, uint64_t index)>;

// One unit of work for the log writer, in the order the replica queued it.
struct Write {
  std::optional<core::HardState> hard_state;
  uint64_t meta_seq = 0;
  core::Ready log;  // only log_reset, log_write, compact_before
  // Publish the temp directory as this snapshot; the outcome comes back in the Write.
  std::optional<core::SnapshotMeta> publish;
  bool installed = false;  // copied from the leader rather than taken here
  storage::Status publish_status;
  std::optional<storage::SnapshotInfo> published;
};

// raftstore.ForwardService's answer on the leader: applied at `index`, or refused (naming the
// leader this replica knows, if any). Replica::forward_answered reads it.
std::string forward_response(const core::Status& st, uint64_t index, const core::PeerId& leader);

// What the log writer writes to. save_meta and publish are durable when they return; log
// changes are durable once sync_log returns.
class LogDisk {
 public:
  virtual ~LogDisk() = default;
  virtual storage::Status save_meta(const core::HardState& hs) = 0;
  virtual storage::Status apply_log(const core::Ready& log) = 0;
  virtual storage::Status sync_log() = 0;
  virtual storage::Status publish(const core::SnapshotMeta& meta, storage::SnapshotInfo* out) = 0;
  virtual uint64_t now_us() { return 0; }  // a monotonic clock for WriteTimings
};

// Group commit: the writes of one batch, in order, with one log sync for all of them. An error
// is returned (the replica stops); a failed snapshot publish is only recorded in its Write.
// How long a batch took (LogDisk::now_us), and what it wrote.
struct WriteTimings {
  uint64_t append_us = 0, fsync_us = 0, entries = 0, bytes = 0;
  bool synced = false;  // the batch touched the log and fsynced it
};
storage::Status commit_writes(std::vector<Write>& batch, LogDisk& disk,
                              WriteTimings* timings = nullptr);

// What a Replica needs from the world. The environment calls back into the replica
// (Replica::answered, call_failed, written, ...) on the replica's thread, and never after
// the replica is gone.
class ReplicaEnv {
 public:
  virtual ~ReplicaEnv() = default;
  virtual uint64_t now_ms() = 0;   // monotonic: Raft's timers
  virtual uint64_t wall_ms() = 0;  // ms since the epoch: leader time stamps
  // The monotonic clock in µs, for metrics only (never for a decision). Thread-safe.
  virtual uint64_t now_us() { return now_ms() * 1000; }
  // A function that runs work on the replica's thread soon, while the replica lives, and
  // returns false if it never will (the host is gone). Thread-safe, and safe to call after
  // the replica and this environment are gone: a state machine may finish a snapshot on
  // its own thread after its host stopped.
  using Post = std::function<bool(std::function<void()>)>;
  virtual Post poster() = 0;
  // A Raft request to req.to. Its answer comes back through Replica::answered, or a
  // transport failure (not sent, connection lost, no answer within `timeout_ms`) through
  // Replica::call_failed. `lend` is set for InstallSnapshot: the published snapshot that
  // the request offers; the environment serves it and names it in the request's uri.
  virtual void call(core::Envelope req, uint32_t timeout_ms, const storage::SnapshotInfo* lend) = 0;
  // The answer to a request that Replica::receive was given (matched by rpc_id).
  virtual void respond(core::Envelope resp) = 0;
  // A proposal for the leader's ForwardService. `done` gets the transport or response error
  // code (0: answered), its text, and the serialized ForwardResponse.
  using ForwardDone = std::function<void(int32_t code, const std::string& text, std::string resp)>;
  virtual void forward(const core::PeerId& leader, std::shared_ptr<const std::string> data,
                       uint32_t timeout_ms, ForwardDone done) = 0;
  // The log writer: takes writes in order, commits them in batches (commit_writes), and
  // answers each batch with Replica::written.
  virtual void write(Write&& w) = 0;  // by reference: GCC warns falsely on moving a Ready
  // An empty directory for a snapshot's files (the store's temp directory).
  virtual storage::Status begin_snapshot(std::string* dir) = 0;
  // Copies the snapshot an InstallSnapshot names into `dir` (a SnapshotFetch, each get_file
  // call bounded by `call_timeout_ms`); `done` gets the outcome unless cancel_copy came first.
  virtual void copy_snapshot(const core::SnapshotInstall& install, const std::string& dir,
                             uint32_t call_timeout_ms,
                             std::function<void(storage::Status)> done) = 0;
  virtual void cancel_copy() = 0;
  // Sees every Ready before the replica handles it (the simulator's invariant checks).
  virtual void observe(const core::Ready&) {}
};

class Replica {
 public:
  Replica(ReplicaEnv& env, NodeOptions opt, StateMachine sm);
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Starts from what storage holds. `published` is the newest snapshot on disk, already
  // loaded into the state machine; `seed` seeds the core's election timer jitter.
  void start(core::Boot boot, std::optional<storage::SnapshotInfo> published, uint64_t seed);
  void tick();
  // A Raft request from a peer; the answer goes out through ReplicaEnv::respond.
  void receive(const core::Envelope& req);
  // The answer to one of our requests, or its transport failure.
  void answered(const core::Envelope& resp);
  void call_failed(const core::PeerId& to, uint64_t rpc_id);
  // `peer` fetched a chunk of the snapshot we sent it (get_file): the install goes on.
  // `bytes`: the chunk's size, counted per peer (metrics, the CLI's catch-up progress).
  void snapshot_progress(const core::PeerId& peer, uint64_t bytes = 0);
  // Snapshot bytes each peer fetched from this replica, since it started. Thread-safe.
  std::map<core::PeerId, uint64_t> snapshot_bytes_sent();
  // A connection from `peer` closed: its host may be gone.
  void peer_unreachable(const core::PeerId& peer);
  // The log writer committed `batch` (st: Ok, or why the replica must stop).
  void written(storage::Status st, std::vector<Write> batch, const WriteTimings& timings = {});

  // Proposals. Thread-safe; `done` runs on the replica's thread once the entry is applied
  // here (or at once, on the caller's, if the host is gone). `may_forward`: a follower may
  // hand it to the leader (opt.forward_proposals; never for a proposal forwarded to us).
  void propose(std::string data, ProposeDone done, bool may_forward);

  // Membership, as braft's CliService: "add_peer" and "remove_peer" take one peer,
  // "change_peers" the new voters, "change_learners" the new learners. Answered when the
  // change commits or fails, with the old and new configurations.
  using ConfDone = std::function<void(const core::ConfChangeResult&)>;
  void change_conf(const std::string& method, const core::PeerList& peers, ConfDone done);
  core::Status transfer_leader(const core::PeerId& target);  // empty: any peer
  core::Status reset_peers(const core::PeerList& peers);     // forced, local, unsafe
  // A read barrier: an index such that a read after applying it is linearizable (ReadIndex
  // through the leader), or with `lease` and a valid lease here the commit index at once.
  using ReadDone = std::function<void(core::Status, uint64_t index)>;
  void read_index(bool lease, ReadDone done);
  // Takes a snapshot now; `done` once it is published (at once if nothing is new).
  void snapshot(std::function<void(storage::Status)> done);

  // Stops: everything pending fails with Shutdown and `why`, logged at `level` (an orderly
  // shutdown is not an error).
  void fail(const std::string& why, LogLevel level = LogLevel::Error);
  bool failed() const { return failed_; }
  const std::string& failure() const { return failure_; }

  core::NodeStatus status();                                                 // thread-safe
  uint64_t snapshot_index() const { return published_index_; }               // thread-safe
  void report_applied(uint64_t index);                                       // thread-safe
  const ReplicaMetrics& metrics() const { return metrics_; }                 // thread-safe
  std::vector<LogRecord> recent_events() const { return events_.recent(); }  // thread-safe
  const std::string& last_snapshot_error() const { return last_snapshot_error_; }
  const core::Raft& core() const { return *core_; }
  const NodeOptions& options() const { return opt_; }

 private:
  void drain();
  void send(core::Envelope env);
  void flush_proposals();
  void settle_queued(const std::string& why);  // answers every queued proposal with Shutdown
  void forward(std::shared_ptr<const std::string> data, ProposeDone done);
  void forward_answered(const core::PeerId& leader, int32_t code, const std::string& text,
                        const std::string& resp, ProposeDone done);
  // The leader applied a proposal forwarded from here at `index`: done once this replica
  // applies it too (so the proposer sees its own write), or knows it never will.
  void forwarded_applied(uint64_t index, ProposeDone done);
  void check_stuck_apply(uint64_t now);
  void refresh_status();
  void start_snapshot();
  void snapshot_saved(storage::Status st, const core::SnapshotMeta& meta);
  void start_install(const core::SnapshotInstall& install);
  void snapshot_published(const Write& w);
  void advance_install(const core::SnapshotMeta& meta, const storage::Status& st);
  bool adopt_install(const core::SnapshotMeta& meta);
  void finish_snapshot(const storage::Status& st);
  // A snapshot taken or installed: counted, timed from snapshot_started_us_, logged.
  void snapshot_done(const char* what, std::atomic<uint64_t>& count, Histogram& duration,
                     const core::SnapshotMeta& meta);
  // `done`, counted in `ok` or `failed` when it runs, and timed from `started_us` if ok.
  template <typename Done>
  auto counted(std::atomic<uint64_t>& ok, std::atomic<uint64_t>& failed, Histogram& latency,
               uint64_t started_us, Done done) {
    return [this, &ok, &failed, &latency, started_us, done = std::move(done)](
               core::Status st, uint64_t index) mutable {
      if (st.ok()) {
        ++ok;
        latency.observe(env_.now_us() - started_us);
      } else {
        ++failed;
      }
      done(std::move(st), index);
    };
  }
  // A structured record: to the sink at its level, and (info and above) to recent events.
  void log(LogLevel level, std::string message,
           std::vector<std::pair<std::string, std::string>> fields = {});
  // Counts and logs what a Ready says changed: role, leader, configuration.
  void note_changes(const core::Ready& rd);
  void note_apply(uint64_t last_index);  // entries up to here handed to the state machine

  ReplicaEnv& env_;
  ReplicaEnv::Post post_;
  NodeOptions opt_;
  StateMachine sm_;
  std::unique_ptr<core::Raft> core_;
  bool failed_ = false;
  std::string failure_;                        // why it stopped
  ProposalTracker proposals_;                  // this replica's proposals the core placed
  std::map<uint64_t, ProposeDone> forwarded_;  // applied by the leader, not yet here
  // Ranges (from, to] of indices this replica passed by installing a snapshot.
  std::vector<std::pair<uint64_t, uint64_t>> skipped_;
  std::mutex proposals_mu_;  // guards the queue of proposals not yet given to the core
  struct Queued {
    std::string data;
    ProposeDone done;
    bool may_forward;
    uint64_t queued_us;  // for the commit latency
  };
  std::vector<Queued> queued_;
  bool flush_scheduled_ = false;
  // Set by fail(): from then on propose answers at once, from any thread. Without it a
  // proposal racing the host's shutdown could wait for a flush that never runs.
  bool proposals_closed_ = false;
  std::map<uint64_t, ConfDone> conf_changes_;  // by change id
  std::map<uint64_t, ReadDone> reads_;         // by read ctx
  uint64_t next_read_ = 1;
  uint64_t next_change_ = 1;
  // Snapshots.
  enum class SnapshotOp : uint8_t { None, Saving, Installing } snapshot_op_ = SnapshotOp::None;
  std::vector<std::function<void(storage::Status)>> snapshot_waiters_;
  std::optional<core::SnapshotInstall> pending_install_;  // arrived while saving
  InstallOrder install_order_;
  std::optional<storage::SnapshotInfo> published_;  // what followers are sent
  std::atomic<uint64_t> published_index_{0};
  uint64_t next_snapshot_ms_ = 0;
  ReplicaMetrics metrics_;
  EventRing events_;
  std::string last_snapshot_error_;
  uint64_t snapshot_started_us_ = 0;
  core::Configuration last_conf_;  // as last logged
  bool conf_known_ = false;
  // Apply batches handed out and not yet reported applied: (last index, when), oldest first.
  std::mutex apply_mu_;
  std::deque<std::pair<uint64_t, uint64_t>> apply_times_;
  // The stuck-apply guard; what the state machine reported is metrics_.state_machine_applied.
  uint64_t stuck_seen_applied_ = 0;
  uint64_t stuck_since_ms_ = 0;
  std::mutex status_mu_;
  core::NodeStatus status_;
  std::map<core::PeerId, uint64_t> snapshot_bytes_sent_;  // under status_mu_
};

}  // namespace raftstore::runtime
