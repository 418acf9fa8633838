#include "node_host.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <random>
#include <sstream>

#include "cli.pb.h"
#include "codec.h"
#include "raftstore.pb.h"

namespace raftstore::runtime {

using core::Envelope;

namespace {

template <typename Clock>
uint64_t ms_of() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
          .count());
}
// Raft's timers: monotonic.
uint64_t now_ms() { return ms_of<std::chrono::steady_clock>(); }

bool is_response(const core::Payload& p) {
  return std::holds_alternative<core::RequestVoteResponse>(p) ||
         std::holds_alternative<core::AppendEntriesResponse>(p) ||
         std::holds_alternative<core::InstallSnapshotResponse>(p) ||
         std::holds_alternative<core::TimeoutNowResponse>(p) ||
         std::holds_alternative<core::ReadIndexResponse>(p);
}

constexpr int32_t kEPERM = 1;
constexpr int32_t kENOENT = 2;
constexpr int32_t kEIO = 5;
constexpr int32_t kEAGAIN = 11;
constexpr int32_t kEBUSY = 16;
constexpr int32_t kEINVAL = 22;
constexpr int32_t kECATCHUP = 10003;  // braft RaftError

// braft's status codes for the core's refusals.
int32_t errno_of(core::Code c) {
  switch (c) {
    case core::Code::Ok:
      return 0;
    case core::Code::NotLeader:
      return kEPERM;
    case core::Code::Busy:
      return kEBUSY;
    case core::Code::InvalidArgument:
      return kEINVAL;
    case core::Code::CatchupFailed:
      return kECATCHUP;
    case core::Code::LeaderChanged:
      return kEPERM;
    case core::Code::Shutdown:
    case core::Code::ResultUnknown:
      return kEINVAL;
  }
  return kEINVAL;
}

uint32_t install_timeout_ms(const core::Options& o) {
  return static_cast<uint32_t>(o.install_snapshot_timeout_ms ? o.install_snapshot_timeout_ms
                                                             : 10 * o.election_timeout_ms);
}

}  // namespace

// --- Node ------------------------------------------------------------------------------

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
    storage::Status st;
    bool log_touched = false;
    for (auto& w : batch) {
      if (w.hard_state && !(st = meta_->save(*w.hard_state)).ok()) break;
      if (w.log.log_reset || w.log.log_write || w.log.compact_before) {
        log_touched = true;
        if (!(st = log_->apply(w.log, false)).ok()) break;
      }
      if (w.publish) {  // a failed snapshot is reported, not fatal: the log still has it all
        const storage::SnapshotInfo* info = nullptr;
        w.publish_status = snapshots_->publish(*w.publish, &info);
        if (w.publish_status.ok()) w.published = *info;
      }
    }
    if (st.ok() && log_touched) st = log_->sync();  // one fsync for the whole batch
    asio::post(host_.io(), [weak = weak_from_this(), st, batch = std::move(batch)]() mutable {
      if (auto self = weak.lock()) self->written(st, std::move(batch));
    });
  }
}

void Node::written(storage::Status st, std::vector<Write> batch) {
  if (failed_) return;
  if (!st.ok()) return fail(st.message);
  for (const auto& w : batch) {
    if (w.hard_state) core_->meta_persisted(w.meta_seq);
    if (w.log.log_write && !w.log.log_write->entries.empty())
      core_->log_persisted(w.log.log_write->seq);
    if (w.publish) snapshot_published(w);
    if (failed_) return;
  }
  drain();
}

