#include "storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string_view>

namespace raftstore::storage {

using core::Entry;
using core::EntryType;

const char* code_string(Code c) {
  switch (c) {
    case Code::Ok:
      return "OK";
    case Code::CorruptLog:
      return "ERR_RAFT_CORRUPT_LOG";
    case Code::Locked:
      return "ERR_RAFT_LOCKED";
    case Code::DiskFull:
      return "ERR_RAFT_DISK_FULL";
    case Code::Io:
      return "ERR_RAFT_IO";
    case Code::InvalidArgument:
      return "ERR_RAFT_BAD_ARGUMENT";
  }
  return "?";
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Status os_error(const std::string& what, int e) {
  Code c = (e == ENOSPC || e == EFBIG || e == EDQUOT) ? Code::DiskFull : Code::Io;
  return Status{c, what + ": " + std::strerror(e)};
}

namespace {

constexpr size_t kHeader = 24;
constexpr uint8_t kCrc32c = 1;  // braft's checksum type for CRC32C ("crc32")

Status err(Code c, std::string msg) { return Status{c, std::move(msg)}; }

// --- CRC32C (Castagnoli), table driven ------------------------------------------------

// Slicing-by-8 tables: t[k][b] is the CRC of byte b followed by k zero bytes, so eight
// bytes are folded per step instead of one.
struct CrcTable {
  uint32_t t[8][256];
  CrcTable() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
};

#if defined(__x86_64__)
// SSE4.2's crc32 instruction computes CRC32C: the log's and snapshots' checksums at memory
// speed (a 3 GiB snapshot is verified at every start).
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const unsigned char* p, size_t size,
                                                        uint32_t crc) {
  uint64_t c = crc;
  for (; size > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0; --size)
    c = __builtin_ia32_crc32qi(static_cast<uint32_t>(c), *p++);
  for (; size >= 8; size -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  for (; size > 0; --size) c = __builtin_ia32_crc32qi(static_cast<uint32_t>(c), *p++);
  return static_cast<uint32_t>(c);
}
#endif

// --- big-endian integers ---------------------------------------------------------------

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_be(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// --- the little protobuf we need (braft's StablePBMeta, LogPBMeta, ConfigurationPBMeta) --

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_varint_field(std::string& out, int field, uint64_t v) {
  put_varint(out, static_cast<uint64_t>(field) << 3);
  put_varint(out, v);
}

void put_bytes_field(std::string& out, int field, std::string_view v) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | 2);
  put_varint(out, v.size());
  out.append(v);
}

bool get_varint(std::string_view& in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    auto b = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// Calls on_field(field, varint, bytes) for varint and length-delimited fields; skips fixed
// width ones. Returns false on malformed input.
bool parse_fields(std::string_view in,
                  const std::function<bool(int, uint64_t, std::string_view)>& on_field) {
  while (!in.empty()) {
    uint64_t key = 0, v = 0;
    if (!get_varint(in, &key)) return false;
    int field = static_cast<int>(key >> 3);
    switch (key & 7) {
      case 0:
        if (!get_varint(in, &v) || !on_field(field, v, {})) return false;
        break;
      case 2:
        if (!get_varint(in, &v) || v > in.size()) return false;
        if (!on_field(field, 0, in.substr(0, v))) return false;
        in.remove_prefix(v);
        break;
      case 1:
        if (in.size() < 8) return false;
        in.remove_prefix(8);
        break;
      case 5:
        if (in.size() < 4) return false;
        in.remove_prefix(4);
        break;
      default:
        return false;
    }
  }
  return true;
}

// --- files -----------------------------------------------------------------------------

Status mkdirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i < path.size() && path[i] != '/') continue;
    cur = path.substr(0, i);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return os_error("mkdir " + cur);
  }
  return Status{};
}

Status fsync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return os_error("open " + dir);
  if (::fsync(fd.get()) != 0) return os_error("fsync " + dir);
  return Status{};
}

Status write_all(int fd, const std::string& bytes, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n =
        ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("write " + path);
    done += static_cast<size_t>(n);
  }
  return Status{};
}

Status read_file(const std::string& path, std::string* out) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return os_error("open " + path);
  out->clear();
  char buf[1 << 16];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("read " + path);
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  return Status{};
}

