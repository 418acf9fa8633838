// raftstore-counter-client: braft's counter client. Each of -thread_num threads sends
// fetch_add(-value, default 1) and waits for the answer, for -seconds; it finds the leader through
// CliService get_leader and follows redirects. Ends with one line:
//   qps=N p50_ms=X p90_ms=X p99_ms=X p999_ms=X errors=N
// (before it, max_value=V: the highest value an acknowledged fetch_add returned).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "cli.pb.h"
#include "counter.pb.h"
#include "flags.h"
#include "transport.h"
#include "types.h"

using namespace raftstore;
using Clock = std::chrono::steady_clock;

namespace {

struct Call {
  int32_t code = 0;
  std::string payload;
};

// A synchronous call on the thread's own io_context.
Call call(asio::io_context& io, rpc::Channel& ch, const std::string& service,
          const std::string& method, const std::string& payload, uint32_t timeout_ms) {
  Call out;
  bool done = false;
  ch.call(service, method, payload, "", timeout_ms,
          [&](int32_t c, const std::string&, rpc::Frame f) {
            out.code = c ? c : f.meta.response().error_code();
            out.payload = std::move(f.payload);
            done = true;
          });
  io.restart();
  while (!done && io.run_one() > 0) {
  }
  return out;
}

class Worker {
 public:
  Worker(const core::PeerList& peers, std::string group)
      : peers_(peers), group_(std::move(group)) {}

  std::shared_ptr<rpc::Channel> channel(const core::PeerId& p) {
    auto& ch = channels_[p];
    if (!ch)
      ch = rpc::Channel::create(io_, asio::ip::tcp::endpoint(asio::ip::address_v4(p.ip), p.port));
    return ch;
  }

  bool find_leader() {
    for (const auto& p : peers_) {
      braft::GetLeaderRequest req;
      req.set_group_id(group_);
      req.set_peer_id(p.to_string());
      Call c =
          call(io_, *channel(p), "braft.CliService", "get_leader", req.SerializeAsString(), 500);
      braft::GetLeaderResponse resp;
      if (c.code == 0 && resp.ParseFromString(c.payload)) {
        if (auto id = core::PeerId::parse(resp.leader_id())) {
          leader_ = *id;
          return true;
        }
      }
    }
    return false;
  }

  // One acknowledged fetch_add, or false after an error (the caller counts it).
  bool fetch_add(int64_t add, int64_t* value) {
    if (leader_.empty() && !find_leader()) return false;
    example::FetchAddRequest req;
    req.set_value(add);
    Call c = call(io_, *channel(leader_), "example.CounterService", "fetch_add",
                  req.SerializeAsString(), 2000);
    example::CounterResponse resp;
    if (c.code != 0 || !resp.ParseFromString(c.payload)) {
      leader_ = {};
      return false;
    }
    if (!resp.success()) {
      auto next = core::PeerId::parse(resp.redirect());
      leader_ = next ? *next : core::PeerId{};
      return false;
    }
    *value = resp.value();
    return true;
  }

 private:
  asio::io_context io_;
  core::PeerList peers_;
  std::string group_;
  std::map<core::PeerId, std::shared_ptr<rpc::Channel>> channels_;
  core::PeerId leader_;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    counter::Flags f(argc, argv,
                     {{"conf", ""},
                      {"group", "Counter"},
                      {"thread_num", "1"},
                      {"seconds", "10"},
                      {"value", "1"}});
    auto peers = core::parse_peer_list(f.str("conf"));
    int64_t threads = f.num("thread_num"), seconds = f.num("seconds");
    if (!peers || peers->empty() || threads <= 0 || seconds <= 0) {
      std::fprintf(stderr,
                   "ERR_RAFT_BAD_CONFIG: need -conf=ip:port:idx,... and positive "
                   "-thread_num and -seconds\n");
      return 2;
    }
    std::mutex mu;
    std::vector<double> latencies;
    std::atomic<int64_t> errors{0}, max_value{-1};
    auto end = Clock::now() + std::chrono::seconds(seconds);
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        Worker w(*peers, f.str("group"));
        std::vector<double> mine;
        while (Clock::now() < end) {
          auto start = Clock::now();
          int64_t v = 0;
          if (w.fetch_add(f.num("value"), &v)) {
            mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
            for (int64_t m = max_value; v > m && !max_value.compare_exchange_weak(m, v);) {
            }
          } else {
            ++errors;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          }
        }
        std::lock_guard<std::mutex> l(mu);
        latencies.insert(latencies.end(), mine.begin(), mine.end());
      });
    for (auto& t : pool) t.join();
    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double q) {
      return latencies.empty() ? 0.0
                               : latencies[std::min(latencies.size() - 1,
                                                    static_cast<size_t>(q * latencies.size()))];
    };
    std::printf("max_value=%lld\n", static_cast<long long>(max_value.load()));
    std::printf("qps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f errors=%lld\n",
                latencies.size() / static_cast<double>(seconds), pct(0.5), pct(0.9), pct(0.99),
                pct(0.999), static_cast<long long>(errors.load()));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ERR_RAFT_BAD_CONFIG: %s\n", e.what());
    return 2;
  }
}
