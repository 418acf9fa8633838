// Mutual TLS for a port and its channels (OpenSSL through Asio's SSL streams). Both sides
// present a certificate signed by the CA and check the other's against it; the CA is the
// trust boundary (no host name check: replicas are named by address). TLS 1.2 or newer.
//
// Certificates are replaced without a restart: the files are checked (at most once a
// second, when a connection starts) and, once any changed, loaded again; new connections
// use the new ones, open ones keep theirs. A reload that fails keeps the old contexts and
// is counted, so a half-written file never takes a port down.
//
// In the Node addon, the OpenSSL that Node itself carries serves (its symbols are exported
// to addons); elsewhere the system's libssl.
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace raftstore::rpc {

struct TlsFiles {
  std::string ca, cert, key;  // PEM files
};

class TlsConfig {
 public:
  // Nullptr (and *error says what) when a file cannot be read or the key does not fit the
  // certificate, or when the OpenSSL in this process is not 3.x.
  static std::shared_ptr<TlsConfig> load(const TlsFiles& files, std::string* error);

  // The contexts for a new connection, reloaded first if a file changed. Thread-safe.
  std::shared_ptr<asio::ssl::context> server();
  std::shared_ptr<asio::ssl::context> client();

  uint64_t reloads() const { return reloads_; }
  uint64_t reload_failures() const { return reload_failures_; }
  const TlsFiles& files() const { return files_; }

  struct Key {};
  TlsConfig(Key, TlsFiles files) : files_(std::move(files)) {}

 private:
  struct Contexts {
    std::shared_ptr<asio::ssl::context> server, client;
  };
  static bool build(const TlsFiles& files, Contexts* out, std::string* error);
  std::string stamp() const;  // the files' sizes and modification times
  void maybe_reload();

  TlsFiles files_;
  std::mutex mu_;
  Contexts current_;
  std::string stamp_;
  std::chrono::steady_clock::time_point checked_;
  std::atomic<uint64_t> reloads_{0}, reload_failures_{0};
};

// A connection's byte stream: plain TCP, or TLS over it. Async operations hold the stream
// through a shared_ptr (the caller's), so it outlives them even when the owner replaces it.
class Stream {
 public:
  Stream(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> tls);
  asio::ip::tcp::socket& socket() { return tls_ ? tls_->next_layer() : plain_; }
  bool tls() const { return tls_ != nullptr; }

  template <typename Buffer, typename Handler>
  void async_read_some(const Buffer& b, Handler&& h) {
    if (tls_)
      tls_->async_read_some(b, std::forward<Handler>(h));
    else
      plain_.async_read_some(b, std::forward<Handler>(h));
  }
  template <typename Buffer, typename Handler>
  void async_write(const Buffer& b, Handler&& h) {
    if (tls_)
      asio::async_write(*tls_, b, std::forward<Handler>(h));
    else
      asio::async_write(plain_, b, std::forward<Handler>(h));
  }
  // Only for a TLS stream.
  template <typename Handler>
  void async_handshake(asio::ssl::stream_base::handshake_type type, Handler&& h) {
    tls_->async_handshake(type, std::forward<Handler>(h));
  }
  void close();

 private:
  std::shared_ptr<asio::ssl::context> ctx_;  // outlives tls_
  asio::ip::tcp::socket plain_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>> tls_;
};

}  // namespace raftstore::rpc