// braft's ProtoBufFile: [length u32 BE][message], replaced atomically.
Status write_pb_file(const std::string& dir, const std::string& name, const std::string& msg) {
  std::string bytes;
  put_be(bytes, msg.size(), 4);
  bytes += msg;
  std::string path = dir + "/" + name, tmp = path + ".tmp";
  {
    Fd fd(::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644));
    if (!fd) return os_error("open " + tmp);
    if (auto st = write_all(fd.get(), bytes, 0, tmp); !st.ok()) return st;
    if (::fsync(fd.get()) != 0) return os_error("fsync " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return os_error("rename " + tmp);
  return fsync_dir(dir);
}

// Reads a ProtoBufFile; *found is false when it does not exist.
Status read_pb_file(const std::string& path, std::string* msg, bool* found) {
  struct stat st;
  *found = ::stat(path.c_str(), &st) == 0;
  if (!*found) return errno == ENOENT ? Status{} : os_error("stat " + path);
  std::string bytes;
  if (auto s = read_file(path, &bytes); !s.ok()) return s;
  if (bytes.size() < 4 ||
      get_be(reinterpret_cast<const unsigned char*>(bytes.data()), 4) != bytes.size() - 4)
    return err(Code::CorruptLog, path + ": bad length prefix");
  *msg = bytes.substr(4);
  return Status{};
}

// --- entries ---------------------------------------------------------------------------

std::string encode_conf(const core::Configuration& c) {
  std::string out;
  for (const auto& p : c.peers) put_bytes_field(out, 1, p.to_string());
  for (const auto& p : c.old_peers) put_bytes_field(out, 2, p.to_string());
  for (const auto& p : c.learners) put_bytes_field(out, 3, p.to_string());  // ours
  return out;
}

bool decode_conf(std::string_view in, core::Configuration* c) {
  return parse_fields(in, [&](int field, uint64_t, std::string_view bytes) {
    if (field < 1 || field > 3) return true;  // unknown fields are ignored
    auto id = core::PeerId::parse(bytes);
    if (!id) return false;
    core::insert_sorted(field == 1 ? c->peers : field == 2 ? c->old_peers : c->learners, *id);
    return true;
  });
}

void append_record(std::string& out, const Entry& e) {
  std::string data;
  if (e.type == EntryType::Configuration && e.conf)
    data = encode_conf(*e.conf);
  else if (e.data)
    data = *e.data;
  size_t start = out.size();
  put_be(out, e.term, 8);
  out.push_back(static_cast<char>(e.type));
  out.push_back(static_cast<char>(kCrc32c));
  put_be(out, 0, 2);
  put_be(out, data.size(), 4);
  put_be(out, crc32c(data.data(), data.size()), 4);
  put_be(out, crc32c(out.data() + start, 20), 4);
  out += data;
}

struct RecordView {
  uint64_t term;
  EntryType type;
  std::string_view data;
};

enum class Bad { None, Short, Header, Data, Content };

// Parses the record at `p` (with `avail` bytes available).
Bad parse_record(const unsigned char* p, size_t avail, RecordView* out, size_t* length) {
  if (avail < kHeader) return Bad::Short;
  if (crc32c(p, 20) != get_be(p + 20, 4) || p[9] != kCrc32c) return Bad::Header;
  uint64_t len = get_be(p + 12, 4);
  *length = kHeader + len;
  if (avail < *length) return Bad::Short;
  if (crc32c(p + kHeader, len) != get_be(p + 16, 4)) return Bad::Data;
  if (p[8] > static_cast<uint8_t>(EntryType::Configuration)) return Bad::Content;
  out->term = get_be(p, 8);
  out->type = static_cast<EntryType>(p[8]);
  out->data = std::string_view(reinterpret_cast<const char*>(p + kHeader), len);
  return Bad::None;
}

bool to_entry(const RecordView& r, uint64_t index, Entry* e) {
  e->index = index;
  e->term = r.term;
  e->type = r.type;
  e->data.reset();
  e->conf.reset();
  if (r.type == EntryType::Configuration) {
    core::Configuration c;
    if (!decode_conf(r.data, &c)) return false;
    e->conf = std::make_shared<const core::Configuration>(std::move(c));
  } else if (r.type == EntryType::Data) {
    e->data = std::make_shared<const std::string>(r.data);
  }
  return true;
}

const char* bad_name(Bad b) {
  switch (b) {
    case Bad::Short:
      return "incomplete record";
    case Bad::Header:
      return "header checksum mismatch";
    case Bad::Data:
      return "data checksum mismatch";
    case Bad::Content:
      return "unknown entry type";
    case Bad::None:
      break;
  }
  return "ok";
}

std::string closed_name(uint64_t first, uint64_t last) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "log_%020" PRIu64 "_%020" PRIu64, first, last);
  return buf;
}

