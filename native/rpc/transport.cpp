#include "transport.h"

#include <algorithm>
#include <array>

namespace raftstore::rpc {

using asio::ip::tcp;

// --- Server ----------------------------------------------------------------------------

class Server::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Server> server, tcp::socket socket)
      : server_(std::move(server)), id_(++server_->next_connection_), parser_(server_->max_body_) {
    std::error_code ec;
    remote_ = socket.remote_endpoint(ec).address();
    stream_ = std::make_shared<Stream>(std::move(socket),
                                       server_->tls_ ? server_->tls_->server() : nullptr);
  }

  void start() {
    if (!stream_->tls()) return read();
    // A peer that connects and never finishes its handshake does not hold the connection.
    auto self = shared_from_this();
    auto timer = std::make_shared<asio::steady_timer>(server_->io_, std::chrono::seconds(10));
    timer->async_wait([self](std::error_code ec) {
      if (!ec) self->close();
    });
    stream_->async_handshake(asio::ssl::stream_base::server,
                             [this, self, timer, s = stream_](std::error_code ec) {
                               timer->cancel();
                               if (ec) {
                                 ++server_->stats_.tls_refused;
                                 return finish();
                               }
                               read();
                             });
  }
  void close() { stream_->close(); }

 private:
  void read() {
    auto self = shared_from_this();
    stream_->async_read_some(asio::buffer(buf_), [this, self](std::error_code ec, size_t n) {
      if (ec) return finish();
      if (http_) {
        http_request_.append(buf_.data(), n);
        return on_http();
      }
      parser_.feed(std::string_view(buf_.data(), n));
      Frame f;
      std::string error;
      while (true) {
        switch (parser_.next(&f, &error)) {
          case FrameParser::Result::NeedMore:
            return read();
          case FrameParser::Result::NotBaiduStd:
            http_ = true;
            http_request_ = std::string(parser_.pending());
            return on_http();
          case FrameParser::Result::Error:
            ++server_->stats_.bad_frames;
            return finish();
          case FrameParser::Result::Frame:
            if (!f.is_request()) {
              ++server_->stats_.bad_frames;
              return finish();
            }
            ++server_->stats_.requests;
            dispatch(std::move(f));
            break;
        }
      }
    });
  }

  void dispatch(Frame f) {
    f.connection = id_;
    f.remote = remote_;
    int64_t cid = f.meta.correlation_id();
    std::weak_ptr<Connection> weak = shared_from_this();
    asio::io_context& io = server_->io_;
    server_->handler_(
        std::move(f), [weak, cid, &io](int32_t code, const std::string& text,
                                       const std::string& payload, const std::string& attachment) {
          // An error carries no payload and no attachment (brpc's convention).
          std::string frame = code ? encode_frame(response_meta(cid, code, text), "")
                                   : encode_frame(response_meta(cid), payload, attachment);
          asio::post(io, [weak, frame = std::move(frame)]() mutable {
            if (auto c = weak.lock()) c->send(std::move(frame));
          });
        });
  }

  void send(std::string bytes) {
    out_ += bytes;
    if (!writing_) write();
  }

  void write() {
    if (out_.empty()) {
      writing_ = false;
      if (close_after_write_) close();
      return;
    }
    writing_ = true;
    auto self = shared_from_this();
    auto data = std::make_shared<std::string>(std::move(out_));
    out_.clear();
    stream_->async_write(asio::buffer(*data), [this, self, data](std::error_code ec, size_t) {
      if (ec) return finish();
      write();
    });
  }

  // A minimal HTTP/1.x GET: enough for `curl http://host:port/raft_stat`.
  void on_http() {
    size_t end = http_request_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (http_request_.size() > 16 * 1024) return finish();
      return read();
    }
    ++server_->stats_.http_requests;
    std::string line = http_request_.substr(0, http_request_.find("\r\n"));
    size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    HttpResponse r;
    if (line.rfind("GET ", 0) != 0 || sp1 == sp2 || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
      r.status = 400;
      r.body = "raftstore speaks baidu_std and HTTP GET\n";
    } else if (server_->http_) {
      r = server_->http_(line.substr(sp1 + 1, sp2 - sp1 - 1));
    }
    const char* reason = r.status == 200 ? "OK" : r.status == 404 ? "Not Found" : "Bad Request";
    close_after_write_ = true;
    send("HTTP/1.1 " + std::to_string(r.status) + " " + reason + "\r\nContent-Type: " +
         r.content_type + "\r\nContent-Length: " + std::to_string(r.body.size()) +
         "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n" + r.body);
  }

  void finish() {
    close();
    server_->connections_.erase(this);
    if (!finished_ && server_->on_close_) server_->on_close_(id_);
    finished_ = true;
  }

  std::shared_ptr<Server> server_;  // outlives its connections
  uint64_t id_;
  bool finished_ = false;
  std::shared_ptr<Stream> stream_;
  FrameParser parser_;
  std::array<char, 64 * 1024> buf_;
  std::string out_;
  bool writing_ = false;
  bool http_ = false;
  asio::ip::address remote_;
  bool close_after_write_ = false;
  std::string http_request_;
};

