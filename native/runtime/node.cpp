// A Raft group member on its host: opening its storage, ticking, draining the core's Ready
// (persist, send, apply in order, answer the waiting callers), proposals queued from any
// thread and given to the core in batches, membership and read requests.

#include <random>

#include "node_host_internal.h"

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
  if (const auto& latest = snapshots_->latest()) {
    if (!sm_.load)
      return {storage::Code::InvalidArgument,
              dir + " holds a snapshot but the state machine cannot load one"};
    if (auto st = sm_.load(latest->path); !st.ok()) return st;
    published_ = latest;
    published_index_ = latest->meta.last_included_index;
  }
  next_snapshot_ms_ = now_ms() + opt_.snapshot_interval_s * 1000ull;
  core::Options o = opt_.raft;
  o.group = opt_.group;
  o.self = opt_.self;
  o.random = [rng = std::mt19937_64(std::random_device{}())]() mutable { return rng(); };
  core_ = std::make_unique<core::Raft>(std::move(o), std::move(boot), now_ms());
  ticker_ = std::make_unique<asio::steady_timer>(host_.io());
  writer_ = std::thread([this] { write_loop(); });
  drain();
  tick();
  return storage::Status{};
}

void Node::tick() {
  if (failed_) return;
  uint64_t now = now_ms();
  core_->tick(now);
  drain();
  if (snapshot_op_ == SnapshotOp::None && sm_.save) {
    bool timer = opt_.snapshot_interval_s && now >= next_snapshot_ms_;
    bool size = opt_.snapshot_log_threshold &&
                core_->applied_index() >= published_index_ + opt_.snapshot_log_threshold;
    if (timer || size) {
      next_snapshot_ms_ = now + opt_.snapshot_interval_s * 1000ull;
      start_snapshot();
      drain();
    }
  }
  if (opt_.stuck_apply_timeout_ms) check_stuck_apply(now);
  // Requests the core dropped (invalid or stale) are never answered; forget them.
  while (inbound_.size() > 4096) inbound_.erase(inbound_.begin());
  ticker_->expires_after(std::chrono::milliseconds(opt_.tick_ms));
  ticker_->async_wait([self = shared_from_this()](std::error_code ec) {
    if (!ec) self->tick();
  });
}

// Native heartbeats keep a leader whose event loop is blocked in office (the point of this
// engine), but its clients wait on applies that do not happen: after stuck_apply_timeout_ms
// without progress while entries wait, it hands over to the most up-to-date follower. A
// state machine that is slow but moving is not stuck.
void Node::check_stuck_apply(uint64_t now) {
  uint64_t applied = reported_applied_.load();
  if (applied >= core_->applied_index() || applied != stuck_seen_applied_) {
    stuck_seen_applied_ = applied;
    stuck_since_ms_ = now;
    return;
  }
  if (core_->role() != core::Role::Leader || now - stuck_since_ms_ < opt_.stuck_apply_timeout_ms)
    return;
  stuck_since_ms_ = now;  // at most one attempt per period
  ++stuck_transfers_;
  if (core_->transfer_leader(core::PeerId{}, now).ok()) drain();
}

void Node::fail(const std::string& why) {
  // A replica that cannot persist stops rather than acknowledge what it did not store.
  failed_ = true;
  proposals_.fail_all({core::Code::Shutdown, why});
  auto forwarded = std::move(forwarded_);
  forwarded_.clear();
  for (auto& [index, done] : forwarded) done({core::Code::Shutdown, why}, index);
  if (ticker_) ticker_->cancel();
  if (copier_) copier_->cancel();
  for (auto& done : snapshot_waiters_) done({storage::Code::Io, why});
  snapshot_waiters_.clear();
  auto reads = std::move(reads_);
  reads_.clear();
  for (auto& [ctx, done] : reads) done({core::Code::Shutdown, why}, 0);
  auto changes = std::move(conf_changes_);
  conf_changes_.clear();
  for (auto& [id, done] : changes)
    done(core::ConfChangeResult{id, {core::Code::Shutdown, why}, core_->conf(), core_->conf()});
}