std::string open_name(uint64_t first) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "log_inprogress_%020" PRIu64, first);
  return buf;
}

}  // namespace

uint32_t crc32c_portable(const void* data, size_t size, uint32_t crc) {
  static const CrcTable table;
  const auto& t = table.t;
  auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (; size >= 8; size -= 8, p += 8) {
    uint32_t lo =
        crc ^ (uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24);
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
          t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
  }
  for (; size > 0; --size) crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
#if defined(__x86_64__)
  static const bool sse42 = __builtin_cpu_supports("sse4.2");
  if (sse42) return ~crc32c_sse42(static_cast<const unsigned char*>(data), size, ~crc);
#endif
  return crc32c_portable(data, size, crc);
}

// --- DirLock ---------------------------------------------------------------------------

Status DirLock::acquire(const std::string& dir, std::unique_ptr<DirLock>* out) {
  if (auto st = mkdirs(dir); !st.ok()) return st;
  std::string path = dir + "/LOCK";
  Fd fd(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  if (!fd) return os_error("open " + path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return err(Code::Locked, dir + " is in use by another process");
    return os_error("flock " + path);
  }
  *out = std::make_unique<DirLock>(Key{}, std::move(fd));
  return Status{};
}

// --- MetaStore -------------------------------------------------------------------------

Status MetaStore::load(core::HardState* out) const {
  *out = core::HardState{};
  std::string msg;
  bool found = false;
  std::string path = dir_ + "/raft_meta";
  if (auto st = read_pb_file(path, &msg, &found); !st.ok() || !found) return st;
  bool ok = parse_fields(msg, [&](int field, uint64_t v, std::string_view bytes) {
    if (field == 1) out->term = v;
    if (field == 2) {
      auto id = core::PeerId::parse(bytes);
      if (!id) return false;
      out->voted_for = *id;
    }
    return true;
  });
  if (!ok) return err(Code::CorruptLog, path + ": malformed StablePBMeta");
  return Status{};
}

Status MetaStore::save(const core::HardState& hs) {
  if (auto st = mkdirs(dir_); !st.ok()) return st;
  std::string msg;
  put_varint_field(msg, 1, hs.term);
  put_bytes_field(msg, 2, hs.voted_for.to_string());  // braft writes 0.0.0.0:0:0:0 for none
  return write_pb_file(dir_, "raft_meta", msg);
}

// --- SegmentLog ------------------------------------------------------------------------

struct SegmentLog::Segment {
  uint64_t first = 0;
  uint64_t last = 0;  // first - 1 while empty
  bool open = false;
  std::string path;
  Fd fd;
  std::vector<uint64_t> offsets;  // of each record
  uint64_t size = 0;
};

SegmentLog::SegmentLog(Key, std::string dir, LogOptions options)
    : dir_(std::move(dir)), opt_(options) {}

SegmentLog::~SegmentLog() = default;

Status SegmentLog::open(const std::string& dir, LogOptions options,
                        std::unique_ptr<SegmentLog>* out, Recovery* recovery) {
  if (auto st = mkdirs(dir); !st.ok()) return st;
  auto log = std::make_unique<SegmentLog>(Key{}, dir, options);
  Recovery scratch;
  if (auto st = log->recover(recovery ? recovery : &scratch); !st.ok()) return st;
  *out = std::move(log);
  return Status{};
}

Status SegmentLog::recover(Recovery* recovery) {
  std::string msg;
  bool found = false;
  if (auto st = read_pb_file(dir_ + "/log_meta", &msg, &found); !st.ok()) return st;
  if (found && !parse_fields(msg, [&](int field, uint64_t v, std::string_view) {
        if (field == 1) first_index_ = v;
        return true;
      }))
    return err(Code::CorruptLog, dir_ + "/log_meta: malformed LogPBMeta");

  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir_.c_str()), ::closedir);
  if (!d) return os_error("opendir " + dir_);
  while (dirent* ent = ::readdir(d.get())) {
    std::string name = ent->d_name;
    uint64_t a = 0, b = 0;
    auto seg = std::make_unique<Segment>();
    if (std::sscanf(name.c_str(), "log_inprogress_%" SCNu64, &a) == 1 && name == open_name(a)) {
      seg->first = a;
      seg->open = true;
    } else if (std::sscanf(name.c_str(), "log_%" SCNu64 "_%" SCNu64, &a, &b) == 2 &&
               name == closed_name(a, b) && b >= a) {
      seg->first = a;
      seg->last = b;
    } else {
      if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0)
        ::unlink((dir_ + "/" + name).c_str());  // an interrupted meta write
      continue;
    }
    seg->path = dir_ + "/" + name;
    segments_.push_back(std::move(seg));
  }
  std::sort(segments_.begin(), segments_.end(),
            [](const auto& x, const auto& y) { return x->first < y->first; });
  for (size_t i = 0; i < segments_.size(); ++i) {
    Segment& s = *segments_[i];
    bool is_last = i + 1 == segments_.size();
    if (s.open && !is_last)
      return err(Code::CorruptLog, s.path + ": an open segment is followed by another");
    if (auto st = scan(s, is_last, recovery); !st.ok()) return st;
  }
  // Whole segments below the first index are leftovers of an interrupted compaction.
  while (!segments_.empty() && segments_.front()->last < first_index_) {
    ::unlink(segments_.front()->path.c_str());
    segments_.erase(segments_.begin());
    dir_dirty_ = true;
  }
  for (size_t i = 0; i < segments_.size(); ++i) {
    const Segment& s = *segments_[i];
    uint64_t expect = i == 0 ? first_index_ : segments_[i - 1]->last + 1;
    if (i == 0 ? s.first > expect : s.first != expect)
      return err(Code::CorruptLog,
                 s.path + ": expected the log to continue at index " + std::to_string(expect));
  }
  last_index_ = segments_.empty() ? first_index_ - 1 : segments_.back()->last;
  return dir_dirty_ ? sync() : Status{};
}

