// The log manager's decisions: what one batch of the log writer commits, in what order, with
// one log sync for all (group commit), and what the replica does once a batch is durable.
// The writer itself (a thread per node, or the simulator's disk) is the environment's.

#include "mutants.h"
#include "replica.h"

namespace raftstore::runtime {

storage::Status commit_writes(std::vector<Write>& batch, LogDisk& disk, WriteTimings* timings) {
  WriteTimings ignored;
  WriteTimings& t = timings ? *timings : ignored;
  uint64_t started = disk.now_us();
  storage::Status st;
  bool log_touched = false;
  for (auto& w : batch) {
    if (w.hard_state && !(st = disk.save_meta(*w.hard_state)).ok()) return st;
    if (w.log.log_reset || w.log.log_write || w.log.compact_before) {
      log_touched = true;
      if (w.log.log_write)
        for (const auto& e : w.log.log_write->entries) {
          ++t.entries;
          t.bytes += e.data ? e.data->size() : 0;
        }
      if (!(st = disk.apply_log(w.log)).ok()) return st;
    }
    if (w.publish) {  // a failed snapshot is reported, not fatal: the log still has it all
      storage::SnapshotInfo info;
      w.publish_status = disk.publish(*w.publish, &info);
      if (w.publish_status.ok()) w.published = std::move(info);
    }
  }
  uint64_t appended = disk.now_us();
  t.append_us = appended - started;
  if (log_touched && !MUTANT(SkipGroupSync)) {
    st = disk.sync_log();  // one fsync for the whole batch
    t.fsync_us = disk.now_us() - appended;
    t.synced = true;
  }
  return st;
}

void Replica::written(storage::Status st, std::vector<Write> batch, const WriteTimings& t) {
  if (failed_) return;
  if (!st.ok()) return fail(st.message);
  ++metrics_.log_batches;
  metrics_.log_append.observe(t.append_us);
  if (t.synced) {
    metrics_.log_fsync.observe(t.fsync_us);
    if (t.fsync_us >= uint64_t{opt_.slow_fsync_ms} * 1000)
      log(LogLevel::Warn, "slow log fsync",
          {{"fsync_ms", std::to_string(t.fsync_us / 1000)},
           {"entries", std::to_string(t.entries)}});
  }
  if (t.entries) {
    metrics_.batch_entries.observe(t.entries);
    metrics_.batch_bytes.observe(t.bytes);
  }
  for (const auto& w : batch) {
    if (w.hard_state) core_->meta_persisted(w.meta_seq);
    if (w.log.log_write && !w.log.log_write->entries.empty())
      core_->log_persisted(w.log.log_write->seq);
    if (w.publish) snapshot_published(w);
    if (failed_) return;
  }
  drain();
}

}  // namespace raftstore::runtime
