// Mutual TLS on the transport: a TLS pair works; plain clients, clients of another CA and
// clients without a certificate are refused and the port serves on; garbage and cut-off
// handshakes do not crash it; replaced certificate files take effect without a restart.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>
#include <thread>

#include "transport.h"

namespace raftstore::rpc {
namespace {

namespace fs = std::filesystem;
using asio::ip::tcp;
using namespace std::chrono_literals;

struct Reply {
  int32_t code = -1;
  std::string text;
};

class TlsTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(fs::temp_directory_path() /
                           ("raftstore-tls-" + std::to_string(::getpid())));
    std::string cmd = "bash " RAFTSTORE_SOURCE_DIR "/test/fixtures/make-certs.sh " + *dir_;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
  }
  static std::string F(const std::string& name) { return *dir_ + "/" + name; }
  static std::shared_ptr<TlsConfig> Config(const std::string& ca, const std::string& leaf) {
    std::string error;
    auto c = TlsConfig::load({F(ca + ".pem"), F(leaf + ".pem"), F(leaf + ".key")}, &error);
    EXPECT_TRUE(c) << error;
    return c;
  }

  void SetUp() override {
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    work_.reset();
    io_.stop();
    thread_.join();
  }
  void Serve(std::shared_ptr<TlsConfig> tls) {
    std::promise<void> ready;
    asio::post(io_, [&] {
      server_ = Server::start(
          io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
          [](Frame f, Server::Respond respond) { respond(0, "", f.payload, ""); },
          [](const std::string&) {
            return Server::HttpResponse{200, "text/plain", "ok\n"};
          },
          1 << 20, std::move(tls));
      ready.set_value();
    });
    ready.get_future().wait();
  }
  tcp::endpoint Endpoint() const {
    return tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port());
  }
  Reply Call(std::shared_ptr<TlsConfig> tls) {
    ChannelOptions o;
    o.tls = std::move(tls);
    o.connect_timeout_ms = 2000;
    auto ch = Channel::create(io_, Endpoint(), o);
    auto p = std::make_shared<std::promise<Reply>>();
    ch->call("test.Echo", "echo", "hello", "", 3000,
             [p](int32_t code, const std::string& text, Frame f) {
               p->set_value(Reply{code ? code : (f.payload == "hello" ? 0 : -2), text});
             });
    Reply r = p->get_future().get();
    ch->close();
    return r;
  }

  static std::string* dir_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::thread thread_;
  std::shared_ptr<Server> server_;
};
std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, MutualTlsCallsWork) {
  Serve(Config("ca", "node"));
  Reply r = Call(Config("ca", "client"));
  EXPECT_EQ(r.code, 0) << r.text;
  EXPECT_EQ(server_->stats().tls_refused, 0u);
}

TEST_F(TlsTest, PlainWrongCaAndTlsToPlainAreRefused) {
  Serve(Config("ca", "node"));
  Reply plain = Call(nullptr);
  EXPECT_NE(plain.code, 0) << "a plaintext client must not get an answer";
  Reply rogue = Call(Config("ca", "rogue"));  // trusts our CA, but its own cert is another's
  EXPECT_NE(rogue.code, 0);
  // With TLS 1.3 the client finishes its handshake before the server checks its
  // certificate: the refusal arrives as the server's alert on the first read.
  EXPECT_NE(rogue.text.find("unknown ca"), std::string::npos) << rogue.text;
  Reply distrust = Call(Config("other-ca", "rogue"));  // does not trust the server's CA
  EXPECT_NE(distrust.code, 0);
  EXPECT_GE(server_->stats().tls_refused, 2u);
  EXPECT_EQ(Call(Config("ca", "client")).code, 0) << "the port still serves";

  // A TLS client against a plain port fails its handshake too.
  server_->stop();
  Serve(nullptr);
  Reply to_plain = Call(Config("ca", "client"));
  EXPECT_NE(to_plain.code, 0);
}

TEST_F(TlsTest, BadLoadsSayWhy) {
  std::string error;
  EXPECT_FALSE(TlsConfig::load({F("ca.pem"), F("node.pem"), F("nope.key")}, &error));
  EXPECT_NE(error.find("nope.key"), std::string::npos) << error;
  EXPECT_FALSE(TlsConfig::load({F("ca.pem"), F("node.pem"), F("client.key")}, &error))
      << "a key that is not the certificate's";
  EXPECT_FALSE(error.empty());
  EXPECT_FALSE(TlsConfig::load({F("ca.pem"), "", ""}, &error));
  EXPECT_NE(error.find("not set"), std::string::npos) << error;
}

