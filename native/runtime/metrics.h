// What a replica counts and times, and what it tells its operator: the figures behind
// GET /metrics (Prometheus text), node.metrics() in JavaScript and the status page, and the
// structured log records (elections, leader changes, membership, snapshots, errors, slow
// fsyncs). Replica records them where it decides (so the simulator runs this code too);
// every figure is an atomic or guarded, so any thread may read them.
//
// One fact, one place: the names, help texts, types and units of every metric are written
// once, in collect_metrics (metrics.cpp). JavaScript gets the same families from the addon,
// never a second list.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "raft.h"

namespace raftstore::runtime {

// A histogram over fixed bucket bounds, in integer units (microseconds, entries, bytes);
// `scale` turns a unit into what the metric's name says (1e-6: seconds). Thread-safe.
struct Buckets {
  std::vector<uint64_t> bounds;  // upper bounds, ascending; +Inf is implicit
  double scale = 1;
};
extern const Buckets kLatencyBuckets;   // µs, 50 µs .. 10 s
extern const Buckets kDurationBuckets;  // µs, 10 ms .. 10 min (snapshots)
extern const Buckets kCountBuckets;     // entries, 1 .. 16384
extern const Buckets kByteBuckets;      // bytes, 256 B .. 256 MiB

class Histogram {
 public:
  explicit Histogram(const Buckets& b);
  void observe(uint64_t v);
  const Buckets& buckets() const { return b_; }
  // Cumulative counts per bound (and +Inf last), the sum (in units) and the count.
  std::vector<uint64_t> cumulative() const;
  uint64_t sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  const Buckets& b_;
  std::vector<std::atomic<uint64_t>> counts_;
  std::atomic<uint64_t> sum_{0}, count_{0};
};

struct ReplicaMetrics {
  using Counter = std::atomic<uint64_t>;
  Counter leader_changes{0}, elections_started{0}, elections_won{0};
  Counter proposals_ok{0}, proposals_failed{0};
  Counter forwards_ok{0}, forwards_failed{0};
  Counter reads_ok{0}, reads_failed{0};
  Counter snapshots_taken{0}, snapshots_installed{0}, snapshot_failures{0};
  Counter snapshot_bytes{0};  // the newest published snapshot's files
  Counter stuck_apply_transfers{0};
  Counter log_batches{0};
  Counter state_machine_applied{0};  // as the state machine last reported (report_applied)
  Histogram proposal_commit{kLatencyBuckets};  // proposed here -> applied here
  Histogram log_append{kLatencyBuckets};       // one writer batch's writes (without fsync)
  Histogram log_fsync{kLatencyBuckets};        // one writer batch's fsync
  Histogram batch_entries{kCountBuckets};
  Histogram batch_bytes{kByteBuckets};
  Histogram snapshot_take{kDurationBuckets};  // asked -> published
  Histogram snapshot_install{kDurationBuckets};
  Histogram read_index{kLatencyBuckets};
  Histogram apply_lag{kLatencyBuckets};  // handed to the state machine -> reported applied
};

enum class LogLevel : uint8_t { Debug, Info, Warn, Error };
const char* level_name(LogLevel l);
// "debug", "info", "warn", "error" (and "warning"); false otherwise.
bool parse_level(const std::string& text, LogLevel* out);

// One structured log line: what happened to which replica, with its facts as fields.
struct LogRecord {
  LogLevel level = LogLevel::Info;
  uint64_t wall_ms = 0;
  std::string group;
  std::string peer;
  std::string message;
  std::vector<std::pair<std::string, std::string>> fields;
};
using LogSink = std::function<void(const LogRecord&)>;

// The recent info-and-above records, for the status page. Thread-safe.
class EventRing {
 public:
  static constexpr size_t kCapacity = 64;
  void push(const LogRecord& r);
  std::vector<LogRecord> recent() const;

 private:
  mutable std::mutex mu_;
  std::deque<LogRecord> records_;
};

// One sample of a family: the name's suffix ("_bucket", "_sum", "_count" or ""), labels and
// value.
struct MetricSample {
  std::string suffix;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};
struct MetricFamily {
  std::string name, help, type;  // type: counter | gauge | histogram
  std::vector<MetricSample> samples;
};

// Entries a peer's log is behind the leader's (status as the leader sees it).
inline uint64_t peer_lag(const core::NodeStatus& s, const core::PeerStatus& p) {
  return s.last_index > p.match_index ? s.last_index - p.match_index : 0;
}

// Every family of one replica, labelled with its group and peer. `now_ms` is the replica's
// monotonic clock (for the time since each peer's last contact).
std::vector<MetricFamily> collect_metrics(const std::string& group, const core::PeerId& self,
                                          const core::NodeStatus& status, uint64_t snapshot_index,
                                          const ReplicaMetrics& m, uint64_t now_ms,
                                          const std::map<core::PeerId, uint64_t>& bytes_sent = {});
// Families from several replicas (or the host) merged by name, in Prometheus's text format.
std::string render_prometheus(const std::vector<std::vector<MetricFamily>>& parts);

// JSON string escaping, for the status page's JSON.
std::string json_string(const std::string& s);

}  // namespace raftstore::runtime
