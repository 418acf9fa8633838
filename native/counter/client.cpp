// raftstore-counter-client: braft's counter client. Each of -thread_num threads sends
// fetch_add(-value, default 1) and waits for the answer, for -seconds; it finds the leader through
// CliService get_leader and follows redirects. Ends with one line:
//   qps=N p50_ms=X p90_ms=X p99_ms=X p999_ms=X errors=N
// Before it: max_value=V, the highest value an acknowledged fetch_add returned, and
// outage_ms=X, the longest time from a failed call to the next acknowledged one (any
// thread): what a failover costs the client.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <mutex>
#include <optional>
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

using Event = std::pair<Clock::time_point, bool>;  // (when, acknowledged)

// What one OS thread's callers saw.
struct Results {
  std::vector<double> latencies_ms;
  std::vector<Event> events;  // each caller's ok <-> failing transitions
  int64_t errors = 0;
  int64_t max_value = -1;
};

// -thread_num callers are synchronous loops (send, wait for the answer, send again), as
// braft's client runs them on bthreads; here they are spread over a few OS threads, each
// running its callers as asynchronous loops on its own io_context and connections, so the
// client spends its CPU on calls rather than on switching between 128 kernel threads.
class Worker {
 public:
  Worker(const core::PeerList& peers, std::string group, int64_t value, Clock::time_point end)
      : peers_(peers), group_(std::move(group)), end_(end) {
    example::FetchAddRequest req;
    req.set_value(value);
    payload_ = req.SerializeAsString();
  }

  void add_caller() { callers_.push_back(Caller{}); }

  Results run() {
    active_ = callers_.size();
    for (size_t i = 0; i < callers_.size(); ++i) issue(i);
    io_.run();
    return std::move(results_);
  }

 private:
  struct Caller {
    bool last_ok = true;
  };

  std::shared_ptr<rpc::Channel> channel(const core::PeerId& p) {
    auto& ch = channels_[p];
    if (!ch)
      ch = rpc::Channel::create(io_, asio::ip::tcp::endpoint(asio::ip::address_v4(p.ip), p.port));
    return ch;
  }

  void issue(size_t caller) {
    if (Clock::now() >= end_) {
      if (--active_ == 0) io_.stop();
      return;
    }
    if (leader_.empty()) {
      discover(0);
      return retry_later(caller);
    }
    auto start = Clock::now();
    core::PeerId to = leader_;
    channel(to)->call("example.CounterService", "fetch_add", payload_, "", 2000,
                      [this, caller, start, to](int32_t code, const std::string&, rpc::Frame f) {
                        if (code == 0) code = f.meta.response().error_code();
                        example::CounterResponse resp;
                        if (code == 0 && resp.ParseFromString(f.payload) && resp.success()) {
                          auto now = Clock::now();
                          results_.latencies_ms.push_back(
                              std::chrono::duration<double, std::milli>(now - start).count());
                          results_.max_value = std::max(results_.max_value, resp.value());
                          if (!callers_[caller].last_ok) results_.events.emplace_back(now, true);
                          callers_[caller].last_ok = true;
                          return issue(caller);
                        }
                        if (leader_ == to) {  // follow a redirect, or look for the leader again
                          auto next =
                              code == 0 ? core::PeerId::parse(resp.redirect()) : std::nullopt;
                          leader_ = next ? *next : core::PeerId{};
                        }
                        ++results_.errors;
                        if (callers_[caller].last_ok)
                          results_.events.emplace_back(Clock::now(), false);
                        callers_[caller].last_ok = false;
                        retry_later(caller);
                      });
  }

  void retry_later(size_t caller) {
    auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(5));
    timer->async_wait([this, caller, timer](std::error_code) { issue(caller); });
  }

  // CliService get_leader at each peer in turn until one names a leader.
  void discover(size_t i) {
    if (i == 0) {
      if (discovering_) return;
      discovering_ = true;
    }
    if (i == peers_.size()) {
      discovering_ = false;
      return;
    }
    braft::GetLeaderRequest req;
    req.set_group_id(group_);
    req.set_peer_id(peers_[i].to_string());
    channel(peers_[i])->call(
        "braft.CliService", "get_leader", req.SerializeAsString(), "", 500,
        [this, i](int32_t code, const std::string&, rpc::Frame f) {
          braft::GetLeaderResponse resp;
          if (code == 0 && f.meta.response().error_code() == 0 && resp.ParseFromString(f.payload)) {
            if (auto id = core::PeerId::parse(resp.leader_id())) {
              leader_ = *id;
              discovering_ = false;
              return;
            }
          }
          discover(i + 1);
        });
  }

  asio::io_context io_;
  core::PeerList peers_;
  std::string group_;
  Clock::time_point end_;
  std::string payload_;
  std::vector<Caller> callers_;
  size_t active_ = 0;
  std::map<core::PeerId, std::shared_ptr<rpc::Channel>> channels_;
  core::PeerId leader_;
  bool discovering_ = false;
  Results results_;
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
    auto end = Clock::now() + std::chrono::seconds(seconds);
    int64_t os_threads =
        std::min<int64_t>(threads, std::max<int64_t>(1, std::thread::hardware_concurrency()));
    std::vector<std::unique_ptr<Worker>> workers;
    for (int64_t t = 0; t < os_threads; ++t)
      workers.push_back(std::make_unique<Worker>(*peers, f.str("group"), f.num("value"), end));
    for (int64_t c = 0; c < threads; ++c) workers[c % os_threads]->add_caller();
    std::vector<Results> results(workers.size());
    std::vector<std::thread> pool;
    for (size_t t = 0; t < workers.size(); ++t)
      pool.emplace_back([&, t] { results[t] = workers[t]->run(); });
    for (auto& t : pool) t.join();
    std::vector<double> latencies;
    std::vector<Event> events;
    int64_t errors = 0, max_value = -1;
    for (auto& r : results) {
      latencies.insert(latencies.end(), r.latencies_ms.begin(), r.latencies_ms.end());
      events.insert(events.end(), r.events.begin(), r.events.end());
      errors += r.errors;
      max_value = std::max(max_value, r.max_value);
    }
    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double q) {
      return latencies.empty() ? 0.0
                               : latencies[std::min(latencies.size() - 1,
                                                    static_cast<size_t>(q * latencies.size()))];
    };
    // An outage opens at the first failure (on any thread) and closes at the next success
    // after it (on any thread); every thread logs its own ok<->failing transitions.
    std::sort(events.begin(), events.end());
    double outage_ms = 0;
    std::optional<Clock::time_point> open;
    for (const auto& [when, ok] : events) {
      if (!ok && !open) open = when;
      if (ok && open) {
        outage_ms =
            std::max(outage_ms, std::chrono::duration<double, std::milli>(when - *open).count());
        open.reset();
      }
    }
    if (open)  // never recovered before the run ended
      outage_ms = std::max(outage_ms,
                           std::chrono::duration<double, std::milli>(Clock::now() - *open).count());
    std::printf("max_value=%lld\n", static_cast<long long>(max_value));
    std::printf("outage_ms=%.0f\n", outage_ms);
    std::printf("qps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f errors=%lld\n",
                latencies.size() / static_cast<double>(seconds), pct(0.5), pct(0.9), pct(0.99),
                pct(0.999), static_cast<long long>(errors));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ERR_RAFT_BAD_CONFIG: %s\n", e.what());
    return 2;
  }
}
