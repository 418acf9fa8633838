#include "file_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>

#include "node_host_internal.h"

namespace raftstore::runtime {

namespace {

storage::Status copy_error(std::string what) {
  return storage::Status{storage::Code::Io, "snapshot copy: " + std::move(what)};
}

// A published snapshot's files, read with pread; a file removed since (a newer snapshot
// replaced this one) cannot be read.
class DirSource : public SnapshotSource {
 public:
  explicit DirSource(std::string dir) : dir_(std::move(dir)) {}
  bool read(const std::string& name, uint64_t offset, uint64_t count, std::string* out,
            uint64_t* size) override {
    std::string path = dir_ + "/" + name;
    storage::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0) return false;
    *size = static_cast<uint64_t>(st.st_size);
    uint64_t want = offset >= *size ? 0 : std::min(count, *size - offset);
    out->resize(want);
    size_t got = 0;
    while (got < want) {
      ssize_t n =
          ::pread(fd.get(), out->data() + got, want - got, static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return true;
  }

 private:
  std::string dir_;
};

}  // namespace

// The copied files, in the (empty) temp directory the snapshot will be published from.
// Each file's CRC32C is computed as its chunks arrive (in order), so the final check reads
// nothing back: re-reading a large snapshot on the host's thread would hold every group's
// heartbeats for as long.
class SnapshotCopier::Files : public SnapshotSink {
 public:
  explicit Files(std::string dir) : dir_(std::move(dir)) {}
  storage::Status create(const std::string& name) override {
    std::string path = dir_ + "/" + name;
    out_ = storage::Fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    current_ = &sums_[name];
    *current_ = Running{};
    return out_ ? storage::Status{} : storage::os_error("create " + path);
  }
  storage::Status write(uint64_t offset, std::string_view bytes) override {
    for (size_t done = 0; done < bytes.size();) {
      ssize_t n = ::pwrite(out_.get(), bytes.data() + done, bytes.size() - done,
                           static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return storage::os_error("write in " + dir_);
      done += static_cast<size_t>(n);
    }
    Running& r = *current_;
    if (!r.known || offset > r.length) {
      r.known = false;                              // a gap: the check reads the file instead
    } else if (offset + bytes.size() > r.length) {  // a chunk asked again overlaps the sum
      size_t skip = static_cast<size_t>(r.length - offset);
      r.crc = storage::crc32c(bytes.data() + skip, bytes.size() - skip, r.crc);
      r.length = offset + bytes.size();
    }
    return {};
  }
  storage::Status close() override {
    out_ = storage::Fd();
    return {};
  }
  storage::Status verify(const storage::SnapshotInfo& info) override {
    for (const auto& f : info.files) {
      auto it = sums_.find(f.name);
      if (it == sums_.end() || !it->second.known) {
        storage::SnapshotInfo one = info;
        one.path = dir_;
        one.files = {f};
        if (auto st = storage::SnapshotStore::verify(one); !st.ok()) return st;
      } else if (it->second.crc != f.crc32c) {
        return {storage::Code::CorruptLog, dir_ + "/" + f.name + ": checksum mismatch"};
      }
    }
    return {};
  }

 private:
  struct Running {
    uint32_t crc = 0;
    uint64_t length = 0;
    bool known = true;
  };
  std::string dir_;
  storage::Fd out_;
  std::map<std::string, Running> sums_;
  Running* current_ = nullptr;
};

std::string format_snapshot_uri(const core::PeerId& leader, int64_t reader_id) {
  std::string id = leader.to_string();  // ip:port:idx[:role]
  std::string endpoint = id.substr(0, id.find(':', id.find(':') + 1));
  return "remote://" + endpoint + "/" + std::to_string(reader_id);
}

std::optional<SnapshotUri> parse_snapshot_uri(const std::string& uri) {
  const std::string scheme = "remote://";
  if (uri.rfind(scheme, 0) != 0) return std::nullopt;
  std::string rest = uri.substr(scheme.size());
  size_t slash = rest.find('/');
  size_t colon = rest.rfind(':', slash);
  if (slash == std::string::npos || colon == std::string::npos || colon > slash)
    return std::nullopt;
  try {
    SnapshotUri out;
    size_t used = 0;
    std::string reader = rest.substr(slash + 1);
    out.reader_id = std::stoll(reader, &used);
    if (used != reader.size()) return std::nullopt;
    int port = std::stoi(rest.substr(colon + 1, slash - colon - 1), &used);
    if (used != slash - colon - 1 || port <= 0 || port > 65535) return std::nullopt;
    out.at = asio::ip::tcp::endpoint(asio::ip::make_address(rest.substr(0, colon)),
                                     static_cast<uint16_t>(port));
    return out;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

FileReply read_snapshot_file(const storage::SnapshotInfo& snapshot,
                             const braft::GetFileRequest& request) {
  DirSource source(snapshot.path);
  return serve_get_file(snapshot, request, source);
}

// --- SnapshotCopier ----------------------------------------------------------------------

SnapshotCopier::SnapshotCopier(Key, asio::io_context& io, std::string dir,
                               core::SnapshotMeta expect, int64_t reader_id,
                               uint32_t call_timeout_ms, Done done)
    : call_timeout_ms_(call_timeout_ms),
      done_(std::move(done)),
      retry_timer_(io),
      files_(std::make_unique<Files>(std::move(dir))),
      fetch_(std::make_unique<SnapshotFetch>(std::move(expect), reader_id)) {}

SnapshotCopier::~SnapshotCopier() = default;

std::shared_ptr<SnapshotCopier> SnapshotCopier::start(asio::io_context& io, const std::string& uri,
                                                      std::string dir,
                                                      const core::SnapshotMeta& expect,
                                                      uint32_t call_timeout_ms, Done done,
                                                      rpc::ChannelOptions channel) {
  auto where = parse_snapshot_uri(uri);
  auto c = std::make_shared<SnapshotCopier>(Key{}, io, std::move(dir), expect,
                                            where ? where->reader_id : 0, call_timeout_ms,
                                            std::move(done));
  if (!where) {
    asio::post(io, [c, uri] { c->finish(copy_error("malformed uri " + uri)); });
    return c;
  }
  c->channel_ = rpc::Channel::create(io, where->at, channel);
  c->call();
  return c;
}

void SnapshotCopier::cancel() {
  done_ = nullptr;
  retry_timer_.cancel();
  if (channel_) channel_->close();
}

void SnapshotCopier::call() {
  channel_->call(
      "braft.FileService", "get_file", fetch_->request().SerializeAsString(), "", call_timeout_ms_,
      [self = shared_from_this()](int32_t code, const std::string& text, rpc::Frame frame) {
        self->on_reply(code, text, frame);
      });
}

void SnapshotCopier::on_reply(int32_t code, const std::string& text, const rpc::Frame& frame) {
  if (!done_) return;  // cancelled
  const auto& meta = frame.meta.response();
  bool again = fetch_->on_reply(code, text, meta.error_code(), meta.error_text(), frame.payload,
                                frame.attachment, *files_);
  if (again) {
    retry_timer_.expires_after(std::chrono::milliseconds(100));
    retry_timer_.async_wait([self = shared_from_this()](std::error_code ec) {
      if (!ec && self->done_) self->call();
    });
    return;
  }
  switch (fetch_->state()) {
    case SnapshotFetch::State::Fetching:
      return call();
    case SnapshotFetch::State::Done:
      return finish({});
    case SnapshotFetch::State::Failed:
      return finish(fetch_->error());
  }
}

void SnapshotCopier::finish(storage::Status st) {
  auto done = std::move(done_);
  done_ = nullptr;
  retry_timer_.cancel();
  files_->close();
  if (channel_) channel_->close();
  if (done) done(st);
}

int64_t NodeHost::open_reader(storage::SnapshotInfo snapshot, uint64_t ttl_ms,
                              std::shared_ptr<const void> loan,
                              std::function<void(uint64_t bytes)> on_read) {
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
  readers_[id] =
      Reader{std::move(snapshot), ttl_ms, now + ttl_ms, std::move(loan), std::move(on_read)};
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
  it->second.expires_ms = now_ms() + it->second.ttl_ms;
  auto on_read = it->second.on_read;  // may close readers
  uint64_t bytes = r.attachment.size();
  respond(0, "", r.response.SerializeAsString(), r.attachment);
  if (on_read) on_read(bytes);
}

}  // namespace raftstore::runtime
