// The sockets and files around snapshot_transfer.h. The leader names a published snapshot
// by a reader id in InstallSnapshot's uri (remote://ip:port/reader_id) and serves its files
// through FileService get_file; the follower copies them into its temp directory with a
// SnapshotFetch, one get_file call at a time, before the snapshot is published locally.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "snapshot_transfer.h"
#include "storage.h"
#include "transport.h"

namespace raftstore::runtime {

struct SnapshotUri {
  asio::ip::tcp::endpoint at;
  int64_t reader_id = 0;
};
std::string format_snapshot_uri(const core::PeerId& leader, int64_t reader_id);
std::optional<SnapshotUri> parse_snapshot_uri(const std::string& uri);

// get_file over a published snapshot's directory (serve_get_file with its files).
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
                 int64_t reader_id, uint32_t call_timeout_ms, Done done);
  ~SnapshotCopier();

 private:
  class Files;
  void call();
  void on_reply(int32_t code, const std::string& text, const rpc::Frame& frame);
  void finish(storage::Status st);

  uint32_t call_timeout_ms_;
  Done done_;
  std::shared_ptr<rpc::Channel> channel_;
  asio::steady_timer retry_timer_;
  std::unique_ptr<Files> files_;
  std::unique_ptr<SnapshotFetch> fetch_;
};

}  // namespace raftstore::runtime
