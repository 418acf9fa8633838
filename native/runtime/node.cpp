// The threaded environment of a Replica: the host's io_context and clocks, rpc channels to
// peers (bound to this replica's ip), a log-writer thread over the data directory's files,
// a SnapshotCopier for installs, and the thread-safe calls that post work to the host.

#include <random>

#include "codec.h"
#include "node_host_internal.h"
#include "raftstore.pb.h"

namespace raftstore::runtime {

Node::Node(Key, NodeHost& host, NodeOptions opt, StateMachine sm)
    : host_(host), gate_(host.gate()), opt_(std::move(opt)), sm_(std::move(sm)) {}

Node::~Node() {
  {
    std::lock_guard<std::mutex> l(writes_mu_);
    stop_writer_ = true;
  }
  writes_cv_.notify_one();
  if (writer_.joinable()) writer_.join();
  if (copier_) copier_->cancel();
}

storage::Status Node::open() {
  const std::string& dir = opt_.data_dir;
  if (auto st = storage::DirLock::acquire(dir, &lock_); !st.ok()) return st;
  meta_ = std::make_unique<storage::MetaStore>(dir + "/raft_meta");
  core::HardState hs;
  if (auto st = meta_->load(&hs); !st.ok()) return st;
  if (auto st = storage::SnapshotStore::open(dir + "/snapshot", &snapshots_); !st.ok()) return st;
  if (auto st = storage::SegmentLog::open(dir + "/log", {}, &log_); !st.ok()) return st;
  core::Boot boot;
  if (auto st = storage::make_boot(hs, *snapshots_, *log_, opt_.initial_conf, &boot); !st.ok())
    return st;
  const auto& latest = snapshots_->latest();
  if (latest) {
    if (!sm_.load)
      return {storage::Code::InvalidArgument,
              dir + " holds a snapshot but the state machine cannot load one"};
    if (auto st = sm_.load(latest->path); !st.ok()) return st;
  }
  replica_ = std::make_unique<Replica>(static_cast<ReplicaEnv&>(*this), opt_, std::move(sm_));
  ticker_ = std::make_unique<asio::steady_timer>(host_.io());
  writer_ = std::thread([this] { write_loop(); });
  replica_->start(std::move(boot), latest, std::random_device{}());
  tick();
  return storage::Status{};
}

void Node::tick() {
  if (replica_->failed()) return;
  replica_->tick();
  // Requests the core dropped (invalid or stale) are never answered; forget them.
  while (inbound_.size() > 4096) inbound_.erase(inbound_.begin());
  ticker_->expires_after(std::chrono::milliseconds(opt_.tick_ms));
  ticker_->async_wait([self = shared_from_this()](std::error_code ec) {
    if (!ec) self->tick();
  });
}

void Node::stop() {
  if (replica_) replica_->fail("the node host is shutting down", LogLevel::Info);
  for (auto& [peer, ch] : channels_) ch->close();
  channels_.clear();  // their pending calls hold this node
  inbound_.clear();
  ticker_.reset();  // io objects must not outlive the host's io_context
  copier_.reset();
  {
    std::lock_guard<std::mutex> l(writes_mu_);
    stop_writer_ = true;
  }
  writes_cv_.notify_one();
  if (writer_.joinable()) writer_.join();
  lock_.reset();
}

// --- thread-safe calls ------------------------------------------------------------------

void Node::propose(std::string data, ProposeDone done) {
  replica_->propose(std::move(data), std::move(done), opt_.forward_proposals);
}

void Node::snapshot(std::function<void(storage::Status)> done) {
  on_host(
      [self = shared_from_this(), done]() mutable { self->replica_->snapshot(std::move(done)); },
      [done](const std::string& why) {
        done({storage::Code::Io, why});
      });
}

void Node::change_membership(std::string method, core::PeerList peers, ConfDone done) {
  on_host([self = shared_from_this(), method = std::move(method), peers = std::move(peers),
           done] { self->replica_->change_conf(method, peers, done); },
          [done](const std::string& why) {
            done({0, {core::Code::Shutdown, why}, {}, {}});
          });
}

void Node::transfer_leadership(core::PeerId target, StatusDone done) {
  on_host(
      [self = shared_from_this(), target, done] { done(self->replica_->transfer_leader(target)); },
      [done](const std::string& why) {
        done({core::Code::Shutdown, why});
      });
}

void Node::reset_peers(core::PeerList peers, StatusDone done) {
  on_host([self = shared_from_this(), peers = std::move(peers),
           done] { done(self->replica_->reset_peers(peers)); },
          [done](const std::string& why) {
            done({core::Code::Shutdown, why});
          });
}

void Node::read_index(bool lease, ReadDone done) {
  on_host([self = shared_from_this(), lease,
           done]() mutable { self->replica_->read_index(lease, std::move(done)); },
          [done](const std::string& why) {
            done({core::Code::Shutdown, why}, 0);
          });
}

// --- the environment --------------------------------------------------------------------

uint64_t Node::now_ms() { return runtime::now_ms(); }

uint64_t Node::wall_ms() { return ms_of<std::chrono::system_clock>(); }

uint64_t Node::now_us() { return monotonic_us(); }

ReplicaEnv::Post Node::poster() {
  return [gate = gate_, weak = weak_from_this()](std::function<void()> f) {
    return gate->post([weak, f = std::move(f)] {
      if (auto self = weak.lock()) f();
    });
  };
}

void Node::call(Envelope req, uint32_t timeout_ms, const storage::SnapshotInfo* lend) {
  int64_t reader = 0;
  if (lend) {
    // A large snapshot's copy takes as long as it takes: the call has no deadline (as
    // braft's), and each chunk the follower fetches tells the core the install is alive,
    // which gives up on it only after timeout_ms without one. The reader lives as long past
    // its last chunk.
    reader = host_.open_reader(*lend, timeout_ms + opt_.raft.election_timeout_ms,
                               snapshots_->lend(lend->path),
                               [weak = weak_from_this(), to = req.to](uint64_t bytes) {
                                 if (auto self = weak.lock())
                                   self->replica_->snapshot_progress(to, bytes);
                               });
    std::get<core::InstallSnapshotRequest>(req.payload).uri =
        format_snapshot_uri(opt_.self, reader);
    timeout_ms = 0;
  }
  rpc::WireMessage w = rpc::encode(req);
  channel_to(req.to)->call(
      w.service, w.method, std::move(w.payload), std::move(w.attachment), timeout_ms,
      [self = shared_from_this(), req = std::move(req), reader](int32_t code, const std::string&,
                                                                rpc::Frame f) {
        if (reader) self->host_.close_reader(reader);
        if (code != 0) return self->replica_->call_failed(req.to, req.rpc_id);
        auto resp = rpc::decode_response(req, f.meta.response().error_code(), f.payload);
        if (resp) self->replica_->answered(*resp);
      });
}

void Node::respond(Envelope resp) {
  auto it = inbound_.find(resp.rpc_id);
  if (it == inbound_.end()) return;
  rpc::WireMessage w = rpc::encode(resp);
  it->second(w.error_code, w.error_code ? "busy" : "", w.payload, w.attachment);
  inbound_.erase(it);
}

void Node::forward(const core::PeerId& leader, std::shared_ptr<const std::string> data,
                   uint32_t timeout_ms, ForwardDone done) {
  raftstore::wire::ForwardRequest req;
  req.set_group_id(opt_.group);
  req.set_peer_id(leader.to_string());
  channel_to(leader)->call(
      "raftstore.ForwardService", "propose", req.SerializeAsString(), *data, timeout_ms,
      [self = shared_from_this(), done = std::move(done)](int32_t code, const std::string& text,
                                                          rpc::Frame f) {
        if (code != 0) return done(code, text, "");
        done(f.meta.response().error_code(), f.meta.response().error_text(), f.payload);
      });
}

void Node::write(Write&& w) {
  {
    std::lock_guard<std::mutex> l(writes_mu_);
    writes_.push_back(std::move(w));
  }
  writes_cv_.notify_one();
}

// The log writer: every write queued by the time it wakes is one batch (group commit).
void Node::write_loop() {
  while (true) {
    std::vector<Write> batch;
    {
      std::unique_lock<std::mutex> l(writes_mu_);
      writes_cv_.wait(l, [&] { return stop_writer_ || !writes_.empty(); });
      if (writes_.empty()) return;  // stopping, nothing left
      batch.assign(std::make_move_iterator(writes_.begin()),
                   std::make_move_iterator(writes_.end()));
      writes_.clear();
    }
    WriteTimings timings;
    storage::Status st = commit_writes(batch, disk_, &timings);
    asio::post(host_.io(),
               [weak = weak_from_this(), st, batch = std::move(batch), timings]() mutable {
                 if (auto self = weak.lock())
                   self->replica_->written(st, std::move(batch), timings);
               });
  }
}

storage::Status Node::FileDisk::save_meta(const core::HardState& hs) { return n_.meta_->save(hs); }

storage::Status Node::FileDisk::apply_log(const core::Ready& log) {
  return n_.log_->apply(log, false);
}

storage::Status Node::FileDisk::sync_log() { return n_.log_->sync(); }

storage::Status Node::FileDisk::publish(const core::SnapshotMeta& meta,
                                        storage::SnapshotInfo* out) {
  const storage::SnapshotInfo* info = nullptr;
  auto st = n_.snapshots_->publish(meta, &info);
  if (st.ok()) *out = *info;
  return st;
}

storage::Status Node::begin_snapshot(std::string* dir) { return snapshots_->begin(dir); }

void Node::copy_snapshot(const core::SnapshotInstall& install, const std::string& dir,
                         uint32_t call_timeout_ms, std::function<void(storage::Status)> done) {
  rpc::ChannelOptions from_self;
  from_self.bind_address = asio::ip::address_v4(opt_.self.ip);
  from_self.tls = host_.tls_;
  copier_ = SnapshotCopier::start(
      host_.io(), install.uri, dir, install.meta, call_timeout_ms,
      [weak = weak_from_this(), done = std::move(done)](storage::Status st) {
        auto self = weak.lock();
        if (!self) return;
        self->copier_.reset();
        done(st);
      },
      from_self);
}

void Node::cancel_copy() {
  if (copier_) copier_->cancel();
}

// Outgoing connections leave from this replica's own address, so that on a multi-homed
// host the peers see the source they know it by.
const std::shared_ptr<rpc::Channel>& Node::channel_to(const core::PeerId& peer) {
  auto& ch = channels_[peer];
  if (!ch) {
    rpc::ChannelOptions o;
    o.bind_address = asio::ip::address_v4(opt_.self.ip);
    o.tls = host_.tls_;
    ch = rpc::Channel::create(host_.io(),
                              asio::ip::tcp::endpoint(asio::ip::address_v4(peer.ip), peer.port), o);
  }
  return ch;
}

void Node::on_request(Envelope env, rpc::Server::Respond respond) {
  if (replica_->failed()) return respond(kEINVAL, "node is not active", "", "");  // as braft
  env.rpc_id = next_inbound_++;
  inbound_[env.rpc_id] = std::move(respond);
  replica_->receive(env);
}

}  // namespace raftstore::runtime