Status SegmentLog::scan(Segment& seg, bool is_last, Recovery* recovery) {
  std::string bytes;
  if (auto st = read_file(seg.path, &bytes); !st.ok()) return st;
  auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t off = 0;
  Bad bad = Bad::None;
  size_t length = 0;
  while (off < bytes.size()) {
    RecordView r;
    bad = parse_record(p + off, bytes.size() - off, &r, &length);
    if (bad != Bad::None) break;
    seg.offsets.push_back(off);
    off += length;
  }
  if (bad != Bad::None) {
    // A torn tail: the last write of the open segment never completed. It is incomplete,
    // zero-filled (the size reached the disk, the data did not), or its data is damaged up
    // to the end of the file. Anything else is corruption: refuse rather than guess.
    bool zeros = std::all_of(bytes.begin() + static_cast<ptrdiff_t>(off), bytes.end(),
                             [](char c) { return c == 0; });
    bool torn = seg.open && is_last &&
                (bad == Bad::Short || zeros || (bad == Bad::Data && off + length == bytes.size()));
    if (!torn)
      return err(Code::CorruptLog, seg.path + ": " + bad_name(bad) + " at offset " +
                                       std::to_string(off) + " (index " +
                                       std::to_string(seg.first + seg.offsets.size()) + ")");
    recovery->torn_tail = true;
    recovery->file = seg.path;
    recovery->offset = off;
    recovery->bytes_dropped = bytes.size() - off;
  }
  int flags = seg.open ? O_RDWR : O_RDONLY;
  seg.fd = Fd(::open(seg.path.c_str(), flags | O_CLOEXEC));
  if (!seg.fd) return os_error("open " + seg.path);
  if (recovery->torn_tail && recovery->file == seg.path) {
    if (::ftruncate(seg.fd.get(), static_cast<off_t>(off)) != 0 || ::fsync(seg.fd.get()) != 0)
      return os_error("truncate " + seg.path);
  }
  seg.size = off;
  if (seg.open) {
    seg.last = seg.first + seg.offsets.size() - 1;
  } else if (seg.offsets.size() != seg.last - seg.first + 1) {
    return err(Code::CorruptLog, seg.path + ": holds " + std::to_string(seg.offsets.size()) +
                                     " records, its name says " +
                                     std::to_string(seg.last - seg.first + 1));
  }
  return Status{};
}

Status SegmentLog::open_new_segment(uint64_t first) {
  auto seg = std::make_unique<Segment>();
  seg->first = first;
  seg->last = first - 1;
  seg->open = true;
  seg->path = dir_ + "/" + open_name(first);
  seg->fd = Fd(::open(seg->path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644));
  if (!seg->fd) return os_error("open " + seg->path);
  segments_.push_back(std::move(seg));
  dir_dirty_ = true;
  return Status{};
}

