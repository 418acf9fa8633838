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
// What is decided (all of the above) is in Replica (replica.h), which has no thread, socket
// or file and which the simulator runs as it ships; Node is its environment here.
//
// One role a file. Decisions: replica.cpp (start, tick, drain the Ready, membership and read
// calls), proposals.cpp (batching, forwarding, settling), replicator.cpp (messages to and
// from peers, transport failures back to the core), log_writer.cpp (group commit),
// snapshot_executor.cpp (taking and installing snapshots), snapshot_transfer.cpp (the copy
// and the install order). Shells: node_host.cpp (the host: thread, port, request routing),
// node.cpp (the Node environment: clock, channels, writer thread, files), file_service.cpp
// (serving and copying snapshot files), forward_service.cpp, cli_service.cpp, status.cpp
// (/raft_stat).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "access.h"
#include "file_service.h"
#include "raft.h"
#include "replica.h"
#include "storage.h"
#include "transport.h"

namespace raftstore::runtime {

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

// A Raft group member in a NodeHost: a Replica (replica.h), which decides everything, in
// the threaded environment: the host's io_context and clock, rpc channels to its peers, a
// log-writer thread over the data directory's files, and a SnapshotCopier for installs.
class Node : public std::enable_shared_from_this<Node>, private ReplicaEnv {
 public:
  // Thread-safe; `done` runs on the host's thread once the entry is applied here (or at
  // once, on the caller's, if the host is gone).
  void propose(std::string data, ProposeDone done);
  core::NodeStatus status() { return replica_->status(); }  // thread-safe
  const NodeOptions& options() const { return opt_; }
  // Takes a snapshot now (as CliService snapshot); `done` runs on the host's thread once it
  // is published, or at once if nothing was applied since the last one. Thread-safe.
  void snapshot(std::function<void(storage::Status)> done);
  // The index of the newest published snapshot (0: none). Thread-safe.
  uint64_t snapshot_index() const { return replica_->snapshot_index(); }
  // Its metric families (metrics.h), labelled with group and peer. Thread-safe.
  std::vector<MetricFamily> metrics();
  // The recent info-and-above log records (the status page's events). Thread-safe.
  std::vector<LogRecord> recent_events() const { return replica_->recent_events(); }

  // Membership, as braft's CliService does it on this node. Thread-safe; `done` runs on the
  // host's thread. "add_peer" and "remove_peer" take one peer, "change_peers" the new set;
  // answered when the change commits (or fails) with the old and new configurations.
  using ConfDone = Replica::ConfDone;
  void change_membership(std::string method, core::PeerList peers, ConfDone done);
  using StatusDone = std::function<void(core::Status)>;
  // An empty target: any peer (braft's ANY_PEER). Answered when the transfer starts.
  void transfer_leadership(core::PeerId target, StatusDone done);
  // braft's reset_peers: forced, local, unsafe by design (quorum loss only).
  void reset_peers(core::PeerList peers, StatusDone done);
  // A read barrier (Replica::read_index). Thread-safe.
  using ReadDone = Replica::ReadDone;
  void read_index(bool lease, ReadDone done);
  // The state machine has applied everything up to `index` (for stuck_apply_timeout_ms).
  // Thread-safe.
  void report_applied(uint64_t index) { replica_->report_applied(index); }

  struct Key {};
  Node(Key, NodeHost& host, NodeOptions opt, StateMachine sm);
  ~Node() override;
  storage::Status open();  // on the host's thread

 private:
  friend class NodeHost;
  Replica& replica() { return *replica_; }  // host thread
  void tick();
  const std::shared_ptr<rpc::Channel>& channel_to(const core::PeerId& peer);
  void on_request(core::Envelope env, rpc::Server::Respond respond);
  // Runs `work` on the host's thread while this node is active; otherwise `refused` gets
  // why (the node stopped, or its host is gone). Thread-safe.
  template <typename Work, typename Refused>
  void on_host(Work work, Refused refused) {
    auto why = std::make_shared<Refused>(std::move(refused));
    bool posted = gate_->post([self = shared_from_this(), work = std::move(work), why]() mutable {
      if (self->replica_->failed()) return (*why)("node is not active");
      work();
    });
    if (!posted) (*why)("the node host is gone");
  }
  // The host is going away: fail what is pending, drop connections, stop the writer and
  // release the data directory, even if someone still holds this Node.
  void stop();
  void write_loop();

  // ReplicaEnv, over Asio, sockets, a thread and files.
  uint64_t now_ms() override;
  uint64_t wall_ms() override;
  uint64_t now_us() override;
  Post poster() override;
  void call(core::Envelope req, uint32_t timeout_ms, const storage::SnapshotInfo* lend) override;
  void respond(core::Envelope resp) override;
  void forward(const core::PeerId& leader, std::shared_ptr<const std::string> data,
               uint32_t timeout_ms, ForwardDone done) override;
  void write(Write&& w) override;
  storage::Status begin_snapshot(std::string* dir) override;
  void copy_snapshot(const core::SnapshotInstall& install, const std::string& dir,
                     uint32_t call_timeout_ms, std::function<void(storage::Status)> done) override;
  void cancel_copy() override;

