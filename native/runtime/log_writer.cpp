// The log manager: one writer thread per node applies term/vote and log writes in order
// and fsyncs once per batch (group commit), then reports back on the host thread.

#include "node_host_internal.h"

namespace raftstore::runtime {

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

}  // namespace raftstore::runtime
