// A replica's main loop: starting the core, ticking, draining its Ready in order (persist,
// send, apply, answer the waiting callers), membership and read calls, and the stuck-apply
// guard. Proposals are in proposals.cpp, messages in replicator.cpp, the log writer's side
// in log_writer.cpp, snapshots in snapshot_executor.cpp.

#include "replica.h"

#include <random>

#include "mutants.h"

namespace raftstore::runtime {

Replica::Replica(ReplicaEnv& env, NodeOptions opt, StateMachine sm)
    : env_(env), post_(env.poster()), opt_(std::move(opt)), sm_(std::move(sm)) {}

void Replica::start(core::Boot boot, std::optional<storage::SnapshotInfo> published,
                    uint64_t seed) {
  if (published) {
    published_index_ = published->meta.last_included_index;
    published_ = std::move(published);
  }
  uint64_t now = env_.now_ms();
  next_snapshot_ms_ = now + opt_.snapshot_interval_s * 1000ull;
  core::Options o = opt_.raft;
  o.group = opt_.group;
  o.self = opt_.self;
  o.random = [rng = std::mt19937_64(seed)]() mutable { return rng(); };
  core_ = std::make_unique<core::Raft>(std::move(o), std::move(boot), now);
  drain();
}

void Replica::tick() {
  if (failed_) return;
  uint64_t now = env_.now_ms();
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
}

// Native heartbeats keep a leader whose event loop is blocked in office (the point of this
// engine), but its clients wait on applies that do not happen: after stuck_apply_timeout_ms
// without progress while entries wait, it hands over to the most up-to-date follower. A
// state machine that is slow but moving is not stuck.
void Replica::check_stuck_apply(uint64_t now) {
  uint64_t applied = metrics_.state_machine_applied.load();
  if (applied >= core_->applied_index() || applied != stuck_seen_applied_) {
    stuck_seen_applied_ = applied;
    stuck_since_ms_ = now;
    return;
  }
  if (core_->role() != core::Role::Leader || now - stuck_since_ms_ < opt_.stuck_apply_timeout_ms)
    return;
  stuck_since_ms_ = now;  // at most one attempt per period
  ++metrics_.stuck_apply_transfers;
  log(LogLevel::Warn, "state machine stuck: handing leadership away",
      {{"applied", std::to_string(applied)},
       {"waiting", std::to_string(core_->applied_index() - applied)}});
  if (core_->transfer_leader(core::PeerId{}, now).ok()) drain();
}

void Replica::fail(const std::string& why, LogLevel level) {
  // A replica that cannot persist stops rather than acknowledge what it did not store.
  if (failed_) return;
  failed_ = true;
  failure_ = why;
  log(level, "replica stopped", {{"reason", why}});
  if (!MUTANT(ProposalsOpenAfterStop)) {
    {
      std::lock_guard<std::mutex> l(proposals_mu_);
      proposals_closed_ = true;
    }
    settle_queued(why);  // a flush already posted finds nothing; one never run loses nothing
  }
  proposals_.fail_all({core::Code::Shutdown, why});
  auto forwarded = std::move(forwarded_);
  forwarded_.clear();
  for (auto& [index, done] : forwarded) done({core::Code::Shutdown, why}, index);
  env_.cancel_copy();
  auto waiters = std::move(snapshot_waiters_);
  snapshot_waiters_.clear();
  for (auto& done : waiters) done({storage::Code::Io, why});
  auto reads = std::move(reads_);
  reads_.clear();
  for (auto& [ctx, done] : reads) done({core::Code::Shutdown, why}, 0);
  auto changes = std::move(conf_changes_);
  conf_changes_.clear();
  if (!core_) return;
  for (auto& [id, done] : changes)
    done(core::ConfChangeResult{id, {core::Code::Shutdown, why}, core_->conf(), core_->conf()});
}

void Replica::drain() {
  bool took = false;
  while (!failed_ && core_->has_ready()) {
    core::Ready rd = core_->take_ready();
    took = true;
    env_.observe(rd);
    refresh_status();  // before the callbacks below: whoever they wake may read status()
    note_changes(rd);
    if (rd.hard_state || rd.log_reset || rd.log_write || rd.compact_before) {
      Write w;
      w.hard_state = rd.hard_state;
      w.meta_seq = rd.meta_seq;
      w.log.log_reset = std::move(rd.log_reset);
      w.log.log_write = std::move(rd.log_write);
      w.log.compact_before = rd.compact_before;
      env_.write(std::move(w));
    }
    // Sent at once: the core never releases a message that depends on something not yet
    // durable, so a leader replicates while its own fsync is in flight.
    for (auto& m : rd.messages) send(std::move(m));
    if (!rd.committed.empty()) {
      note_apply(rd.committed.back().index);
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

void Replica::change_conf(const std::string& method, const core::PeerList& peers, ConfDone done) {
  uint64_t id = next_change_++;
  if (failed_)
    return done(core::ConfChangeResult{id, {core::Code::Shutdown, "node is not active"}, {}, {}});
  bool one = method == "add_peer" || method == "remove_peer";
  if (one && peers.size() != 1)
    return done({id, {core::Code::InvalidArgument, method + " takes one peer"}, {}, {}});
  uint64_t now = env_.now_ms();
  core::Status st;
  if (method == "add_peer")
    st = core_->add_peer(id, peers.front(), now);
  else if (method == "remove_peer")
    st = core_->remove_peer(id, peers.front(), now);
  else if (method == "change_peers")
    st = core_->change_peers(id, peers, now);
  else if (method == "change_learners")
    st = core_->change_learners(id, peers, now);
  else
    st = {core::Code::InvalidArgument, "no membership method " + method};
  if (!st.ok()) return done(core::ConfChangeResult{id, st, core_->conf(), core_->conf()});
  conf_changes_[id] = std::move(done);  // answered when the change commits or fails
  drain();
}

core::Status Replica::transfer_leader(const core::PeerId& target) {
  if (failed_) return {core::Code::Shutdown, "node is not active"};
  auto st = core_->transfer_leader(target, env_.now_ms());
  drain();
  return st;
}

core::Status Replica::reset_peers(const core::PeerList& peers) {
  if (failed_) return {core::Code::Shutdown, "node is not active"};
  auto st = core_->reset_peers(peers, env_.now_ms());
  drain();
  return st;
}

void Replica::read_index(bool lease, ReadDone done) {
  if (failed_) return done({core::Code::Shutdown, "node is not active"}, 0);
  uint64_t now = env_.now_ms();
  if (lease && (MUTANT(LeaseReadWithoutLease) || core_->lease_valid(now)))
    return done({}, core_->commit_index());
  uint64_t ctx = next_read_++;
  reads_[ctx] = counted(metrics_.reads_ok, metrics_.reads_failed, metrics_.read_index,
                        env_.now_us(), std::move(done));
  core_->read_index(ctx, now);
  drain();
}

void Replica::log(LogLevel level, std::string message,
                  std::vector<std::pair<std::string, std::string>> fields) {
  bool to_sink = opt_.log && level >= opt_.log_level;
  if (level < LogLevel::Info && !to_sink) return;
  LogRecord r{level,
              env_.wall_ms(),
              opt_.group,
              opt_.self.to_string(),
              std::move(message),
              std::move(fields)};
  if (level >= LogLevel::Info) events_.push(r);
  if (to_sink) opt_.log(r);
}

void Replica::note_changes(const core::Ready& rd) {
  std::string term = std::to_string(core_->term());
  if (rd.role_changed) {
    core::Role role = core_->role();
    if (role == core::Role::Candidate) {
      ++metrics_.elections_started;
      if (MUTANT(ElectionCountedAsWon)) ++metrics_.elections_won;
      log(LogLevel::Info, "election started", {{"term", term}});
    } else if (role == core::Role::Leader) {
      ++metrics_.elections_won;
      log(LogLevel::Info, "became leader", {{"term", term}});
    } else {
      log(LogLevel::Info, std::string("became ") + core::role_name(role), {{"term", term}});
    }
  }
  if (rd.leader_changed && !core_->leader().empty()) {
    ++metrics_.leader_changes;
    log(LogLevel::Info, "leader changed",
        {{"leader", core_->leader().to_string()}, {"term", term}});
  }
  const core::Configuration& conf = core_->conf();
  if (!conf_known_ || !(conf == last_conf_)) {
    std::vector<std::pair<std::string, std::string>> f = {{"peers", core::to_string(conf.peers)}};
    if (conf.joint()) f.emplace_back("old_peers", core::to_string(conf.old_peers));
    if (!conf.learners.empty()) f.emplace_back("learners", core::to_string(conf.learners));
    log(conf_known_ ? LogLevel::Info : LogLevel::Debug,
        conf_known_ ? "configuration changed" : "configuration", std::move(f));
    last_conf_ = conf;
    conf_known_ = true;
  }
}

// Apply lag: when each batch went to the state machine, matched with report_applied. Only
// state machines that report (the Node binding's) are measured; the queue is bounded so
// one that never reports costs nothing.
void Replica::note_apply(uint64_t last_index) {
  std::lock_guard<std::mutex> l(apply_mu_);
  if (apply_times_.size() < 4096) apply_times_.emplace_back(last_index, env_.now_us());
}

void Replica::report_applied(uint64_t index) {
  metrics_.state_machine_applied = index;
  uint64_t now = env_.now_us();
  std::lock_guard<std::mutex> l(apply_mu_);
  while (!apply_times_.empty() && apply_times_.front().first <= index) {
    metrics_.apply_lag.observe(now - apply_times_.front().second);
    apply_times_.pop_front();
  }
}

core::NodeStatus Replica::status() {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_;
}

void Replica::refresh_status() {
  std::lock_guard<std::mutex> lock(status_mu_);
  status_ = core_->status();
}

}  // namespace raftstore::runtime
