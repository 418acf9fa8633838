// brpc's baidu_std framing (docs/braft-compatibility.md §1): "PRPC", body size and meta size as
// big-endian u32, then RpcMeta, payload and attachment. The parser is incremental (feed
// bytes as they arrive, take whole frames out) and never trusts a length it has not
// bounded: anything malformed is an error that closes the connection.
#pragma once

#include <asio/ip/address.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "baidu_rpc_meta.pb.h"

namespace raftstore::rpc {

constexpr size_t kFrameHeader = 12;
constexpr uint32_t kDefaultMaxBody = 64u << 20;  // brpc's max_body_size

struct Frame {
  brpc::policy::RpcMeta meta;
  std::string payload;       // the request or response message (never compressed by braft)
  std::string attachment;    // raw bytes: entry data, file chunks
  uint64_t connection = 0;   // server side: the connection it arrived on (see Server)
  asio::ip::address remote;  // server side: who sent it
  bool is_request() const { return meta.has_request(); }
};

class FrameParser {
 public:
  enum class Result {
    NeedMore,     // no whole frame yet
    Frame,        // *out holds the next frame
    NotBaiduStd,  // the connection does not start with "PRPC" (maybe HTTP: sniff it)
    Error,        // malformed or oversized: close the connection
  };

  explicit FrameParser(uint32_t max_body = kDefaultMaxBody) : max_body_(max_body) {}
  void feed(std::string_view bytes) { buf_.append(bytes); }
  Result next(Frame* out, std::string* error);
  // Bytes received but not yet taken out as frames.
  std::string_view pending() const { return std::string_view(buf_).substr(pos_); }

 private:
  std::string buf_;
  size_t pos_ = 0;
  uint32_t max_body_;
  bool first_ = true;
};

// A whole frame. attachment_size is set from `attachment` (and cleared when it is empty).
std::string encode_frame(brpc::policy::RpcMeta meta, std::string_view payload,
                         std::string_view attachment = {});

// The meta that brpc itself puts on requests and responses (§1.2 [seen]): request or
// response, compress_type 0, correlation_id, content_type PB, checksum_type 0 and an
// explicitly present empty checksum_value. error_code is always present in responses.
brpc::policy::RpcMeta request_meta(std::string_view service, std::string_view method,
                                   int64_t correlation_id);
brpc::policy::RpcMeta response_meta(int64_t correlation_id, int32_t error_code = 0,
                                    std::string_view error_text = {});

}  // namespace raftstore::rpc
