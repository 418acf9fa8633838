// A NodeHost serves one ip:port on its own thread (an Asio io_context) and drives any
// number of Raft groups on it, routed by (group, peer id) as braft does. Each Node owns a
// core, its data directory (storage/), channels to its peers, and a tick timer.
//
// Each node has a log-writer thread: the host thread hands it term/vote and log writes and
// sends the Ready's messages at once (the core never releases a message that depends on
// something not yet durable), so a leader replicates while its own fsync is in flight. The
// writer takes every queued write, applies them in order and fsyncs once (group commit),
// then reports back to the host thread (meta_persisted, log_persisted).
//
// Snapshots, one at a time per node: the state machine writes its files into the store's
// temp directory (capturing its state on the host thread, finishing on any thread); the
// writer thread publishes them (fsync, rename) in order with the log writes; then the core
// compacts its log. A follower told to install one copies it from the leader's FileService
// (file_service.h) into the temp directory, the writer publishes it, and only then does the
// core adopt it, the state machine load it, and the log reset follow: the InstallSnapshot
// answer never runs ahead of a durable snapshot.
//
// One role a file: node_host.cpp (the host: thread, port, request routing), node.cpp (a
// group member: open, tick, drain the Ready, proposals, membership and read calls),
// log_writer.cpp (the writer thread: group commit), replicator.cpp (messages to and from
// peers, transport failures back to the core), snapshot_executor.cpp (taking, installing
// and serving snapshots; the transfer itself is snapshot_transfer.h, which the simulator
// runs too), forward_service.cpp, cli_service.cpp, status.cpp (/raft_stat).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "file_service.h"
#include "proposals.h"
#include "raft.h"
#include "storage.h"
#include "transport.h"

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
  std::function<uint64_t()> wall_clock_ms;  // unset: the system clock (tests give each node one)
};
inline constexpr size_t kLeaderTimeBytes = 8;

// The application's replicated state. Every callback runs on the host's thread.
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

class NodeHost;

// Posts work to a host's thread from threads the host does not own (a state machine
// finishing a snapshot), safely even while the host is destroyed: then it is dropped.
class HostGate {
 public:
  explicit HostGate(asio::io_context& io) : io_(&io) {}
  // False (and `f` not run) once the host is gone.
  template <typename F>
  bool post(F&& f) {
    std::lock_guard<std::mutex> l(mu_);
    if (io_) asio::post(*io_, std::forward<F>(f));
    return io_ != nullptr;
  }
  void close() {
    std::lock_guard<std::mutex> l(mu_);
    io_ = nullptr;
  }

 private:
  std::mutex mu_;
  asio::io_context* io_;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  // Thread-safe; `done` runs on the host's thread once the entry is applied here (or at
  // once, on the caller's, if the host is gone).
  void propose(std::string data, ProposeDone done);
  core::NodeStatus status();  // thread-safe snapshot
  const NodeOptions& options() const { return opt_; }
  // Takes a snapshot now (as CliService snapshot); `done` runs on the host's thread once it
  // is published, or at once if nothing was applied since the last one. Thread-safe.
  void snapshot(std::function<void(storage::Status)> done);
  // The index of the newest published snapshot (0: none). Thread-safe.
  uint64_t snapshot_index();

  // Membership, as braft's CliService does it on this node. Thread-safe; `done` runs on the
  // host's thread. "add_peer" and "remove_peer" take one peer, "change_peers" the new set;
  // answered when the change commits (or fails) with the old and new configurations.
  using ConfDone = std::function<void(const core::ConfChangeResult&)>;
  void change_membership(std::string method, core::PeerList peers, ConfDone done);
  using StatusDone = std::function<void(core::Status)>;
  // An empty target: any peer (braft's ANY_PEER). Answered when the transfer starts.
  void transfer_leadership(core::PeerId target, StatusDone done);
  // braft's reset_peers: forced, local, unsafe by design (quorum loss only).
  void reset_peers(core::PeerList peers, StatusDone done);
  // A read barrier: `done` gets an index such that a read after applying it is
  // linearizable (ReadIndex through the leader), or, with `lease` and a valid leader lease
  // here, the commit index at once.
  using ReadDone = std::function<void(core::Status, uint64_t index)>;
  void read_index(bool lease, ReadDone done);
  // The state machine has applied everything up to `index` (for stuck_apply_timeout_ms).
  // Thread-safe.
  void report_applied(uint64_t index) { reported_applied_.store(index); }