Status SegmentLog::close_open_segment() {
  Segment& s = *segments_.back();
  if (::fdatasync(s.fd.get()) != 0) return os_error("fsync " + s.path);
  std::string path = dir_ + "/" + closed_name(s.first, s.last);
  if (::rename(s.path.c_str(), path.c_str()) != 0) return os_error("rename " + s.path);
  s.path = path;
  s.open = false;
  dir_dirty_ = true;
  return Status{};
}

Status SegmentLog::append(const std::vector<Entry>& entries) {
  for (size_t i = 0; i < entries.size(); ++i)
    if (entries[i].index != last_index_ + 1 + i)
      return err(Code::InvalidArgument, "append of index " + std::to_string(entries[i].index) +
                                            " after " + std::to_string(last_index_ + i));
  size_t i = 0;
  while (i < entries.size()) {
    if (segments_.empty() || !segments_.back()->open) {
      if (auto st = open_new_segment(entries[i].index); !st.ok()) return st;
    }
    Segment& s = *segments_.back();
    std::string buf;
    std::vector<uint64_t> offsets;
    for (; i < entries.size(); ++i) {
      bool full = s.size + buf.size() >= opt_.max_segment_bytes;
      if (full && (s.size > 0 || !buf.empty())) break;
      offsets.push_back(s.size + buf.size());
      append_record(buf, entries[i]);
    }
    if (!buf.empty()) {
      if (auto st = write_all(s.fd.get(), buf, s.size, s.path); !st.ok()) {
        // Leave the file as it was, so that a later retry or restart sees whole records;
        // if even that fails, recovery cuts the torn tail.
        [[maybe_unused]] int rc = ::ftruncate(s.fd.get(), static_cast<off_t>(s.size));
        return st;
      }
      s.offsets.insert(s.offsets.end(), offsets.begin(), offsets.end());
      s.size += buf.size();
      s.last += offsets.size();
      last_index_ = s.last;
    }
    if (i < entries.size())
      if (auto st = close_open_segment(); !st.ok()) return st;
  }
  return Status{};
}

Status SegmentLog::sync() {
  if (!segments_.empty() && segments_.back()->open && ::fdatasync(segments_.back()->fd.get()) != 0)
    return os_error("fsync " + segments_.back()->path);
  if (dir_dirty_) {
    if (auto st = fsync_dir(dir_); !st.ok()) return st;
    dir_dirty_ = false;
  }
  return Status{};
}

Status SegmentLog::truncate_suffix(uint64_t from) {
  if (from > last_index_) return Status{};
  from = std::max(from, first_index_);
  while (!segments_.empty()) {
    Segment& s = *segments_.back();
    if (s.first >= from) {
      if (::unlink(s.path.c_str()) != 0) return os_error("unlink " + s.path);
      segments_.pop_back();
      dir_dirty_ = true;
      continue;
    }
    size_t keep = from - s.first;
    if (keep < s.offsets.size()) {
      uint64_t size = s.offsets[keep];
      if (!s.open) {  // it becomes the open segment again, as in braft
        std::string path = dir_ + "/" + open_name(s.first);
        if (::rename(s.path.c_str(), path.c_str()) != 0) return os_error("rename " + s.path);
        s.path = path;
        s.open = true;
        s.fd = Fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!s.fd) return os_error("open " + path);
        dir_dirty_ = true;
      }
      if (::ftruncate(s.fd.get(), static_cast<off_t>(size)) != 0)
        return os_error("truncate " + s.path);
      s.offsets.resize(keep);
      s.size = size;
      s.last = from - 1;
    }
    break;
  }
  last_index_ = from - 1;
  return Status{};
}

Status SegmentLog::write_first_index(uint64_t first) {
  std::string msg;
  put_varint_field(msg, 1, first);
  return write_pb_file(dir_, "log_meta", msg);
}

Status SegmentLog::compact_prefix(uint64_t before) {
  if (before <= first_index_) return Status{};
  // Record the new start first: a crash then leaves only harmless leftovers below it.
  if (auto st = write_first_index(before); !st.ok()) return st;
  first_index_ = before;
  while (!segments_.empty() && segments_.front()->last < before) {
    if (::unlink(segments_.front()->path.c_str()) != 0)
      return os_error("unlink " + segments_.front()->path);
    segments_.erase(segments_.begin());
    dir_dirty_ = true;
  }
  if (last_index_ < before - 1) last_index_ = before - 1;
  return Status{};
}

