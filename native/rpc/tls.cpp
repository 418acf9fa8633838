#include "tls.h"

#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <sys/stat.h>

namespace raftstore::rpc {

namespace {

std::shared_ptr<asio::ssl::context> make_context(const TlsFiles& f, bool server) {
  auto ctx = std::make_shared<asio::ssl::context>(server ? asio::ssl::context::tls_server
                                                         : asio::ssl::context::tls_client);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1);
  ctx->load_verify_file(f.ca);
  ctx->use_certificate_chain_file(f.cert);
  ctx->use_private_key_file(f.key, asio::ssl::context::pem);
  ctx->set_verify_mode(server ? asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert
                              : asio::ssl::verify_peer);
  return ctx;
}

}  // namespace

bool TlsConfig::build(const TlsFiles& files, Contexts* out, std::string* error) {
  // What a typo'd path looks like, before OpenSSL's own words for it.
  for (const auto& [what, path] : {std::pair<const char*, const std::string*>{"CA", &files.ca},
                                   {"certificate", &files.cert},
                                   {"key", &files.key}}) {
    struct stat st {};
    if (path->empty() || ::stat(path->c_str(), &st) != 0) {
      *error = std::string("TLS ") + what + " file " +
               (path->empty() ? "is not set" : "\"" + *path + "\" cannot be read");
      return false;
    }
  }
  try {
    out->server = make_context(files, true);
    out->client = make_context(files, false);
  } catch (const std::system_error& e) {
    *error = "TLS files (CA " + files.ca + ", certificate " + files.cert + ", key " + files.key +
             "): " + e.what();
    return false;
  }
  return true;
}

std::shared_ptr<TlsConfig> TlsConfig::load(const TlsFiles& files, std::string* error) {
  // The addon uses the OpenSSL of the Node process it is loaded into; it was compiled
  // against 3.x, whose ABI every 3.x release keeps.
  if (OpenSSL_version_num() >> 28 != 3) {
    *error = std::string("TLS needs OpenSSL 3 in this process; it has ") +
             OpenSSL_version(OPENSSL_VERSION);
    return nullptr;
  }
  auto c = std::make_shared<TlsConfig>(Key{}, files);
  if (!build(files, &c->current_, error)) return nullptr;
  c->stamp_ = c->stamp();
  c->checked_ = std::chrono::steady_clock::now();
  return c;
}

std::string TlsConfig::stamp() const {
  std::string s;
  for (const auto* p : {&files_.ca, &files_.cert, &files_.key}) {
    struct stat st {};
    if (::stat(p->c_str(), &st) == 0)
      s += std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec) + ";";
    else
      s += "missing;";
  }
  return s;
}

void TlsConfig::maybe_reload() {
  auto now = std::chrono::steady_clock::now();
  if (now - checked_ < std::chrono::seconds(1)) return;
  checked_ = now;
  std::string s = stamp();
  if (s == stamp_) return;
  Contexts fresh;
  std::string error;
  if (!build(files_, &fresh, &error)) {
    ++reload_failures_;  // the old ones stay; tried again when the files change again
    stamp_ = s;
    return;
  }
  current_ = std::move(fresh);
  stamp_ = s;
  ++reloads_;
}

std::shared_ptr<asio::ssl::context> TlsConfig::server() {
  std::lock_guard<std::mutex> l(mu_);
  maybe_reload();
  return current_.server;
}

std::shared_ptr<asio::ssl::context> TlsConfig::client() {
  std::lock_guard<std::mutex> l(mu_);
  maybe_reload();
  return current_.client;
}

Stream::Stream(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> tls)
    : ctx_(std::move(tls)), plain_(socket.get_executor()) {
  if (ctx_)
    tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(std::move(socket), *ctx_);
  else
    plain_ = std::move(socket);
}

void Stream::close() {
  std::error_code ec;
  socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket().close(ec);
}

}  // namespace raftstore::rpc