  struct Key {};
  Node(Key, NodeHost& host, NodeOptions opt, StateMachine sm);
  ~Node();
  storage::Status open();  // on the host's thread

 private:
  friend class NodeHost;
  void tick();
  void drain();
  void send(core::Envelope env);
  const std::shared_ptr<rpc::Channel>& channel_to(const core::PeerId& peer);
  void on_request(core::Envelope env, rpc::Server::Respond respond);
  void flush_proposals();
  // Runs `work` on the host's thread while this node is active; otherwise `refused` gets
  // why (the node stopped, or its host is gone). Thread-safe.
  template <typename Work, typename Refused>
  void on_host(Work work, Refused refused) {
    auto why = std::make_shared<Refused>(std::move(refused));
    bool posted = gate_->post([self = shared_from_this(), work = std::move(work), why]() mutable {
      if (self->failed_) return (*why)("node is not active");
      work();
    });
    if (!posted) (*why)("the node host is gone");
  }
  void enqueue(std::string data, ProposeDone done, bool may_forward);
  void forward(std::shared_ptr<const std::string> data, ProposeDone done);
  // The leader applied a proposal forwarded from here at `index`: done once this replica
  // applies it too (so the proposer sees its own write), or knows it never will.
  void forwarded_applied(uint64_t index, ProposeDone done);
  void peer_unreachable(const core::PeerId& peer);
  void fail(const std::string& why);
  void check_stuck_apply(uint64_t now);
  uint64_t wall_ms() const;
  void refresh_status();  // what status() returns, from the core
  // The host is going away: fail what is pending, drop connections, stop the writer and
  // release the data directory, even if someone still holds this Node.
  void stop();
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
  void write_loop();
  void written(storage::Status st, std::vector<Write> batch);
  void queue_write(Write w);
  void start_snapshot();
  void snapshot_saved(storage::Status st, const core::SnapshotMeta& meta);
  void start_install(const core::SnapshotInstall& install);
  void snapshot_published(const Write& w);
  void advance_install(const core::SnapshotMeta& meta, const storage::Status& st);
  bool adopt_install(const core::SnapshotMeta& meta);
  void finish_snapshot(const storage::Status& st);
  // CliService on this node (host thread). `done` gets the old and new configuration.
  using CliDone = std::function<void(const core::ConfChangeResult&)>;
  void change_conf(const std::string& method, const core::PeerList& peers, CliDone done);

  NodeHost& host_;  // valid while gate_ is open
  std::shared_ptr<HostGate> gate_;
  NodeOptions opt_;
  StateMachine sm_;
  std::unique_ptr<storage::DirLock> lock_;
  std::unique_ptr<storage::SegmentLog> log_;
  std::unique_ptr<storage::MetaStore> meta_;
  std::unique_ptr<storage::SnapshotStore> snapshots_;
  std::unique_ptr<core::Raft> core_;
  std::unique_ptr<asio::steady_timer> ticker_;
  std::map<core::PeerId, std::shared_ptr<rpc::Channel>> channels_;
  std::map<uint64_t, rpc::Server::Respond> inbound_;  // local id -> where the answer goes
  uint64_t next_inbound_ = 1;
  ProposalTracker proposals_;                  // this replica's proposals the core placed
  std::map<uint64_t, ProposeDone> forwarded_;  // applied by the leader, not yet here
  // Ranges (from, to] of indices this replica passed by installing a snapshot.
  std::vector<std::pair<uint64_t, uint64_t>> skipped_;
  std::mutex proposals_mu_;  // guards the queue of proposals not yet given to the core
  struct Queued {
    std::string data;
    ProposeDone done;
    bool may_forward;
  };
  std::vector<Queued> queued_;
  bool flush_scheduled_ = false;
  std::map<uint64_t, CliDone> conf_changes_;  // by change id
  std::map<uint64_t, ReadDone> reads_;        // by read ctx
  uint64_t next_read_ = 1;
  uint64_t next_change_ = 1;
  bool failed_ = false;
  // Snapshots (host thread).
  enum class SnapshotOp : uint8_t { None, Saving, Installing } snapshot_op_ = SnapshotOp::None;
  std::vector<std::function<void(storage::Status)>> snapshot_waiters_;
  std::optional<core::SnapshotInstall> pending_install_;  // arrived while saving
  std::shared_ptr<SnapshotCopier> copier_;
  InstallOrder install_order_;
  std::optional<storage::SnapshotInfo> published_;  // what FileService serves
  std::atomic<uint64_t> published_index_{0};
  uint64_t next_snapshot_ms_ = 0;
  uint64_t snapshots_installed_ = 0;
  uint64_t snapshot_failures_ = 0;
  // The stuck-apply guard (host thread, but reported_applied_).
  std::atomic<uint64_t> reported_applied_{0};
  uint64_t stuck_seen_applied_ = 0;
  uint64_t stuck_since_ms_ = 0;
  uint64_t stuck_transfers_ = 0;
  std::string last_snapshot_error_;
  std::thread writer_;
  std::mutex writes_mu_;
  std::condition_variable writes_cv_;
  std::deque<Write> writes_;
  bool stop_writer_ = false;
  std::mutex status_mu_;
  core::NodeStatus status_;
};

