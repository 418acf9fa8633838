#include "snapshot_transfer.h"

#include <algorithm>

#include "mutants.h"
#include "rpc_codes.h"

namespace raftstore::runtime {

using rpc::kEAGAIN;
using rpc::kEIO;
using rpc::kEPERM;

namespace {

constexpr int64_t kMaxReplyBytes = 4 << 20;  // whatever count a reader asks for
constexpr size_t kSegmentHeader = 12;
constexpr int64_t kWholeFile = 0xffffffffLL;  // braft asks for the meta file this way

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

FileReply serve_get_file(const storage::SnapshotInfo& snapshot,
                         const braft::GetFileRequest& request, SnapshotSource& source) {
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
    uint64_t size = 0;
    if (!source.read(name, offset, count, &data, &size))
      return refuse(kEIO, "Fail to read " + snapshot.path + "/" + name);  // replaced
    eof = offset + data.size() >= size;
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

// --- SnapshotFetch ------------------------------------------------------------------------

SnapshotFetch::SnapshotFetch(core::SnapshotMeta expect, int64_t reader_id, int64_t max_chunk)
    : expect_(std::move(expect)), max_chunk_(max_chunk > 0 ? max_chunk : kMaxChunkBytes) {
  request_.set_reader_id(reader_id);
  request_.set_read_partly(true);
  ask(storage::kSnapshotMetaFile, 0);  // the meta first, whole, accepting a partial answer
}

void SnapshotFetch::ask(const std::string& name, int64_t offset) {
  request_.set_filename(name);
  request_.set_offset(offset);
  request_.set_count(name == storage::kSnapshotMetaFile ? kWholeFile : max_chunk_);
}

void SnapshotFetch::fail(storage::Status st) {
  state_ = State::Failed;
  error_ = std::move(st);
}

bool SnapshotFetch::on_reply(int32_t transport_code, const std::string& transport_text,
                             int32_t error_code, const std::string& error_text,
                             const std::string& payload, const std::string& attachment,
                             SnapshotSink& sink) {
  if (state_ != State::Fetching) return false;
  const std::string name = request_.filename();
  const int64_t offset = request_.offset();
  if (transport_code != 0)
    return fail(copy_error("get_file " + name + ": " + transport_text)), false;
  if (error_code == kEAGAIN) return true;  // throttled: ask again, as braft does
  if (error_code != 0)
    return fail(copy_error("get_file " + name + ": [E" + std::to_string(error_code) + "]" +
                           error_text)),
           false;
  braft::GetFileResponse resp;
  if (!resp.ParseFromString(payload))
    return fail(copy_error("malformed GetFileResponse for " + name)), false;
  // The attachment: segments of [offset u64][len u32][bytes], contiguous from the offset asked.
  int64_t received = 0;
  uint64_t expected = static_cast<uint64_t>(offset);
  for (size_t at = 0; at < attachment.size();) {
    if (attachment.size() - at < kSegmentHeader)
      return fail(copy_error("truncated chunk of " + name)), false;
    uint64_t seg_offset = get_be(attachment.data() + at, 8);
    uint64_t len = get_be(attachment.data() + at + 8, 4);
    at += kSegmentHeader;
    if (len > attachment.size() - at) return fail(copy_error("truncated chunk of " + name)), false;
    std::string_view bytes(attachment.data() + at, len);
    at += len;
    received += static_cast<int64_t>(len);
    if (name == storage::kSnapshotMetaFile) {
      if (seg_offset != meta_bytes_.size())
        return fail(copy_error("out-of-order chunk of " + name)), false;
      meta_bytes_.append(bytes);
      continue;
    }
    if (seg_offset != expected)
      return fail(copy_error("chunk of " + name + " at " + std::to_string(seg_offset) +
                             ", expected " + std::to_string(expected))),
             false;
    expected += len;
    if (auto st = sink.write(seg_offset, bytes); !st.ok()) return fail(st), false;
    bytes_ += len;
  }
  int64_t advanced = resp.has_read_size() ? resp.read_size() : received;
  if (!resp.eof()) {
    if (advanced <= 0) return fail(copy_error("no progress reading " + name)), false;
    ask(name, offset + advanced + (MUTANT(ChunkOffsetOffByOne) ? 1 : 0));
    return false;
  }
  if (name == storage::kSnapshotMetaFile) {
    if (!storage::decode_snapshot_info(meta_bytes_, &remote_))
      return fail(copy_error("malformed " + name)), false;
    if (remote_.meta.last_included_index != expect_.last_included_index ||
        remote_.meta.last_included_term != expect_.last_included_term)
      return fail(copy_error("the leader's snapshot is not the one announced")), false;
  } else {
    if (auto st = sink.close(); !st.ok()) return fail(st), false;
    ++file_;
  }
  next_file(sink);
  return false;
}

void SnapshotFetch::next_file(SnapshotSink& sink) {
  if (file_ == remote_.files.size()) {
    if (auto st = sink.verify(remote_); !st.ok()) return fail(st);
    state_ = State::Done;
    return;
  }
  const std::string& name = remote_.files[file_].name;
  if (auto st = sink.create(name); !st.ok()) return fail(st);
  ask(name, 0);
}

// --- InstallOrder -------------------------------------------------------------------------

void InstallOrder::copied(bool ok) {
  if (step_ != Step::Copy) return;
  if (!ok) {
    step_ = Step::Fail;
  } else {
    step_ = MUTANT(InstallAckBeforeDurable) ? Step::Adopt : Step::Publish;
  }
}

void InstallOrder::published(bool ok) {
  if (step_ != Step::Publish) return;
  published_ = ok;
  if (!ok)
    step_ = adopted_ ? Step::Done : Step::Fail;
  else
    step_ = adopted_ ? Step::Done : Step::Adopt;
}

void InstallOrder::adopted() {
  if (step_ != Step::Adopt) return;
  adopted_ = true;
  step_ = published_ ? Step::Done : Step::Publish;
}

}  // namespace raftstore::runtime
