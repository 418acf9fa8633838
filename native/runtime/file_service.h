// Snapshot copy as braft does it (braft-protocol.md §2.4). The leader names a published
// snapshot by a reader id in InstallSnapshot's uri (remote://ip:port/reader_id) and serves
// its files through FileService get_file; the follower first reads __raft_snapshot_meta
// (the file list with CRC32Cs), then every file in 128 KiB chunks, and checks each file
// against its checksum before the snapshot is published locally.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "file_service.pb.h"
#include "storage.h"
#include "transport.h"

namespace raftstore::runtime {

constexpr int64_t kMaxChunkBytes = 128 * 1024;  // braft's raft_max_byte_count_per_rpc

struct SnapshotUri {
  asio::ip::tcp::endpoint at;
  int64_t reader_id = 0;
};
std::string format_snapshot_uri(const core::PeerId& leader, int64_t reader_id);
std::optional<SnapshotUri> parse_snapshot_uri(const std::string& uri);

// The answer to get_file for one published snapshot: 0 and the response and attachment,
// or a brpc/errno code and its text.
struct FileReply {
  int32_t error_code = 0;
  std::string error_text;
  braft::GetFileResponse response;
  std::string attachment;  // [offset u64 BE][len u32 BE][bytes]
};
FileReply read_snapshot_file(const storage::SnapshotInfo& snapshot,
                             const braft::GetFileRequest& request);

// Copies the snapshot at `uri` into `dir` (an empty directory) on the io_context's thread.
// `done` gets Ok once every file is there and matches its checksum, and the remote meta
// names `expect`'s index and term; otherwise an error, and the copy stops.
class SnapshotCopier : public std::enable_shared_from_this<SnapshotCopier> {
 public:
  using Done = std::function<void(storage::Status)>;
  // `call_timeout_ms` bounds each get_file call: a stalled copy fails after it (and the
  // leader sends the snapshot again) rather than waiting for the whole install's deadline.
  static std::shared_ptr<SnapshotCopier> start(asio::io_context& io, const std::string& uri,
                                               std::string dir, const core::SnapshotMeta& expect,
                                               uint32_t call_timeout_ms, Done done,
                                               rpc::ChannelOptions channel = {});
  void cancel();  // `done` is not called after this

  struct Key {};
  SnapshotCopier(Key, asio::io_context& io, std::string dir, core::SnapshotMeta expect,
                 uint32_t call_timeout_ms, Done done);

 private:
  void fetch(const std::string& name, int64_t offset, int64_t count);
  void on_chunk(const std::string& name, int64_t offset, int32_t code, const std::string& text,
                const rpc::Frame& frame);
  void next_file();
  void finish(storage::Status st);

  std::string dir_;
  core::SnapshotMeta expect_;
  uint32_t call_timeout_ms_;
  Done done_;
  std::shared_ptr<rpc::Channel> channel_;
  asio::steady_timer retry_timer_;
  int64_t reader_id_ = 0;
  storage::SnapshotInfo remote_;  // the file list, once the meta is read
  size_t file_ = 0;               // next file of remote_.files to copy
  storage::Fd out_;
  std::string meta_bytes_;
};

}  // namespace raftstore::runtime