class NodeHost {
 public:
  // Binds ip:port (port 0 picks one) and starts the host's thread.
  static storage::Status start(const std::string& ip, uint16_t port,
                               std::unique_ptr<NodeHost>* out);
  ~NodeHost();
  uint16_t port() const { return port_; }

  // Opens the node's data directory, loads its snapshot into `sm`, and starts it.
  // Thread-safe.
  storage::Status add_node(NodeOptions opt, StateMachine sm, std::shared_ptr<Node>* out);

  // Stops the node (pending proposals fail with Shutdown), releases its data directory and
  // forgets it. Thread-safe; returns once done. False if there is no such node.
  bool remove_node(const std::string& group, const core::PeerId& self);

  // Serves an application service (e.g. "example.CounterService") on the same port; its
  // handler runs on the host's thread. Thread-safe.
  void add_service(const std::string& full_name, rpc::Server::Handler handler);

  asio::io_context& io() { return io_; }
  const std::shared_ptr<HostGate>& gate() const { return gate_; }

  struct Key {};
  explicit NodeHost(Key) {}

 private:
  friend class Node;
  void on_request(rpc::Frame frame, rpc::Server::Respond respond);
  void on_cli(const rpc::Frame& frame, const rpc::Server::Respond& respond);
  void on_get_file(const rpc::Frame& frame, const rpc::Server::Respond& respond);
  void on_forward(const rpc::Frame& frame, const rpc::Server::Respond& respond);
  // FileService readers: a published snapshot lent to one InstallSnapshot (host thread).
  int64_t open_reader(storage::SnapshotInfo snapshot, uint64_t ttl_ms);
  void close_reader(int64_t id);
  // braft's CliService node lookup: by peer id, or the only node of the group.
  std::shared_ptr<Node> find(const std::string& group, const std::string& peer, int32_t* code,
                             std::string* text);
  std::string error_text(int32_t code, const std::string& message) const;
  std::string http_status(const std::string& path);

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::shared_ptr<rpc::Server> server_;
  uint16_t port_ = 0;
  std::shared_ptr<HostGate> gate_ = std::make_shared<HostGate>(io_);
  std::thread thread_;
  std::map<std::pair<std::string, core::PeerId>, std::shared_ptr<Node>> nodes_;  // host thread
  std::map<std::string, rpc::Server::Handler> services_;                         // host thread
  struct Reader {
    storage::SnapshotInfo snapshot;
    uint64_t expires_ms;
  };
  std::map<int64_t, Reader> readers_;  // host thread
  // Which (group, to, from) sent Raft requests on each inbound connection: when one closes,
  // its nodes learn that the sender's host may be gone (Raft::peer_unreachable).
  using Route = std::tuple<std::string, core::PeerId, core::PeerId>;
  std::map<uint64_t, std::vector<Route>> connection_routes_;  // host thread
  int64_t next_reader_ = 0;
};

}  // namespace raftstore::runtime