Server::Server(asio::io_context& io, Handler handler, HttpHandler http, uint32_t max_body,
               std::shared_ptr<TlsConfig> tls)
    : io_(io),
      acceptor_(io),
      handler_(std::move(handler)),
      http_(std::move(http)),
      max_body_(max_body),
      tls_(std::move(tls)) {}

std::shared_ptr<Server> Server::start(asio::io_context& io, const tcp::endpoint& at,
                                      Handler handler, HttpHandler http, uint32_t max_body,
                                      std::shared_ptr<TlsConfig> tls) {
  auto s =
      std::make_shared<Server>(io, std::move(handler), std::move(http), max_body, std::move(tls));
  s->acceptor_.open(at.protocol());
  s->acceptor_.set_option(tcp::acceptor::reuse_address(true));
  s->acceptor_.bind(at);  // throws asio::system_error (e.g. address in use)
  s->acceptor_.listen();
  s->accept();
  return s;
}

uint16_t Server::port() const { return acceptor_.local_endpoint().port(); }

void Server::accept() {
  auto self = shared_from_this();
  acceptor_.async_accept([this, self](std::error_code ec, tcp::socket socket) {
    if (ec) return;  // stopped
    socket.set_option(tcp::no_delay(true), ec);
    ++stats_.connections;
    auto c = std::make_shared<Connection>(self, std::move(socket));
    connections_[c.get()] = c;
    c->start();
    accept();
  });
}

void Server::stop() {
  auto self = shared_from_this();
  asio::post(io_, [this, self] {
    std::error_code ec;
    acceptor_.close(ec);
    auto conns = std::move(connections_);
    for (auto& [raw, weak] : conns)
      if (auto c = weak.lock()) c->close();
  });
}

// --- Channel ---------------------------------------------------------------------------

struct Channel::Pending {
  Callback done;
  asio::steady_timer timer;
  explicit Pending(asio::io_context& io, Callback cb) : done(std::move(cb)), timer(io) {}
};

Channel::Channel(asio::io_context& io, const tcp::endpoint& remote, ChannelOptions options)
    : io_(io),
      remote_(remote),
      opt_(options),
      connect_timer_(io),
      backoff_timer_(io),
      parser_(options.max_body) {}

std::shared_ptr<Channel> Channel::create(asio::io_context& io, const tcp::endpoint& remote,
                                         ChannelOptions options) {
  return std::make_shared<Channel>(io, remote, options);
}

void Channel::call(const std::string& service, const std::string& method, std::string payload,
                   std::string attachment, uint32_t timeout_ms, Callback done) {
  auto self = shared_from_this();
  asio::post(io_, [=, this, payload = std::move(payload), attachment = std::move(attachment),
                   done = std::move(done)]() mutable {
    if (state_ == State::Closed) return done(kEFAILEDSOCKET, "channel closed", Frame{});
    if (state_ == State::Backoff)
      return done(kEHOSTDOWN,
                  "not connected to " + remote_.address().to_string() + ":" +
                      std::to_string(remote_.port()),
                  Frame{});
    int64_t id = next_id_++;
    auto p = std::make_unique<Pending>(io_, std::move(done));
    if (timeout_ms) {
      p->timer.expires_after(std::chrono::milliseconds(timeout_ms));
      p->timer.async_wait([this, self, id](std::error_code ec) {
        if (ec) return;  // answered or failed first
        auto it = pending_.find(id);
        if (it == pending_.end()) return;
        auto cb = std::move(it->second->done);
        pending_.erase(it);
        cb(kERPCTIMEDOUT, "reached timeout", Frame{});
      });
    }
    pending_.emplace(id, std::move(p));
    out_ += encode_frame(request_meta(service, method, id), payload, attachment);
    if (state_ == State::Idle) connect();
    if (state_ == State::Up) flush();
  });
}

