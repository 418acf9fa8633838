// baidu_std over TCP with standalone Asio. Everything runs on the io_context's thread;
// call() and respond() may be used from any thread (they post to it).
//  * Server: accepts connections; per connection, sniffs the first bytes: "PRPC" frames go
//    to the request handler, anything else is treated as HTTP/1.x (GET of a path, answered
//    by the HTTP handler, then closed). Each request Frame carries its connection's remote
//    address, for access control. A malformed or oversized frame closes that
//    connection and is counted; nothing crashes.
//  * Channel: one connection to one endpoint, many calls in flight, answers matched by
//    correlation id in any order, a deadline per call, a connect timeout, and reconnection
//    with back-off after a failure (calls made while down fail fast with EHOSTDOWN).
#pragma once

#include <array>
#include <asio.hpp>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "frame.h"
#include "rpc_codes.h"
#include "tls.h"

namespace raftstore::rpc {

struct ServerStats {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_frames{0};  // connections closed for a malformed frame
  std::atomic<uint64_t> http_requests{0};
  std::atomic<uint64_t> tls_refused{0};  // TLS handshakes that failed (no or a wrong certificate)
};

class Server : public std::enable_shared_from_this<Server> {
 public:
  // Sends the response frame for one request: (error_code, error_text) or a payload.
  using Respond = std::function<void(int32_t error_code, const std::string& error_text,
                                     const std::string& payload, const std::string& attachment)>;
  using Handler = std::function<void(Frame request, Respond respond)>;
  struct HttpResponse {
    int status = 200;  // 200, 404
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  using HttpHandler = std::function<HttpResponse(const std::string& path)>;
  // A connection closed (by the peer, or for an error); requests from it carried its id in
  // Frame::connection.
  using CloseHandler = std::function<void(uint64_t connection)>;

  // With `tls`, every connection must complete a mutual TLS handshake first (tls.h).
  static std::shared_ptr<Server> start(asio::io_context& io, const asio::ip::tcp::endpoint& at,
                                       Handler handler, HttpHandler http,
                                       uint32_t max_body = kDefaultMaxBody,
                                       std::shared_ptr<TlsConfig> tls = nullptr);
  Server(asio::io_context& io, Handler handler, HttpHandler http, uint32_t max_body,
         std::shared_ptr<TlsConfig> tls = nullptr);
  uint16_t port() const;
  void stop();  // stops accepting and closes every connection
  void on_close(CloseHandler h) { on_close_ = std::move(h); }  // before the io_context runs
  const ServerStats& stats() const { return stats_; }

 private:
  class Connection;
  void accept();

  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
  Handler handler_;
  HttpHandler http_;
  CloseHandler on_close_;
  uint64_t next_connection_ = 0;
  uint32_t max_body_;
  std::shared_ptr<TlsConfig> tls_;
  ServerStats stats_;
  std::map<Connection*, std::weak_ptr<Connection>> connections_;
};

struct ChannelOptions {
  uint32_t connect_timeout_ms = 200;  // brpc's default
  uint32_t max_backoff_ms = 1000;
  uint32_t max_body = kDefaultMaxBody;
  asio::ip::address bind_address;  // unspecified: let the kernel pick (for fault injection)
  std::shared_ptr<TlsConfig> tls;  // set: mutual TLS (tls.h)
};

class Channel : public std::enable_shared_from_this<Channel> {
 public:
  // error_code 0: `response` holds the answer (which may itself carry an RPC error in
  // response.meta.response()). Otherwise a transport failure (kERPCTIMEDOUT, ...).
  using Callback =
      std::function<void(int32_t error_code, const std::string& error_text, Frame response)>;

  static std::shared_ptr<Channel> create(asio::io_context& io,
                                         const asio::ip::tcp::endpoint& remote,
                                         ChannelOptions options = {});
  Channel(asio::io_context& io, const asio::ip::tcp::endpoint& remote, ChannelOptions options);

  // timeout_ms 0: no deadline (as braft's data RPCs).
  void call(const std::string& service, const std::string& method, std::string payload,
            std::string attachment, uint32_t timeout_ms, Callback done);
  void close();  // fails every pending call

 private:
  struct Pending;
  void connect();
  void read();
  void fail_all(int32_t code, const std::string& text);
  void on_broken(const std::string& why);
  void flush();

  asio::io_context& io_;
  asio::ip::tcp::endpoint remote_;
  ChannelOptions opt_;
  std::shared_ptr<Stream> stream_;  // the current connection's; replaced at each connect
  asio::steady_timer connect_timer_;
  enum class State { Idle, Connecting, Up, Backoff, Closed } state_ = State::Idle;
  uint32_t backoff_ms_ = 0;
  asio::steady_timer backoff_timer_;
  std::string out_;  // frames waiting for the socket
  bool writing_ = false;
  std::array<char, 64 * 1024> rbuf_;
  FrameParser parser_;
  int64_t next_id_ = 1;
  std::map<int64_t, std::unique_ptr<Pending>> pending_;
};

}  // namespace raftstore::rpc
