#include "metrics.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <map>

namespace raftstore::runtime {

const Buckets kLatencyBuckets{{50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
                               250000, 500000, 1000000, 2500000, 5000000, 10000000},
                              1e-6};
const Buckets kDurationBuckets{{10000, 50000, 100000, 500000, 1000000, 5000000, 10000000, 30000000,
                                60000000, 120000000, 300000000, 600000000},
                               1e-6};
const Buckets kCountBuckets{{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384}, 1};
const Buckets kByteBuckets{
    {256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456}, 1};

Histogram::Histogram(const Buckets& b) : b_(b), counts_(b.bounds.size() + 1) {}

void Histogram::observe(uint64_t v) {
  size_t i = static_cast<size_t>(std::lower_bound(b_.bounds.begin(), b_.bounds.end(), v) -
                                 b_.bounds.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::cumulative() const {
  std::vector<uint64_t> out(counts_.size());
  uint64_t total = 0;
  for (size_t i = 0; i < counts_.size(); ++i) out[i] = total += counts_[i].load();
  return out;
}

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Debug:
      return "debug";
    case LogLevel::Info:
      return "info";
    case LogLevel::Warn:
      return "warn";
    case LogLevel::Error:
      return "error";
  }
  return "info";
}

bool parse_level(const std::string& text, LogLevel* out) {
  static const std::pair<const char*, LogLevel> names[] = {{"debug", LogLevel::Debug},
                                                           {"info", LogLevel::Info},
                                                           {"warn", LogLevel::Warn},
                                                           {"warning", LogLevel::Warn},
                                                           {"error", LogLevel::Error}};
  for (const auto& [name, level] : names)
    if (text == name) return *out = level, true;
  return false;
}

void EventRing::push(const LogRecord& r) {
  std::lock_guard<std::mutex> l(mu_);
  records_.push_back(r);
  if (records_.size() > kCapacity) records_.pop_front();
}

std::vector<LogRecord> EventRing::recent() const {
  std::lock_guard<std::mutex> l(mu_);
  return {records_.begin(), records_.end()};
}

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

struct Builder {
  Labels base;
  std::deque<MetricFamily> out;  // a deque: references to earlier families stay valid

  MetricFamily& family(const char* name, const char* type, const char* help) {
    out.push_back({name, help, type, {}});
    return out.back();
  }
  void sample(MetricFamily& f, double v, Labels extra = {}, std::string suffix = "") {
    Labels l = base;
    l.insert(l.end(), extra.begin(), extra.end());
    f.samples.push_back({std::move(suffix), std::move(l), v});
  }
  void gauge(const char* name, const char* help, double v) {
    sample(family(name, "gauge", help), v);
  }
  void counter(const char* name, const char* help, double v) {
    sample(family(name, "counter", help), v);
  }
  void histogram(const char* name, const char* help, const Histogram& h) {
    MetricFamily& f = family(name, "histogram", help);
    const Buckets& b = h.buckets();
    auto cum = h.cumulative();
    for (size_t i = 0; i < cum.size(); ++i) {
      char le[32];
      if (i < b.bounds.size())
        std::snprintf(le, sizeof le, "%.9g", static_cast<double>(b.bounds[i]) * b.scale);
      else
        std::snprintf(le, sizeof le, "+Inf");
      sample(f, static_cast<double>(cum[i]), {{"le", le}}, "_bucket");
    }
    sample(f, static_cast<double>(h.sum()) * b.scale, {}, "_sum");
    sample(f, static_cast<double>(cum.back()), {}, "_count");
  }
};

double d(uint64_t v) { return static_cast<double>(v); }

}  // namespace