void Channel::connect() {
  state_ = State::Connecting;
  auto self = shared_from_this();
  std::error_code ec;
  tcp::socket socket(io_);
  socket.open(remote_.protocol(), ec);
  if (!ec && !opt_.bind_address.is_unspecified())
    socket.bind(tcp::endpoint(opt_.bind_address, 0), ec);
  if (ec) return on_broken("socket: " + ec.message());
  auto stream =
      std::make_shared<Stream>(std::move(socket), opt_.tls ? opt_.tls->client() : nullptr);
  stream_ = stream;
  // One deadline for the connect and, with TLS, the handshake.
  connect_timer_.expires_after(std::chrono::milliseconds(
      stream->tls() ? std::max<uint32_t>(opt_.connect_timeout_ms, 1000) : opt_.connect_timeout_ms));
  connect_timer_.async_wait([this, self, stream](std::error_code e) {
    if (!e && state_ == State::Connecting && stream_ == stream)
      stream->close();  // the pending connect or handshake fails with operation_aborted
  });
  auto up = [this, self, stream] {
    connect_timer_.cancel();
    state_ = State::Up;
    backoff_ms_ = 0;
    parser_ = FrameParser(opt_.max_body);
    read();
    flush();
  };
  stream->socket().async_connect(remote_, [this, self, stream, up](std::error_code e) {
    if (state_ != State::Connecting || stream_ != stream) return;
    if (e) {
      connect_timer_.cancel();
      return on_broken("connect: " + e.message());
    }
    std::error_code ignored;
    stream->socket().set_option(tcp::no_delay(true), ignored);
    if (!stream->tls()) return up();
    stream->async_handshake(asio::ssl::stream_base::client,
                            [this, self, stream, up](std::error_code e2) {
                              if (state_ != State::Connecting || stream_ != stream) return;
                              if (e2) {
                                connect_timer_.cancel();
                                return on_broken("TLS handshake: " + e2.message());
                              }
                              up();
                            });
  });
}

void Channel::flush() {
  if (writing_ || out_.empty() || state_ != State::Up) return;
  writing_ = true;
  auto self = shared_from_this();
  auto data = std::make_shared<std::string>(std::move(out_));
  out_.clear();
  auto stream = stream_;
  stream->async_write(asio::buffer(*data), [this, self, data, stream](std::error_code ec, size_t) {
    if (stream_ != stream) return;  // a connection since replaced
    writing_ = false;
    if (ec) return on_broken("write: " + ec.message());
    flush();
  });
}

void Channel::read() {
  auto self = shared_from_this();
  auto stream = stream_;
  stream->async_read_some(asio::buffer(rbuf_), [this, self, stream](std::error_code ec, size_t n) {
    if (state_ != State::Up || stream_ != stream) return;
    if (ec) return on_broken("read: " + ec.message());
    parser_.feed(std::string_view(rbuf_.data(), n));
    Frame f;
    std::string error;
    while (true) {
      auto r = parser_.next(&f, &error);
      if (r == FrameParser::Result::NeedMore) break;
      if (r != FrameParser::Result::Frame || f.is_request())
        return on_broken("bad frame from server: " + error);
      auto it = pending_.find(f.meta.correlation_id());
      if (it == pending_.end()) continue;  // answered after its deadline
      auto cb = std::move(it->second->done);
      it->second->timer.cancel();
      pending_.erase(it);
      cb(0, "", std::move(f));
    }
    read();
  });
}

void Channel::fail_all(int32_t code, const std::string& text) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) {
    p->timer.cancel();
    p->done(code, text, Frame{});
  }
}

void Channel::on_broken(const std::string& why) {
  if (stream_) stream_->close();
  out_.clear();
  writing_ = false;
  if (state_ == State::Closed) return;
  fail_all(kEFAILEDSOCKET, why);
  state_ = State::Backoff;
  backoff_ms_ = std::min<uint32_t>(opt_.max_backoff_ms, backoff_ms_ ? backoff_ms_ * 2 : 50);
  auto self = shared_from_this();
  backoff_timer_.expires_after(std::chrono::milliseconds(backoff_ms_));
  backoff_timer_.async_wait([this, self](std::error_code ec) {
    if (!ec && state_ == State::Backoff) state_ = State::Idle;
  });
}

void Channel::close() {
  auto self = shared_from_this();
  asio::post(io_, [this, self] {
    state_ = State::Closed;
    if (stream_) stream_->close();
    connect_timer_.cancel();
    backoff_timer_.cancel();
    fail_all(kEFAILEDSOCKET, "channel closed");
  });
}

}  // namespace raftstore::rpc
