#include "file_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace raftstore::runtime {

namespace {

constexpr int32_t kEPERM = 1;
constexpr int32_t kEIO = 5;
constexpr int32_t kEAGAIN = 11;
constexpr int64_t kMaxReplyBytes = 4 << 20;  // whatever count a reader asks for
constexpr size_t kSegmentHeader = 12;

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_be(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

FileReply refuse(int32_t code, std::string text) {
  FileReply r;
  r.error_code = code;
  r.error_text = std::move(text);
  return r;
}

storage::Status copy_error(std::string what) {
  return storage::Status{storage::Code::Io, "snapshot copy: " + std::move(what)};
}

}  // namespace

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
  if (request.count() <= 0 || request.offset() < 0)
    return refuse(rpc::kEREQUEST, "Invalid request: count and offset must be positive");
  const std::string& name = request.filename();
  uint64_t offset = static_cast<uint64_t>(request.offset());
  uint64_t count = static_cast<uint64_t>(std::min(request.count(), kMaxReplyBytes));
  std::string data;
  bool eof = false;
  if (name == storage::kSnapshotMetaFile) {
    std::string meta = storage::encode_snapshot_info(snapshot.meta, snapshot.files);
    uint64_t from = std::min<uint64_t>(offset, meta.size());
    data = meta.substr(from, count);
    eof = from + data.size() >= meta.size();
  } else {
    bool listed = std::any_of(snapshot.files.begin(), snapshot.files.end(),
                              [&](const storage::SnapshotFile& f) { return f.name == name; });
    if (!listed) return refuse(kEPERM, "File=" + name + " is not in the snapshot");
    std::string path = snapshot.path + "/" + name;
    storage::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0)
      return refuse(kEIO, "Fail to open " + path);  // replaced by a newer snapshot
    uint64_t size = static_cast<uint64_t>(st.st_size);
    uint64_t want = offset >= size ? 0 : std::min(count, size - offset);
    data.resize(want);
    size_t got = 0;
    while (got < want) {
      ssize_t n =
          ::pread(fd.get(), data.data() + got, want - got, static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return refuse(kEIO, "Fail to read " + path);
      got += static_cast<size_t>(n);
    }
    eof = offset + want >= size;
  }
  FileReply r;
  r.response.set_eof(eof);
  r.response.set_read_size(static_cast<int64_t>(data.size()));
  if (!data.empty()) {
    put_be(r.attachment, offset, 8);
    put_be(r.attachment, data.size(), 4);
    r.attachment += data;
  }
  return r;
}

// --- SnapshotCopier ----------------------------------------------------------------------

SnapshotCopier::SnapshotCopier(Key, asio::io_context& io, std::string dir,
                               core::SnapshotMeta expect, uint32_t call_timeout_ms, Done done)
    : dir_(std::move(dir)),
      expect_(std::move(expect)),
      call_timeout_ms_(call_timeout_ms),
      done_(std::move(done)),
      retry_timer_(io) {}

std::shared_ptr<SnapshotCopier> SnapshotCopier::start(asio::io_context& io, const std::string& uri,
                                                      std::string dir,
                                                      const core::SnapshotMeta& expect,
                                                      uint32_t call_timeout_ms, Done done,
                                                      rpc::ChannelOptions channel) {
  auto c = std::make_shared<SnapshotCopier>(Key{}, io, std::move(dir), expect, call_timeout_ms,
                                            std::move(done));
  auto where = parse_snapshot_uri(uri);
  if (!where) {
    asio::post(io, [c, uri] { c->finish(copy_error("malformed uri " + uri)); });
    return c;
  }
  c->reader_id_ = where->reader_id;
  c->channel_ = rpc::Channel::create(io, where->at, channel);
  // The meta first, whole (braft asks for UINT_MAX bytes and accepts a partial answer).
  c->fetch(storage::kSnapshotMetaFile, 0, 0xffffffffLL);
  return c;
}

void SnapshotCopier::cancel() {
  done_ = nullptr;
  retry_timer_.cancel();
  if (channel_) channel_->close();
}