// Random bytes, and TLS records cut or corrupted at random points, at a TLS port: each
// connection is dropped, nothing crashes (ASan/UBSan watch), and a good client still gets
// its answer afterwards.
TEST_F(TlsTest, FuzzedHandshakesDoNotHurtThePort) {
  Serve(Config("ca", "node"));
  std::mt19937_64 rng(12345);
  // A real ClientHello to mutate: what our own client sends first.
  std::string hello;
  {
    asio::io_context io;
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    auto cfg = Config("ca", "client");
    std::thread t([&] {  // takes the hello and hangs up: the client's handshake then fails
      tcp::socket s(io);
      acc.accept(s);
      char buf[4096];
      std::error_code ec;
      size_t n = s.read_some(asio::buffer(buf), ec);
      hello.assign(buf, n);
      s.close(ec);
    });
    asio::ssl::stream<tcp::socket> c(io, *cfg->client());
    c.next_layer().connect(acc.local_endpoint());
    std::error_code ec;
    c.handshake(asio::ssl::stream_base::client, ec);
    t.join();
  }
  ASSERT_GT(hello.size(), 50u);
  ASSERT_EQ(hello[0], 0x16) << "a TLS handshake record";
  for (int i = 0; i < 300; ++i) {
    asio::io_context io;
    tcp::socket s(io);
    s.connect(Endpoint());
    std::string bytes;
    switch (i % 3) {
      case 0:  // noise
        bytes.resize(rng() % 2048);
        for (auto& c : bytes) c = static_cast<char>(rng());
        break;
      case 1:  // a ClientHello cut short
        bytes = hello.substr(0, rng() % hello.size());
        break;
      case 2:  // a ClientHello with a few bytes flipped
        bytes = hello;
        for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k)
          bytes[rng() % bytes.size()] ^= static_cast<char>(1 + rng() % 255);
        break;
    }
    std::error_code ec;
    asio::write(s, asio::buffer(bytes), ec);
    if (i % 2) {
      // Half stop sending and wait to be dropped (a stalled handshake is the port's own
      // 10 s timeout, not this test's); half hang up at once.
      s.shutdown(tcp::socket::shutdown_send, ec);
      timeval tv{5, 0};
      ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      char buf[256];
      while (!ec) s.read_some(asio::buffer(buf), ec);
    }
    s.close(ec);
  }
  EXPECT_EQ(Call(Config("ca", "client")).code, 0);
}

// The files are replaced by a certificate of another CA: within a second new connections
// use them (old clients are refused, clients of the new CA served), with no restart.
TEST_F(TlsTest, ReplacedCertificatesTakeEffectWithoutARestart) {
  std::string live = *dir_ + "/live";
  fs::create_directories(live);
  auto put = [&](const std::string& ca, const std::string& leaf) {
    for (auto [from, to] : {std::pair{ca + ".pem", "ca.pem"},
                            {leaf + ".pem", "node.pem"},
                            {leaf + ".key", "node.key"}}) {
      fs::copy_file(F(from), live + "/" + to + ".tmp", fs::copy_options::overwrite_existing);
      fs::rename(live + "/" + to + ".tmp", live + "/" + to);
    }
  };
  put("ca", "node");
  std::string error;
  auto server_tls =
      TlsConfig::load({live + "/ca.pem", live + "/node.pem", live + "/node.key"}, &error);
  ASSERT_TRUE(server_tls) << error;
  Serve(server_tls);
  EXPECT_EQ(Call(Config("ca", "client")).code, 0);
  put("ca2", "node2");
  std::this_thread::sleep_for(1100ms);  // files are looked at once a second at most
  EXPECT_NE(Call(Config("ca", "client")).code, 0) << "the old CA is no longer trusted";
  EXPECT_EQ(Call(Config("ca2", "node2")).code, 0) << "the new one is";
  EXPECT_EQ(server_tls->reloads(), 1u);
  // A broken replacement (a key that does not fit) keeps the working certificate.
  fs::copy_file(F("client.key"), live + "/node.key", fs::copy_options::overwrite_existing);
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(Call(Config("ca2", "node2")).code, 0);
  EXPECT_EQ(server_tls->reload_failures(), 1u);
}

}  // namespace
}  // namespace raftstore::rpc
