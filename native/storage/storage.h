// Durable state of one replica, in braft's layout (docs/braft-compatibility.md §4):
//   <dir>/LOCK                            held (flock) by the one process using the directory
//   <dir>/raft_meta/raft_meta             term and vote: [len u32 BE][StablePBMeta]
//   <dir>/log/log_meta                    first log index: [len u32 BE][LogPBMeta]
//   <dir>/log/log_<first:020>_<last:020>  closed segments
//   <dir>/log/log_inprogress_<first:020>  the open segment
// Segment records use braft's 24-byte header (term, type, checksum type, data length, data
// CRC32C, header CRC32C; big-endian). What is durable when: meta writes are atomic (temp
// file, fsync, rename, fsync of the directory) and durable when they return; log appends
// are durable after sync() returns. Nothing here is thread-safe: one writer thread owns it.
#pragma once

#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "raft.h"

namespace raftstore::storage {

enum class Code : uint8_t { Ok, CorruptLog, Locked, DiskFull, Io, InvalidArgument };
// The error code users see (ERR_RAFT_CORRUPT_LOG, ...).
const char* code_string(Code c);

struct Status {
  Code code = Code::Ok;
  std::string message;
  bool ok() const { return code == Code::Ok; }
};

// An OS error on `what`; a full disk (or file size limit) is DiskFull, anything else Io.
Status os_error(const std::string& what, int e = errno);

// A file descriptor that closes itself.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
// The table-driven computation crc32c uses where the CPU has no CRC32C instruction (tested
// against it on every machine).
uint32_t crc32c_portable(const void* data, size_t size, uint32_t crc = 0);

// Exclusive use of a data directory for the life of the object.
class DirLock {
  struct Key {};  // only acquire() can construct one

 public:
  static Status acquire(const std::string& dir, std::unique_ptr<DirLock>* out);
  DirLock(Key, Fd fd) : fd_(std::move(fd)) {}

 private:
  Fd fd_;
};

// Term and vote (braft's StablePBMeta in a ProtoBufFile).
class MetaStore {
 public:
  explicit MetaStore(std::string dir) : dir_(std::move(dir)) {}
  // A missing file is a new replica: term 0, no vote.
  Status load(core::HardState* out) const;
  Status save(const core::HardState& hs);  // durable when it returns

 private:
  std::string dir_;
};

struct LogOptions {
  uint64_t max_segment_bytes = 8 << 20;  // braft raft_max_segment_size
};

// What recovery found and did.
struct Recovery {
  bool torn_tail = false;  // an incomplete last record was cut off
  std::string file;        // where
  uint64_t offset = 0;     // cut at this byte
  uint64_t bytes_dropped = 0;
};

class SegmentLog {
  struct Key {};  // only open() can construct one

 public:
  SegmentLog(Key, std::string dir, LogOptions options);
  // Recovers the log: a torn tail of the open segment is truncated (and reported); a bad
  // record anywhere else refuses with CorruptLog naming the file and offset.
  static Status open(const std::string& dir, LogOptions options, std::unique_ptr<SegmentLog>* out,
                     Recovery* recovery = nullptr);
  ~SegmentLog();

  uint64_t first_index() const { return first_index_; }
  uint64_t last_index() const { return last_index_; }  // first_index() - 1 when empty

  // entries[0].index must be last_index() + 1. Durable after sync().
  Status append(const std::vector<core::Entry>& entries);
  Status sync();
  // Drop every entry with index >= from.
  Status truncate_suffix(uint64_t from);
  // Entries below `before` are gone (a snapshot covers them); whole segments are deleted.
  Status compact_prefix(uint64_t before);
  // Drop everything; the next entry will be `next_index` (after a snapshot install).
  Status reset(uint64_t next_index);
  // The core's Ready, in its order: log_reset, log_write, compact_before; then sync()
  // unless the caller batches several and syncs once (group commit).
  Status apply(const core::Ready& ready, bool sync_now = true);

  Status read(uint64_t index, core::Entry* out) const;
  Status read_all(std::vector<core::Entry>* out) const;

  std::vector<std::string> segment_files() const;  // for tests and status pages

 private:
  struct Segment;
  Status recover(Recovery* recovery);
  Status scan(Segment& seg, bool is_last, Recovery* recovery);
  Status open_new_segment(uint64_t first);
  Status close_open_segment();
  Status write_first_index(uint64_t first);
  Segment* segment_of(uint64_t index) const;

  std::string dir_;
  LogOptions opt_;
  std::vector<std::unique_ptr<Segment>> segments_;  // ascending; the last may be open
  uint64_t first_index_ = 1;
  uint64_t last_index_ = 0;
  bool dir_dirty_ = false;  // a file was created, renamed or removed since the last sync
};

// Snapshots: <dir>/snapshot_<index:020>/ holding the state machine's files and
// __raft_snapshot_meta (braft's LocalSnapshotPbMeta: the SnapshotMeta plus each file's
// name and CRC32C). Written under <dir>/temp, published by renaming (after fsync of every
// file and of the directories), then older snapshots are removed. A crash at any point
// leaves the previous snapshot intact; temp is cleared on open.
struct SnapshotFile {
  std::string name;
  uint32_t crc32c = 0;
};

struct SnapshotInfo {
  core::SnapshotMeta meta;
  std::vector<SnapshotFile> files;
  std::string path;    // the published directory
  uint64_t bytes = 0;  // the files' sizes (not stored: measured when published or read)
};

// The snapshot's own meta file, also what FileService serves first to a copying follower.
constexpr const char* kSnapshotMetaFile = "__raft_snapshot_meta";
// braft's LocalSnapshotPbMeta (without the file's length prefix).
std::string encode_snapshot_info(const core::SnapshotMeta& meta,
                                 const std::vector<SnapshotFile>& files);
// False if malformed, or if a file name is not a plain name inside the snapshot directory.
bool decode_snapshot_info(std::string_view in, SnapshotInfo* info);

class SnapshotStore {
  struct Key {};

 public:
  SnapshotStore(Key, std::string dir);
  static Status open(const std::string& dir, std::unique_ptr<SnapshotStore>* out);

  // The newest published snapshot, if any (its files' checksums verified on open).
  const std::optional<SnapshotInfo>& latest() const { return latest_; }

  // Starts a snapshot: the caller writes its files into the returned (empty) directory.
  Status begin(std::string* temp_dir);
  // Publishes what is in the temp directory under `meta`; returns the new latest.
  Status publish(const core::SnapshotMeta& meta, const SnapshotInfo** out = nullptr);
  // Verifies a published snapshot's files against their recorded checksums.
  static Status verify(const SnapshotInfo& info);
  static Status read_info(const std::string& path, SnapshotInfo* out);
  // Keeps a published snapshot's directory while the returned loan lives, even once a newer
  // snapshot replaces it: a follower is copying it (braft refs its snapshots the same way),
  // and a leader that snapshots faster than a copy takes must not starve it. Thread-safe;
  // the loan may outlive the store.
  std::shared_ptr<const void> lend(const std::string& path);

 private:
  struct Loans;
  struct Loan;
  void retire(const std::string& path);  // removed now, or when its last loan ends
  std::string dir_;
  std::optional<SnapshotInfo> latest_;
  std::shared_ptr<Loans> loans_;
};

// The core's Boot from what is durable, refused (CorruptLog) if Raft::check_boot rejects it.
// An empty log is moved to just after the snapshot.
Status make_boot(const core::HardState& hs, const SnapshotStore& snapshots, SegmentLog& log,
                 const core::Configuration& initial_conf, core::Boot* boot);

}  // namespace raftstore::storage