void SnapshotCopier::fetch(const std::string& name, int64_t offset, int64_t count) {
  braft::GetFileRequest req;
  req.set_reader_id(reader_id_);
  req.set_filename(name);
  req.set_count(count);
  req.set_offset(offset);
  req.set_read_partly(true);
  channel_->call("braft.FileService", "get_file", req.SerializeAsString(), "", call_timeout_ms_,
                 [self = shared_from_this(), name, offset](int32_t code, const std::string& text,
                                                           rpc::Frame frame) {
                   self->on_chunk(name, offset, code, text, frame);
                 });
}

void SnapshotCopier::on_chunk(const std::string& name, int64_t offset, int32_t code,
                              const std::string& text, const rpc::Frame& frame) {
  if (!done_) return;  // cancelled
  if (code != 0) return finish(copy_error("get_file " + name + ": " + text));
  const auto& meta = frame.meta.response();
  if (meta.error_code() == kEAGAIN) {  // throttled: ask again, as braft does
    retry_timer_.expires_after(std::chrono::milliseconds(100));
    int64_t count = name == storage::kSnapshotMetaFile ? 0xffffffffLL : kMaxChunkBytes;
    retry_timer_.async_wait([self = shared_from_this(), name, offset, count](std::error_code ec) {
      if (!ec && self->done_) self->fetch(name, offset, count);
    });
    return;
  }
  if (meta.error_code() != 0)
    return finish(copy_error("get_file " + name + ": [E" + std::to_string(meta.error_code()) + "]" +
                             meta.error_text()));
  braft::GetFileResponse resp;
  if (!resp.ParseFromString(frame.payload))
    return finish(copy_error("malformed GetFileResponse for " + name));
  // The attachment: segments of [offset u64][len u32][bytes].
  const std::string& a = frame.attachment;
  int64_t received = 0;
  for (size_t at = 0; at < a.size();) {
    if (a.size() - at < kSegmentHeader) return finish(copy_error("truncated chunk of " + name));
    uint64_t seg_offset = get_be(a.data() + at, 8);
    uint64_t len = get_be(a.data() + at + 8, 4);
    at += kSegmentHeader;
    if (len > a.size() - at) return finish(copy_error("truncated chunk of " + name));
    const char* bytes = a.data() + at;
    at += len;
    received += static_cast<int64_t>(len);
    if (name == storage::kSnapshotMetaFile) {
      if (seg_offset != meta_bytes_.size())
        return finish(copy_error("out-of-order chunk of " + name));
      meta_bytes_.append(bytes, len);
      continue;
    }
    for (size_t done = 0; done < len;) {
      ssize_t n =
          ::pwrite(out_.get(), bytes + done, len - done, static_cast<off_t>(seg_offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return finish(storage::os_error("write " + dir_ + "/" + name));
      done += static_cast<size_t>(n);
    }
  }
  int64_t advanced = resp.has_read_size() ? resp.read_size() : received;
  if (!resp.eof()) {
    if (advanced <= 0) return finish(copy_error("no progress reading " + name));
    int64_t count = name == storage::kSnapshotMetaFile ? 0xffffffffLL : kMaxChunkBytes;
    return fetch(name, offset + advanced, count);
  }
  if (name == storage::kSnapshotMetaFile) {
    if (!storage::decode_snapshot_info(meta_bytes_, &remote_))
      return finish(copy_error("malformed " + name));
    if (remote_.meta.last_included_index != expect_.last_included_index ||
        remote_.meta.last_included_term != expect_.last_included_term)
      return finish(copy_error("the leader's snapshot is not the one announced"));
  } else {
    out_ = storage::Fd();
    ++file_;
  }
  next_file();
}

void SnapshotCopier::next_file() {
  if (file_ == remote_.files.size()) {
    remote_.path = dir_;
    return finish(storage::SnapshotStore::verify(remote_));
  }
  std::string path = dir_ + "/" + remote_.files[file_].name;
  out_ = storage::Fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out_) return finish(storage::os_error("create " + path));
  fetch(remote_.files[file_].name, 0, kMaxChunkBytes);
}

void SnapshotCopier::finish(storage::Status st) {
  auto done = std::move(done_);
  done_ = nullptr;
  retry_timer_.cancel();
  out_ = storage::Fd();
  if (channel_) channel_->close();
  if (done) done(st);
}

}  // namespace raftstore::runtime