void Node::queue_write(Write w) {
  {
    std::lock_guard<std::mutex> l(writes_mu_);
    writes_.push_back(std::move(w));
  }
  writes_cv_.notify_one();
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
  for (auto& [index, p] : proposals_) p.second(core::Status{core::Code::Shutdown, why}, index);
  proposals_.clear();
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
      Write w;
      w.hard_state = rd.hard_state;
      w.meta_seq = rd.meta_seq;
      w.log.log_reset = std::move(rd.log_reset);
      w.log.log_write = std::move(rd.log_write);
      w.log.compact_before = rd.compact_before;
      queue_write(std::move(w));
    }
    for (auto& m : rd.messages) send(std::move(m));
    if (!rd.committed.empty()) {
      sm_.apply(rd.committed);
      for (auto it = forwarded_.begin();
           it != forwarded_.end() && it->first <= rd.committed.back().index;) {
        it->second({}, it->first);
        it = forwarded_.erase(it);
      }
      for (const auto& e : rd.committed) {
        auto it = proposals_.find(e.index);
        if (it == proposals_.end()) continue;
        bool mine = it->second.first == e.term;
        it->second.second(mine ? core::Status{}
                               : core::Status{core::Code::LeaderChanged, "entry was overwritten"},
                          e.index);
        proposals_.erase(it);
      }
    }
    for (const auto& r : rd.reads) {
      auto it = reads_.find(r.ctx);
      if (it == reads_.end()) continue;
      auto done = std::move(it->second);
      reads_.erase(it);
      done(r.status, r.index);
    }
    if (rd.install_snapshot) start_install(*rd.install_snapshot);
    if (rd.role_changed && core_->role() != core::Role::Leader && !proposals_.empty()) {
      // As braft on step-down: what this leader appended but did not commit may yet commit
      // under the next leader, or be cut off, and if cut off its index may never be applied
      // again. Waiting for it could be forever, so the outcome is reported as unknown.
      auto lost = std::move(proposals_);
      proposals_.clear();
      for (auto& [index, p] : lost)
        p.second({core::Code::LeaderChanged,
                  "leadership lost before the entry committed (the "
                  "outcome is unknown)"},
                 index);
    }
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

void Node::refresh_status() {
  std::lock_guard<std::mutex> lock(status_mu_);
  status_ = core_->status();
}

void Node::send(Envelope env) {
  int64_t reader = 0;
  uint32_t timeout = static_cast<uint32_t>(opt_.raft.election_timeout_ms);
  if (auto* is = std::get_if<core::InstallSnapshotRequest>(&env.payload)) {
    // The snapshot the core names must be the one on disk; if not (a newer one is being
    // published), drop the request: the core sends it again.
    if (!published_ || published_->meta.last_included_index != is->meta.last_included_index) return;
    timeout = install_timeout_ms(opt_.raft);
    reader = host_.open_reader(*published_, timeout + opt_.raft.election_timeout_ms);
    is->uri = format_snapshot_uri(opt_.self, reader);
  }
  rpc::WireMessage w = rpc::encode(env);
  if (is_response(env.payload)) {
    auto it = inbound_.find(env.rpc_id);
    if (it == inbound_.end()) return;
    it->second(w.error_code, w.error_code ? "busy" : "", w.payload, w.attachment);
    inbound_.erase(it);
    return;
  }
  channel_to(env.to)->call(
      w.service, w.method, std::move(w.payload), std::move(w.attachment), timeout,
      [self = shared_from_this(), req = std::move(env), reader](int32_t code, const std::string&,
                                                                rpc::Frame f) {
        if (reader) self->host_.close_reader(reader);
        if (self->failed_) return;
        if (code != 0) {  // not sent, or no answer will come: the core retries soon
          self->core_->rpc_failed(req.to, req.rpc_id, now_ms());
          return self->drain();
        }
        auto resp = rpc::decode_response(req, f.meta.response().error_code(), f.payload);
        if (!resp) return;
        self->core_->step(*resp, now_ms());
        self->drain();
      });
}

// Outgoing connections leave from this replica's own address, so that on a multi-homed
// host the peers see the source they know it by.
const std::shared_ptr<rpc::Channel>& Node::channel_to(const core::PeerId& peer) {
  auto& ch = channels_[peer];
  if (!ch) {
    rpc::ChannelOptions o;
    o.bind_address = asio::ip::address_v4(opt_.self.ip);
    ch = rpc::Channel::create(host_.io(),
                              asio::ip::tcp::endpoint(asio::ip::address_v4(peer.ip), peer.port), o);
  }
  return ch;
}

