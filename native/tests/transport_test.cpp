// baidu_std over loopback TCP: many calls in flight, answers out of order, deadlines,
// reconnection, malformed input closing only its own connection, and HTTP sniffing.
#include "transport.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace raftstore::rpc {
namespace {

using asio::ip::tcp;
using namespace std::chrono_literals;

struct Reply {
  int32_t code = -1;
  std::string text;
  Frame frame;
};

class TransportTest : public testing::Test {
 protected:
  void SetUp() override {
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    work_.reset();
    io_.stop();
    thread_.join();
  }
  void Serve(Server::Handler h, Server::HttpHandler http = nullptr) {
    std::promise<void> ready;
    asio::post(io_, [&] {
      server_ = Server::start(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
                              std::move(h), std::move(http), 1 << 20);
      ready.set_value();
    });
    ready.get_future().wait();
  }
  tcp::endpoint Endpoint() const {
    return tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port());
  }
  std::future<Reply> Call(Channel& ch, const std::string& payload, uint32_t timeout_ms = 2000,
                          const std::string& attachment = "") {
    auto p = std::make_shared<std::promise<Reply>>();
    ch.call("test.Echo", "echo", payload, attachment, timeout_ms,
            [p](int32_t code, const std::string& text, Frame f) {
              p->set_value(Reply{code, text, std::move(f)});
            });
    return p->get_future();
  }
  static Server::Handler Echo() {
    return [](Frame f, Server::Respond respond) { respond(0, "", f.payload, f.attachment); };
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::thread thread_;
  std::shared_ptr<Server> server_;
};

TEST_F(TransportTest, ManyCallsInFlightAreAllAnswered) {
  Serve(Echo());
  auto ch = Channel::create(io_, Endpoint());
  std::vector<std::future<Reply>> replies;
  for (int i = 0; i < 500; ++i)
    replies.push_back(Call(*ch, "p" + std::to_string(i), 5000, std::string(i % 7, 'a')));
  for (int i = 0; i < 500; ++i) {
    Reply r = replies[i].get();
    ASSERT_EQ(r.code, 0) << r.text;
    EXPECT_EQ(r.frame.payload, "p" + std::to_string(i));
    EXPECT_EQ(r.frame.attachment, std::string(i % 7, 'a'));
  }
  EXPECT_EQ(server_->stats().connections, 1u);  // one connection per channel
}

TEST_F(TransportTest, AnswersOutOfOrderAreMatchedByCorrelationId) {
  // The first request is answered last.
  auto held = std::make_shared<std::vector<Server::Respond>>();
  Serve([held](Frame f, Server::Respond respond) {
    if (f.payload == "first") {
      held->push_back(respond);
      return;
    }
    respond(0, "", f.payload, "");
    if (f.payload == "third")
      for (auto& r : *held) r(0, "", "first", "");
  });
  auto ch = Channel::create(io_, Endpoint());
  auto a = Call(*ch, "first"), b = Call(*ch, "second"), c = Call(*ch, "third");
  EXPECT_EQ(a.get().frame.payload, "first");
  EXPECT_EQ(b.get().frame.payload, "second");
  EXPECT_EQ(c.get().frame.payload, "third");
}

TEST_F(TransportTest, RpcErrorsArriveWithoutPayload) {
  Serve([](Frame, Server::Respond respond) {
    respond(2, "[127.0.0.1:8100][E2]Fail to find node", "ignored", "ignored");
  });
  auto ch = Channel::create(io_, Endpoint());
  Reply r = Call(*ch, "x").get();
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(r.frame.meta.response().error_code(), 2);
  EXPECT_EQ(r.frame.meta.response().error_text(), "[127.0.0.1:8100][E2]Fail to find node");
  EXPECT_TRUE(r.frame.payload.empty());
  EXPECT_TRUE(r.frame.attachment.empty());
}

TEST_F(TransportTest, UnansweredCallTimesOut) {
  Serve([](Frame, Server::Respond) {});  // never answers
  auto ch = Channel::create(io_, Endpoint());
  auto start = std::chrono::steady_clock::now();
  Reply r = Call(*ch, "x", 100).get();
  EXPECT_EQ(r.code, kERPCTIMEDOUT);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 90ms);
}

TEST_F(TransportTest, RefusedThenBackOffThenReconnect) {
  Serve(Echo());
  uint16_t port = server_->port();
  server_->stop();
  std::this_thread::sleep_for(50ms);
  auto ch = Channel::create(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  EXPECT_EQ(Call(*ch, "x").get().code, kEFAILEDSOCKET);
  EXPECT_EQ(Call(*ch, "y").get().code, kEHOSTDOWN);  // fails fast while backing off
  // The server comes back on the same port; after the back-off the channel reconnects.
  std::promise<void> ready;
  asio::post(io_, [&] {
    server_ = Server::start(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), Echo(),
                            nullptr);
    ready.set_value();
  });
  ready.get_future().wait();
  Reply r;
  for (int i = 0; i < 50; ++i) {
    r = Call(*ch, "z").get();
    if (r.code == 0) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(r.code, 0) << r.text;
  EXPECT_EQ(r.frame.payload, "z");
}

// Writes raw bytes on a fresh connection and returns whether the server closed it.
bool ServerCloses(const tcp::endpoint& at, const std::string& bytes) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(at);
  asio::write(s, asio::buffer(bytes));
  char c;
  std::error_code ec;
  s.read_some(asio::buffer(&c, 1), ec);
  return ec == asio::error::eof || ec == asio::error::connection_reset;
}

TEST_F(TransportTest, MalformedFrameClosesOnlyItsConnection) {
  Serve(Echo());
  auto ch = Channel::create(io_, Endpoint());
  ASSERT_EQ(Call(*ch, "before").get().code, 0);
  std::string oversized = std::string("PRPC") + std::string("\x7f\xff\xff\xff\x00\x00\x00\x05", 8);
  EXPECT_TRUE(ServerCloses(Endpoint(), oversized));
  std::string bad_meta =
      std::string("PRPC") + std::string("\x00\x00\x00\x04\x00\x00\x00\x04", 8) + "\xff\xff\xff\xff";
  EXPECT_TRUE(ServerCloses(Endpoint(), bad_meta));
  EXPECT_EQ(server_->stats().bad_frames, 2u);
  Reply r = Call(*ch, "after").get();  // the good connection is untouched
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(r.frame.payload, "after");
}

TEST_F(TransportTest, HttpGetIsAnsweredOnTheSamePort) {
  Serve(Echo(), [](const std::string& path) {
    return Server::HttpResponse{path == "/raft_stat" ? 200 : 404, "text/plain; charset=utf-8",
                                "status of " + path + "\n"};
  });
  asio::io_context io;
  tcp::socket s(io);
  s.connect(Endpoint());
  asio::write(s, asio::buffer(std::string("GET /raft_stat HTTP/1.1\r\nHost: x\r\n\r\n")));
  std::string response;
  std::error_code ec;
  char buf[512];
  while (!ec) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    response.append(buf, n);
  }
  EXPECT_EQ(response.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << response;
  EXPECT_NE(response.find("\r\n\r\nstatus of /raft_stat\n"), std::string::npos) << response;
  EXPECT_EQ(server_->stats().http_requests, 1u);
}

}  // namespace
}  // namespace raftstore::rpc
