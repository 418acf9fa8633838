// Unit tests of the durable storage: CRC32C, the directory lock, the term/vote meta file and
// the segment log, in braft's on-disk layout (docs/braft-compatibility.md §4.1, §4.2). The
// on-disk bytes are checked with an independent reader written here from the format
// description, so these tests also pin braft compatibility, not just the implementation's own
// round trip.
#include "storage.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace raftstore::storage {
namespace {

namespace fs = std::filesystem;
using core::Configuration;
using core::Entry;
using core::EntryType;
using core::HardState;
using core::PeerId;
using core::PeerList;

// --- helpers: status, files ----------------------------------------------------------

std::string Str(const Status& s) {
  return std::string(code_string(s.code)) + (s.message.empty() ? "" : ": " + s.message);
}

#define ASSERT_OK(expr)                                   \
  do {                                                    \
    const Status _st = (expr);                            \
    ASSERT_TRUE(_st.ok()) << #expr << " -> " << Str(_st); \
  } while (0)
#define EXPECT_OK(expr)                                   \
  do {                                                    \
    const Status _st = (expr);                            \
    EXPECT_TRUE(_st.ok()) << #expr << " -> " << Str(_st); \
  } while (0)

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const fs::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Every regular file under `root` (recursively) with this file name.
std::vector<fs::path> FindFiles(const fs::path& root, const std::string& name) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file() && e.path().filename() == name) out.push_back(e.path());
  return out;
}

std::vector<std::string> AllFileNames(const fs::path& root) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) out.push_back(e.path().filename().string());
  return out;
}

// SegmentLog::open(dir) keeps its files in <dir>/log (the data-directory layout) or in <dir>
// itself; the tests accept either.
fs::path LogDir(const fs::path& root) {
  return fs::is_directory(root / "log") ? root / "log" : root;
}

class TempDirTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/storage_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << "mkdtemp: " << errno;
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }
  // A fresh, empty subdirectory of this test's temp dir.
  fs::path Sub(const std::string& name) {
    fs::path p = root_ / name;
    fs::create_directories(p);
    return p;
  }
  // A copy of `src` (recursively) at <root>/<name>.
  fs::path CopyDir(const fs::path& src, const std::string& name) {
    fs::path dst = root_ / name;
    fs::remove_all(dst);
    fs::copy(src, dst, fs::copy_options::recursive);
    return dst;
  }
  fs::path root_;
};

// --- an independent CRC32C, protobuf and segment reader ----------------------------------