void Node::on_request(Envelope env, rpc::Server::Respond respond) {
  if (failed_) return respond(kEINVAL, "node is not active", "", "");  // as braft
  env.rpc_id = next_inbound_++;
  inbound_[env.rpc_id] = std::move(respond);
  core_->step(env, now_ms());
  drain();
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

void Node::forward(std::shared_ptr<const std::string> data, ProposeDone done) {
  core::PeerId leader = core_->leader();
  raftstore::wire::ForwardRequest req;
  req.set_group_id(opt_.group);
  req.set_peer_id(leader.to_string());
  channel_to(leader)->call(
      "raftstore.ForwardService", "propose", req.SerializeAsString(), *data,
      install_timeout_ms(opt_.raft),
      [self = shared_from_this(), leader, done = std::move(done)](
          int32_t code, const std::string& text, rpc::Frame f) mutable {
        raftstore::wire::ForwardResponse resp;
        // Not connected: the request was never sent, so it was placed nowhere.
        if (code == rpc::kEHOSTDOWN)
          return done({core::Code::NotLeader,
                       "leader " + leader.to_string() + " is not reachable: " + text},
                      0);
        if (code == 0) code = f.meta.response().error_code();
        if (code != 0 || !resp.ParseFromString(f.payload))
          return done({core::Code::LeaderChanged,
                       "forwarding to " + leader.to_string() +
                           " failed (the outcome is unknown): " + (code ? text : "bad response")},
                      0);
        if (resp.success())
          return self->forwarded_applied(static_cast<uint64_t>(resp.index()), std::move(done));
        auto c = static_cast<core::Code>(resp.code());
        // The leader stopping, or a code it should not send: the outcome is unknown.
        if (c == core::Code::Ok || c == core::Code::Shutdown ||
            resp.code() > static_cast<int32_t>(core::Code::Shutdown))
          c = core::Code::LeaderChanged;
        done({c, resp.message()}, 0);
      });
}

void Node::forwarded_applied(uint64_t index, ProposeDone done) {
  if (failed_) return done({core::Code::Shutdown, "stopped"}, index);
  if (index > core_->applied_index()) {
    forwarded_.emplace(index, std::move(done));
    return;
  }
  for (auto [from, to] : skipped_)
    if (index > from && index <= to)
      return done({core::Code::ResultUnknown, "committed at index " + std::to_string(index) +
                                                  ", but this replica caught up past it by "
                                                  "installing a snapshot"},
                  index);
  done({}, index);
}

void Node::peer_unreachable(const core::PeerId& peer) {
  if (failed_) return;
  core_->peer_unreachable(peer, now_ms());
  drain();
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
      proposals_[results[i].index] = {results[i].term, std::move(q.done)};
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

// --- snapshots (host thread) -------------------------------------------------------------

void Node::snapshot(std::function<void(storage::Status)> done) {
  on_host(
      [self = shared_from_this(), done]() mutable {
        if (!self->sm_.save)
          return done(
              {storage::Code::InvalidArgument, "the state machine does not take snapshots"});
        self->snapshot_waiters_.push_back(std::move(done));
        if (self->snapshot_op_ == SnapshotOp::None) self->start_snapshot();
        self->drain();
      },
      [done](const std::string& why) {
        done({storage::Code::Io, why});
      });
}

uint64_t Node::snapshot_index() { return published_index_; }

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

void Node::start_snapshot() {
  uint64_t index = core_->applied_index();
  auto meta = core_->snapshot_meta_at(index);
  if (!meta || index <= published_index_) return finish_snapshot({});  // nothing new
  std::string dir;
  if (auto st = snapshots_->begin(&dir); !st.ok()) return finish_snapshot(st);
  snapshot_op_ = SnapshotOp::Saving;
  sm_.save(dir, [weak = weak_from_this(), gate = gate_, meta = *meta](storage::Status st) {
    gate->post([weak, st, meta] {
      if (auto self = weak.lock()) self->snapshot_saved(st, meta);
    });
  });
}

void Node::snapshot_saved(storage::Status st, const core::SnapshotMeta& meta) {
  if (failed_) return;
  if (!st.ok()) return finish_snapshot(st);
  Write w;
  w.publish = meta;
  queue_write(std::move(w));
}

void Node::start_install(const core::SnapshotInstall& install) {
  if (snapshot_op_ == SnapshotOp::Saving) {
    pending_install_ = install;  // after the save: they share the temp directory
    return;
  }
  pending_install_.reset();
  std::string dir;
  storage::Status st;
  if (!sm_.load)
    st = {storage::Code::InvalidArgument, "the state machine does not load snapshots"};
  else
    st = snapshots_->begin(&dir);
  if (!st.ok()) {
    ++snapshot_failures_;
    last_snapshot_error_ = st.message;
    core_->snapshot_installed(install.meta, false);
    return;
  }
  snapshot_op_ = SnapshotOp::Installing;
  install_order_ = InstallOrder{};
  rpc::ChannelOptions from_self;
  from_self.bind_address = asio::ip::address_v4(opt_.self.ip);
  // Each chunk gets an election timeout (at least 500 ms): a stalled copy fails and is
  // retried by the leader, instead of holding the replica for the whole install deadline.
  auto chunk_timeout =
      static_cast<uint32_t>(std::max<uint64_t>(opt_.raft.election_timeout_ms, 500));
  copier_ = SnapshotCopier::start(
      host_.io(), install.uri, dir, install.meta, chunk_timeout,
      [weak = weak_from_this(), meta = install.meta](storage::Status st) {
        auto self = weak.lock();
        if (!self || self->failed_) return;
        self->copier_.reset();
        self->install_order_.copied(st.ok());
        self->advance_install(meta, st);
      },
      from_self);
}

// Does what the install order says next (snapshot_transfer.h): publish what was copied,
// then let the core adopt it and load it, or give up.
void Node::advance_install(const core::SnapshotMeta& meta, const storage::Status& st) {
  switch (install_order_.step()) {
    case InstallOrder::Step::Copy:
      return;
    case InstallOrder::Step::Publish: {
      Write w;
      w.publish = meta;
      w.installed = true;
      return queue_write(std::move(w));
    }
    case InstallOrder::Step::Adopt:
      if (!adopt_install(meta)) return;  // the replica stopped
      install_order_.adopted();
      return advance_install(meta, st);
    case InstallOrder::Step::Fail:
      core_->snapshot_installed(meta, false);
      finish_snapshot(st);
      return drain();
    case InstallOrder::Step::Done:
      finish_snapshot({});
      return drain();
  }
}

void Node::snapshot_published(const Write& w) {
  const core::SnapshotMeta& meta = *w.publish;
  const storage::Status& st = w.publish_status;
  if (st.ok()) {
    published_ = w.published;
    published_index_ = published_->meta.last_included_index;
  }
  if (!w.installed) {
    if (st.ok()) core_->snapshot_taken(meta);  // the log below it may go now
    return finish_snapshot(st);
  }
  install_order_.published(st.ok());
  advance_install(meta, st);
}

// The copied snapshot is durable: the core adopts it unless its commit index passed it.
// False if the state machine could not load it (the replica stops).
bool Node::adopt_install(const core::SnapshotMeta& meta) {
  uint64_t applied_before = core_->applied_index();
  if (!core_->snapshot_installed(meta, true)) {
    core_->snapshot_taken(meta);  // committed here already; it serves as our own snapshot
    return true;
  }
  if (auto loaded = sm_.load(published_->path); !loaded.ok()) {
    fail("state machine could not load snapshot " + published_->path + ": " + loaded.message);
    return false;
  }
  // Our proposals the snapshot covers: whether they made it is unknown here.
  for (auto it = proposals_.begin();
       it != proposals_.end() && it->first <= meta.last_included_index;) {
    it->second.second({core::Code::LeaderChanged, "replaced by a snapshot"}, it->first);
    it = proposals_.erase(it);
  }
  skipped_.emplace_back(applied_before, meta.last_included_index);
  for (auto it = forwarded_.begin();
       it != forwarded_.end() && it->first <= meta.last_included_index;) {
    it->second({core::Code::ResultUnknown,
                "committed at index " + std::to_string(it->first) +
                    ", but this replica caught up past it by installing a snapshot"},
               it->first);
    it = forwarded_.erase(it);
  }
  ++snapshots_installed_;
  return true;
}

void Node::finish_snapshot(const storage::Status& st) {
  bool was_install = snapshot_op_ == SnapshotOp::Installing;
  snapshot_op_ = SnapshotOp::None;
  if (!st.ok()) {
    ++snapshot_failures_;
    last_snapshot_error_ = st.message;
  }
  if (!was_install) {
    refresh_status();  // a waiter may read status() at once: the compaction must show
    auto waiters = std::move(snapshot_waiters_);
    snapshot_waiters_.clear();
    for (auto& done : waiters) done(st);
  }
  if (pending_install_) {
    auto install = std::move(*pending_install_);
    pending_install_.reset();
    return start_install(install);
  }
  if (was_install && !snapshot_waiters_.empty()) start_snapshot();  // they want our state saved
}

core::NodeStatus Node::status() {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_;
}

// --- NodeHost --------------------------------------------------------------------------

storage::Status NodeHost::start(const std::string& ip, uint16_t port,
                                std::unique_ptr<NodeHost>* out) {
  auto host = std::make_unique<NodeHost>(Key{});
  NodeHost* h = host.get();
  try {
    asio::ip::tcp::endpoint at(asio::ip::make_address(ip), port);
    host->server_ = rpc::Server::start(
        host->io_, at,
        [h](rpc::Frame f, rpc::Server::Respond r) { h->on_request(std::move(f), r); },
        [h](const std::string& path) { return h->http_status(path); });
  } catch (const std::exception& e) {
    return storage::Status{storage::Code::Io,
                           "listen on " + ip + ":" + std::to_string(port) + ": " + e.what()};
  }
  host->server_->on_close([h](uint64_t connection) {
    auto it = h->connection_routes_.find(connection);
    if (it == h->connection_routes_.end()) return;
    for (const auto& [group, to, from] : it->second)
      if (auto node = h->nodes_.find({group, to}); node != h->nodes_.end())
        node->second->peer_unreachable(from);
    h->connection_routes_.erase(it);
  });
  host->port_ = host->server_->port();
  host->thread_ = std::thread([h] { h->io_.run(); });
  *out = std::move(host);
  return storage::Status{};
}

NodeHost::~NodeHost() {
  gate_->close();
  if (thread_.joinable()) {
    std::promise<void> stopped;
    asio::post(io_, [&] {
      for (auto& [key, node] : nodes_) node->stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
  }
  if (server_) server_->stop();
  work_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

storage::Status NodeHost::add_node(NodeOptions opt, StateMachine sm, std::shared_ptr<Node>* out) {
  std::promise<storage::Status> result;
  asio::post(io_, [&] {
    auto key = std::make_pair(opt.group, opt.self);
    if (nodes_.count(key)) {
      result.set_value({storage::Code::InvalidArgument,
                        "node " + opt.self.to_string() + " of group " + opt.group + " exists"});
      return;
    }
    auto node = std::make_shared<Node>(Node::Key{}, *this, std::move(opt), std::move(sm));
    auto st = node->open();
    if (st.ok()) nodes_[key] = *out = node;
    result.set_value(st);
  });
  return result.get_future().get();
}

bool NodeHost::remove_node(const std::string& group, const core::PeerId& self) {
  std::promise<bool> removed;
  asio::post(io_, [&] {
    auto it = nodes_.find({group, self});
    if (it == nodes_.end()) return removed.set_value(false);
    it->second->stop();
    nodes_.erase(it);
    removed.set_value(true);
  });
  return removed.get_future().get();
}

void NodeHost::add_service(const std::string& full_name, rpc::Server::Handler handler) {
  std::promise<void> done;
  asio::post(io_, [&] {
    services_[full_name] = std::move(handler);
    done.set_value();
  });
  done.get_future().wait();
}

void NodeHost::on_request(rpc::Frame frame, rpc::Server::Respond respond) {
  const auto& req = frame.meta.request();
  std::string service = req.service_name();
  if (service.rfind("braft.", 0) == 0) service = service.substr(6);
  if (service.rfind("raftstore.", 0) == 0) service = service.substr(10);
  if (service == "CliService") return on_cli(frame, respond);
  if (service == "FileService") return on_get_file(frame, respond);
  if (service == "ForwardService") return on_forward(frame, respond);
  if (service != "RaftService" && service != "RaftExtService") {
    auto it = services_.find(req.service_name());
    if (it == services_.end())
      return respond(rpc::kENOSERVICE, "Fail to find service=" + req.service_name(), "", "");
    return it->second(std::move(frame), std::move(respond));
  }
  auto env =
      rpc::decode_request(req.service_name(), req.method_name(), frame.payload, frame.attachment);
  if (!env) return respond(rpc::kEREQUEST, "bad request for " + req.method_name(), "", "");
  auto it = nodes_.find({env->group, env->to});
  if (it == nodes_.end())
    return respond(kENOENT, "Fail to find node " + env->to.to_string() + " in group " + env->group,
                   "", "");
  auto& routes = connection_routes_[frame.connection];
  if (routes.size() < 64 && std::none_of(routes.begin(), routes.end(), [&](const Route& r) {
        return std::get<2>(r) == env->from && std::get<1>(r) == env->to &&
               std::get<0>(r) == env->group;
      }))
    routes.emplace_back(env->group, env->to, env->from);
  it->second->on_request(std::move(*env), std::move(respond));
}

int64_t NodeHost::open_reader(storage::SnapshotInfo snapshot, uint64_t ttl_ms) {
  uint64_t now = now_ms();
  for (auto it = readers_.begin(); it != readers_.end();)  // readers whose answer was lost
    it = it->second.expires_ms < now ? readers_.erase(it) : std::next(it);
  if (next_reader_ == 0) {
    // As braft: distinct across processes and restarts, so a stale follower cannot read
    // someone else's snapshot by an old id.
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    next_reader_ = (static_cast<int64_t>(::getpid()) << 45) | (us & ((int64_t{1} << 45) - 1));
  }
  int64_t id = next_reader_++;
  readers_[id] = Reader{std::move(snapshot), now + ttl_ms};
  return id;
}

void NodeHost::close_reader(int64_t id) { readers_.erase(id); }

// braft's FileService: chunks of a snapshot lent to a follower by InstallSnapshot.
void NodeHost::on_get_file(const rpc::Frame& frame, const rpc::Server::Respond& respond) {
  const std::string& method = frame.meta.request().method_name();
  if (method != "get_file")
    return respond(rpc::kENOMETHOD, error_text(rpc::kENOMETHOD, "Fail to find method=" + method),
                   "", "");
  braft::GetFileRequest req;
  if (!req.ParseFromString(frame.payload))
    return respond(rpc::kEREQUEST, error_text(rpc::kEREQUEST, "Fail to parse GetFileRequest"), "",
                   "");
  auto it = readers_.find(req.reader_id());
  if (it == readers_.end())
    return respond(kENOENT,
                   error_text(kENOENT, "Fail to find reader=" + std::to_string(req.reader_id())),
                   "", "");
  FileReply r = read_snapshot_file(it->second.snapshot, req);
  if (r.error_code) return respond(r.error_code, error_text(r.error_code, r.error_text), "", "");
  respond(0, "", r.response.SerializeAsString(), r.attachment);
}

// A proposal forwarded by a replica that is not the leader: proposed here, never forwarded
// again (no loops), answered once applied here.
void NodeHost::on_forward(const rpc::Frame& frame, const rpc::Server::Respond& respond) {
  raftstore::wire::ForwardRequest req;
  if (frame.meta.request().method_name() != "propose" || !req.ParseFromString(frame.payload))
    return respond(rpc::kEREQUEST, error_text(rpc::kEREQUEST, "bad ForwardService request"), "",
                   "");
  int32_t code = 0;
  std::string text;
  auto node = find(req.group_id(), req.peer_id(), &code, &text);
  if (!node) return respond(code, error_text(code, text), "", "");
  node->enqueue(
      frame.attachment,
      [node, respond](core::Status st, uint64_t index) {
        raftstore::wire::ForwardResponse resp;
        resp.set_success(st.ok());
        if (st.ok())
          resp.set_index(static_cast<int64_t>(index));
        else {
          resp.set_code(static_cast<int32_t>(st.code));
          resp.set_message(st.message);
          if (auto leader = node->status().leader; !leader.empty())
            resp.set_leader_id(leader.to_string());
        }
        respond(0, "", resp.SerializeAsString(), "");
      },
      false);
}

std::string NodeHost::error_text(int32_t code, const std::string& message) const {
  // brpc's convention: which server, which code, then the message.
  return "[127.0.0.1:" + std::to_string(port_) + "][E" + std::to_string(code) + "]" + message;
}

std::shared_ptr<Node> NodeHost::find(const std::string& group, const std::string& peer,
                                     int32_t* code, std::string* text) {
  if (!peer.empty()) {
    auto id = core::PeerId::parse(peer);
    auto it = id ? nodes_.find({group, *id}) : nodes_.end();
    if (it != nodes_.end()) return it->second;
    *code = kENOENT;
    *text = "Fail to find node " + peer + " in group " + group;
    return nullptr;
  }
  std::shared_ptr<Node> only;
  for (auto& [key, node] : nodes_) {
    if (key.first != group) continue;
    if (only) {
      *code = kEINVAL;
      *text = "peer must be specified since there're multiple nodes in group " + group;
      return nullptr;
    }
    only = node;
  }
  if (!only) {
    *code = kENOENT;
    *text = "Fail to find node in group " + group;
  }
  return only;
}

// braft's CliService (braft-protocol.md §2.3), so that braft_cli manages our groups.
void NodeHost::on_cli(const rpc::Frame& frame, const rpc::Server::Respond& respond) {
  const std::string& method = frame.meta.request().method_name();
  int32_t code = 0;
  std::string text;
  auto refuse = [&](int32_t c, const std::string& t) { respond(c, error_text(c, t), "", ""); };
  auto bad = [&] { refuse(rpc::kEREQUEST, "Fail to parse request of " + method); };
  auto peers_reply = [this, respond](auto response) {
    return [this, respond, response](const core::ConfChangeResult& r) mutable {
      if (!r.status.ok())
        return respond(errno_of(r.status.code),
                       error_text(errno_of(r.status.code), r.status.message), "", "");
      rpc::put_peers(r.old_conf.peers, response.mutable_old_peers());
      rpc::put_peers(r.new_conf.peers, response.mutable_new_peers());
      respond(0, "", response.SerializeAsString(), "");
    };
  };
  auto status_reply = [this, respond](auto response) {
    return [this, respond, response](core::Status st) {
      if (!st.ok())
        return respond(errno_of(st.code), error_text(errno_of(st.code), st.message), "", "");
      respond(0, "", response.SerializeAsString(), "");
    };
  };
  if (method == "get_leader") {
    braft::GetLeaderRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    core::PeerId leader;
    if (req.has_peer_id() && !req.peer_id().empty()) {
      auto node = find(req.group_id(), req.peer_id(), &code, &text);
      if (!node) return refuse(code, text);
      leader = node->status().leader;
    } else {
      bool any = false;
      for (auto& [key, node] : nodes_)
        if (key.first == req.group_id()) {
          any = true;
          if (leader.empty()) leader = node->status().leader;
        }
      if (!any) return refuse(kENOENT, "No nodes in group " + req.group_id());
    }
    if (leader.empty()) return refuse(kEAGAIN, "Unknown leader");
    braft::GetLeaderResponse resp;
    resp.set_leader_id(leader.to_string());
    return respond(0, "", resp.SerializeAsString(), "");
  }
  if (method == "add_peer" || method == "remove_peer") {
    braft::AddPeerRequest req;  // RemovePeerRequest has the same fields and numbers
    if (!req.ParseFromString(frame.payload)) return bad();
    auto peer = core::PeerId::parse(req.peer_id());
    if (!peer) return refuse(kEINVAL, "Fail to parse peer_id " + req.peer_id());
    auto node = find(req.group_id(), req.leader_id(), &code, &text);
    if (!node) return refuse(code, text);
    if (method == "add_peer")
      node->change_conf(method, {*peer}, peers_reply(braft::AddPeerResponse{}));
    else
      node->change_conf(method, {*peer}, peers_reply(braft::RemovePeerResponse{}));
    return;
  }
  if (method == "change_peers") {
    braft::ChangePeersRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    core::PeerList peers;
    if (!rpc::get_peers(req.new_peers(), &peers)) return refuse(kEINVAL, "Fail to parse new_peers");
    auto node = find(req.group_id(), req.leader_id(), &code, &text);
    if (!node) return refuse(code, text);
    return node->change_conf(method, peers, peers_reply(braft::ChangePeersResponse{}));
  }
  if (method == "reset_peer") {
    braft::ResetPeerRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    core::PeerList peers;
    if (!rpc::get_peers(req.new_peers(), &peers)) return refuse(kEINVAL, "Fail to parse new_peers");
    auto node = find(req.group_id(), req.peer_id(), &code, &text);
    if (!node) return refuse(code, text);
    return node->reset_peers(peers, status_reply(braft::ResetPeerResponse{}));
  }
  if (method == "transfer_leader") {
    braft::TransferLeaderRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    core::PeerId target;  // absent or 0.0.0.0:0:0: any peer
    if (req.has_peer_id()) {
      auto id = core::PeerId::parse(req.peer_id());
      if (!id) return refuse(kEINVAL, "Fail to parse peer_id " + req.peer_id());
      target = *id;
    }
    auto node = find(req.group_id(), req.leader_id(), &code, &text);
    if (!node) return refuse(code, text);
    return node->transfer_leadership(target, status_reply(braft::TransferLeaderResponse{}));
  }
  if (method == "snapshot") {
    braft::SnapshotRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    auto node = find(req.group_id(), req.has_peer_id() ? req.peer_id() : "", &code, &text);
    if (!node) return refuse(code, text);
    // Answered once the snapshot is published (braft answers when its save is done).
    return node->snapshot([this, respond](storage::Status st) {
      if (st.ok()) return respond(0, "", braft::SnapshotResponse{}.SerializeAsString(), "");
      int32_t c = st.code == storage::Code::InvalidArgument ? kEINVAL : kEIO;
      respond(c, error_text(c, st.message), "", "");
    });
  }
  refuse(rpc::kENOMETHOD, "Fail to find method=CliService/" + method);
}

std::string NodeHost::http_status(const std::string& path) {
  if (path != "/raft_stat" && path.rfind("/raft_stat/", 0) != 0) return "try /raft_stat\n";
  std::string group = path.size() > 11 ? path.substr(11) : "";
  std::ostringstream o;
  for (auto& [key, node] : nodes_) {
    if (!group.empty() && key.first != group) continue;
    core::NodeStatus s = node->status();
    o << "[" << key.first << "] " << key.second.to_string() << "\n"
      << "state: " << core::role_name(s.role) << "\nterm: " << s.term
      << "\nleader: " << s.leader.to_string() << "\nconf: " << s.conf.to_string()
      << "\nfirst_index: " << s.first_index << "\nlast_index: " << s.last_index
      << "\ncommitted_index: " << s.commit_index << "\napplied_index: " << s.applied_index
      << "\nsnapshot_index: " << node->published_index_
      << "\nsnapshots_installed: " << node->snapshots_installed_
      << "\nsnapshot_failures: " << node->snapshot_failures_
      << "\nstuck_apply_transfers: " << node->stuck_transfers_ << "\n";
    if (!node->last_snapshot_error_.empty())
      o << "last_snapshot_error: " << node->last_snapshot_error_ << "\n";
    for (const auto& p : s.peers)
      o << "replicator " << p.id.to_string() << ": match_index=" << p.match_index
        << " next_index=" << p.next_index << " state=" << p.state << "\n";
    o << "\n";
  }
  return o.str();
}

}  // namespace raftstore::runtime
