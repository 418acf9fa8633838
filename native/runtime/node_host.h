// A NodeHost serves one ip:port on its own thread (an Asio io_context) and drives any
// number of Raft groups on it, routed by (group, peer id) as braft does. Each Node owns a
// core, its data directory (storage/), channels to its peers, and a tick timer.
//
// Each node has a log-writer thread: the host thread hands it term/vote and log writes and
// sends the Ready's messages at once (the core never releases a message that depends on
// something not yet durable), so a leader replicates while its own fsync is in flight. The
// writer takes every queued write, applies them in order and fsyncs once (group commit),
// then reports back to the host thread (meta_persisted, log_persisted). Snapshot install is
// not wired yet: a follower answers InstallSnapshot with failure.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

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
};

// Called on the host's thread with committed entries, in order.
using ApplyFn = std::function<void(const std::vector<core::Entry>&)>;
// The outcome of a proposal on the replica that made it: applied at (index, term), or not.
using ProposeDone = std::function<void(core::Status, uint64_t index)>;

class NodeHost;

class Node : public std::enable_shared_from_this<Node> {
 public:
  // Thread-safe; `done` runs on the host's thread once the entry is applied here.
  void propose(std::string data, ProposeDone done);
  core::NodeStatus status();  // thread-safe snapshot
  const NodeOptions& options() const { return opt_; }

  struct Key {};
  Node(Key, NodeHost& host, NodeOptions opt, ApplyFn apply);
  ~Node();
  storage::Status open();  // on the host's thread

 private:
  friend class NodeHost;
  void tick();
  void drain();
  void send(core::Envelope env);
  void on_request(core::Envelope env, rpc::Server::Respond respond);
  void fail(const std::string& why);
  struct Write {
    std::optional<core::HardState> hard_state;
    uint64_t meta_seq = 0;
    core::Ready log;  // only log_reset, log_write, compact_before
  };
  void write_loop();
  void written(storage::Status st, const std::vector<Write>& batch);
  // CliService on this node (host thread). `done` gets the old and new configuration.
  using CliDone = std::function<void(const core::ConfChangeResult&)>;
  void change_conf(const std::string& method, const core::PeerList& peers, CliDone done);

  NodeHost& host_;
  NodeOptions opt_;
  ApplyFn apply_;
  std::unique_ptr<storage::DirLock> lock_;
  std::unique_ptr<storage::SegmentLog> log_;
  std::unique_ptr<storage::MetaStore> meta_;
  std::unique_ptr<storage::SnapshotStore> snapshots_;
  std::unique_ptr<core::Raft> core_;
  std::unique_ptr<asio::steady_timer> ticker_;
  std::map<core::PeerId, std::shared_ptr<rpc::Channel>> channels_;
  std::map<uint64_t, rpc::Server::Respond> inbound_;  // local id -> where the answer goes
  uint64_t next_inbound_ = 1;
  std::map<uint64_t, std::pair<uint64_t, ProposeDone>> proposals_;  // index -> (term, done)
  std::map<uint64_t, CliDone> conf_changes_;                        // by change id
  uint64_t next_change_ = 1;
  bool failed_ = false;
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

  // Opens the node's data directory and starts it. Thread-safe.
  storage::Status add_node(NodeOptions opt, ApplyFn apply, std::shared_ptr<Node>* out);

  // Serves an application service (e.g. "example.CounterService") on the same port; its
  // handler runs on the host's thread. Thread-safe.
  void add_service(const std::string& full_name, rpc::Server::Handler handler);

  asio::io_context& io() { return io_; }

  struct Key {};
  explicit NodeHost(Key) {}

 private:
  void on_request(rpc::Frame frame, rpc::Server::Respond respond);
  void on_cli(const rpc::Frame& frame, const rpc::Server::Respond& respond);
  // braft's CliService node lookup: by peer id, or the only node of the group.
  std::shared_ptr<Node> find(const std::string& group, const std::string& peer, int32_t* code,
                             std::string* text);
  std::string error_text(int32_t code, const std::string& message) const;
  std::string http_status(const std::string& path);

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::shared_ptr<rpc::Server> server_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::map<std::pair<std::string, core::PeerId>, std::shared_ptr<Node>> nodes_;  // host thread
  std::map<std::string, rpc::Server::Handler> services_;                         // host thread
};

}  // namespace raftstore::runtime
