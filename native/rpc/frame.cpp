#include "frame.h"

#include <cstring>

namespace raftstore::rpc {

namespace {

uint32_t get_u32(const char* p) {
  auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

void put_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

}  // namespace

FrameParser::Result FrameParser::next(Frame* out, std::string* error) {
  std::string_view in = pending();
  // Sniff as soon as the first bytes disagree with "PRPC", so HTTP gets its chance.
  if (first_ && std::memcmp(in.data(), "PRPC", std::min<size_t>(in.size(), 4)) != 0)
    return Result::NotBaiduStd;
  if (in.size() < kFrameHeader) return Result::NeedMore;
  if (std::memcmp(in.data(), "PRPC", 4) != 0) {
    *error = "bad magic";
    return Result::Error;
  }
  uint32_t body = get_u32(in.data() + 4);
  uint32_t meta_size = get_u32(in.data() + 8);
  if (body > max_body_) {
    *error = "body of " + std::to_string(body) + " bytes exceeds the limit of " +
             std::to_string(max_body_);
    return Result::Error;
  }
  if (meta_size > body) {
    *error =
        "meta size " + std::to_string(meta_size) + " exceeds body size " + std::to_string(body);
    return Result::Error;
  }
  if (in.size() < kFrameHeader + body) return Result::NeedMore;
  first_ = false;
  const char* meta_bytes = in.data() + kFrameHeader;
  Frame f;
  if (!f.meta.ParseFromArray(meta_bytes, static_cast<int>(meta_size)) ||
      f.meta.has_request() == f.meta.has_response()) {
    *error = "malformed RpcMeta";
    return Result::Error;
  }
  int64_t attachment = f.meta.attachment_size();
  if (attachment < 0 || static_cast<uint64_t>(attachment) > body - meta_size) {
    *error = "attachment size " + std::to_string(attachment) + " exceeds the frame";
    return Result::Error;
  }
  size_t payload = body - meta_size - static_cast<size_t>(attachment);
  f.payload.assign(meta_bytes + meta_size, payload);
  f.attachment.assign(meta_bytes + meta_size + payload, static_cast<size_t>(attachment));
  pos_ += kFrameHeader + body;
  if (pos_ > (1u << 20) && pos_ * 2 > buf_.size()) {  // reclaim consumed bytes now and then
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  *out = std::move(f);
  return Result::Frame;
}

std::string encode_frame(brpc::policy::RpcMeta meta, std::string_view payload,
                         std::string_view attachment) {
  if (attachment.empty())
    meta.clear_attachment_size();
  else
    meta.set_attachment_size(static_cast<int32_t>(attachment.size()));
  std::string meta_bytes = meta.SerializeAsString();
  std::string out;
  out.reserve(kFrameHeader + meta_bytes.size() + payload.size() + attachment.size());
  out.append("PRPC");
  put_u32(out, static_cast<uint32_t>(meta_bytes.size() + payload.size() + attachment.size()));
  put_u32(out, static_cast<uint32_t>(meta_bytes.size()));
  out += meta_bytes;
  out.append(payload);
  out.append(attachment);
  return out;
}

namespace {

// What brpc sets on every frame, requests and responses alike.
brpc::policy::RpcMeta common_meta(int64_t correlation_id) {
  brpc::policy::RpcMeta m;
  m.set_compress_type(0);
  m.set_correlation_id(correlation_id);
  m.set_content_type(brpc::policy::PB);
  m.set_checksum_type(0);
  m.set_checksum_value("");
  return m;
}

}  // namespace

brpc::policy::RpcMeta request_meta(std::string_view service, std::string_view method,
                                   int64_t correlation_id) {
  brpc::policy::RpcMeta m = common_meta(correlation_id);
  m.mutable_request()->set_service_name(std::string(service));
  m.mutable_request()->set_method_name(std::string(method));
  return m;
}

brpc::policy::RpcMeta response_meta(int64_t correlation_id, int32_t error_code,
                                    std::string_view error_text) {
  brpc::policy::RpcMeta m = common_meta(correlation_id);
  m.mutable_response()->set_error_code(error_code);
  if (!error_text.empty()) m.mutable_response()->set_error_text(std::string(error_text));
  return m;
}

}  // namespace raftstore::rpc