void Node::stop() {
  if (!failed_) fail("the node host is shutting down");
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

void Node::drain() {
  bool took = false;
  while (!failed_ && core_->has_ready()) {
    core::Ready rd = core_->take_ready();
    took = true;
    refresh_status();  // before the callbacks below: whoever they wake may read status()
    if (rd.hard_state || rd.log_reset || rd.log_write || rd.compact_before) {
      {
        // Built in place: GCC (-O1, TSan) warns falsely about moving a Write's Ready.
        std::lock_guard<std::mutex> l(writes_mu_);
        Write& w = writes_.emplace_back();
        w.hard_state = rd.hard_state;
        w.meta_seq = rd.meta_seq;
        w.log.log_reset = std::move(rd.log_reset);
        w.log.log_write = std::move(rd.log_write);
        w.log.compact_before = rd.compact_before;
      }
      writes_cv_.notify_one();
    }
    for (auto& m : rd.messages) send(std::move(m));
    if (!rd.committed.empty()) {
      sm_.apply(rd.committed);
      for (auto it = forwarded_.begin();
           it != forwarded_.end() && it->first <= rd.committed.back().index;) {
        it->second({}, it->first);
        it = forwarded_.erase(it);
      }
      proposals_.applied(rd.committed);
    }
    for (const auto& r : rd.reads) {
      auto it = reads_.find(r.ctx);
      if (it == reads_.end()) continue;
      auto done = std::move(it->second);
      reads_.erase(it);
      done(r.status, r.index);
    }
    if (rd.install_snapshot) start_install(*rd.install_snapshot);
    if (rd.role_changed && core_->role() != core::Role::Leader) proposals_.leadership_lost();
    if ((rd.role_changed || rd.leader_changed) && sm_.on_role)
      sm_.on_role(core_->role(), core_->term(), core_->leader());
    for (const auto& cc : rd.conf_changes) {
      auto it = conf_changes_.find(cc.id);
      if (it == conf_changes_.end()) continue;
      auto done = std::move(it->second);
      conf_changes_.erase(it);
      done(cc);
    }
  }
  if (!took) refresh_status();  // a tick or message may change what status() shows, Ready or not
}

void Node::propose(std::string data, ProposeDone done) {
  enqueue(std::move(data), std::move(done), opt_.forward_proposals);
}

void Node::enqueue(std::string data, ProposeDone done, bool may_forward) {
  if (opt_.stamp_leader_time && data.size() < kLeaderTimeBytes)
    return done({core::Code::InvalidArgument, "a proposal must start with " +
                                                  std::to_string(kLeaderTimeBytes) +
                                                  " bytes for the leader's time"},
                0);
  bool schedule = false;
  {
    std::lock_guard<std::mutex> l(proposals_mu_);
    queued_.push_back({std::move(data), std::move(done), may_forward});
    schedule = !flush_scheduled_;
    flush_scheduled_ = true;
  }
  // One handler takes everything queued by then: one append, one AppendEntries round
  // and one log write for the lot (braft batches its apply queue the same way).
  if (schedule && !gate_->post([self = shared_from_this()] { self->flush_proposals(); })) {
    std::vector<Queued> queued;
    {
      std::lock_guard<std::mutex> l(proposals_mu_);
      queued.swap(queued_);
    }
    for (auto& q : queued) q.done(core::Status{core::Code::Shutdown, "the node host is gone"}, 0);
  }
}

uint64_t Node::wall_ms() const {
  return opt_.wall_clock_ms ? opt_.wall_clock_ms() : ms_of<std::chrono::system_clock>();
}

void Node::flush_proposals() {
  std::vector<Queued> queued;
  {
    std::lock_guard<std::mutex> l(proposals_mu_);
    queued.swap(queued_);
    flush_scheduled_ = false;
  }
  if (failed_) {
    for (auto& q : queued) q.done(core::Status{core::Code::Shutdown, "stopped"}, 0);
    return;
  }
  // Stamped here whether or not this replica leads: an entry only ever enters a log through
  // propose_batch on the leader, which stamps it again if it came forwarded.
  uint64_t wall = opt_.stamp_leader_time ? wall_ms() : 0;
  std::vector<std::shared_ptr<const std::string>> data;
  data.reserve(queued.size());
  for (auto& q : queued) {
    if (opt_.stamp_leader_time)  // enqueue refused anything shorter
      for (size_t i = 0; i < kLeaderTimeBytes; ++i) q.data[i] = static_cast<char>(wall >> (8 * i));
    data.push_back(std::make_shared<const std::string>(std::move(q.data)));
  }
  auto results = core_->propose_batch(data, now_ms());
  for (size_t i = 0; i < results.size(); ++i) {
    Queued& q = queued[i];
    bool elsewhere = !core_->leader().empty() && !(core_->leader() == opt_.self);
    if (results[i].status.code == core::Code::NotLeader && q.may_forward && elsewhere)
      forward(std::move(data[i]), std::move(q.done));
    else if (results[i].status.code == core::Code::Busy && opt_.forward_proposals &&
             core_->transferring_leadership())
      // braft says EBUSY; to RaftNode (which forwards) leadership is moving: as NotLeader,
      // placed nowhere, worth sending again once the new leader is known.
      q.done({core::Code::NotLeader, results[i].status.message}, 0);
    else if (!results[i].status.ok())
      q.done(results[i].status, 0);
    else
      proposals_.add(results[i].index, results[i].term, std::move(q.done));
  }
  drain();
}

void Node::change_conf(const std::string& method, const core::PeerList& peers, CliDone done) {
  uint64_t id = next_change_++;
  uint64_t now = now_ms();
  core::Status st;
  if (method == "add_peer")
    st = core_->add_peer(id, peers.at(0), now);
  else if (method == "remove_peer")
    st = core_->remove_peer(id, peers.at(0), now);
  else
    st = core_->change_peers(id, peers, now);
  if (!st.ok()) return done(core::ConfChangeResult{id, st, core_->conf(), core_->conf()});
  conf_changes_[id] = std::move(done);  // answered when the change commits or fails
  drain();
}

void Node::change_membership(std::string method, core::PeerList peers, ConfDone done) {
  on_host(
      [self = shared_from_this(), method = std::move(method), peers = std::move(peers), done] {
        if (method != "change_peers" && peers.size() != 1)
          return done({0, {core::Code::InvalidArgument, method + " takes one peer"}, {}, {}});
        self->change_conf(method, peers, done);
      },
      [done](const std::string& why) {
        done({0, {core::Code::Shutdown, why}, {}, {}});
      });
}

void Node::transfer_leadership(core::PeerId target, StatusDone done) {
  on_host(
      [self = shared_from_this(), target, done] {
        auto st = self->core_->transfer_leader(target, now_ms());
        self->drain();
        done(st);
      },
      [done](const std::string& why) {
        done({core::Code::Shutdown, why});
      });
}

void Node::reset_peers(core::PeerList peers, StatusDone done) {
  on_host(
      [self = shared_from_this(), peers = std::move(peers), done] {
        auto st = self->core_->reset_peers(peers, now_ms());
        self->drain();
        done(st);
      },
      [done](const std::string& why) {
        done({core::Code::Shutdown, why});
      });
}

void Node::read_index(bool lease, ReadDone done) {
  on_host(
      [self = shared_from_this(), lease, done]() mutable {
        uint64_t now = now_ms();
        if (lease && self->core_->lease_valid(now)) return done({}, self->core_->commit_index());
        uint64_t ctx = self->next_read_++;
        self->reads_[ctx] = std::move(done);
        self->core_->read_index(ctx, now);
        self->drain();
      },
      [done](const std::string& why) {
        done({core::Code::Shutdown, why}, 0);
      });
}

}  // namespace raftstore::runtime