  // The data directory's files, as the log writer's disk (writer thread).
  class FileDisk : public LogDisk {
   public:
    explicit FileDisk(Node& n) : n_(n) {}
    storage::Status save_meta(const core::HardState& hs) override;
    storage::Status apply_log(const core::Ready& log) override;
    storage::Status sync_log() override;
    storage::Status publish(const core::SnapshotMeta& meta, storage::SnapshotInfo* out) override;
    uint64_t now_us() override { return n_.now_us(); }

   private:
    Node& n_;
  };

  NodeHost& host_;  // valid while gate_ is open
  std::shared_ptr<HostGate> gate_;
  NodeOptions opt_;
  StateMachine sm_;  // until open() hands it to the replica
  std::unique_ptr<Replica> replica_;
  std::unique_ptr<storage::DirLock> lock_;
  std::unique_ptr<storage::SegmentLog> log_;
  std::unique_ptr<storage::MetaStore> meta_;
  std::unique_ptr<storage::SnapshotStore> snapshots_;
  std::unique_ptr<asio::steady_timer> ticker_;
  std::map<core::PeerId, std::shared_ptr<rpc::Channel>> channels_;
  std::map<uint64_t, rpc::Server::Respond> inbound_;  // local id -> where the answer goes
  uint64_t next_inbound_ = 1;
  std::shared_ptr<SnapshotCopier> copier_;
  FileDisk disk_{*this};
  std::thread writer_;
  std::mutex writes_mu_;
  std::condition_variable writes_cv_;
  std::deque<Write> writes_;
  bool stop_writer_ = false;
};

struct HostOptions {
  // Who may call CliService's changing methods and ForwardService (access.h).
  std::vector<std::string> admin_allow = AccessPolicy::default_rules();
  // Set (all three files): mutual TLS on the port and on every channel its nodes open
  // (rpc/tls.h). Unset: plain TCP, which braft_cli speaks.
  rpc::TlsFiles tls;
};

class NodeHost {
 public:
  // Binds ip:port (port 0 picks one) and starts the host's thread. A malformed option is
  // InvalidArgument.
  static storage::Status start(const std::string& ip, uint16_t port, std::unique_ptr<NodeHost>* out,
                               HostOptions options = {});
  ~NodeHost();
  uint16_t port() const { return port_; }
  // The port's own metric families: connections, requests, refusals. Thread-safe.
  std::vector<MetricFamily> metrics() const;
  const AccessPolicy& access() const { return *access_; }

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
  // `loan` keeps the snapshot's files while the reader lives (SnapshotStore::lend); it
  // lives `ttl_ms` past its last get_file, and `on_read` runs after each one served.
  int64_t open_reader(storage::SnapshotInfo snapshot, uint64_t ttl_ms,
                      std::shared_ptr<const void> loan,
                      std::function<void(uint64_t bytes)> on_read);
  void close_reader(int64_t id);
  // braft's CliService node lookup: by peer id, or the only node of the group.
  std::shared_ptr<Node> find(const std::string& group, const std::string& peer, int32_t* code,
                             std::string* text);
  std::string error_text(int32_t code, const std::string& message) const;
  // GET on the port: / (the status page), /status.json, /metrics, /raft_stat (status.cpp).
  rpc::Server::HttpResponse http(const std::string& path);
  std::string raft_stat(const std::string& group);
  std::string status_json();
  // Once a second: each leader's lag per peer, the status page's charts (status.cpp).
  void sample_lag();
  // Access control for a request to `service` (CliService, ForwardService): false (and the
  // call answered EPERM, and counted) if its sender may not make it.
  bool admitted(const rpc::Frame& frame, const std::string& service,
                const rpc::Server::Respond& respond);

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::shared_ptr<rpc::Server> server_;
  uint16_t port_ = 0;
  std::string ip_;
  std::optional<AccessPolicy> access_;
  std::shared_ptr<rpc::TlsConfig> tls_;  // null: plain TCP
  std::atomic<uint64_t> denied_cli_{0}, denied_forward_{0};
  static constexpr size_t kLagHistory = 60;
  std::unique_ptr<asio::steady_timer> sampler_;  // host thread
  std::map<std::pair<std::string, core::PeerId>, std::map<core::PeerId, std::deque<uint64_t>>>
      lag_history_;  // host thread
  std::shared_ptr<HostGate> gate_ = std::make_shared<HostGate>(io_);
  std::thread thread_;
  std::map<std::pair<std::string, core::PeerId>, std::shared_ptr<Node>> nodes_;  // host thread
  std::map<std::string, rpc::Server::Handler> services_;                         // host thread
  struct Reader {
    storage::SnapshotInfo snapshot;
    uint64_t ttl_ms;
    uint64_t expires_ms;
    std::shared_ptr<const void> loan;
    std::function<void(uint64_t bytes)> on_read;
  };
  std::map<int64_t, Reader> readers_;  // host thread
  // Which (group, to, from) sent Raft requests on each inbound connection: when one closes,
  // its nodes learn that the sender's host may be gone (Raft::peer_unreachable).
  using Route = std::tuple<std::string, core::PeerId, core::PeerId>;
  std::map<uint64_t, std::vector<Route>> connection_routes_;  // host thread
  int64_t next_reader_ = 0;
};

}  // namespace raftstore::runtime