uint32_t RefCrc32c(std::string_view s) {
  uint32_t crc = ~0u;
  for (unsigned char b : s) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint64_t Be(std::string_view s, size_t off, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(s[off + i]);
  return v;
}

struct PbField {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t varint = 0;
  std::string bytes;
};

bool ReadVarint(std::string_view in, size_t* pos, uint64_t* out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= in.size()) return false;
    auto b = static_cast<unsigned char>(in[(*pos)++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
  }
  return false;
}

// Decodes varint and length-delimited fields (all that StablePBMeta, LogPBMeta and
// ConfigurationPBMeta use); nullopt on anything else or on malformed input.
std::optional<std::vector<PbField>> DecodePb(std::string_view in) {
  std::vector<PbField> out;
  size_t pos = 0;
  while (pos < in.size()) {
    uint64_t key;
    if (!ReadVarint(in, &pos, &key)) return std::nullopt;
    PbField f;
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<uint32_t>(key & 7);
    if (f.wire == 0) {
      if (!ReadVarint(in, &pos, &f.varint)) return std::nullopt;
    } else if (f.wire == 2) {
      uint64_t len;
      if (!ReadVarint(in, &pos, &len) || len > in.size() - pos) return std::nullopt;
      f.bytes = std::string(in.substr(pos, len));
      pos += len;
    } else {
      return std::nullopt;
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<std::string> StringsOf(const std::vector<PbField>& fields, uint32_t number) {
  std::vector<std::string> out;
  for (const auto& f : fields)
    if (f.number == number && f.wire == 2) out.push_back(f.bytes);
  return out;
}

// A ProtoBufFile: [u32 BE length][protobuf]. Fails the test if the framing is wrong.
std::vector<PbField> ReadProtoBufFile(const fs::path& p) {
  std::string bytes = ReadFile(p);
  EXPECT_GE(bytes.size(), 4u) << p;
  if (bytes.size() < 4) return {};
  EXPECT_EQ(Be(bytes, 0, 4), bytes.size() - 4) << "length prefix of " << p;
  auto fields = DecodePb(std::string_view(bytes).substr(4));
  EXPECT_TRUE(fields.has_value()) << "protobuf in " << p;
  return fields.value_or(std::vector<PbField>{});
}

std::optional<uint64_t> VarintField(const std::vector<PbField>& fields, uint32_t number) {
  std::optional<uint64_t> v;
  for (const auto& f : fields)
    if (f.number == number && f.wire == 0) v = f.varint;
  return v;
}

struct RawRecord {
  uint64_t offset = 0;
  uint64_t size = 0;  // header + data
  uint64_t term = 0;
  uint8_t type = 0;
  uint8_t checksum_type = 0;
  uint16_t reserved = 0;
  uint32_t data_len = 0;
  uint32_t data_crc = 0;
  uint32_t header_crc = 0;
  std::string data;
};

constexpr size_t kHeader = 24;

// Walks the records of one segment file; *tail gets the number of bytes after the last
// complete record. Checks every record's header fields and checksums.
std::vector<RawRecord> ParseSegment(const fs::path& p, uint64_t* tail = nullptr) {
  std::string bytes = ReadFile(p);
  std::vector<RawRecord> out;
  size_t pos = 0;
  while (bytes.size() - pos >= kHeader) {
    RawRecord r;
    r.offset = pos;
    r.term = Be(bytes, pos, 8);
    r.type = static_cast<uint8_t>(bytes[pos + 8]);
    r.checksum_type = static_cast<uint8_t>(bytes[pos + 9]);
    r.reserved = static_cast<uint16_t>(Be(bytes, pos + 10, 2));
    r.data_len = static_cast<uint32_t>(Be(bytes, pos + 12, 4));
    r.data_crc = static_cast<uint32_t>(Be(bytes, pos + 16, 4));
    r.header_crc = static_cast<uint32_t>(Be(bytes, pos + 20, 4));
    if (bytes.size() - pos - kHeader < r.data_len) break;
    r.data = bytes.substr(pos + kHeader, r.data_len);
    r.size = kHeader + r.data_len;
    EXPECT_EQ(r.checksum_type, 1) << p << " @" << pos << ": checksum type must be CRC32C";
    EXPECT_EQ(r.reserved, 0) << p << " @" << pos;
    EXPECT_EQ(r.header_crc, RefCrc32c(std::string_view(bytes).substr(pos, 20)))
        << p << " @" << pos << ": header CRC32C over bytes 0..19";
    EXPECT_EQ(r.data_crc, RefCrc32c(r.data)) << p << " @" << pos << ": data CRC32C";
    pos += r.size;
    out.push_back(std::move(r));
  }
  if (tail) *tail = bytes.size() - pos;
  return out;
}

struct SegName {
  std::string name;
  bool open = false;
  uint64_t first = 0;
  uint64_t last = 0;  // closed only
};

// Exactly 20 decimal digits.
std::optional<uint64_t> Digits20(std::string_view s) {
  if (s.size() != 20) return std::nullopt;
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(ch - '0');
  }
  return v;
}

// log_<first:020>_<last:020> or log_inprogress_<first:020>.
std::optional<SegName> ParseSegName(const std::string& name) {
  std::string_view n(name);
  SegName s;
  s.name = name;
  constexpr std::string_view kOpen = "log_inprogress_";
  if (n.substr(0, kOpen.size()) == kOpen) {
    auto first = Digits20(n.substr(kOpen.size()));
    if (!first) return std::nullopt;
    s.open = true;
    s.first = *first;
    return s;
  }
  if (n.size() != 4 + 20 + 1 + 20 || n.substr(0, 4) != "log_" || n[24] != '_') return std::nullopt;
  auto first = Digits20(n.substr(4, 20));
  auto last = Digits20(n.substr(25, 20));
  if (!first || !last) return std::nullopt;
  s.first = *first;
  s.last = *last;
  return s;
}

// The segment files in a log directory, ascending by first index. Any other file whose name
// starts with "log_" (other than log_meta) fails the test: names must follow braft's pattern.
std::vector<SegName> ListSegments(const fs::path& logdir) {
  std::vector<SegName> out;
  for (const auto& e : fs::directory_iterator(logdir)) {
    std::string name = e.path().filename().string();
    if (name == "log_meta" || name.rfind("log_", 0) != 0) continue;
    auto s = ParseSegName(name);
    EXPECT_TRUE(s.has_value()) << "unexpected file name " << name << " in " << logdir;
    if (s) out.push_back(*s);
  }
  std::sort(out.begin(), out.end(), [](const SegName& a, const SegName& b) {
    return a.first != b.first ? a.first < b.first : a.open < b.open;
  });
  return out;
}

std::string Pad20(uint64_t v) {
  std::string s = std::to_string(v);
  return std::string(20 - s.size(), '0') + s;
}

// --- entries -------------------------------------------------------------------------

PeerId P(const char* text) {
  auto p = PeerId::parse(text);
  EXPECT_TRUE(p.has_value()) << text;
  return p.value_or(PeerId{});
}

PeerList Peers(std::initializer_list<const char*> texts) {
  PeerList out;
  for (const char* t : texts) core::insert_sorted(out, P(t));
  return out;
}

Entry DataEntry(uint64_t index, uint64_t term, std::string data) {
  Entry e;
  e.index = index;
  e.term = term;
  e.type = EntryType::Data;
  e.data = std::make_shared<const std::string>(std::move(data));
  return e;
}

Entry NoOpEntry(uint64_t index, uint64_t term) {
  Entry e;
  e.index = index;
  e.term = term;
  e.type = EntryType::NoOp;
  return e;
}

Entry ConfEntry(uint64_t index, uint64_t term, Configuration conf) {
  Entry e;
  e.index = index;
  e.term = term;
  e.type = EntryType::Configuration;
  e.conf = std::make_shared<const Configuration>(std::move(conf));
  return e;
}

Configuration Conf(PeerList peers, PeerList old_peers = {}, PeerList learners = {}) {
  Configuration c;
  c.peers = std::move(peers);
  c.old_peers = std::move(old_peers);
  c.learners = std::move(learners);
  return c;
}

// A deterministic mix of entry types and sizes; `salt` changes the payloads so that
// rewritten entries are distinguishable from the ones they replace.
Entry Gen(uint64_t index, uint64_t term, int salt = 0) {
  if (index % 7 == 3) {
    Configuration c = Conf(Peers({"10.0.0.1:8100:0", "10.0.0.2:8100:0", "10.0.0.3:8100:0"}));
    if (index % 2) c.old_peers = Peers({"10.0.0.1:8100:0", "10.0.0.2:8100:0"});
    if (index % 3 == 0) c.learners = Peers({"10.0.0.9:8100:1"});
    core::insert_sorted(
        c.peers,
        P(("10.0.1." + std::to_string(index % 250 + 1) + ":8100:" + std::to_string(salt)).c_str()));
    return ConfEntry(index, term, std::move(c));
  }
  if (index % 5 == 4) return NoOpEntry(index, term);
  std::string data =
      "e" + std::to_string(index) + "t" + std::to_string(term) + "s" + std::to_string(salt) + ":";
  data.resize(data.size() + (index * 7 + static_cast<uint64_t>(salt)) % 40, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    if (data[i] == '\0') data[i] = static_cast<char>((i * 31 + index) & 0xff);
  return DataEntry(index, term, std::move(data));
}

std::vector<Entry> GenRange(uint64_t from, uint64_t to_inclusive, uint64_t term, int salt = 0) {
  std::vector<Entry> out;
  for (uint64_t i = from; i <= to_inclusive; ++i) out.push_back(Gen(i, term, salt));
  return out;
}

// A fixed-size DATA entry, for layouts that depend on record sizes.
Entry Sized(uint64_t index, uint64_t term, size_t data_len) {
  std::string data(data_len, static_cast<char>('a' + index % 26));
  return DataEntry(index, term, std::move(data));
}

std::string Describe(const Entry& e) {
  std::string s = "{index " + std::to_string(e.index) + " term " + std::to_string(e.term) +
                  " type " + std::to_string(static_cast<int>(e.type));
  if (e.type == EntryType::Configuration)
    s += " conf [" + (e.conf ? e.conf->to_string() : std::string("null")) + "]";
  else
    s += " data_size " + std::to_string(e.data_size());
  return s + "}";
}

testing::AssertionResult SameEntry(const Entry& want, const Entry& got) {
  bool same = want.index == got.index && want.term == got.term && want.type == got.type;
  if (same && want.type == EntryType::Configuration) {
    same = got.conf != nullptr && want.conf != nullptr &&
           got.conf->to_string() == want.conf->to_string() && *got.conf == *want.conf;
  } else if (same && want.type != EntryType::Configuration) {
    std::string_view w = want.data ? std::string_view(*want.data) : std::string_view();
    std::string_view g = got.data ? std::string_view(*got.data) : std::string_view();
    same = w == g;
  }
  if (same) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "want " << Describe(want) << ", got " << Describe(got);
}

using Model = std::map<uint64_t, Entry>;

void Put(Model& m, const std::vector<Entry>& entries) {
  for (const auto& e : entries) m[e.index] = e;
}

// The log's indexes and contents equal the model (which holds exactly first..last).
void ExpectLog(const SegmentLog& log, uint64_t first, uint64_t last, const Model& model) {
  EXPECT_EQ(log.first_index(), first);
  EXPECT_EQ(log.last_index(), last);
  for (const auto& [index, want] : model) {
    Entry got;
    Status s = log.read(index, &got);
    EXPECT_TRUE(s.ok()) << "read(" << index << ") -> " << Str(s);
    if (s.ok()) {
      EXPECT_TRUE(SameEntry(want, got)) << "read(" << index << ")";
    }
  }
  std::vector<Entry> all;
  Status s = log.read_all(&all);
  EXPECT_TRUE(s.ok()) << "read_all -> " << Str(s);
  EXPECT_EQ(all.size(), model.size());
  auto it = model.begin();
  for (size_t i = 0; i < all.size() && it != model.end(); ++i, ++it)
    EXPECT_TRUE(SameEntry(it->second, all[i])) << "read_all()[" << i << "]";
  if (first > 1) {
    Entry below;
    EXPECT_FALSE(log.read(first - 1, &below).ok()) << "read below first_index " << first;
  }
  Entry beyond;
  EXPECT_FALSE(log.read(last + 1, &beyond).ok()) << "read beyond last_index " << last;
}

// Checks a record read by the independent reader against the entry the model expects.
void ExpectRecord(const RawRecord& r, const Entry& want, const std::string& where) {
  EXPECT_EQ(r.term, want.term) << where;
  EXPECT_EQ(r.type, static_cast<uint8_t>(want.type)) << where;
  if (want.type == EntryType::Configuration) {
    auto fields = DecodePb(r.data);
    ASSERT_TRUE(fields.has_value()) << where << ": ConfigurationPBMeta";
    auto texts = [](const PeerList& l) {
      std::vector<std::string> out;
      for (const auto& p : l) out.push_back(p.to_string());
      std::sort(out.begin(), out.end());
      return out;
    };
    auto sorted = [](std::vector<std::string> v) {
      std::sort(v.begin(), v.end());
      return v;
    };
    EXPECT_EQ(sorted(StringsOf(*fields, 1)), texts(want.conf->peers)) << where << ": peers";
    EXPECT_EQ(sorted(StringsOf(*fields, 2)), texts(want.conf->old_peers)) << where << ": old";
    EXPECT_EQ(sorted(StringsOf(*fields, 3)), texts(want.conf->learners)) << where << ": learners";
  } else {
    EXPECT_EQ(r.data, want.data ? *want.data : std::string()) << where << ": data";
  }
}

// The directory holds a well-formed braft log for [first, last]: segment names contiguous
// and consistent with their contents, at most one in-progress segment and only at the end,
// no segment wholly below `first`, every record well-formed and equal to the model, and
// log_meta (when present) consistent; segment_files() names the same files.
void ExpectLayout(const fs::path& logdir, uint64_t first, uint64_t last, const Model& model,
                  const SegmentLog* log = nullptr) {
  auto segs = ListSegments(logdir);
  uint64_t next = 0;  // expected first index of the next segment
  bool any_records = false;
  uint64_t lowest = 0, highest = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    const auto& s = segs[i];
    std::string where = (logdir / s.name).string();
    uint64_t tail = 0;
    auto recs = ParseSegment(logdir / s.name, &tail);
    EXPECT_EQ(tail, 0u) << where << ": bytes after the last complete record";
    if (s.open) {
      EXPECT_EQ(i + 1, segs.size()) << where << ": in-progress segment must be the last";
    } else {
      EXPECT_EQ(recs.size(), s.last - s.first + 1) << where << ": records vs name";
    }
    uint64_t seg_last = s.first + recs.size() - 1;  // first - 1 when empty
    if (i > 0) {
      EXPECT_EQ(s.first, next) << where << ": gap or overlap with previous segment";
    }
    next = seg_last + 1;
    if (recs.empty()) {
      EXPECT_TRUE(s.open) << where << ": empty closed segment";
      EXPECT_EQ(s.first, last + 1) << where << ": an empty segment must start at last + 1";
      continue;
    }
    EXPECT_GE(seg_last, first) << where << ": segment wholly below first_index " << first;
    EXPECT_LE(seg_last, last) << where << ": records beyond last_index " << last;
    if (!any_records) lowest = s.first;
    any_records = true;
    highest = seg_last;
    for (size_t k = 0; k < recs.size(); ++k) {
      uint64_t index = s.first + k;
      auto it = model.find(index);
      if (it != model.end())
        ExpectRecord(
            recs[k], it->second,
            where + " record " + std::to_string(k) + " (index " + std::to_string(index) + ")");
    }
  }
  if (first <= last) {
    EXPECT_TRUE(any_records) << logdir << ": no records for [" << first << ", " << last << "]";
    if (any_records) {
      EXPECT_LE(lowest, first) << logdir << ": first segment starts after first_index";
      EXPECT_EQ(highest, last) << logdir << ": last record on disk vs last_index";
    }
  }
  auto metas = FindFiles(logdir, "log_meta");
  if (first > 1) {
    EXPECT_EQ(metas.size(), 1u) << logdir << ": log_meta must record first " << first;
  }
  for (const auto& m : metas) {
    auto fields = ReadProtoBufFile(m);
    EXPECT_EQ(VarintField(fields, 1).value_or(0), first) << m << ": LogPBMeta.first_log_index";
  }
  if (log) {
    std::set<std::string> api, disk;
    for (const auto& f : log->segment_files()) api.insert(fs::path(f).filename().string());
    for (const auto& s : segs) disk.insert(s.name);
    EXPECT_EQ(api, disk) << "segment_files() vs directory";
  }
}

std::unique_ptr<SegmentLog> OpenLog(const fs::path& dir, uint64_t max_segment_bytes = 8 << 20,
                                    Recovery* recovery = nullptr) {
  std::unique_ptr<SegmentLog> log;
  Status s = SegmentLog::open(dir.string(), LogOptions{max_segment_bytes}, &log, recovery);
  EXPECT_TRUE(s.ok()) << "open " << dir << " -> " << Str(s);
  EXPECT_TRUE(!s.ok() || log != nullptr) << "open succeeded without a log";
  return s.ok() ? std::move(log) : nullptr;
}

std::optional<SegName> OpenSegment(const fs::path& logdir) {
  for (const auto& s : ListSegments(logdir))
    if (s.open) return s;
  return std::nullopt;
}

// ======================================================================================
// CRC32C
// ======================================================================================

struct CrcVector {
  const char* name;
  std::string data;
  uint32_t want;
};

std::string Iota(int from, int step) {
  std::string s(32, '\0');
  for (int i = 0; i < 32; ++i) s[i] = static_cast<char>(from + step * i);
  return s;
}

class Crc32cVectors : public testing::TestWithParam<CrcVector> {};

TEST_P(Crc32cVectors, MatchesKnownValue) {
  const auto& c = GetParam();
  EXPECT_EQ(crc32c(c.data.data(), c.data.size()), c.want);
  EXPECT_EQ(crc32c_portable(c.data.data(), c.data.size()), c.want);
  EXPECT_EQ(RefCrc32c(c.data), c.want) << "the test's reference implementation";
}

// RFC 3720 (iSCSI) B.4 and the usual check value.
INSTANTIATE_TEST_SUITE_P(
    Storage, Crc32cVectors,
    testing::Values(CrcVector{"Empty", "", 0x00000000u},
                    CrcVector{"Check123456789", "123456789", 0xE3069283u},
                    CrcVector{"ThirtyTwoZeros", std::string(32, '\0'), 0x8A9136AAu},
                    CrcVector{"ThirtyTwoOnes", std::string(32, '\xff'), 0x62A8AB43u},
                    CrcVector{"Incrementing", Iota(0, 1), 0x46DD794Eu},
                    CrcVector{"Decrementing", Iota(31, -1), 0x113FDB5Cu}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Crc32c, ExtendsAcrossChunksAndMatchesReferenceOnAllLengths) {
  std::string buf(300, '\0');
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>((i * 131 + 7) & 0xff);
  // Every length (covers unaligned heads and tails of a word-at-a-time implementation).
  for (size_t n = 0; n <= buf.size(); ++n) {
    std::string_view s(buf.data() + 1, std::min(n, buf.size() - 1));
    ASSERT_EQ(crc32c(s.data(), s.size()), RefCrc32c(s)) << "length " << s.size();
    ASSERT_EQ(crc32c_portable(s.data(), s.size()), RefCrc32c(s)) << "portable, length " << s.size();
  }
  // crc32c(b, crc32c(a)) == crc32c(a + b) for every split point.
  uint32_t whole = crc32c(buf.data(), buf.size());
  for (size_t split = 0; split <= buf.size(); split += 7) {
    uint32_t a = crc32c(buf.data(), split);
    EXPECT_EQ(crc32c(buf.data() + split, buf.size() - split, a), whole) << "split " << split;
    EXPECT_EQ(
        crc32c_portable(buf.data() + split, buf.size() - split, crc32c_portable(buf.data(), split)),
        whole)
        << "portable, split " << split;
  }
}

// ======================================================================================
// Codes, Fd
// ======================================================================================

TEST(CodeString, NamesTheUserVisibleErrors) {
  EXPECT_STREQ(code_string(Code::CorruptLog), "ERR_RAFT_CORRUPT_LOG");
  EXPECT_STREQ(code_string(Code::Locked), "ERR_RAFT_LOCKED");
  EXPECT_STREQ(code_string(Code::DiskFull), "ERR_RAFT_DISK_FULL");
  std::set<std::string> names;
  for (Code c : {Code::Ok, Code::CorruptLog, Code::Locked, Code::DiskFull, Code::Io,
                 Code::InvalidArgument}) {
    const char* n = code_string(c);
    ASSERT_NE(n, nullptr) << static_cast<int>(c);
    EXPECT_STRNE(n, "") << static_cast<int>(c);
    names.insert(n);
  }
  EXPECT_EQ(names.size(), 6u) << "every code has its own name";
}

bool IsOpenFd(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

TEST(FdTest, ClosesOnDestructionAndMoves) {
  int raw = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    Fd a(raw);
    EXPECT_TRUE(a);
    Fd b(std::move(a));
    EXPECT_FALSE(a);
    EXPECT_EQ(b.get(), raw);
    EXPECT_TRUE(IsOpenFd(raw));
  }
  EXPECT_FALSE(IsOpenFd(raw)) << "destructor closes";

  int x = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int y = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(x, 0);
  ASSERT_GE(y, 0);
  {
    Fd fx(x), fy(y);
    fx = std::move(fy);
    EXPECT_FALSE(IsOpenFd(x)) << "move assignment closes the old descriptor";
    EXPECT_EQ(fx.get(), y);
    EXPECT_FALSE(fy);
    int r = fx.release();
    EXPECT_EQ(r, y);
    EXPECT_FALSE(fx);
  }
  EXPECT_TRUE(IsOpenFd(y)) << "release() hands the descriptor over";
  close(y);
}

// ======================================================================================
// DirLock
// ======================================================================================

using DirLockTest = TempDirTest;

TEST_F(DirLockTest, SecondAcquireIsLockedUntilTheFirstIsDestroyed) {
  std::unique_ptr<DirLock> first;
  ASSERT_OK(DirLock::acquire(root_.string(), &first));
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(fs::exists(root_ / "LOCK")) << "<dir>/LOCK";

  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<DirLock> second;
    Status s = DirLock::acquire(root_.string(), &second);
    EXPECT_EQ(s.code, Code::Locked) << Str(s);
    EXPECT_STREQ(code_string(s.code), "ERR_RAFT_LOCKED");
    EXPECT_EQ(second, nullptr);
  }

  // Another directory is independent.
  std::unique_ptr<DirLock> other;
  EXPECT_OK(DirLock::acquire(Sub("other").string(), &other));

  first.reset();
  std::unique_ptr<DirLock> again;
  EXPECT_OK(DirLock::acquire(root_.string(), &again));  // released on destruction
}

TEST_F(DirLockTest, AnotherProcessIsLockedOut) {
  std::unique_ptr<DirLock> lock;
  ASSERT_OK(DirLock::acquire(root_.string(), &lock));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::unique_ptr<DirLock> mine;
    Status s = DirLock::acquire(root_.string(), &mine);
    _exit(s.code == Code::Locked ? 0 : 10 + static_cast<int>(s.code));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child's acquire: 0 = Locked, 10 + code otherwise";
}

// ======================================================================================
// MetaStore
// ======================================================================================

using MetaStoreTest = TempDirTest;

// MetaStore(dir) may be given the data directory or, like braft's raft_meta_uri, the raft_meta
// directory itself: the file is found by name.
fs::path MetaFile(const fs::path& root) {
  auto found = FindFiles(root, "raft_meta");
  EXPECT_EQ(found.size(), 1u) << "one raft_meta file under " << root;
  return found.empty() ? fs::path() : found[0];
}

TEST_F(MetaStoreTest, MissingFileIsANewReplica) {
  MetaStore store(root_.string());
  HardState hs;
  hs.term = 99;
  hs.voted_for = P("1.2.3.4:5:6");
  ASSERT_OK(store.load(&hs));
  EXPECT_EQ(hs.term, 0u);
  EXPECT_TRUE(hs.voted_for.empty());
}

struct MetaCase {
  const char* name;
  uint64_t term;
  const char* vote;  // nullptr: no vote
};

class MetaStoreRoundTrip : public TempDirTest, public testing::WithParamInterface<MetaCase> {};

TEST_P(MetaStoreRoundTrip, SavesBraftBytesAndLoadsThemBack) {
  const auto& c = GetParam();
  HardState hs;
  hs.term = c.term;
  if (c.vote) hs.voted_for = P(c.vote);
  {
    MetaStore store(root_.string());
    ASSERT_OK(store.save(hs));
  }
  HardState loaded;
  ASSERT_OK(MetaStore(root_.string()).load(&loaded));
  EXPECT_EQ(loaded, hs);
  EXPECT_EQ(loaded.voted_for.role, hs.voted_for.role);

  fs::path file = MetaFile(root_);
  ASSERT_FALSE(file.empty());
  auto fields = ReadProtoBufFile(file);
  EXPECT_EQ(VarintField(fields, 1), std::optional<uint64_t>(c.term)) << "StablePBMeta.term";
  auto votes = StringsOf(fields, 2);
  ASSERT_EQ(votes.size(), 1u) << "StablePBMeta.votedfor is required";
  if (c.vote) {
    EXPECT_EQ(votes[0], hs.voted_for.to_string());
  } else {
    auto parsed = PeerId::parse(votes[0]);
    EXPECT_TRUE(votes[0].empty() || (parsed && parsed->empty())) << votes[0];
  }
  for (const auto& name : AllFileNames(root_))
    EXPECT_EQ(name.find("tmp"), std::string::npos) << "temp file left behind: " << name;
}

INSTANTIATE_TEST_SUITE_P(
    Storage, MetaStoreRoundTrip,
    testing::Values(MetaCase{"TermZeroNoVote", 0, nullptr}, MetaCase{"TermOneNoVote", 1, nullptr},
                    MetaCase{"Vote", 7, "127.0.0.1:8100:0:0"},
                    MetaCase{"TwoByteVarint", 300, "10.0.0.2:8101:3"},
                    MetaCase{"WitnessVote", 12, "10.0.0.3:8102:0:1"},
                    MetaCase{"LargeTerm", uint64_t{1} << 40, "255.255.255.255:65535:2147483647"},
                    MetaCase{"MaxInt64Term", uint64_t{INT64_MAX}, "127.0.0.1:8100:0:0"}),
    [](const auto& info) { return std::string(info.param.name); });

// The exact bytes braft writes (docs/braft-compatibility.md §4.1: term 7, "127.0.0.1:8100:0:0").
const std::string kBraftRaftMeta =
    std::string("\x00\x00\x00\x16\x08\x07\x12\x12", 8) + "127.0.0.1:8100:0:0";

TEST_F(MetaStoreTest, ByteCompatibleWithBraft) {
  MetaStore store(root_.string());
  HardState hs;
  hs.term = 7;
  hs.voted_for = P("127.0.0.1:8100:0:0");
  ASSERT_OK(store.save(hs));
  fs::path file = MetaFile(root_);
  ASSERT_FALSE(file.empty());
  EXPECT_EQ(ReadFile(file), kBraftRaftMeta);

  // A file written by braft loads.
  HardState other;
  other.term = 3;
  ASSERT_OK(store.save(other));
  WriteFile(file, kBraftRaftMeta);
  HardState loaded;
  ASSERT_OK(store.load(&loaded));
  EXPECT_EQ(loaded, hs);
}

TEST_F(MetaStoreTest, LatestSaveWins) {
  MetaStore store(root_.string());
  HardState hs;
  for (uint64_t term = 1; term <= 5; ++term) {
    hs.term = term;
    hs.voted_for = term % 2 ? P("10.0.0.1:8100:0") : PeerId{};
    ASSERT_OK(store.save(hs));
  }
  HardState loaded;
  ASSERT_OK(MetaStore(root_.string()).load(&loaded));
  EXPECT_EQ(loaded, hs);
  for (const auto& name : AllFileNames(root_))
    EXPECT_EQ(name.find("tmp"), std::string::npos) << "temp file left behind: " << name;
}

struct DamagedMeta {
  const char* name;
  std::string bytes;
};

class MetaStoreDamaged : public TempDirTest, public testing::WithParamInterface<DamagedMeta> {};

// A damaged raft_meta must not read as "new replica, term 0, no vote": that could vote twice
// in one term.
TEST_P(MetaStoreDamaged, LoadFailsRatherThanForgetTheVote) {
  MetaStore store(root_.string());
  HardState hs;
  hs.term = 7;
  hs.voted_for = P("127.0.0.1:8100:0:0");
  ASSERT_OK(store.save(hs));
  fs::path file = MetaFile(root_);
  ASSERT_FALSE(file.empty());
  WriteFile(file, GetParam().bytes);
  HardState loaded;
  Status s = store.load(&loaded);
  EXPECT_FALSE(s.ok()) << "loaded term " << loaded.term << " vote " << loaded.voted_for.to_string();
}

INSTANTIATE_TEST_SUITE_P(
    Storage, MetaStoreDamaged,
    testing::Values(DamagedMeta{"Empty", ""},
                    DamagedMeta{"ShortLength", std::string("\x00\x00", 2)},
                    DamagedMeta{"Truncated", kBraftRaftMeta.substr(0, kBraftRaftMeta.size() - 3)},
                    DamagedMeta{"LengthTooShort",
                                std::string("\x00\x00\x00\x15", 4) + kBraftRaftMeta.substr(4)},
                    DamagedMeta{"BadVote", std::string("\x00\x00\x00\x07\x08\x07\x12\x03x:y", 11)}),
    [](const auto& info) { return std::string(info.param.name); });

// ======================================================================================
// SegmentLog: basics
// ======================================================================================

using SegmentLogTest = TempDirTest;

TEST_F(SegmentLogTest, NewLogIsEmpty) {
  auto log = OpenLog(root_);
  ASSERT_TRUE(log);
  ExpectLog(*log, 1, 0, {});
  log.reset();
  log = OpenLog(root_);
  ASSERT_TRUE(log);
  ExpectLog(*log, 1, 0, {});
}

TEST_F(SegmentLogTest, RoundTripsEveryEntryKind) {
  std::vector<Entry> entries = {
      DataEntry(1, 1, "hello"),
      NoOpEntry(2, 1),
      ConfEntry(3, 1, Conf(Peers({"127.0.0.1:8100:0", "127.0.0.1:8101:0", "127.0.0.1:8102:0"}))),
      ConfEntry(4, 2,
                Conf(Peers({"127.0.0.1:8100:0", "127.0.0.1:8103:0"}),
                     Peers({"127.0.0.1:8100:0", "127.0.0.1:8101:0", "127.0.0.1:8102:0"}))),
      ConfEntry(
          5, 2,
          Conf(Peers({"127.0.0.1:8100:0"}), {}, Peers({"127.0.0.1:8104:0", "127.0.0.1:8105:2:1"}))),
      ConfEntry(6, 2,
                Conf(Peers({"10.0.0.1:8100:0", "10.0.0.2:8100:0:1"}), Peers({"10.0.0.1:8100:0"}),
                     Peers({"10.0.0.3:8100:0"}))),
      ConfEntry(7, 2, Conf({})),  // an empty configuration: zero-length data
      DataEntry(8, 3, ""),        // empty data
      DataEntry(9, 3, std::string("\x00\xff\x00binary\r\n", 11)),
      DataEntry(10, 3, std::string(100000, 'x')),  // larger than typical buffers
      NoOpEntry(11, 4),
      DataEntry(12, (uint64_t{1} << 62) + 5, "big term"),
  };
  Model model;
  Put(model, entries);
  auto log = OpenLog(root_);
  ASSERT_TRUE(log);
  // In three batches, the first of one entry.
  ASSERT_OK(log->append({entries[0]}));
  ASSERT_OK(log->append(std::vector<Entry>(entries.begin() + 1, entries.begin() + 7)));
  ASSERT_OK(log->append(std::vector<Entry>(entries.begin() + 7, entries.end())));
  {
    SCOPED_TRACE("before sync");
    ExpectLog(*log, 1, 12, model);
  }
  ASSERT_OK(log->sync());
  {
    SCOPED_TRACE("after sync");
    ExpectLog(*log, 1, 12, model);
    ExpectLayout(LogDir(root_), 1, 12, model, log.get());
  }
  auto segs = ListSegments(LogDir(root_));
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].name, "log_inprogress_" + Pad20(1));

  log.reset();
  Recovery rec;
  log = OpenLog(root_, 8 << 20, &rec);
  ASSERT_TRUE(log);
  EXPECT_FALSE(rec.torn_tail);
  SCOPED_TRACE("after reopen");
  ExpectLog(*log, 1, 12, model);
  ExpectLayout(LogDir(root_), 1, 12, model, log.get());

  // And the log keeps going after a reopen.
  auto more = GenRange(13, 20, 5);
  ASSERT_OK(log->append(more));
  ASSERT_OK(log->sync());
  Put(model, more);
  log.reset();
  log = OpenLog(root_);
  ASSERT_TRUE(log);
  ExpectLog(*log, 1, 20, model);
}

TEST_F(SegmentLogTest, RejectsNonConsecutiveAppends) {
  auto log = OpenLog(root_);
  ASSERT_TRUE(log);
  struct Bad {
    const char* name;
    std::vector<Entry> entries;
  };
  {
    Status s = log->append({Gen(2, 1)});
    EXPECT_EQ(s.code, Code::InvalidArgument) << "first entry of a new log must be 1: " << Str(s);
    EXPECT_EQ(log->last_index(), 0u);
  }
  ASSERT_OK(log->append(GenRange(1, 3, 1)));
  std::vector<Bad> cases = {
      {"Gap", {Gen(5, 1)}},
      {"Overlap", {Gen(3, 1)}},
      {"Rewind", {Gen(1, 1)}},
      {"GapInsideBatch", {Gen(4, 1), Gen(6, 1)}},
      {"DuplicateInsideBatch", {Gen(4, 1), Gen(4, 1)}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Status s = log->append(c.entries);
    EXPECT_EQ(s.code, Code::InvalidArgument) << Str(s);
    EXPECT_EQ(log->last_index(), 3u) << "a rejected batch appends nothing";
  }
  ASSERT_OK(log->append({Gen(4, 1)}));
  ASSERT_OK(log->sync());
  Model model;
  Put(model, GenRange(1, 4, 1));
  ExpectLog(*log, 1, 4, model);
  log.reset();
  log = OpenLog(root_);
  ASSERT_TRUE(log);
  ExpectLog(*log, 1, 4, model);
  ExpectLayout(LogDir(root_), 1, 4, model, log.get());
}

// ======================================================================================
// SegmentLog: rollover
// ======================================================================================

class SegmentLogRollover : public TempDirTest, public testing::WithParamInterface<size_t> {};

TEST_P(SegmentLogRollover, ClosesSegmentsWithBraftNames) {
  const size_t batch = GetParam();
  const uint64_t kMax = 256;
  const uint64_t kN = 40;
  const size_t kRecord = 64;  // 24-byte header + 40 bytes
  auto log = OpenLog(root_, kMax);
  ASSERT_TRUE(log);
  Model model;
  for (uint64_t i = 1; i <= kN; i += batch) {
    std::vector<Entry> b;
    for (uint64_t j = i; j < i + batch && j <= kN; ++j) b.push_back(Sized(j, 1 + j / 10, 40));
    ASSERT_OK(log->append(b));
    Put(model, b);
  }
  ASSERT_OK(log->sync());
  ExpectLog(*log, 1, kN, model);
  fs::path logdir = LogDir(root_);
  ExpectLayout(logdir, 1, kN, model, log.get());

  auto segs = ListSegments(logdir);
  ASSERT_GE(segs.size(), 5u) << "40 records of 64 bytes in 256-byte segments";
  EXPECT_EQ(segs.front().first, 1u);
  int open = 0;
  for (const auto& s : segs) {
    if (s.open) {
      ++open;
      EXPECT_EQ(s.name, "log_inprogress_" + Pad20(s.first));
    } else {
      EXPECT_EQ(s.name, "log_" + Pad20(s.first) + "_" + Pad20(s.last));
      uint64_t size = fs::file_size(logdir / s.name);
      EXPECT_EQ(size, (s.last - s.first + 1) * kRecord) << s.name;
      EXPECT_LE(size, kMax + kRecord) << s.name << ": rolls over near max_segment_bytes";
      EXPECT_GE(size + kRecord, kMax) << s.name << ": closed too early";
    }
  }
  EXPECT_EQ(open, 1) << "exactly one log_inprogress file";
  EXPECT_TRUE(segs.back().open);

  std::vector<std::string> names_before;
  for (const auto& s : segs) names_before.push_back(s.name);
  log.reset();
  log = OpenLog(root_, kMax);
  ASSERT_TRUE(log);
  ExpectLog(*log, 1, kN, model);
  std::vector<std::string> names_after;
  for (const auto& s : ListSegments(logdir)) names_after.push_back(s.name);
  EXPECT_EQ(names_after, names_before) << "reopening renames nothing";

  // Appending after the reopen continues the open segment and rolls over as before.
  auto more = std::vector<Entry>{Sized(kN + 1, 9, 40), Sized(kN + 2, 9, 40), Sized(kN + 3, 9, 40),
                                 Sized(kN + 4, 9, 40), Sized(kN + 5, 9, 40)};
  ASSERT_OK(log->append(more));
  ASSERT_OK(log->sync());
  Put(model, more);
  log.reset();
  log = OpenLog(root_, kMax);
  ASSERT_TRUE(log);
  ExpectLog(*log, 1, kN + 5, model);
  ExpectLayout(logdir, 1, kN + 5, model, log.get());
}

INSTANTIATE_TEST_SUITE_P(Storage, SegmentLogRollover, testing::Values(1, 7, 40),
                         [](const auto& info) { return "Batch" + std::to_string(info.param); });

// ======================================================================================
// SegmentLog: truncate_suffix, compact_prefix, reset, apply
// ======================================================================================

// A base log of 30+ mixed entries over several 256-byte segments, and where its
// segments begin, so that cases can be placed relative to segment boundaries.
class MultiSegmentTest : public TempDirTest {
 protected:
  static constexpr uint64_t kMax = 256;

  // At least 30 entries, and more until the open segment holds two records.
  void BuildBase() {
    base_ = Sub("base");
    auto log = OpenLog(base_, kMax);
    ASSERT_TRUE(log);
    auto entries = GenRange(1, 30, 1);
    for (auto& e : entries)
      if (e.index > 15) e.term = 2;
    ASSERT_OK(log->append(entries));
    ASSERT_OK(log->sync());
    Put(base_model_, entries);
    base_n_ = 30;
    for (;;) {
      auto open = OpenSegment(LogDir(base_));
      ASSERT_TRUE(open.has_value()) << "no in-progress segment";
      if (open->first + 1 <= base_n_) break;
      ASSERT_LT(base_n_, 60u) << "the open segment never holds two records";
      ++base_n_;
      ASSERT_OK(log->append({Gen(base_n_, 2)}));
      ASSERT_OK(log->sync());
      Put(base_model_, {Gen(base_n_, 2)});
    }
    log.reset();
    segs_ = ListSegments(LogDir(base_));
    int closed = 0;
    for (const auto& s : segs_) closed += !s.open;
    ASSERT_GE(closed, 3) << "the base log needs several closed segments";
    ASSERT_TRUE(segs_.back().open);
  }

  // An index named relative to the base layout.
  uint64_t Resolve(const std::string& where) const {
    const SegName& open = segs_.back();
    const SegName& c1 = segs_[1];
    if (where == "first") return 1;
    if (where == "second") return 2;
    if (where == "last") return base_n_;
    if (where == "past_last") return base_n_ + 1;
    if (where == "open_first") return open.first;
    if (where == "open_second") return open.first + 1;
    if (where == "closed1_first") return c1.first;
    if (where == "closed1_second") return c1.first + 1;
    if (where == "closed0_last") return segs_[0].last;
    ADD_FAILURE() << "unknown position " << where;
    return 1;
  }

  fs::path base_;
  uint64_t base_n_ = 0;
  Model base_model_;
  std::vector<SegName> segs_;
};

struct PositionCase {
  const char* name;
  const char* where;
};

class TruncateSuffix : public MultiSegmentTest, public testing::WithParamInterface<PositionCase> {};

TEST_P(TruncateSuffix, DropsTheTailThenAppendsAndReopens) {
  ASSERT_NO_FATAL_FAILURE(BuildBase());
  const uint64_t from = Resolve(GetParam().where);
  fs::path dir = CopyDir(base_, "work");
  fs::path logdir = LogDir(dir);
  Model model = base_model_;
  model.erase(model.lower_bound(from), model.end());

  auto log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  ASSERT_OK(log->truncate_suffix(from));
  {
    SCOPED_TRACE("after truncate_suffix(" + std::to_string(from) + ")");
    ExpectLog(*log, 1, from - 1, model);
  }
  ASSERT_OK(log->sync());
  {
    SCOPED_TRACE("after sync");
    ExpectLayout(logdir, 1, from - 1, model, log.get());
  }
  log.reset();
  log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  {
    SCOPED_TRACE("reopened after truncate_suffix(" + std::to_string(from) + ")");
    ExpectLog(*log, 1, from - 1, model);
  }

  // New entries (a new term) take the place of the dropped ones.
  auto fresh = GenRange(from, from + 9, 3, /*salt=*/1);
  ASSERT_OK(log->append(fresh));
  ASSERT_OK(log->sync());
  Put(model, fresh);
  {
    SCOPED_TRACE("after appending " + std::to_string(from) + ".." + std::to_string(from + 9));
    ExpectLog(*log, 1, from + 9, model);
    ExpectLayout(logdir, 1, from + 9, model, log.get());
  }
  log.reset();
  log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  SCOPED_TRACE("reopened after the new entries");
  ExpectLog(*log, 1, from + 9, model);
  ExpectLayout(logdir, 1, from + 9, model, log.get());
}

INSTANTIATE_TEST_SUITE_P(Storage, TruncateSuffix,
                         testing::Values(PositionCase{"LastEntryOnly", "last"},
                                         PositionCase{"InsideOpenSegment", "open_second"},
                                         PositionCase{"WholeOpenSegment", "open_first"},
                                         PositionCase{"InsideClosedSegment", "closed1_second"},
                                         PositionCase{"AtClosedSegmentStart", "closed1_first"},
                                         PositionCase{"LastOfFirstClosedSegment", "closed0_last"},
                                         PositionCase{"AllButFirst", "second"},
                                         PositionCase{"Everything", "first"},
                                         PositionCase{"NothingPastLast", "past_last"}),
                         [](const auto& info) { return std::string(info.param.name); });

class CompactPrefix : public MultiSegmentTest, public testing::WithParamInterface<PositionCase> {};

TEST_P(CompactPrefix, DeletesWholeSegmentsAndRemembersFirstIndex) {
  ASSERT_NO_FATAL_FAILURE(BuildBase());
  const uint64_t before = Resolve(GetParam().where);
  fs::path dir = CopyDir(base_, "work");
  fs::path logdir = LogDir(dir);
  Model model = base_model_;
  model.erase(model.begin(), model.lower_bound(before));
  const uint64_t last = std::max<uint64_t>(base_n_, before - 1);

  auto log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  ASSERT_OK(log->compact_prefix(before));
  ASSERT_OK(log->sync());
  {
    SCOPED_TRACE("after compact_prefix(" + std::to_string(before) + ")");
    ExpectLog(*log, before, last, model);
    ExpectLayout(logdir, before, last, model, log.get());
  }
  // Segments wholly below `before` are gone; the one holding `before` is kept.
  for (const auto& s : segs_) {
    bool below = !s.open && s.last < before;
    if (below) {
      EXPECT_FALSE(fs::exists(logdir / s.name)) << s.name << " should be deleted";
    }
    if (!s.open && s.first <= before && before <= s.last) {
      EXPECT_TRUE(fs::exists(logdir / s.name)) << s.name << " still holds " << before;
    }
  }
  log.reset();
  log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  {
    SCOPED_TRACE("reopened");
    ExpectLog(*log, before, last, model);
  }

  auto more = GenRange(last + 1, last + 6, 4, /*salt=*/2);
  ASSERT_OK(log->append(more));
  ASSERT_OK(log->sync());
  Put(model, more);
  log.reset();
  log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  SCOPED_TRACE("reopened after appending");
  ExpectLog(*log, before, last + 6, model);
  ExpectLayout(logdir, before, last + 6, model, log.get());
}

INSTANTIATE_TEST_SUITE_P(Storage, CompactPrefix,
                         testing::Values(PositionCase{"NothingAtFirst", "first"},
                                         PositionCase{"InsideFirstSegment", "second"},
                                         PositionCase{"LastOfFirstSegment", "closed0_last"},
                                         PositionCase{"AtSegmentStart", "closed1_first"},
                                         PositionCase{"InsideLaterSegment", "closed1_second"},
                                         PositionCase{"AtOpenSegmentStart", "open_first"},
                                         PositionCase{"InsideOpenSegment", "open_second"},
                                         PositionCase{"AllButLast", "last"},
                                         PositionCase{"Everything", "past_last"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(MultiSegmentTest, CompactPrefixTwiceAndLogMetaIsBraftFormat) {
  ASSERT_NO_FATAL_FAILURE(BuildBase());
  fs::path dir = CopyDir(base_, "work");
  auto log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  ASSERT_OK(log->compact_prefix(5));
  ASSERT_OK(log->compact_prefix(3));  // going backwards keeps 5
  EXPECT_EQ(log->first_index(), 5u);
  ASSERT_OK(log->compact_prefix(12));
  ASSERT_OK(log->sync());
  log.reset();
  log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->first_index(), 12u);
  auto metas = FindFiles(dir, "log_meta");
  ASSERT_EQ(metas.size(), 1u);
  EXPECT_EQ(ReadFile(metas[0]), std::string("\x00\x00\x00\x02\x08\x0c", 6))
      << "[len 2][LogPBMeta{first_log_index: 12}]";
  for (const auto& name : AllFileNames(dir))
    EXPECT_EQ(name.find("tmp"), std::string::npos) << "temp file left behind: " << name;
}

struct ResetCase {
  const char* name;
  uint64_t next;  // 0: just past the base log's last entry
};

class ResetTest : public MultiSegmentTest, public testing::WithParamInterface<ResetCase> {};

TEST_P(ResetTest, DiscardsEverythingAndContinuesAtNext) {
  ASSERT_NO_FATAL_FAILURE(BuildBase());
  const uint64_t next = GetParam().next ? GetParam().next : base_n_ + 1;
  fs::path dir = CopyDir(base_, "work");
  fs::path logdir = LogDir(dir);
  auto log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  ASSERT_OK(log->compact_prefix(4));  // a non-trivial first index before the reset
  ASSERT_OK(log->reset(next));
  {
    SCOPED_TRACE("after reset");
    ExpectLog(*log, next, next - 1, {});
  }
  ASSERT_OK(log->sync());
  log.reset();
  log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  {
    SCOPED_TRACE("reopened after reset");
    ExpectLog(*log, next, next - 1, {});
    ExpectLayout(logdir, next, next - 1, {}, log.get());
  }
  Status bad = log->append({Gen(next + 1, 5)});
  EXPECT_EQ(bad.code, Code::InvalidArgument) << "after reset the next entry is " << next;

  Model model;
  auto entries = GenRange(next, next + 11, 5, /*salt=*/3);
  ASSERT_OK(log->append(entries));
  ASSERT_OK(log->sync());
  Put(model, entries);
  log.reset();
  log = OpenLog(dir, kMax);
  ASSERT_TRUE(log);
  SCOPED_TRACE("reopened after appending");
  ExpectLog(*log, next, next + 11, model);
  ExpectLayout(logdir, next, next + 11, model, log.get());
  for (const auto& s : ListSegments(logdir)) EXPECT_GE(s.first, next) << s.name;
}

INSTANTIATE_TEST_SUITE_P(Storage, ResetTest,
                         testing::Values(ResetCase{"BeyondLast", 100}, ResetCase{"JustPastLast", 0},
                                         ResetCase{"InsideLog", 10}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(SegmentLogTest, ApplyFollowsReadyOrderAndIsDurable) {
  fs::path logdir;
  Model model;
  auto reopen = [&](std::unique_ptr<SegmentLog>& log) {
    log.reset();  // no explicit sync(): apply() syncs
    log = OpenLog(root_, 512);
  };
  auto log = OpenLog(root_, 512);
  ASSERT_TRUE(log);
  logdir = LogDir(root_);

  {
    SCOPED_TRACE("log_write 1..8");
    core::Ready r;
    r.log_write = core::LogWrite{1, 1, GenRange(1, 8, 1)};
    ASSERT_OK(log->apply(r));
    Put(model, r.log_write->entries);
    reopen(log);
    ASSERT_TRUE(log);
    ExpectLog(*log, 1, 8, model);
  }
  {
    SCOPED_TRACE("log_write from 5 replaces 5..8 with 5..10");
    core::Ready r;
    r.log_write = core::LogWrite{2, 5, GenRange(5, 10, 2, /*salt=*/4)};
    ASSERT_OK(log->apply(r));
    model.erase(model.lower_bound(5), model.end());
    Put(model, r.log_write->entries);
    reopen(log);
    ASSERT_TRUE(log);
    ExpectLog(*log, 1, 10, model);
    ExpectLayout(logdir, 1, 10, model, log.get());
  }
  {
    SCOPED_TRACE("log_write and compact_before in one Ready");
    core::Ready r;
    r.log_write = core::LogWrite{3, 11, GenRange(11, 14, 2)};
    r.compact_before = 3;
    ASSERT_OK(log->apply(r));
    Put(model, r.log_write->entries);
    model.erase(model.begin(), model.lower_bound(3));
    reopen(log);
    ASSERT_TRUE(log);
    ExpectLog(*log, 3, 14, model);
  }
  {
    SCOPED_TRACE("an empty Ready changes nothing");
    core::Ready r;
    ASSERT_OK(log->apply(r));
    ExpectLog(*log, 3, 14, model);
  }
  {
    SCOPED_TRACE("log_reset to a snapshot at 50, then log_write 51..54, then compact_before 52");
    core::Ready r;
    core::SnapshotMeta meta;
    meta.last_included_index = 50;
    meta.last_included_term = 3;
    meta.conf = Conf(Peers({"10.0.0.1:8100:0"}));
    r.log_reset = meta;
    r.log_write = core::LogWrite{4, 51, GenRange(51, 54, 4)};
    r.compact_before = 52;
    ASSERT_OK(log->apply(r));
    model.clear();
    Put(model, GenRange(52, 54, 4));
    ExpectLog(*log, 52, 54, model);
    reopen(log);
    ASSERT_TRUE(log);
    ExpectLog(*log, 52, 54, model);
    ExpectLayout(logdir, 52, 54, model, log.get());
  }
  {
    SCOPED_TRACE("log_reset alone");
    core::Ready r;
    core::SnapshotMeta meta;
    meta.last_included_index = 80;
    meta.last_included_term = 5;
    r.log_reset = meta;
    ASSERT_OK(log->apply(r));
    reopen(log);
    ASSERT_TRUE(log);
    ExpectLog(*log, 81, 80, {});
  }
  {
    SCOPED_TRACE("a non-consecutive log_write is rejected");
    core::Ready r;
    r.log_write = core::LogWrite{5, 83, GenRange(83, 84, 5)};
    Status s = log->apply(r);
    EXPECT_EQ(s.code, Code::InvalidArgument) << Str(s);
    EXPECT_EQ(log->last_index(), 80u);
  }
}

// ======================================================================================
// Recovery: torn tails
// ======================================================================================

struct TornCase {
  const char* name;
  uint64_t max_segment_bytes;
  int last_kind;  // 0 DATA, 1 CONFIGURATION, 2 NO_OP
};

class TornTail : public TempDirTest, public testing::WithParamInterface<TornCase> {};

TEST_P(TornTail, EveryCutInsideTheLastRecordIsRecovered) {
  const auto& c = GetParam();
  const uint64_t kN = 6;
  fs::path base = Sub("base");
  Model model;
  {
    auto log = OpenLog(base, c.max_segment_bytes);
    ASSERT_TRUE(log);
    std::vector<Entry> entries;
    for (uint64_t i = 1; i < kN; ++i) entries.push_back(Sized(i, 1, 8 + i));
    if (c.last_kind == 0) entries.push_back(DataEntry(kN, 2, "last-record"));
    if (c.last_kind == 1)
      entries.push_back(ConfEntry(kN, 2, Conf(Peers({"1.2.3.4:5:0"}), {}, Peers({"1.2.3.5:5"}))));
    if (c.last_kind == 2) entries.push_back(NoOpEntry(kN, 2));
    ASSERT_OK(log->append(entries));
    ASSERT_OK(log->sync());
    Put(model, entries);
  }
  auto open_seg = OpenSegment(LogDir(base));
  ASSERT_TRUE(open_seg.has_value()) << "no in-progress segment";
  const std::string open_name = open_seg->name;
  auto recs = ParseSegment(LogDir(base) / open_name);
  ASSERT_FALSE(recs.empty()) << open_name << ": the last record must be in the open segment";
  const uint64_t start = recs.back().offset;
  const uint64_t end = start + recs.back().size;
  ASSERT_EQ(fs::file_size(LogDir(base) / open_name), end);

  Model without_last = model;
  without_last.erase(kN);
  const Entry replacement = DataEntry(kN, 3, "replacement-after-recovery");

  for (uint64_t cut = start; cut <= end; ++cut) {
    SCOPED_TRACE("cut at byte " + std::to_string(cut) + " of " + open_name + " (last record " +
                 std::to_string(start) + ".." + std::to_string(end) + ")");
    fs::path dir = CopyDir(base, "cut");
    fs::path logdir = LogDir(dir);
    fs::resize_file(logdir / open_name, cut);
    const bool boundary = cut == start || cut == end;
    const uint64_t want_last = cut == end ? kN : kN - 1;
    const Model& want = cut == end ? model : without_last;

    Recovery rec;
    auto log = OpenLog(dir, c.max_segment_bytes, &rec);
    ASSERT_TRUE(log);
    EXPECT_EQ(rec.torn_tail, !boundary);
    if (!boundary) {
      EXPECT_NE(rec.file.find(open_name), std::string::npos) << "Recovery.file = " << rec.file;
      EXPECT_EQ(rec.offset, start);
      EXPECT_EQ(rec.bytes_dropped, cut - start);
      EXPECT_EQ(fs::file_size(logdir / open_name), start) << "the torn tail is cut off on open";
    } else {
      EXPECT_EQ(rec.bytes_dropped, 0u);
    }
    ExpectLog(*log, 1, want_last, want);
    if (testing::Test::HasFailure()) return;  // one failing cut is enough to report

    // Appending afterwards works and survives another reopen.
    Model after = want;
    std::vector<Entry> next;
    if (cut != end) next.push_back(replacement);
    next.push_back(DataEntry(kN + 1, 3, "one-more"));
    ASSERT_OK(log->append(next));
    ASSERT_OK(log->sync());
    Put(after, next);
    log.reset();
    Recovery again;
    log = OpenLog(dir, c.max_segment_bytes, &again);
    ASSERT_TRUE(log);
    EXPECT_FALSE(again.torn_tail) << "nothing torn the second time";
    ExpectLog(*log, 1, kN + 1, after);
    ExpectLayout(logdir, 1, kN + 1, after, log.get());
    if (testing::Test::HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Storage, TornTail,
    testing::Values(TornCase{"DataInSingleSegment", 8 << 20, 0},
                    TornCase{"ConfigurationInSingleSegment", 8 << 20, 1},
                    // max 1 byte: one record per segment, so the open segment holds only the
                    // record being cut (a cut at 0 leaves it empty).
                    TornCase{"NoOpAloneInOpenSegment", 1, 2},
                    TornCase{"DataAloneInOpenSegment", 1, 0}),
    [](const auto& info) { return std::string(info.param.name); });

// A crash can leave the file longer than the data that reached it, the rest zero-filled.
TEST_F(SegmentLogTest, ZeroFilledTailIsTorn) {
  Model model;
  {
    auto log = OpenLog(root_);
    ASSERT_TRUE(log);
    auto entries = GenRange(1, 6, 1);
    ASSERT_OK(log->append(entries));
    ASSERT_OK(log->sync());
    Put(model, entries);
  }
  auto seg = OpenSegment(LogDir(root_));
  ASSERT_TRUE(seg.has_value());
  fs::path file = LogDir(root_) / seg->name;
  const uint64_t size = fs::file_size(file);
  fs::resize_file(file, size + 100);  // zeros
  Recovery rec;
  auto log = OpenLog(root_, 8 << 20, &rec);
  ASSERT_TRUE(log);
  EXPECT_TRUE(rec.torn_tail);
  EXPECT_EQ(rec.offset, size);
  EXPECT_EQ(rec.bytes_dropped, 100u);
  ExpectLog(*log, 1, 6, model);
  auto more = GenRange(7, 8, 2);
  ASSERT_OK(log->append(more));
  ASSERT_OK(log->sync());
  Put(model, more);
  log.reset();
  log = OpenLog(root_);
  ASSERT_TRUE(log);
  ExpectLog(*log, 1, 8, model);
  ExpectLayout(LogDir(root_), 1, 8, model, log.get());
}

// ======================================================================================
// Corruption
// ======================================================================================

struct CorruptCase {
  const char* name;
  uint64_t max_segment_bytes;
  bool in_closed_segment;  // else the open segment
  bool last_of_its_segment;
};

class Corruption : public TempDirTest, public testing::WithParamInterface<CorruptCase> {};

// `text` contains the decimal number `v` not as part of a longer run of digits.
bool MentionsNumber(const std::string& text, uint64_t v) {
  const std::string digits = std::to_string(v);
  for (size_t pos = text.find(digits); pos != std::string::npos; pos = text.find(digits, pos + 1)) {
    bool digit_before = pos > 0 && std::isdigit(static_cast<unsigned char>(text[pos - 1]));
    size_t end = pos + digits.size();
    bool digit_after = end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]));
    if (!digit_before && !digit_after) return true;
  }
  return false;
}

// The message names the file and the record's byte offset (or the corrupted byte's).
void ExpectCorrupt(const Status& s, const std::string& file, uint64_t record_offset,
                   uint64_t byte_offset) {
  EXPECT_EQ(s.code, Code::CorruptLog) << Str(s);
  EXPECT_STREQ(code_string(s.code), "ERR_RAFT_CORRUPT_LOG");
  EXPECT_NE(s.message.find(file), std::string::npos)
      << "message should name " << file << ": " << s.message;
  EXPECT_TRUE(MentionsNumber(s.message, record_offset) || MentionsNumber(s.message, byte_offset))
      << "message should name offset " << record_offset << " (record) or " << byte_offset
      << " (byte): " << s.message;
}

TEST_P(Corruption, BitFlipInAnyByteOfARecordThatIsNotTheLastRefusesToOpen) {
  const auto& c = GetParam();
  fs::path base = Sub("base");
  {
    auto log = OpenLog(base, c.max_segment_bytes);
    ASSERT_TRUE(log);
    std::vector<Entry> entries = {
        Sized(1, 1, 5),
        Sized(2, 1, 6),
        ConfEntry(3, 1, Conf(Peers({"10.0.0.1:8100"}), Peers({"10.0.0.2:8100"}))),
        Sized(4, 2, 7),
        Sized(5, 2, 8),
        Sized(6, 2, 9),
        Sized(7, 2, 10),
        Sized(8, 2, 11)};
    ASSERT_OK(log->append(entries));
    ASSERT_OK(log->sync());
  }
  fs::path logdir = LogDir(base);
  auto segs = ListSegments(logdir);
  // Pick the segment and the record to damage.
  const SegName* target = nullptr;
  for (const auto& s : segs) {
    if (s.open != !c.in_closed_segment) continue;
    auto recs = ParseSegment(logdir / s.name);
    if (recs.size() < (c.last_of_its_segment ? 1u : 3u)) continue;
    target = &s;
    break;
  }
  ASSERT_NE(target, nullptr) << "no suitable segment in this layout";
  auto recs = ParseSegment(logdir / target->name);
  const RawRecord& r = c.last_of_its_segment ? recs.back() : recs[recs.size() / 2];
  ASSERT_TRUE(!target->open || &r != &recs.back()) << "never the open segment's last record";

  const std::string original = ReadFile(logdir / target->name);
  for (uint64_t byte = r.offset; byte < r.offset + r.size; ++byte) {
    const int bit = static_cast<int>(byte % 8);
    SCOPED_TRACE(target->name + ": bit " + std::to_string(bit) + " of byte " +
                 std::to_string(byte) + " (record at " + std::to_string(r.offset) + ", " +
                 std::to_string(r.size) + " bytes)");
    fs::path dir = CopyDir(base, "damaged");
    std::string bytes = original;
    bytes[byte] = static_cast<char>(bytes[byte] ^ (1 << bit));
    WriteFile(LogDir(dir) / target->name, bytes);
    std::unique_ptr<SegmentLog> log;
    Recovery rec;
    Status s = SegmentLog::open(dir.string(), LogOptions{c.max_segment_bytes}, &log, &rec);
    ExpectCorrupt(s, target->name, r.offset, byte);
    if (testing::Test::HasFailure()) return;  // one failing byte is enough to report
  }
}

INSTANTIATE_TEST_SUITE_P(Storage, Corruption,
                         testing::Values(CorruptCase{"MiddleOfOpenSegment", 8 << 20, false, false},
                                         CorruptCase{"MiddleOfClosedSegment", 128, true, false},
                                         CorruptCase{"LastOfClosedSegment", 128, true, true},
                                         CorruptCase{"OnlyRecordOfClosedSegment", 1, true, true}),
                         [](const auto& info) { return std::string(info.param.name); });

struct DamageCase {
  const char* name;
  int kind;  // 0: cut 1 byte off a closed segment, 1: cut its last record, 2: delete a segment
};

class ClosedSegmentDamage : public TempDirTest, public testing::WithParamInterface<DamageCase> {};

TEST_P(ClosedSegmentDamage, RefusesToOpen) {
  fs::path base = Sub("base");
  {
    auto log = OpenLog(base, 128);
    ASSERT_TRUE(log);
    std::vector<Entry> entries;
    for (uint64_t i = 1; i <= 20; ++i) entries.push_back(Sized(i, 1, 16));
    ASSERT_OK(log->append(entries));
    ASSERT_OK(log->sync());
  }
  fs::path logdir = LogDir(base);
  auto segs = ListSegments(logdir);
  ASSERT_GE(segs.size(), 3u);
  ASSERT_FALSE(segs[1].open);
  const fs::path victim = logdir / segs[1].name;
  const uint64_t size = fs::file_size(victim);
  switch (GetParam().kind) {
    case 0:
      fs::resize_file(victim, size - 1);
      break;
    case 1:
      fs::resize_file(victim, size - 40);
      break;
    case 2:
      fs::remove(victim);
      break;
  }
  std::unique_ptr<SegmentLog> log;
  Status s = SegmentLog::open(base.string(), LogOptions{128}, &log);
  EXPECT_EQ(s.code, Code::CorruptLog) << Str(s);
  if (GetParam().kind != 2) {
    EXPECT_NE(s.message.find(segs[1].name), std::string::npos) << s.message;
  }
}

TEST_F(SegmentLogTest, DamagedLogMetaRefusesToOpen) {
  {
    auto log = OpenLog(root_, 128);
    ASSERT_TRUE(log);
    std::vector<Entry> entries;
    for (uint64_t i = 1; i <= 20; ++i) entries.push_back(Sized(i, 1, 16));
    ASSERT_OK(log->append(entries));
    ASSERT_OK(log->compact_prefix(9));
    ASSERT_OK(log->sync());
  }
  auto metas = FindFiles(root_, "log_meta");
  ASSERT_EQ(metas.size(), 1u);
  WriteFile(metas[0], std::string("\x00\x00\x00\x04\x08\x09", 6));  // length says 4, holds 2
  std::unique_ptr<SegmentLog> log;
  Status s = SegmentLog::open(root_.string(), LogOptions{128}, &log);
  EXPECT_FALSE(s.ok()) << "opened with first_index " << (log ? log->first_index() : 0);
}

INSTANTIATE_TEST_SUITE_P(Storage, ClosedSegmentDamage,
                         testing::Values(DamageCase{"TornClosedSegment", 0},
                                         DamageCase{"ClosedSegmentMissingItsLastRecord", 1},
                                         DamageCase{"MissingMiddleSegment", 2}),
                         [](const auto& info) { return std::string(info.param.name); });

// ======================================================================================
// Full disk
// ======================================================================================

using FullDiskTest = TempDirTest;

Entry DiskEntry(uint64_t index) { return Sized(index, 1 + index / 16, 100); }

TEST_F(FullDiskTest, AppendPastTheFileSizeLimitFailsWithDiskFullAndSyncedEntriesSurvive) {
  const rlim_t kLimit = 4096;  // about 33 records of 124 bytes
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: exit codes 0 = DiskFull seen; 2 = never failed; 3 = setup; 10 + code otherwise.
    close(pipefd[0]);
    signal(SIGXFSZ, SIG_IGN);
    auto log_open = [&]() {
      std::unique_ptr<SegmentLog> log;
      Status s = SegmentLog::open(root_.string(), LogOptions{}, &log);
      return s.ok() ? std::move(log) : nullptr;
    };
    auto log = log_open();
    if (!log) _exit(3);
    rlimit rl{kLimit, kLimit};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
    for (uint64_t i = 1; i < 1000; ++i) {
      Status s = log->append({DiskEntry(i)});
      if (s.ok()) s = log->sync();
      if (!s.ok()) {
        bool named = std::string(code_string(s.code)) == "ERR_RAFT_DISK_FULL";
        _exit(s.code == Code::DiskFull && named ? 0 : 10 + static_cast<int>(s.code));
      }
      if (write(pipefd[1], &i, sizeof i) != sizeof i) _exit(3);  // i is durable
    }
    _exit(2);
  }
  close(pipefd[1]);
  uint64_t synced = 0, v = 0;
  while (read(pipefd[0], &v, sizeof v) == sizeof v) synced = v;
  close(pipefd[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died of signal "
                                 << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  ASSERT_EQ(WEXITSTATUS(status), 0)
      << "child's exit: 0 = DiskFull, 2 = never failed, 3 = setup, 10 + code = other error";
  EXPECT_GE(synced, 10u) << "the limit allows about 33 records";
  EXPECT_LT(synced, 40u);

  // Reopen without the limit: every synced entry is there; a partial record is a torn tail.
  Model model;
  for (uint64_t i = 1; i <= synced; ++i) Put(model, {DiskEntry(i)});
  Recovery rec;
  auto log = OpenLog(root_, 8 << 20, &rec);
  ASSERT_TRUE(log);
  ASSERT_GE(log->last_index(), synced);
  EXPECT_LE(log->last_index(), synced + 1);
  if (log->last_index() > synced) Put(model, {DiskEntry(synced + 1)});
  ExpectLog(*log, 1, log->last_index(), model);

  const uint64_t last = log->last_index();
  auto more = GenRange(last + 1, last + 5, 9);
  ASSERT_OK(log->append(more));
  ASSERT_OK(log->sync());
  Put(model, more);
  log.reset();
  log = OpenLog(root_);
  ASSERT_TRUE(log);
  ExpectLog(*log, 1, last + 5, model);
  ExpectLayout(LogDir(root_), 1, last + 5, model, log.get());
}

// --- snapshots ---------------------------------------------------------------------------

using SnapshotStoreTest = TempDirTest;

core::SnapshotMeta SnapMeta(uint64_t index) {
  core::SnapshotMeta m{index, 2, {}};
  m.conf.peers = *core::parse_peer_list("127.0.0.1:8100:0,127.0.0.1:8101:0,127.0.0.1:8102:0");
  m.conf.learners = *core::parse_peer_list("127.0.0.1:8103:0");
  return m;
}

void PublishState(SnapshotStore& store, uint64_t index, const std::string& state) {
  std::string temp;
  ASSERT_TRUE(store.begin(&temp).ok());
  WriteFile(fs::path(temp) / "data", state);
  WriteFile(fs::path(temp) / "index", std::to_string(index));
  auto st = store.publish(SnapMeta(index));
  ASSERT_TRUE(st.ok()) << st.message;
}

TEST_F(SnapshotStoreTest, PublishesReopensAndKeepsOnlyTheNewest) {
  fs::path dir = root_ / "snapshot";
  std::unique_ptr<SnapshotStore> store;
  ASSERT_TRUE(SnapshotStore::open(dir, &store).ok());
  EXPECT_FALSE(store->latest());
  PublishState(*store, 10, "ten");
  PublishState(*store, 25, "twenty-five");
  store.reset();
  ASSERT_TRUE(SnapshotStore::open(dir, &store).ok());
  ASSERT_TRUE(store->latest());
  const auto& info = *store->latest();
  EXPECT_EQ(info.meta.last_included_index, 25u);
  EXPECT_EQ(info.meta.last_included_term, 2u);
  EXPECT_EQ(info.meta.conf, SnapMeta(25).conf);
  ASSERT_EQ(info.files.size(), 2u);
  EXPECT_EQ(info.files[0].name, "data");
  EXPECT_EQ(info.files[0].crc32c, RefCrc32c("twenty-five"));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"snapshot_00000000000000000025"});
}

// A snapshot lent to a follower's copy survives newer publishes until the loan ends (a
// leader snapshotting faster than a copy takes starved the copy forever before).
TEST_F(SnapshotStoreTest, ALentSnapshotIsKeptUntilItsLoanEnds) {
  fs::path dir = root_ / "snapshot";
  std::unique_ptr<SnapshotStore> store;
  ASSERT_TRUE(SnapshotStore::open(dir, &store).ok());
  PublishState(*store, 10, "ten");
  std::string ten = store->latest()->path;
  auto loan = store->lend(ten);
  auto second = store->lend(ten);
  PublishState(*store, 20, "twenty");
  PublishState(*store, 30, "thirty");
  EXPECT_TRUE(fs::exists(fs::path(ten) / "data")) << "removed while a follower copies it";
  EXPECT_FALSE(fs::exists(dir / "snapshot_00000000000000000020")) << "an unlent one stays";
  loan.reset();
  EXPECT_TRUE(fs::exists(ten));
  store.reset();  // a loan may outlive the store
  second.reset();
  EXPECT_FALSE(fs::exists(ten)) << "kept after its last loan ended";
  ASSERT_TRUE(SnapshotStore::open(dir, &store).ok());
  EXPECT_EQ(store->latest()->meta.last_included_index, 30u);
  // Lending the newest one does not keep it from being replaced later.
  auto thirty = store->lend(store->latest()->path);
  PublishState(*store, 40, "forty");
  EXPECT_TRUE(fs::exists(dir / "snapshot_00000000000000000030"));
  thirty.reset();
  EXPECT_FALSE(fs::exists(dir / "snapshot_00000000000000000030"));
}

// Every crash point of publish leaves one of these states; each must reopen to a whole
// snapshot: the previous one, or the new one once its rename happened.
TEST_F(SnapshotStoreTest, CrashDuringPublishKeepsTheLastWholeSnapshot) {
  fs::path dir = root_ / "snapshot";
  std::unique_ptr<SnapshotStore> store;
  ASSERT_TRUE(SnapshotStore::open(dir, &store).ok());
  PublishState(*store, 10, "ten");
  fs::path stable = CopyDir(dir, "stable");
  PublishState(*store, 20, "twenty");
  fs::path newest = dir / "snapshot_00000000000000000020";

  // (a) files half written in temp, no meta yet; (b) temp complete but not renamed.
  for (bool with_meta : {false, true}) {
    fs::path d = CopyDir(stable, with_meta ? "b" : "a");
    fs::create_directories(d / "temp");
    WriteFile(d / "temp" / "data", "twen");
    if (with_meta)
      fs::copy_file(newest / "__raft_snapshot_meta", d / "temp" / "__raft_snapshot_meta");
    std::unique_ptr<SnapshotStore> s;
    ASSERT_TRUE(SnapshotStore::open(d, &s).ok());
    EXPECT_EQ(s->latest()->meta.last_included_index, 10u);
    EXPECT_FALSE(fs::exists(d / "temp"));
  }
  // (c) renamed, the older one not yet removed.
  fs::path c = CopyDir(stable, "c");
  fs::copy(newest, c / "snapshot_00000000000000000020", fs::copy_options::recursive);
  std::unique_ptr<SnapshotStore> s;
  ASSERT_TRUE(SnapshotStore::open(c, &s).ok());
  EXPECT_EQ(s->latest()->meta.last_included_index, 20u);
  EXPECT_FALSE(fs::exists(c / "snapshot_00000000000000000010"));
}

TEST_F(SnapshotStoreTest, KillNineWhilePublishingLeavesAWholeSnapshot) {
  fs::path dir = root_ / "snapshot";
  for (int round = 0; round < 5; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::unique_ptr<SnapshotStore> store;
      if (!SnapshotStore::open(dir, &store).ok()) _exit(1);
      for (uint64_t i = 1;; ++i) {
        std::string temp;
        if (!store->begin(&temp).ok()) _exit(2);
        std::string state(4096 * (1 + i % 7), static_cast<char>('a' + i % 26));
        std::FILE* f = std::fopen((temp + "/data").c_str(), "wb");
        std::fwrite(state.data(), 1, state.size(), f);
        std::fclose(f);
        if (!store->publish(SnapMeta(1000 * round + i)).ok()) _exit(3);
      }
    }
    usleep(20000 + 7000 * round);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself: " << status;
    std::unique_ptr<SnapshotStore> store;
    auto st = SnapshotStore::open(dir, &store);
    ASSERT_TRUE(st.ok()) << st.message;
    if (store->latest()) {
      EXPECT_TRUE(SnapshotStore::verify(*store->latest()).ok());
    }
  }
}

TEST_F(SnapshotStoreTest, DamagedSnapshotIsRefused) {
  fs::path dir = root_ / "snapshot";
  std::unique_ptr<SnapshotStore> store;
  ASSERT_TRUE(SnapshotStore::open(dir, &store).ok());
  PublishState(*store, 7, "seven");
  store.reset();
  WriteFile(dir / "snapshot_00000000000000000007" / "data", "SEVEN");
  auto st = SnapshotStore::open(dir, &store);
  EXPECT_EQ(st.code, Code::CorruptLog);
  EXPECT_NE(st.message.find("checksum"), std::string::npos) << st.message;
}

// make_boot: what a restart hands the core, including a reset cut short by a crash.
TEST_F(SnapshotStoreTest, MakeBootMovesAnEmptyLogAfterTheSnapshot) {
  std::unique_ptr<SnapshotStore> snaps;
  ASSERT_TRUE(SnapshotStore::open(root_ / "snapshot", &snaps).ok());
  PublishState(*snaps, 30, "thirty");
  std::unique_ptr<SegmentLog> log;
  ASSERT_TRUE(SegmentLog::open(root_ / "log", {}, &log).ok());  // empty, first index 1
  core::Boot boot;
  auto st = make_boot(core::HardState{3, {}}, *snaps, *log, {}, &boot);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(boot.snapshot->last_included_index, 30u);
  EXPECT_TRUE(boot.entries.empty());
  EXPECT_EQ(log->first_index(), 31u);
  core::Entry e{31, 3, core::EntryType::NoOp, nullptr, nullptr};
  EXPECT_TRUE(log->append({e}).ok());
}

TEST_F(SnapshotStoreTest, MakeBootRefusesALogWithAGapAfterTheSnapshot) {
  std::unique_ptr<SnapshotStore> snaps;
  ASSERT_TRUE(SnapshotStore::open(root_ / "snapshot", &snaps).ok());
  PublishState(*snaps, 5, "five");
  std::unique_ptr<SegmentLog> log;
  ASSERT_TRUE(SegmentLog::open(root_ / "log", {}, &log).ok());
  ASSERT_TRUE(log->reset(20).ok());
  core::Entry e{20, 3, core::EntryType::NoOp, nullptr, nullptr};
  ASSERT_TRUE(log->append({e}).ok());
  core::Boot boot;
  EXPECT_EQ(make_boot(core::HardState{3, {}}, *snaps, *log, {}, &boot).code, Code::CorruptLog);
}

}  // namespace
}  // namespace raftstore::storage
