// Snapshots: taking one (the state machine writes, the log writer publishes) and installing a
// leader's (the environment copies it, then the install order of snapshot_transfer.h). The
// files and their transfer are the environment's (file_service.h, or the simulator's).

#include "replica.h"

namespace raftstore::runtime {

void Replica::snapshot(std::function<void(storage::Status)> done) {
  if (failed_) return done({storage::Code::Io, "node is not active"});
  if (!sm_.save)
    return done({storage::Code::InvalidArgument, "the state machine does not take snapshots"});
  snapshot_waiters_.push_back(std::move(done));
  if (snapshot_op_ == SnapshotOp::None) start_snapshot();
  drain();
}

void Replica::start_snapshot() {
  uint64_t index = core_->applied_index();
  auto meta = core_->snapshot_meta_at(index);
  if (!meta || index <= published_index_) return finish_snapshot({});  // nothing new
  std::string dir;
  if (auto st = env_.begin_snapshot(&dir); !st.ok()) return finish_snapshot(st);
  snapshot_op_ = SnapshotOp::Saving;
  snapshot_started_us_ = env_.now_us();
  sm_.save(dir, [this, post = post_, meta = *meta](storage::Status st) {
    post([this, st, meta] { snapshot_saved(st, meta); });
  });
}

void Replica::snapshot_saved(storage::Status st, const core::SnapshotMeta& meta) {
  if (failed_) return;
  if (!st.ok()) return finish_snapshot(st);
  Write w;
  w.publish = meta;
  env_.write(std::move(w));
}

void Replica::start_install(const core::SnapshotInstall& install) {
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
    st = env_.begin_snapshot(&dir);
  if (!st.ok()) {
    ++metrics_.snapshot_failures;
    last_snapshot_error_ = st.message;
    log(LogLevel::Warn, "snapshot install refused", {{"error", st.message}});
    core_->snapshot_installed(install.meta, false);
    return;
  }
  snapshot_op_ = SnapshotOp::Installing;
  snapshot_started_us_ = env_.now_us();
  log(LogLevel::Info, "installing a snapshot from the leader",
      {{"index", std::to_string(install.meta.last_included_index)},
       {"from", install.leader.to_string()}});
  install_order_ = InstallOrder{};
  // Each chunk gets an election timeout (at least 500 ms): a stalled copy fails and is
  // retried by the leader, instead of holding the replica for the whole install deadline.
  auto chunk_timeout =
      static_cast<uint32_t>(std::max<uint64_t>(opt_.raft.election_timeout_ms, 500));
  env_.copy_snapshot(install, dir, chunk_timeout, [this, meta = install.meta](storage::Status st) {
    if (failed_) return;
    install_order_.copied(st.ok());
    advance_install(meta, st);
  });
}

// Does what the install order says next (snapshot_transfer.h): publish what was copied,
// then let the core adopt it and load it, or give up.
void Replica::advance_install(const core::SnapshotMeta& meta, const storage::Status& st) {
  switch (install_order_.step()) {
    case InstallOrder::Step::Copy:
      return;
    case InstallOrder::Step::Publish: {
      Write w;
      w.publish = meta;
      w.installed = true;
      return env_.write(std::move(w));
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

void Replica::snapshot_published(const Write& w) {
  const core::SnapshotMeta& meta = *w.publish;
  const storage::Status& st = w.publish_status;
  if (st.ok()) {
    published_ = w.published;
    published_index_ = published_->meta.last_included_index;
    metrics_.snapshot_bytes = published_->bytes;
  }
  if (!w.installed) {
    if (st.ok()) {
      core_->snapshot_taken(meta);  // the log below it may go now
      snapshot_done("snapshot taken", metrics_.snapshots_taken, metrics_.snapshot_take, meta);
    }
    return finish_snapshot(st);
  }
  install_order_.published(st.ok());
  advance_install(meta, st);
}

// The copied snapshot is durable: the core adopts it unless its commit index passed it.
// False if the state machine could not load it (the replica stops).
bool Replica::adopt_install(const core::SnapshotMeta& meta) {
  if (!published_ || published_->meta.last_included_index != meta.last_included_index) {
    fail("snapshot " + std::to_string(meta.last_included_index) +
         " was to be adopted before it was published");
    return false;
  }
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
  proposals_.passed_by_snapshot(meta.last_included_index);
  skipped_.emplace_back(applied_before, meta.last_included_index);
  for (auto it = forwarded_.begin();
       it != forwarded_.end() && it->first <= meta.last_included_index;) {
    it->second({core::Code::ResultUnknown,
                "committed at index " + std::to_string(it->first) +
                    ", but this replica caught up past it by installing a snapshot"},
               it->first);
    it = forwarded_.erase(it);
  }
  snapshot_done("snapshot installed", metrics_.snapshots_installed, metrics_.snapshot_install,
                meta);
  return true;
}

void Replica::snapshot_done(const char* what, std::atomic<uint64_t>& count, Histogram& duration,
                            const core::SnapshotMeta& meta) {
  uint64_t took = env_.now_us() - snapshot_started_us_;
  ++count;
  duration.observe(took);
  log(LogLevel::Info, what,
      {{"index", std::to_string(meta.last_included_index)},
       {"bytes", std::to_string(published_ ? published_->bytes : 0)},
       {"ms", std::to_string(took / 1000)}});
}

void Replica::finish_snapshot(const storage::Status& st) {
  bool was_install = snapshot_op_ == SnapshotOp::Installing;
  snapshot_op_ = SnapshotOp::None;
  if (!st.ok()) {
    ++metrics_.snapshot_failures;
    last_snapshot_error_ = st.message;
    log(LogLevel::Warn, was_install ? "snapshot install failed" : "snapshot failed",
        {{"error", st.message}});
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

}  // namespace raftstore::runtime
