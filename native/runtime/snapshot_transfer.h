// Snapshot transfer as braft does it (docs/braft-compatibility.md §2.4), with no sockets, files or
// timers: what the leader answers to FileService get_file, which chunk a copying follower
// asks for next and what it does with each answer, and the order in which a follower
// installs what it copied. The runtime runs this code over Asio and real files
// (file_service.h); the simulator runs the same code over its virtual network and disks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "file_service.pb.h"
#include "storage.h"

namespace raftstore::runtime {

constexpr int64_t kMaxChunkBytes = 128 * 1024;  // braft's raft_max_byte_count_per_rpc

// The answer to get_file for one published snapshot: 0 and the response and attachment,
// or a brpc/errno code and its text.
struct FileReply {
  int32_t error_code = 0;
  std::string error_text;
  braft::GetFileResponse response;
  std::string attachment;  // [offset u64 BE][len u32 BE][bytes]
};

// A leader's published snapshot files.
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // Up to `count` bytes of file `name` from `offset` into *out, and the file's size. False
  // if the file cannot be read (a newer snapshot replaced it).
  virtual bool read(const std::string& name, uint64_t offset, uint64_t count, std::string* out,
                    uint64_t* size) = 0;
};

FileReply serve_get_file(const storage::SnapshotInfo& snapshot,
                         const braft::GetFileRequest& request, SnapshotSource& source);

// Where a follower puts the files it copies (a temp directory, or the simulator's memory).
class SnapshotSink {
 public:
  virtual ~SnapshotSink() = default;
  virtual storage::Status create(const std::string& name) = 0;  // the next file, empty
  virtual storage::Status write(uint64_t offset, std::string_view bytes) = 0;
  virtual storage::Status close() = 0;
  // Every file of `info` is there and matches its checksum.
  virtual storage::Status verify(const storage::SnapshotInfo& info) = 0;
};

// One copy of a leader's snapshot: the meta file first (the file list with checksums), then
// every file in chunks, then a check of every file; it must be the snapshot announced.
class SnapshotFetch {
 public:
  enum class State : uint8_t { Fetching, Done, Failed };
  SnapshotFetch(core::SnapshotMeta expect, int64_t reader_id, int64_t max_chunk = kMaxChunkBytes);

  State state() const { return state_; }
  // The get_file call to make while Fetching.
  const braft::GetFileRequest& request() const { return request_; }
  // The outcome of request(): a transport error (non-zero `transport_code`), or the
  // response frame's error code, payload and attachment. True if the same request should be
  // sent again after a pause (the leader throttled it, EAGAIN, as braft).
  bool on_reply(int32_t transport_code, const std::string& transport_text, int32_t error_code,
                const std::string& error_text, const std::string& payload,
                const std::string& attachment, SnapshotSink& sink);
  const storage::Status& error() const { return error_; }
  // The copied snapshot's meta and file list (once Done).
  const storage::SnapshotInfo& remote() const { return remote_; }
  uint64_t bytes() const { return bytes_; }  // file bytes received

 private:
  void ask(const std::string& name, int64_t offset);
  void next_file(SnapshotSink& sink);
  void fail(storage::Status st);

  core::SnapshotMeta expect_;
  int64_t max_chunk_;
  State state_ = State::Fetching;
  braft::GetFileRequest request_;
  storage::Status error_;
  storage::SnapshotInfo remote_;
  size_t file_ = 0;  // next file of remote_.files to copy
  std::string meta_bytes_;
  uint64_t bytes_ = 0;
};

// The order of a follower's install (braft's SnapshotExecutor): copy and check every file,
// publish the snapshot durably, and only then let the core adopt it, which answers the
// leader. The caller does what step() says and reports back.
class InstallOrder {
 public:
  enum class Step : uint8_t { Copy, Publish, Adopt, Fail, Done };
  Step step() const { return step_; }
  void copied(bool ok);
  void published(bool ok);
  void adopted();

 private:
  Step step_ = Step::Copy;
  bool published_ = false;
  bool adopted_ = false;
};

}  // namespace raftstore::runtime
