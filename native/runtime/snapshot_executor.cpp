// Snapshots: taking one (the state machine writes, the writer publishes), installing a
// leader's (SnapshotCopier, then the install order of snapshot_transfer.h), and serving
// ours to followers (FileService get_file through readers).

#include <unistd.h>

#include "node_host_internal.h"

namespace raftstore::runtime {

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

}  // namespace raftstore::runtime