Status SegmentLog::reset(uint64_t next_index) {
  // Newest segment first, and log_meta last: a crash part way leaves a shorter log that
  // still starts where log_meta says, never old entries past the new start.
  while (!segments_.empty()) {
    if (::unlink(segments_.back()->path.c_str()) != 0)
      return os_error("unlink " + segments_.back()->path);
    segments_.pop_back();
  }
  if (auto st = fsync_dir(dir_); !st.ok()) return st;
  if (auto st = write_first_index(next_index); !st.ok()) return st;
  first_index_ = next_index;
  last_index_ = next_index - 1;
  return Status{};
}

Status SegmentLog::apply(const core::Ready& ready, bool sync_now) {
  if (ready.log_reset)
    if (auto st = reset(ready.log_reset->last_included_index + 1); !st.ok()) return st;
  if (ready.log_write) {
    if (auto st = truncate_suffix(ready.log_write->from_index); !st.ok()) return st;
    if (auto st = append(ready.log_write->entries); !st.ok()) return st;
  }
  if (ready.compact_before)
    if (auto st = compact_prefix(*ready.compact_before); !st.ok()) return st;
  return sync_now ? sync() : Status{};
}

SegmentLog::Segment* SegmentLog::segment_of(uint64_t index) const {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), index,
                             [](uint64_t i, const auto& s) { return i < s->first; });
  if (it == segments_.begin()) return nullptr;
  Segment* s = std::prev(it)->get();
  return index <= s->last ? s : nullptr;
}

Status SegmentLog::read(uint64_t index, Entry* out) const {
  Segment* s = index >= first_index_ ? segment_of(index) : nullptr;
  if (!s) return err(Code::InvalidArgument, "no entry " + std::to_string(index) + " in the log");
  size_t k = index - s->first;
  uint64_t begin = s->offsets[k];
  uint64_t end = k + 1 < s->offsets.size() ? s->offsets[k + 1] : s->size;
  std::string buf(end - begin, '\0');
  if (::pread(s->fd.get(), buf.data(), buf.size(), static_cast<off_t>(begin)) !=
      static_cast<ssize_t>(buf.size()))
    return os_error("read " + s->path);
  RecordView r;
  size_t length = 0;
  Bad bad =
      parse_record(reinterpret_cast<const unsigned char*>(buf.data()), buf.size(), &r, &length);
  if (bad != Bad::None || !to_entry(r, index, out))
    return err(Code::CorruptLog, s->path + ": " + bad_name(bad) + " at offset " +
                                     std::to_string(begin) + " (index " + std::to_string(index) +
                                     ")");
  return Status{};
}

Status SegmentLog::read_all(std::vector<Entry>* out) const {
  out->clear();
  for (uint64_t i = first_index_; i <= last_index_; ++i) {
    Entry e;
    if (auto st = read(i, &e); !st.ok()) return st;
    out->push_back(std::move(e));
  }
  return Status{};
}

std::vector<std::string> SegmentLog::segment_files() const {
  std::vector<std::string> out;
  for (const auto& s : segments_) out.push_back(s->path.substr(s->path.rfind('/') + 1));
  return out;
}

// --- SnapshotStore ---------------------------------------------------------------------

namespace {

namespace fs = std::filesystem;

std::string snapshot_name(uint64_t index) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "snapshot_%020" PRIu64, index);
  return buf;
}

void put_peers(std::string& out, int field, const core::PeerList& peers) {
  for (const auto& p : peers) put_bytes_field(out, field, p.to_string());
}

Status crc_of_file(const std::string& path, uint32_t* crc, bool sync) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return os_error("open " + path);
  char buf[1 << 16];
  uint32_t c = 0;
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error("read " + path);
    if (n == 0) break;
    c = crc32c(buf, static_cast<size_t>(n), c);
  }
  if (sync && ::fsync(fd.get()) != 0) return os_error("fsync " + path);
  *crc = c;
  return Status{};
}

}  // namespace

std::string encode_snapshot_info(const core::SnapshotMeta& m,
                                 const std::vector<SnapshotFile>& files) {
  std::string meta;  // braft SnapshotMeta; field 5 (learners) is ours
  put_varint_field(meta, 1, m.last_included_index);
  put_varint_field(meta, 2, m.last_included_term);
  put_peers(meta, 3, m.conf.peers);
  put_peers(meta, 4, m.conf.old_peers);
  put_peers(meta, 5, m.conf.learners);
  std::string out;
  put_bytes_field(out, 1, meta);
  for (const auto& f : files) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", f.crc32c);
    std::string file_meta, file;
    put_bytes_field(file_meta, 3, hex);  // LocalFileMeta.checksum
    put_bytes_field(file, 1, f.name);
    put_bytes_field(file, 2, file_meta);
    put_bytes_field(out, 2, file);
  }
  return out;
}