std::vector<MetricFamily> collect_metrics(const std::string& group, const core::PeerId& self,
                                          const core::NodeStatus& s, uint64_t snapshot_index,
                                          const ReplicaMetrics& m, uint64_t now_ms,
                                          const std::map<core::PeerId, uint64_t>& bytes_sent) {
  Builder b;
  b.base = {{"group", group}, {"peer", self.to_string()}};
  MetricFamily& role = b.family("raftstore_role", "gauge",
                                "1 for the replica's current role (follower, candidate, leader, "
                                "learner), 0 for the others");
  for (auto r :
       {core::Role::Follower, core::Role::Candidate, core::Role::Leader, core::Role::Learner})
    b.sample(role, s.role == r ? 1 : 0, {{"role", core::role_name(r)}});
  b.gauge("raftstore_term", "The replica's current term", d(s.term));
  b.gauge("raftstore_first_log_index", "The first index in the replica's log", d(s.first_index));
  b.gauge("raftstore_last_log_index", "The last index in the replica's log", d(s.last_index));
  b.gauge("raftstore_commit_index", "The highest index known committed", d(s.commit_index));
  b.gauge("raftstore_applied_index", "The highest index handed to the state machine",
          d(s.applied_index));
  b.gauge("raftstore_state_machine_applied_index",
          "The highest index the state machine reported applied (JavaScript's; 0 if it does "
          "not report)",
          d(m.state_machine_applied));
  b.gauge("raftstore_snapshot_index", "The index of the newest published snapshot",
          d(snapshot_index));
  b.gauge("raftstore_voters", "Voters in the replica's configuration (both sets when joint)",
          d(s.conf.peers.size() + s.conf.old_peers.size()));
  b.counter("raftstore_leader_changes_total", "Times this replica saw the group's leader change",
            d(m.leader_changes));
  b.counter("raftstore_elections_started_total", "Elections this replica started as a candidate",
            d(m.elections_started));
  b.counter("raftstore_elections_won_total", "Elections this replica won", d(m.elections_won));
  MetricFamily& props =
      b.family("raftstore_proposals_total", "counter",
               "Proposals made at this replica, by outcome (ok: applied here; failed: refused, "
               "lost or of unknown outcome)");
  b.sample(props, d(m.proposals_ok), {{"result", "ok"}});
  b.sample(props, d(m.proposals_failed), {{"result", "failed"}});
  b.histogram("raftstore_proposal_commit_seconds",
              "From a proposal made here to its entry applied here", m.proposal_commit);
  MetricFamily& fw = b.family("raftstore_forwards_total", "counter",
                              "Proposals this replica forwarded to the leader, by outcome");
  b.sample(fw, d(m.forwards_ok), {{"result", "ok"}});
  b.sample(fw, d(m.forwards_failed), {{"result", "failed"}});
  b.counter("raftstore_log_append_batches_total", "Batches the log writer committed",
            d(m.log_batches));
  b.histogram("raftstore_log_append_seconds", "One log writer batch's writes, before its fsync",
              m.log_append);
  b.histogram("raftstore_log_fsync_seconds", "One log writer batch's fsync", m.log_fsync);
  b.histogram("raftstore_log_append_batch_entries", "Entries per log writer batch",
              m.batch_entries);
  b.histogram("raftstore_log_append_batch_bytes", "Entry data bytes per log writer batch",
              m.batch_bytes);
  b.counter("raftstore_snapshots_taken_total", "Snapshots this replica took and published",
            d(m.snapshots_taken));
  b.counter("raftstore_snapshots_installed_total", "Leader snapshots this replica installed",
            d(m.snapshots_installed));
  b.counter("raftstore_snapshot_failures_total", "Snapshots that failed to be taken or installed",
            d(m.snapshot_failures));
  b.histogram("raftstore_snapshot_take_seconds", "From starting a snapshot to its publication",
              m.snapshot_take);
  b.histogram("raftstore_snapshot_install_seconds",
              "From a leader's InstallSnapshot to the snapshot loaded here", m.snapshot_install);
  b.gauge("raftstore_snapshot_size_bytes", "The newest published snapshot's files",
          d(m.snapshot_bytes));
  MetricFamily& reads = b.family("raftstore_read_index_total", "counter",
                                 "Read barriers (ReadIndex) asked of this replica, by outcome");
  b.sample(reads, d(m.reads_ok), {{"result", "ok"}});
  b.sample(reads, d(m.reads_failed), {{"result", "failed"}});
  b.histogram("raftstore_read_index_seconds", "From a read barrier asked to its index known",
              m.read_index);
  b.histogram("raftstore_apply_lag_seconds",
              "From committed entries handed to the state machine to the state machine "
              "reporting them applied (JavaScript's event loop)",
              m.apply_lag);
  b.counter("raftstore_stuck_apply_transfers_total",
            "Leadership handed away because the state machine stopped applying",
            d(m.stuck_apply_transfers));
  MetricFamily& lag = b.family("raftstore_peer_replication_lag_entries", "gauge",
                               "On the leader: entries the peer's log is behind the leader's");
  MetricFamily& contact = b.family("raftstore_peer_last_contact_seconds", "gauge",
                                   "On the leader: time since the peer last answered");
  if (s.role == core::Role::Leader)
    for (const auto& p : s.peers) {
      if (p.id == self) continue;
      b.sample(lag, d(peer_lag(s, p)), {{"target", p.id.to_string()}});
      if (p.last_ack_ms)
        b.sample(contact, d(now_ms > p.last_ack_ms ? now_ms - p.last_ack_ms : 0) / 1000.0,
                 {{"target", p.id.to_string()}});
    }
  MetricFamily& sent = b.family("raftstore_peer_snapshot_sent_bytes_total", "counter",
                                "Snapshot bytes each peer fetched from this replica");
  for (const auto& [peer, bytes] : bytes_sent)
    b.sample(sent, d(bytes), {{"target", peer.to_string()}});
  return {std::make_move_iterator(b.out.begin()), std::make_move_iterator(b.out.end())};
}

namespace {

void escape_label(std::string& out, const std::string& v) {
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\', out += c;
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

void format_value(std::string& out, double v) {
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%" PRId64, static_cast<int64_t>(v));
  else
    std::snprintf(buf, sizeof buf, "%.9g", v);
  out += buf;
}

}  // namespace

std::string render_prometheus(const std::vector<std::vector<MetricFamily>>& parts) {
  // Families in the order they first appear; each one's samples from every part together.
  std::vector<const MetricFamily*> order;
  std::map<std::string, std::vector<const MetricFamily*>> by_name;
  for (const auto& part : parts)
    for (const auto& f : part) {
      auto& v = by_name[f.name];
      if (v.empty()) order.push_back(&f);
      v.push_back(&f);
    }
  std::string out;
  for (const MetricFamily* first : order) {
    out += "# HELP " + first->name + " " + first->help + "\n# TYPE " + first->name + " " +
           first->type + "\n";
    for (const MetricFamily* f : by_name[first->name])
      for (const auto& s : f->samples) {
        out += f->name + s.suffix;
        if (!s.labels.empty()) {
          out += '{';
          for (size_t i = 0; i < s.labels.size(); ++i) {
            if (i) out += ',';
            out += s.labels[i].first + "=\"";
            escape_label(out, s.labels[i].second);
            out += '"';
          }
          out += '}';
        }
        out += ' ';
        format_value(out, s.value);
        out += '\n';
      }
  }
  return out;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\')
      out += '\\', out += static_cast<char>(c);
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

}  // namespace raftstore::runtime