bool decode_snapshot_info(std::string_view in, SnapshotInfo* info) {
  return parse_fields(in, [&](int field, uint64_t, std::string_view bytes) {
    if (field == 1) {
      return parse_fields(bytes, [&](int f, uint64_t v, std::string_view b) {
        auto& m = info->meta;
        if (f == 1) m.last_included_index = v;
        if (f == 2) m.last_included_term = v;
        if (f >= 3 && f <= 5) {
          auto id = core::PeerId::parse(b);
          if (!id) return false;
          core::insert_sorted(f == 3   ? m.conf.peers
                              : f == 4 ? m.conf.old_peers
                                       : m.conf.learners,
                              *id);
        }
        return true;
      });
    }
    if (field == 2) {
      SnapshotFile file;
      bool has_crc = false;
      bool ok = parse_fields(bytes, [&](int f, uint64_t, std::string_view b) {
        if (f == 1) file.name = std::string(b);
        if (f == 2)
          return parse_fields(b, [&](int g, uint64_t, std::string_view c) {
            if (g == 3) has_crc = std::sscanf(std::string(c).c_str(), "%8x", &file.crc32c) == 1;
            return true;
          });
        return true;
      });
      if (!ok || !has_crc || file.name.empty() || file.name == "." || file.name == ".." ||
          file.name == kSnapshotMetaFile || file.name.find('/') != std::string::npos)
        return false;
      info->files.push_back(std::move(file));
    }
    return true;
  });
}

SnapshotStore::SnapshotStore(Key, std::string dir)
    : dir_(std::move(dir)), loans_(std::make_shared<Loans>()) {}

Status SnapshotStore::read_info(const std::string& path, SnapshotInfo* out) {
  *out = SnapshotInfo{};
  std::string msg;
  bool found = false;
  std::string meta_path = path + "/" + kSnapshotMetaFile;
  if (auto st = read_pb_file(meta_path, &msg, &found); !st.ok()) return st;
  if (!found) return err(Code::CorruptLog, meta_path + ": missing");
  if (!decode_snapshot_info(msg, out) || out->meta.last_included_index == 0)
    return err(Code::CorruptLog, meta_path + ": malformed LocalSnapshotPbMeta");
  out->path = path;
  for (const auto& f : out->files) {
    std::error_code ec;
    auto size = fs::file_size(path + "/" + f.name, ec);
    if (!ec) out->bytes += size;
  }
  return Status{};
}

Status SnapshotStore::verify(const SnapshotInfo& info) {
  for (const auto& f : info.files) {
    uint32_t crc = 0;
    if (auto st = crc_of_file(info.path + "/" + f.name, &crc, false); !st.ok()) return st;
    if (crc != f.crc32c)
      return err(Code::CorruptLog, info.path + "/" + f.name + ": checksum mismatch");
  }
  return Status{};
}

Status SnapshotStore::open(const std::string& dir, std::unique_ptr<SnapshotStore>* out) {
  if (auto st = mkdirs(dir); !st.ok()) return st;
  auto store = std::make_unique<SnapshotStore>(Key{}, dir);
  std::error_code ec;
  fs::remove_all(dir + "/temp", ec);  // an unfinished snapshot
  if (ec) return err(Code::Io, "remove " + dir + "/temp: " + ec.message());
  std::vector<uint64_t> found;
  for (const auto& ent : fs::directory_iterator(dir, ec)) {
    std::string name = ent.path().filename();
    uint64_t index = 0;
    if (std::sscanf(name.c_str(), "snapshot_%" SCNu64, &index) == 1 && name == snapshot_name(index))
      found.push_back(index);
  }
  if (ec) return err(Code::Io, "list " + dir + ": " + ec.message());
  std::sort(found.begin(), found.end());
  if (!found.empty()) {
    // A published snapshot is complete by construction: a bad one is corruption, not a
    // half-written file, and the log below it is gone, so refuse rather than fall back.
    SnapshotInfo info;
    std::string path = dir + "/" + snapshot_name(found.back());
    if (auto st = read_info(path, &info); !st.ok()) return st;
    if (auto st = verify(info); !st.ok()) return st;
    store->latest_ = std::move(info);
    for (size_t i = 0; i + 1 < found.size(); ++i)
      fs::remove_all(dir + "/" + snapshot_name(found[i]), ec);
  }
  *out = std::move(store);
  return Status{};
}

struct SnapshotStore::Loans {
  std::mutex mu;
  std::map<std::string, int> count;  // by published directory
  std::set<std::string> retired;     // replaced while lent: removed when the last loan ends
};

struct SnapshotStore::Loan {
  Loan(std::shared_ptr<Loans> l, std::string p) : loans(std::move(l)), path(std::move(p)) {}
  Loan(const Loan&) = delete;
  Loan& operator=(const Loan&) = delete;
  std::shared_ptr<Loans> loans;
  std::string path;
  ~Loan() {
    std::lock_guard<std::mutex> l(loans->mu);
    if (--loans->count[path] > 0) return;
    loans->count.erase(path);
    std::error_code ec;
    if (loans->retired.erase(path)) fs::remove_all(path, ec);
  }
};

std::shared_ptr<const void> SnapshotStore::lend(const std::string& path) {
  std::lock_guard<std::mutex> l(loans_->mu);
  ++loans_->count[path];
  return std::make_shared<Loan>(loans_, path);
}

void SnapshotStore::retire(const std::string& path) {
  std::lock_guard<std::mutex> l(loans_->mu);
  std::error_code ec;
  if (loans_->count.count(path))
    loans_->retired.insert(path);
  else
    fs::remove_all(path, ec);
}

Status SnapshotStore::begin(std::string* temp_dir) {
  std::error_code ec;
  *temp_dir = dir_ + "/temp";
  fs::remove_all(*temp_dir, ec);
  if (ec) return err(Code::Io, "remove " + *temp_dir + ": " + ec.message());
  return mkdirs(*temp_dir);
}

Status SnapshotStore::publish(const core::SnapshotMeta& meta, const SnapshotInfo** out) {
  std::string temp = dir_ + "/temp";
  std::string target = dir_ + "/" + snapshot_name(meta.last_included_index);
  std::error_code ec;
  SnapshotInfo info;
  info.meta = meta;
  info.path = target;
  for (const auto& ent : fs::directory_iterator(temp, ec)) {
    std::string name = ent.path().filename();
    if (name == kSnapshotMetaFile) continue;
    if (!ent.is_regular_file())
      return err(Code::InvalidArgument, "snapshot holds a non-file: " + name);
    SnapshotFile f{name, 0};
    if (auto st = crc_of_file(temp + "/" + name, &f.crc32c, true); !st.ok()) return st;
    info.files.push_back(std::move(f));
    info.bytes += ent.file_size(ec);
  }
  if (ec) return err(Code::Io, "list " + temp + ": " + ec.message());
  std::sort(info.files.begin(), info.files.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  if (auto st = write_pb_file(temp, kSnapshotMetaFile, encode_snapshot_info(meta, info.files));
      !st.ok())
    return st;
  if (fs::exists(target, ec)) {
    // Already published (the same state at the same index): keep the durable copy.
    fs::remove_all(temp, ec);
  } else {
    if (::rename(temp.c_str(), target.c_str()) != 0) return os_error("rename " + temp);
    if (auto st = fsync_dir(dir_); !st.ok()) return st;
  }
  if (latest_ && latest_->meta.last_included_index > meta.last_included_index) {
    fs::remove_all(target, ec);  // overtaken while it was being written
  } else {
    if (latest_ && latest_->path != target) retire(latest_->path);
    latest_ = std::move(info);
  }
  if (out) *out = &*latest_;
  return Status{};
}

Status make_boot(const core::HardState& hs, const SnapshotStore& snapshots, SegmentLog& log,
                 const core::Configuration& initial_conf, core::Boot* boot) {
  *boot = core::Boot{};
  // An empty log must continue right after the snapshot (a reset may have been cut short).
  if (snapshots.latest() && log.last_index() < log.first_index()) {
    uint64_t next = snapshots.latest()->meta.last_included_index + 1;
    if (log.first_index() != next)
      if (auto st = log.reset(next); !st.ok()) return st;
  }
  boot->hard_state = hs;
  boot->initial_conf = initial_conf;
  if (snapshots.latest()) boot->snapshot = snapshots.latest()->meta;
  if (auto st = log.read_all(&boot->entries); !st.ok()) return st;
  auto check = core::Raft::check_boot(*boot);
  if (!check.ok()) return err(Code::CorruptLog, "log does not fit the snapshot: " + check.message);
  return Status{};
}

}  // namespace raftstore::storage
