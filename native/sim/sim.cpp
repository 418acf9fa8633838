#include "sim.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <sstream>
#include <unordered_map>
#include <variant>
#include <vector>

#include "raft.h"
#include "replica.h"
#include "rpc_codes.h"
#include "snapshot_transfer.h"

namespace raftstore::sim {

using namespace raftstore::core;

namespace {

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mix(uint64_t h, uint64_t v) {
  uint64_t x = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  return splitmix(x);
}

uint64_t hash_bytes(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

uint64_t entry_hash(const Entry& e) {
  uint64_t h = mix(e.term, static_cast<uint64_t>(e.type));
  if (e.data) h = mix(h, hash_bytes(*e.data));
  if (e.conf) h = mix(h, hash_bytes(e.conf->to_string()));
  return h;
}

std::string describe(const Envelope& e) {
  std::ostringstream o;
  o << e.from.port - 8100 << "->" << e.to.port - 8100 << " #" << e.rpc_id << " "
    << payload_name(e.payload);
  std::visit(
      [&](const auto& p) {
        using T = std::decay_t<decltype(p)>;
        o << " term=" << p.term;
        if constexpr (std::is_same_v<T, RequestVoteRequest>)
          o << (p.pre_vote ? " pre" : "") << " last=" << p.last_log_index << "/" << p.last_log_term;
        if constexpr (std::is_same_v<T, RequestVoteResponse>)
          o << (p.pre_vote ? " pre" : "") << " granted=" << p.granted
            << " lease=" << p.rejected_by_lease;
        if constexpr (std::is_same_v<T, AppendEntriesRequest>)
          o << " prev=" << p.prev_log_index << "/" << p.prev_log_term << " n=" << p.entries.size()
            << " commit=" << p.committed_index;
        if constexpr (std::is_same_v<T, AppendEntriesResponse>)
          o << " ok=" << p.success << " last=" << p.last_log_index << (p.busy ? " busy" : "");
        if constexpr (std::is_same_v<T, InstallSnapshotRequest>)
          o << " snap=" << p.meta.last_included_index;
        if constexpr (std::is_same_v<T, ReadIndexResponse>)
          o << " ok=" << p.success << " index=" << p.index;
      },
      e.payload);
  return o.str();
}

}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix(x);
}

uint64_t Rng::next() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

Scenario Scenario::from_seed(uint64_t seed) {
  // Swarm testing: each seed switches features and fault kinds on or off, so that rare
  // combinations (e.g. tiny batches plus frequent crashes) get whole schedules to themselves.
  Rng r(seed ^ 0x5157a11dULL);
  Scenario s;
  s.seed = seed;
  static constexpr int sizes[] = {3, 3, 3, 5, 5, 7};
  s.nodes = sizes[r.below(6)];
  s.voters = s.nodes;
  if (s.nodes > 3 && r.chance(0.5)) {  // some replicas start as learners or outside
    s.voters = std::max(3, s.nodes - static_cast<int>(r.range(1, 2)));
    s.learners = static_cast<int>(r.below(static_cast<uint64_t>(s.nodes - s.voters) + 1));
  }
  s.leader_lease = r.chance(0.4);
  static constexpr uint64_t timeouts[] = {100, 150, 200, 300};
  s.election_timeout_ms = timeouts[r.below(4)];
  s.max_election_delay_ms = s.election_timeout_ms;
  s.clock_drift_ms = r.range(0, s.election_timeout_ms / 2);
  static constexpr uint32_t batch[] = {1, 1, 2, 3, 5, 1024};
  s.max_entries_per_rpc = batch[r.below(6)];
  s.max_inflight = static_cast<uint32_t>(r.range(1, 8));
  if (r.chance(0.2)) s.max_bytes_per_rpc = r.range(1, 16);  // data entries are a few bytes
  s.p_install_fail = r.chance(0.3) ? 0.3 : 0.0;
  s.snapshot_margin = r.chance(0.5) ? 0 : r.range(1, 10);
  s.min_delay_ms = r.range(0, 3);
  s.max_delay_ms = s.min_delay_ms + (r.chance(0.3) ? r.range(20, 150) : r.range(1, 10));
  s.disk_min_ms = 0;
  s.disk_max_ms = r.chance(0.3) ? r.range(10, 60) : r.range(0, 5);
  s.loss = r.chance(0.5) ? 0.0 : 0.01 * static_cast<double>(r.range(1, 25));
  s.duplicate = r.chance(0.6) ? 0.0 : 0.01 * static_cast<double>(r.range(1, 15));
  auto rate = [&](double p_on, double lo, double hi) {
    return r.chance(p_on) ? lo + (hi - lo) * static_cast<double>(r.below(1000)) / 1000.0 : 0.0;
  };
  // Per-millisecond probabilities of a fault being injected.
  s.p_partition = rate(0.6, 0.0005, 0.004);
  s.p_one_way = rate(0.3, 0.0005, 0.003);
  s.p_flap = rate(0.3, 0.0005, 0.003);
  s.p_crash = rate(0.7, 0.0005, 0.004);
  s.p_restart = s.p_crash > 0 ? rate(1.0, 0.002, 0.01) : 0.0;
  s.p_crash_after_vote = s.p_crash > 0 ? rate(0.5, 0.05, 0.5) : 0.0;
  s.p_kill_leader = rate(0.3, 0.0005, 0.003);
  s.p_isolate_leader = rate(0.3, 0.0005, 0.003);
  s.late_duplicate = r.chance(0.3) ? 0.01 * static_cast<double>(r.range(1, 10)) : 0.0;
  if (s.p_kill_leader > 0 && s.p_restart == 0) s.p_restart = rate(1.0, 0.002, 0.01);
  s.p_snapshot = rate(0.6, 0.001, 0.01);
  s.p_membership = rate(0.5, 0.0005, 0.004);
  s.p_transfer = rate(0.4, 0.0005, 0.003);
  s.p_propose = 0.05 + 0.3 * static_cast<double>(r.below(100)) / 100.0;
  s.p_read = 0.02 + 0.2 * static_cast<double>(r.below(100)) / 100.0;
  s.chaos_ms = r.range(2000, 5000);
  if (r.chance(0.4)) {
    // Election storm: a small cluster where leaders keep dying or being cut off at the worst
    // moments, one entry per RPC, and stale messages resurface during elections. This is
    // where Figure-8 style histories and stale votes live.
    s.profile = "storm";
    s.nodes = s.voters = r.chance(0.7) ? 3 : 5;
    s.learners = 0;
    s.max_entries_per_rpc = 1;
    s.max_inflight = static_cast<uint32_t>(r.range(1, 3));
    s.min_delay_ms = 1;
    s.max_delay_ms = r.range(2, 15);
    s.p_propose = 0.3;
    s.p_kill_leader = rate(0.5, 0.001, 0.004);
    s.p_isolate_leader = rate(0.5, 0.001, 0.004);
    s.p_partition = rate(0.5, 0.001, 0.003);
    s.p_restart = 0.01;
    s.p_crash_new_leader = rate(0.7, 0.1, 0.5);
    s.p_isolate_after_commit = rate(0.7, 0.01, 0.1);
    s.p_replay_on_election = rate(0.7, 0.2, 0.8);
    s.p_split_leaders = rate(0.7, 0.2, 0.6);
    s.late_duplicate = r.chance(0.5) ? 0.05 : 0.0;
    s.p_one_way = rate(0.5, 0.001, 0.004);
    s.p_transfer = rate(0.5, 0.001, 0.004);
    s.p_read = 0.3;
    s.p_membership = 0.0;
  }
  // Drawn from a stream of their own, so that seeds without hints keep their schedules.
  Rng h(seed ^ 0x41b7d0e5ULL);
  if (h.chance(0.5)) {
    s.p_down_hint = h.chance(0.3) ? 1.0 : 0.5 + 0.5 * static_cast<double>(h.below(100)) / 100;
    s.p_false_hint = h.chance(0.5) ? 0.002 * static_cast<double>(h.range(1, 10)) : 0.0;
  }
  s.notify_commit = h.chance(0.7);  // the shipping default; off keeps older schedules
  // Also a stream of its own. Catch-up: a real log (10,000+ entries), then membership.
  Rng k(seed ^ 0xc47c40b5ULL);
  s.transport_failures = k.chance(0.5);
  if (k.chance(0.6)) {  // snapshots of several chunks
    s.chunk_bytes = static_cast<uint32_t>(k.range(256, 2048));
    s.snapshot_bytes = static_cast<uint32_t>(k.range(16, 4 * s.chunk_bytes));
  }
  if (k.chance(0.12)) {
    s.profile = "catchup";
    s.nodes = k.chance(0.5) ? 4 : 5;
    s.voters = 3;
    s.learners = 0;  // the rest start with an empty configuration, as braft's newcomers
    s.leader_lease = k.chance(0.3);
    s.max_entries_per_rpc = static_cast<uint32_t>(k.chance(0.3) ? k.range(16, 128) : 1024);
    s.max_bytes_per_rpc = 512 * 1024;
    s.max_inflight = static_cast<uint32_t>(k.range(2, 8));
    s.max_uncommitted = 4096;
    s.bulk = static_cast<uint32_t>(k.range(20, 80));
    s.log_target = k.range(10000, 20000);
    s.swap_in = k.chance(0.4);
    s.min_delay_ms = k.range(0, 2);
    s.max_delay_ms = s.min_delay_ms + k.range(1, 8);
    s.disk_max_ms = k.range(0, 10);
    s.loss = k.chance(0.5) ? 0.0 : 0.01 * static_cast<double>(k.range(1, 5));
    s.duplicate = 0.0;
    s.late_duplicate = 0.0;
    s.p_partition = s.p_one_way = s.p_flap = 0.0;
    s.p_crash = rate(0.8, 0.0005, 0.002);
    s.p_restart = rate(1.0, 0.001, 0.004);
    s.p_crash_after_vote = 0.0;
    s.p_kill_leader = rate(0.3, 0.0002, 0.0005);
    s.p_isolate_leader = 0.0;
    s.p_crash_new_leader = s.p_isolate_after_commit = s.p_replay_on_election = 0.0;
    s.p_split_leaders = 0.0;
    s.p_snapshot = rate(1.0, 0.002, 0.01);
    s.p_install_fail = k.chance(0.3) ? 0.3 : 0.0;
    s.p_membership = 0.0;  // the newcomer stays out until the load is in
    s.p_transfer = rate(0.3, 0.0002, 0.001);
    s.p_read = 0.02;
    s.chaos_ms = 12000;  // the load decides when chaos ends (log_target reached)
  }
  // Big entries near the byte limit, restarts in the middle of snapshot copies, a slow disk.
  Rng q(seed ^ 0x5ab1e5edULL);
  if (s.bulk == 0 && q.chance(0.15)) {
    s.max_bytes_per_rpc = q.range(4096, 32768);
    s.entry_bytes =
        static_cast<uint32_t>(q.range(s.max_bytes_per_rpc / 2, s.max_bytes_per_rpc + 1024));
  }
  if (q.chance(0.25)) s.p_crash_mid_install = 0.02 * static_cast<double>(q.range(1, 10));
  if (q.chance(0.2)) {
    s.slow_disk_node = static_cast<int>(q.below(static_cast<uint64_t>(s.nodes)));
    s.slow_disk_ms = q.range(50, 300);
  }
  Rng v(seed ^ 0x4e91ca5eULL);
  s.forward_proposals = v.chance(0.5);
  if (s.leader_lease) s.p_lease_read = v.chance(0.6) ? 0.5 : 0.0;
  if (s.p_crash > 0 && v.chance(0.5)) s.p_torn_commit = 0.002 * static_cast<double>(v.range(1, 20));
  if (s.bulk == 0 && v.chance(0.3)) s.snapshot_threshold = v.range(5, 200);
  // Snapshots whose copy outlasts the install timeout (4 T here), as a large database's
  // does: the leader must keep such an install going while chunks are fetched
  // (Raft::snapshot_progress) rather than give up on it and start again, forever.
  Rng g(seed ^ 0x6b16a5e5ULL);
  if (g.chance(0.15)) {
    s.min_delay_ms = std::max<uint64_t>(s.min_delay_ms, 2);
    s.max_delay_ms = std::max(s.max_delay_ms, s.min_delay_ms + 1);
    s.chunk_bytes = 256;
    // 2 T chunks at a round trip of at least 4 ms: at least 8 T per copy.
    s.snapshot_bytes = static_cast<uint32_t>(s.chunk_bytes * 2 * s.election_timeout_ms);
  }
  return s;
}

std::string Scenario::describe() const {
  std::ostringstream o;
  o << "seed=" << seed << " profile=" << profile << " nodes=" << nodes << " voters=" << voters
    << " learners=" << learners << " lease=" << leader_lease << " T=" << election_timeout_ms
    << " drift=" << clock_drift_ms << " batch=" << max_entries_per_rpc
    << " bytes=" << max_bytes_per_rpc << " install_fail=" << p_install_fail
    << " inflight=" << max_inflight << " margin=" << snapshot_margin << " delay=" << min_delay_ms
    << ".." << max_delay_ms << " disk<=" << disk_max_ms << " loss=" << loss << " dup=" << duplicate
    << " partition=" << p_partition << " oneway=" << p_one_way << " flap=" << p_flap
    << " crash=" << p_crash << " crash_after_vote=" << p_crash_after_vote
    << " kill_leader=" << p_kill_leader << " isolate_leader=" << p_isolate_leader
    << " late_dup=" << late_duplicate << " crash_new_leader=" << p_crash_new_leader
    << " isolate_after_commit=" << p_isolate_after_commit
    << " replay_on_election=" << p_replay_on_election << " split_leaders=" << p_split_leaders
    << " snapshot=" << p_snapshot << " membership=" << p_membership << " transfer=" << p_transfer
    << " down_hint=" << p_down_hint << " false_hint=" << p_false_hint
    << " notify_commit=" << notify_commit << " transport_failures=" << transport_failures
    << " entry_bytes=" << entry_bytes << " crash_mid_install=" << p_crash_mid_install
    << " slow_disk=" << slow_disk_node << "+" << slow_disk_ms << "ms"
    << " snapshot_bytes=" << snapshot_bytes << " chunk_bytes=" << chunk_bytes << " bulk=" << bulk
    << " log_target=" << log_target << " swap_in=" << swap_in << " forward=" << forward_proposals
    << " lease_read=" << p_lease_read << " torn_commit=" << p_torn_commit
    << " snapshot_threshold=" << snapshot_threshold << " chaos_ms=" << chaos_ms
    << " mutant=" << mutant_name(mutant);
  return o.str();
}

namespace {

constexpr uint64_t kMaxUncommitted = 64;

struct SmState {
  uint64_t index = 0;
  uint64_t hash = 0;
};

// The state machine's snapshot as a file: its state, then filler up to the scenario's size.
std::string snapshot_file(const SmState& sm, uint32_t size) {
  std::string out(std::max<uint32_t>(size, 16), '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(sm.index >> (8 * i));
    out[8 + i] = static_cast<char>(sm.hash >> (8 * i));
  }
  uint64_t x = sm.hash | 1;
  for (size_t i = 16; i < out.size(); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    out[i] = static_cast<char>(x);
  }
  return out;
}
SmState decode_snapshot_file(const std::string& f) {
  SmState sm;
  for (int i = 0; i < 8 && f.size() >= 16; ++i) {
    sm.index |= uint64_t{static_cast<uint8_t>(f[i])} << (8 * i);
    sm.hash |= uint64_t{static_cast<uint8_t>(f[8 + i])} << (8 * i);
  }
  return sm;
}

// A published snapshot on a simulated disk: what the store records, and its one file.
struct SimSnapshot {
  storage::SnapshotInfo info;
  std::string file;
};

// A leader's published snapshot, served by the runtime's FileService code.
class MemSource : public runtime::SnapshotSource {
 public:
  explicit MemSource(std::string file) : file_(std::move(file)) {}
  bool read(const std::string&, uint64_t offset, uint64_t count, std::string* out,
            uint64_t* size) override {
    *size = file_.size();
    *out = offset >= file_.size() ? "" : file_.substr(offset, count);
    return true;
  }

 private:
  std::string file_;
};

// Where a follower's copy goes: memory, checked as the runtime checks its files.
class MemSink : public runtime::SnapshotSink {
 public:
  std::map<std::string, std::string> files;
  std::string* open = nullptr;
  bool fail_writes = false;  // a disk error
  storage::Status create(const std::string& name) override {
    open = &files[name];
    open->clear();
    return {};
  }
  storage::Status write(uint64_t offset, std::string_view bytes) override {
    if (fail_writes) return {storage::Code::Io, "injected write error"};
    if (open->size() < offset + bytes.size()) open->resize(offset + bytes.size());
    open->replace(offset, bytes.size(), bytes);
    return {};
  }
  storage::Status close() override {
    open = nullptr;
    return {};
  }
  storage::Status verify(const storage::SnapshotInfo& info) override {
    for (const auto& f : info.files) {
      auto it = files.find(f.name);
      if (it == files.end() || storage::crc32c(it->second.data(), it->second.size()) != f.crc32c)
        return {storage::Code::CorruptLog, f.name + ": checksum mismatch"};
    }
    return {};
  }
};

// A replica's disk, as the runtime's log writer sees it (runtime::LogDisk): term and vote and
// published snapshots are durable when written (each is an fsync and a rename); log changes
// only once synced. A crash loses the unsynced ones, and can cut a batch short.
class MemDisk : public runtime::LogDisk {
 public:
  HardState hs;
  std::deque<Entry> log;
  std::optional<SimSnapshot> snapshot;      // the newest published
  std::map<std::string, std::string> temp;  // the snapshot store's temp directory
  int64_t ops_until_crash = -1;             // >= 0: the process dies after this many more
  bool crashed = false;
  bool fail_next_publish = false;  // the rename or fsync fails
  std::string violation;           // the storage contract broken by the caller

  storage::Status save_meta(const HardState& h) override {
    if (cut()) return down();
    hs = h;
    return {};
  }
  storage::Status apply_log(const Ready& r) override {
    if (cut()) return down();
    Ready& u = unsynced_.emplace_back();
    u.log_reset = r.log_reset;
    u.log_write = r.log_write;
    u.compact_before = r.compact_before;
    return {};
  }
  storage::Status sync_log() override {
    if (cut()) return down();
    for (const auto& r : unsynced_) make_durable(r);
    unsynced_.clear();
    return {};
  }
  storage::Status publish(const SnapshotMeta& meta, storage::SnapshotInfo* out) override {
    if (cut()) return down();
    if (fail_next_publish) {
      fail_next_publish = false;
      return {storage::Code::Io, "injected publish failure"};
    }
    const std::string& f = temp["data"];
    SimSnapshot s{{meta,
                   {{"data", storage::crc32c(f.data(), f.size())}},
                   "snap/" + std::to_string(meta.last_included_index)},
                  f};
    // As SnapshotStore: one overtaken while it was written is dropped for the newer one.
    if (!snapshot || snapshot->info.meta.last_included_index <= meta.last_included_index)
      snapshot = std::move(s);
    temp.clear();
    *out = snapshot->info;
    return {};
  }
  void lose_unsynced() {
    unsynced_.clear();
    temp.clear();
    ops_until_crash = -1;
    crashed = false;
  }
  size_t unsynced() const { return unsynced_.size(); }

 private:
  bool cut() {
    if (!crashed && ops_until_crash == 0) crashed = true;
    if (ops_until_crash > 0) --ops_until_crash;
    return crashed;
  }
  static storage::Status down() { return {storage::Code::Io, "the process died"}; }
  void make_durable(const Ready& r) {
    if (r.log_reset) log.clear();
    if (const auto& w = r.log_write) {
      while (!log.empty() && log.back().index >= w->from_index) log.pop_back();
      if (!w->entries.empty() && !log.empty() && log.back().index + 1 != w->entries.front().index)
        violation = "storage contract: non-contiguous append at " +
                    std::to_string(w->entries.front().index);
      for (const auto& e : w->entries) log.push_back(e);
    }
    if (r.compact_before)
      while (!log.empty() && log.front().index < *r.compact_before) log.pop_front();
  }
  std::vector<Ready> unsynced_;
};

// A follower's snapshot copy in progress: the runtime's SnapshotFetch over get_file calls
// that travel the simulated network.
struct Copy {
  uint64_t id = 0;
  int leader = -1;
  uint32_t call_timeout_ms = 0;
  std::unique_ptr<runtime::SnapshotFetch> fetch;
  MemSink sink;
  std::function<void(storage::Status)> done;
};

class SimEnv;

struct Node {
  int id = 0;
  PeerId peer;
  bool alive = false;
  uint64_t epoch = 0;  // incarnation; events of a dead incarnation are ignored
  // The runtime's replica, in this world (nullptr while down).
  std::unique_ptr<SimEnv> env;
  std::unique_ptr<runtime::Replica> replica;
  MemDisk disk;
  // The log writer: a batch on the disk, and the writes that wait for the next one.
  std::vector<runtime::Write> writing, queued;
  bool disk_busy = false;
  SmState sm;                               // the state machine
  std::map<int64_t, SimSnapshot> readers;   // FileService readers lent to followers
  std::map<int64_t, uint64_t> reader_term;  // the term each reader was lent in
  std::unique_ptr<Copy> copy;
  uint64_t next_copy = 0;
  Configuration initial_conf;
  // What this incarnation's Readies showed, to check the replica's metrics against.
  uint64_t seen_elections_started = 0, seen_elections_won = 0, seen_leader_changes = 0;
  const Raft& core() const { return replica->core(); }
};

struct MsgEvent {
  Envelope env;
};
struct TickEvent {
  int node;
  uint64_t epoch;
};
struct DiskEvent {  // the log writer's batch is done
  int node;
  uint64_t epoch;
};
struct FileRequestEvent {  // a follower's get_file call reaches the leader
  int node;                // the follower
  uint64_t epoch;
  uint64_t copy;
  int leader;
  braft::GetFileRequest request;
};
struct FileReplyEvent {  // and its answer (or a transport failure) reaches the follower
  int node;
  uint64_t epoch;
  uint64_t copy;
  int32_t transport_code = 0;
  runtime::FileReply reply;
};
struct CrashEvent {
  int node;
};
struct HintEvent {  // the runtime tells `node` that `peer` is unreachable
  int node;
  uint64_t epoch;
  PeerId peer;
};
struct RpcFailedEvent {  // `node`'s request `rpc_id` to `peer` failed in transport
  int node;
  uint64_t epoch;  // the incarnation that sent it
  PeerId peer;
  uint64_t rpc_id;
};
struct PostEvent {  // work a replica posted to its own thread
  int node;
  uint64_t epoch;
  std::function<void()> work;
};
struct SaveDoneEvent {           // a state machine finishes writing a snapshot on its own thread:
  std::function<void()> finish;  // run even if the replica crashed meanwhile
};
struct ForwardEvent {  // a forwarded proposal reaches the leader
  uint64_t call;
};
struct ForwardReplyEvent {  // and its answer, or a transport failure, reaches the follower
  uint64_t call;
  int32_t code = 0;
  std::string text, resp;
};
struct Unanswered {  // a request a replica received and has not answered
  int from;
  uint64_t epoch;
  uint64_t rpc_id;
};
using Event = std::variant<MsgEvent, TickEvent, DiskEvent, FileRequestEvent, FileReplyEvent,
                           CrashEvent, HintEvent, RpcFailedEvent, PostEvent, SaveDoneEvent,
                           ForwardEvent, ForwardReplyEvent>;

struct Queued {
  uint64_t at;
  uint64_t seq;
  Event ev;
};
struct Later {
  bool operator()(const Queued& a, const Queued& b) const {
    return a.at != b.at ? a.at > b.at : a.seq > b.seq;
  }
};

struct ReadCheck {
  uint64_t started_ms;
  uint64_t must_see;  // highest index acknowledged to a client before the read began
  int node;
};

struct ForwardCall {
  int from;
  uint64_t epoch;
  int leader;
  std::shared_ptr<const std::string> data;
  runtime::ReplicaEnv::ForwardDone done;
  bool delivered = false;
};

class World {
 public:
  World(const Scenario& s, const TraceSink& trace)
      : s_(s),
        rng_(s.seed),
        hint_rng_(s.seed ^ 0x7a11ed0fULL),
        save_rng_(s.seed ^ 0x5a7ed0e5ULL),
        trace_(trace) {
    core::g_active_mutant = s.mutant;
    Configuration conf;
    for (int i = 0; i < s.nodes; ++i) {
      auto n = std::make_unique<Node>();
      n->id = i;
      n->peer = PeerId{0x7f000001u, static_cast<uint16_t>(8100 + i), 0, 0};
      nodes_.push_back(std::move(n));
    }
    for (int i = 0; i < s.voters; ++i) insert_sorted(conf.peers, nodes_[i]->peer);
    for (int i = s.voters; i < s.voters + s.learners; ++i)
      insert_sorted(conf.learners, nodes_[i]->peer);
    links_.assign(s.nodes, std::vector<bool>(s.nodes, true));
    history_.resize(s.nodes);
    last_commit_.resize(s.nodes);
    unanswered_.resize(s.nodes);
    for (int i = 0; i < s.nodes; ++i) {
      if (i < s.voters + s.learners) nodes_[i]->initial_conf = conf;
      boot(*nodes_[i]);
    }
  }
  ~World() {
    for (auto& n : nodes_) n->replica.reset();  // before the world it calls into
    core::g_active_mutant = Mutant::None;
  }

  Result run();

 private:
  friend class SimEnv;
  // --- plumbing ---------------------------------------------------------------------
  void trace(const std::string& line) {
    if (trace_) trace_("t=" + std::to_string(now_) + " " + line);
  }
  void schedule(uint64_t at, Event ev) { queue_.push(Queued{at, seq_++, std::move(ev)}); }
  int index_of(const PeerId& p) const {
    for (const auto& n : nodes_)
      if (n->peer == p) return n->id;
    return -1;
  }
  Options options_for() {
    Options o;
    o.election_timeout_ms = s_.election_timeout_ms;
    o.max_election_delay_ms = s_.max_election_delay_ms;
    o.max_clock_drift_ms = s_.clock_drift_ms;
    o.leader_lease = s_.leader_lease;
    o.max_entries_per_rpc = s_.max_entries_per_rpc;
    o.max_bytes_per_rpc = s_.max_bytes_per_rpc;
    o.max_inflight_appends = s_.max_inflight;
    o.snapshot_log_margin = s_.snapshot_margin;
    o.notify_commit = s_.notify_commit;
    o.catchup_margin = 20;
    o.max_uncommitted_entries = s_.max_uncommitted;
    o.catchup_timeout_ms = 2 * s_.election_timeout_ms;
    o.install_snapshot_timeout_ms = 4 * s_.election_timeout_ms;
    return o;
  }
  void fail(const std::string& what) {
    if (!result_.ok) return;
    result_.ok = false;
    result_.violation = what;
    result_.violation_at_ms = now_;
    trace("VIOLATION " + what);
  }
  bool live(int node, uint64_t epoch) const {
    return nodes_[node]->alive && nodes_[node]->epoch == epoch;
  }

  void boot(Node& n);
  void crash(Node& n);
  void check_metrics(Node& n);
  // The environment of node n's replica (SimEnv forwards here).
  void call(Node& n, Envelope req, uint32_t timeout_ms);
  void forward(Node& n, const PeerId& leader, std::shared_ptr<const std::string> data,
               uint32_t timeout_ms, runtime::ReplicaEnv::ForwardDone done);
  void write(Node& n, runtime::Write w);
  void copy_snapshot(Node& n, const SnapshotInstall& install, uint32_t call_timeout_ms,
                     std::function<void(storage::Status)> done);
  void observe(Node& n, const Ready& rd);
  // The world's side.
  void send(Node& from, Envelope env);
  void start_batch(Node& n);
  void on_disk(Node& n);
  void apply(Node& n, const Entry& e);
  // The oracles below hold indices 1..index.
  void cover(uint64_t index) {
    if (applied_.size() >= index) return;
    applied_.resize(index, {0, 0});
    chain_.resize(index, 0);
    commit_term_.resize(index, UINT64_MAX);
  }
  storage::Status load(Node& n, const std::string& path);
  void request_chunk(Node& n, uint64_t after_ms = 0);
  void on_file_request(const FileRequestEvent& ev);
  void on_file_reply(Node& n, const FileReplyEvent& ev);
  void on_forward(uint64_t id);
  void forward_reply(uint64_t id, uint64_t at, int32_t code, std::string text = "",
                     std::string resp = "");
  void check_log(Node& n, const LogWrite& w);
  void check_leader(Node& n);
  void inject_faults();
  void take_snapshot(Node& n);
  void client_ops();
  Node* find_leader();
  void heal();
  void bulk_load();
  // A client write's acknowledgement, decided by the runtime (ProposalTracker, forwarding),
  // checked against what was applied.
  runtime::ProposeDone track(Node& n, uint64_t op);
  // A client write's bytes: its op id, padded to the scenario's entry size.
  std::string payload(uint64_t op) const {
    std::string d = std::to_string(op);
    if (d.size() < s_.entry_bytes) d.resize(s_.entry_bytes, static_cast<char>('a' + op % 26));
    return d;
  }
  void start_catchup();
  void fail_requests_to(Node& n);
  void lost(const Envelope& env);

  // --- state ------------------------------------------------------------------------
  Scenario s_;
  Rng rng_;
  Rng hint_rng_;  // its own stream: scenarios without hints replay as before they existed
  Rng save_rng_;  // when state machines finish saving snapshots (its own stream too)
  TraceSink trace_;
  std::vector<std::unique_ptr<Node>> nodes_;
  // The last snapshot chunk each node was served, and by whom (an install in progress).
  struct Served {
    int leader = -1;
    uint64_t epoch = 0;
    uint64_t term = 0;
    uint64_t index = 0;
    uint64_t at_ms = 0;
  };
  std::map<int, Served> served_;
  std::vector<std::vector<bool>> links_;  // links_[from][to]
  std::priority_queue<Queued, std::vector<Queued>, Later> queue_;
  uint64_t seq_ = 0;
  uint64_t now_ = 0;
  uint64_t next_reader_ = 1;
  uint64_t next_op_ = 1;
  uint64_t next_ctx_ = 1;
  uint64_t next_forward_ = 1;
  bool healed_ = false;
  Result result_;

  // oracles
  std::vector<std::pair<uint64_t, uint64_t>> applied_;  // index-1 -> (term, entry hash)
  std::vector<uint64_t> chain_;                         // index-1 -> state hash after it
  std::vector<uint64_t> commit_term_;  // index-1 -> lowest leader term that committed it
  std::map<uint64_t, int> leader_of_term_;
  std::map<std::pair<uint64_t, uint64_t>, std::pair<uint64_t, uint64_t>>
      log_ids_;  // (i,t)->(hash, prev term)
  uint64_t max_acked_ = 0;
  std::map<uint64_t, ReadCheck> reads_;
  std::map<uint64_t, ForwardCall> forwards_;
  // (receiver, rpc id) of an InstallSnapshot -> the index it carries.
  std::map<std::pair<int, uint64_t>, uint64_t> install_rpcs_;
  std::vector<std::deque<Envelope>> history_;  // recent election messages sent to each node
  std::vector<uint64_t> last_commit_;
  // Requests each replica received and has not answered: (sender, rpc id). A crash fails
  // them in transport, as closing its connections does.
  std::vector<std::vector<Unanswered>> unanswered_;
  // Catch-up profile.
  uint64_t catchup_id_ = 0;  // the newcomer's change in flight (a token of ours)
  uint64_t catchup_tokens_ = 0;
  uint64_t catchup_started_ms_ = 0;
  uint64_t catchup_done_ms_ = 0;
  uint64_t catchup_next_try_ms_ = 0;
  int catchup_leader_ = -1;
  uint64_t catchup_epoch_ = 0;
  bool catchup_snapshots_ = false;
};

// The world as a replica's environment: virtual time, the simulated network and disk.
class SimEnv : public runtime::ReplicaEnv {
 public:
  SimEnv(World& w, Node& n) : w_(w), n_(n), epoch_(n.epoch) {}
  uint64_t now_ms() override { return w_.now_; }
  uint64_t wall_ms() override { return 1'700'000'000'000ull + w_.now_; }
  Post poster() override {
    return [&w = w_, id = n_.id, epoch = epoch_](std::function<void()> f) {
      if (w.nodes_[id]->epoch != epoch) return false;  // the host is gone, as HostGate says
      w.schedule(w.now_, PostEvent{id, epoch, std::move(f)});
      return true;
    };
  }
  void call(Envelope req, uint32_t timeout_ms, const storage::SnapshotInfo*) override {
    w_.call(n_, std::move(req), timeout_ms);
  }
  void respond(Envelope resp) override { w_.send(n_, std::move(resp)); }
  void forward(const PeerId& leader, std::shared_ptr<const std::string> data, uint32_t timeout_ms,
               ForwardDone done) override {
    w_.forward(n_, leader, std::move(data), timeout_ms, std::move(done));
  }
  void write(runtime::Write&& w) override { w_.write(n_, std::move(w)); }
  storage::Status begin_snapshot(std::string* dir) override {
    n_.disk.temp.clear();
    *dir = "temp";
    return {};
  }
  void copy_snapshot(const SnapshotInstall& install, const std::string&, uint32_t call_timeout_ms,
                     std::function<void(storage::Status)> done) override {
    w_.copy_snapshot(n_, install, call_timeout_ms, std::move(done));
  }
  void cancel_copy() override { n_.copy.reset(); }
  void observe(const Ready& rd) override { w_.observe(n_, rd); }

 private:
  World& w_;
  Node& n_;
  uint64_t epoch_;
};

void World::boot(Node& n) {
  Boot b;
  b.hard_state = n.disk.hs;
  b.initial_conf = n.initial_conf;
  std::optional<storage::SnapshotInfo> published;
  if (n.disk.snapshot) {
    b.snapshot = n.disk.snapshot->info.meta;
    published = n.disk.snapshot->info;
  }
  b.entries.assign(n.disk.log.begin(), n.disk.log.end());
  n.sm = n.disk.snapshot ? decode_snapshot_file(n.disk.snapshot->file) : SmState{};
  n.alive = true;
  ++n.epoch;
  n.env = std::make_unique<SimEnv>(*this, n);
  runtime::NodeOptions o;
  o.group = "sim";
  o.self = n.peer;
  o.raft = options_for();
  o.forward_proposals = s_.forward_proposals;
  o.snapshot_log_threshold = s_.snapshot_threshold;
  runtime::StateMachine sm;
  sm.apply = [this, &n](const std::vector<Entry>& entries) {
    for (const auto& e : entries)
      if (result_.ok) apply(n, e);
  };
  sm.save = [this, &n](const std::string&, runtime::StateMachine::SaveDone done) {
    n.disk.temp["data"] = snapshot_file(n.sm, s_.snapshot_bytes);  // captured now
    // ... and finished later, as an application writing on its own thread: possibly after
    // this replica crashed, when `done` must not reach anything of the dead incarnation.
    schedule(now_ + save_rng_.range(0, 30), SaveDoneEvent{[done] { done({}); }});
  };
  sm.load = [this, &n](const std::string& path) { return load(n, path); };
  n.replica = std::make_unique<runtime::Replica>(*n.env, std::move(o), std::move(sm));
  n.seen_elections_started = n.seen_elections_won = n.seen_leader_changes = 0;
  schedule(now_ + rng_.range(1, 5), TickEvent{n.id, n.epoch});
  trace("node " + std::to_string(n.id) + " boots term=" + std::to_string(n.disk.hs.term) +
        " log=" + std::to_string(n.disk.log.size()) + " snapshot=" +
        std::to_string(n.disk.snapshot ? n.disk.snapshot->info.meta.last_included_index : 0));
  n.replica->start(std::move(b), std::move(published), rng_.next());
}

void World::crash(Node& n) {
  if (!n.alive) return;
  trace("node " + std::to_string(n.id) + " CRASH (" +
        std::to_string(n.writing.size() + n.queued.size()) + " writes and " +
        std::to_string(n.disk.unsynced()) + " unsynced log changes lost)");
  ++result_.crashes;
  n.alive = false;
  ++n.epoch;
  // The host stops the replica (NodeHost's destructor: the gate closes, then fail()); its
  // clients learn nothing more of their proposals' outcome (a failure is no answer). Calls
  // racing the shutdown from other threads (a JavaScript propose during close) must each be
  // answered at once, not queued for a flush that will never run.
  n.replica->fail("the host is shutting down");
  for (int late = 0; late < 2; ++late) {
    bool answered = false;
    n.replica->propose(
        std::string(runtime::kLeaderTimeBytes, '\0') + "late",
        [&](Status, uint64_t) { answered = true; }, s_.forward_proposals);
    if (!answered)
      fail("a proposal to stopped node " + std::to_string(n.id) + " was never answered");
  }
  n.replica.reset();
  n.env.reset();
  n.disk.lose_unsynced();
  n.writing.clear();
  n.queued.clear();
  n.disk_busy = false;
  n.readers.clear();  // a process's readers die with it
  n.copy.reset();
  fail_requests_to(n);
  for (auto& [id, c] : forwards_)
    if (c.delivered && c.leader == n.id)
      forward_reply(id, now_ + rng_.range(0, 2), rpc::kEFAILEDSOCKET);
  // Its connections close: the other replicas may hear of it at once (peer_unreachable).
  if (s_.p_down_hint > 0)
    for (auto& m : nodes_)
      if (m->alive && hint_rng_.chance(s_.p_down_hint))
        schedule(now_ + hint_rng_.range(0, 3), HintEvent{m->id, m->epoch, n.peer});
}

void World::fail_requests_to(Node& n) {
  auto& open = unanswered_[n.id];
  if (s_.transport_failures)
    for (const auto& u : open)
      schedule(now_ + rng_.range(0, 2), RpcFailedEvent{u.from, u.epoch, n.peer, u.rpc_id});
  open.clear();
}

// A message the network lost: the call it belongs to fails when its deadline passes (the
// runtime's channels give data RPCs an election timeout, InstallSnapshot longer).
void World::lost(const Envelope& env) {
  if (!s_.transport_failures || healed_) return;
  bool request = is_request(env.payload);
  int caller = index_of(request ? env.from : env.to);
  if (caller < 0) return;
  const PeerId& peer = request ? env.to : env.from;
  uint64_t deadline = std::holds_alternative<InstallSnapshotRequest>(env.payload) ||
                              std::holds_alternative<InstallSnapshotResponse>(env.payload)
                          ? 4 * s_.election_timeout_ms
                          : s_.election_timeout_ms;
  schedule(now_ + deadline, RpcFailedEvent{caller, nodes_[caller]->epoch, peer, env.rpc_id});
}

void World::call(Node& n, Envelope req, uint32_t) {
  if (auto* is = std::get_if<InstallSnapshotRequest>(&req.payload)) {
    // The "uri" names a reader over the sender's snapshot, as braft's FileService does.
    if (!n.disk.snapshot ||
        n.disk.snapshot->info.meta.last_included_index != is->meta.last_included_index)
      return fail("leader sent a snapshot it does not hold");
    // A leader does not give up on an install while the peer keeps fetching it: sending the
    // same snapshot again within the install timeout of the last chunk served to it means a
    // large snapshot's copy would start over again and again (checked without transport
    // failures and hints of a peer gone, which are reasons to).
    int to = index_of(req.to);
    if (auto sv = served_.find(to);
        !s_.transport_failures && s_.p_down_hint == 0 && sv != served_.end() && to >= 0 &&
        nodes_[to]->alive && nodes_[to]->copy && nodes_[to]->copy->leader == n.id &&
        sv->second.leader == n.id && sv->second.epoch == n.epoch &&
        sv->second.term == n.core().term() && sv->second.index == is->meta.last_included_index &&
        now_ < sv->second.at_ms + 4 * s_.election_timeout_ms)
      return fail("install abandoned (lent in term " + std::to_string(sv->second.term) + ", now " +
                  std::to_string(n.core().term()) + "): node " + std::to_string(n.id) +
                  " sent snapshot " + std::to_string(is->meta.last_included_index) + " to node " +
                  std::to_string(to) + " again " + std::to_string(now_ - sv->second.at_ms) +
                  " ms after serving it a chunk of the copy in progress");
    auto reader = static_cast<int64_t>(next_reader_++);
    n.readers[reader] = *n.disk.snapshot;
    n.reader_term[reader] = n.core().term();
    is->uri = std::to_string(n.id) + "/" + std::to_string(reader);
  }
  send(n, std::move(req));
}

// The log writer: one batch on the disk at a time; what is queued meanwhile is the next
// batch (group commit), committed by the runtime's commit_writes.
void World::write(Node& n, runtime::Write w) {
  n.queued.push_back(std::move(w));
  if (!n.disk_busy) start_batch(n);
}

void World::start_batch(Node& n) {
  n.writing = std::move(n.queued);
  n.queued.clear();
  n.disk_busy = true;
  uint64_t lat = rng_.range(s_.disk_min_ms, s_.disk_max_ms);
  if (n.id == s_.slow_disk_node && !healed_) lat += s_.slow_disk_ms;
  schedule(now_ + lat, DiskEvent{n.id, n.epoch});
}

void World::on_disk(Node& n) {
  std::vector<runtime::Write> batch = std::move(n.writing);
  n.writing.clear();
  n.disk_busy = false;
  if (!healed_ && rng_.chance(s_.p_torn_commit))
    n.disk.ops_until_crash = static_cast<int64_t>(rng_.below(2 * batch.size() + 1));
  for (const auto& w : batch)
    if (w.publish && !healed_ && s_.p_install_fail > 0 && rng_.chance(s_.p_install_fail / 3))
      n.disk.fail_next_publish = true;
  storage::Status st = runtime::commit_writes(batch, n.disk);
  n.disk.ops_until_crash = -1;  // the cut was for this batch only
  if (!n.disk.violation.empty()) return fail(n.disk.violation);
  if (n.disk.crashed) {
    trace("node " + std::to_string(n.id) + " dies in the middle of a log writer batch");
    return crash(n);
  }
  for (const auto& w : batch)
    if (w.log.log_write)
      trace("node " + std::to_string(n.id) + " synced log from " +
            std::to_string(w.log.log_write->from_index) + " +" +
            std::to_string(w.log.log_write->entries.size()) +
            " disk=" + std::to_string(n.disk.log.size()));
  if (!n.queued.empty()) start_batch(n);
  n.replica->written(st, std::move(batch));
}

void World::send(Node& from, Envelope env) {
  ++result_.messages;
  if (!is_request(env.payload)) {
    auto& open = unanswered_[from.id];
    int to_id = index_of(env.to);
    for (auto it = open.begin(); it != open.end(); ++it)
      if (it->from == to_id && it->rpc_id == env.rpc_id) {
        open.erase(it);
        break;
      }
  }
  const MemDisk& disk = from.disk;
  if (auto* a = std::get_if<AppendEntriesResponse>(&env.payload); a && a->success) {
    // An acknowledgement vouches for data on this replica's disk, not just in its memory.
    uint64_t x = a->last_log_index;
    bool durable = disk.snapshot && x <= disk.snapshot->info.meta.last_included_index;
    for (auto it = disk.log.rbegin(); !durable && it != disk.log.rend(); ++it)
      if (it->index == x) durable = from.core().term_at(x) == it->term;
    if (x > 0 && !durable)
      fail("durability: node " + std::to_string(from.id) + " acknowledged index " +
           std::to_string(x) + " before it was on disk");
  }
  if (auto* r = std::get_if<InstallSnapshotResponse>(&env.payload); r && r->success) {
    // So does an InstallSnapshot acknowledgement: the snapshot (or the log up to it) is durable.
    auto it = install_rpcs_.find({from.id, env.rpc_id});
    if (it != install_rpcs_.end()) {
      uint64_t x = it->second;
      bool durable = disk.snapshot && x <= disk.snapshot->info.meta.last_included_index;
      for (const auto& e : disk.log) durable = durable || e.index == x;
      if (!durable)
        fail("durability: node " + std::to_string(from.id) + " acknowledged snapshot " +
             std::to_string(x) + " before it was on disk");
      install_rpcs_.erase(it);
    }
  }
  if (auto* v = std::get_if<RequestVoteResponse>(&env.payload);
      v && v->granted && !v->pre_vote && !healed_ && rng_.chance(s_.p_crash_after_vote)) {
    schedule(now_ + rng_.range(0, 3), CrashEvent{from.id});
  }
  int to = index_of(env.to);
  bool election_traffic = std::holds_alternative<RequestVoteRequest>(env.payload) ||
                          std::holds_alternative<RequestVoteResponse>(env.payload);
  if (to >= 0 && election_traffic && s_.p_replay_on_election > 0) {
    auto& h = history_[to];
    h.push_back(env);
    if (h.size() > 32) h.pop_front();
  }
  if (to < 0) return;
  if (!links_[from.id][to] || rng_.chance(healed_ ? 0.0 : s_.loss)) return lost(env);
  int copies = (!healed_ && rng_.chance(s_.duplicate)) ? 2 : 1;
  for (int c = 0; c < copies; ++c)
    schedule(now_ + rng_.range(s_.min_delay_ms, s_.max_delay_ms), MsgEvent{env});
  if (!healed_ && rng_.chance(s_.late_duplicate))  // a stale retransmission
    schedule(now_ + rng_.range(s_.election_timeout_ms, 4 * s_.election_timeout_ms), MsgEvent{env});
}

void World::apply(Node& n, const Entry& e) {
  if (e.index != n.sm.index + 1) {
    fail("node " + std::to_string(n.id) + " applied index " + std::to_string(e.index) + " after " +
         std::to_string(n.sm.index));
    return;
  }
  uint64_t h = entry_hash(e);
  size_t i = e.index - 1;
  cover(e.index);
  n.sm.hash = mix(n.sm.hash, h);
  n.sm.index = e.index;
  if (applied_[i].first == 0) {
    applied_[i] = {e.term, h};
    chain_[i] = n.sm.hash;
  } else if (applied_[i] != std::make_pair(e.term, h) || chain_[i] != n.sm.hash) {
    fail("state machine safety: node " + std::to_string(n.id) + " applied index " +
         std::to_string(e.index) + " term " + std::to_string(e.term) + " but term " +
         std::to_string(applied_[i].first) + " was applied elsewhere");
    return;
  }
}

// The replica adopted a snapshot it installed: the state machine loads it from the disk.
storage::Status World::load(Node& n, const std::string& path) {
  if (!n.disk.snapshot || n.disk.snapshot->info.path != path) {
    fail("node " + std::to_string(n.id) + " loads snapshot " + path + ", which is not published");
    return {storage::Code::Io, "no snapshot at " + path};
  }
  SmState snap = decode_snapshot_file(n.disk.snapshot->file);
  size_t i = snap.index - 1;
  if (snap.index > 0 && i < chain_.size() && chain_[i] != 0 && chain_[i] != snap.hash)
    fail("snapshot at " + std::to_string(snap.index) + " disagrees with applied state");
  n.sm = snap;
  ++result_.snapshots_installed;
  trace("node " + std::to_string(n.id) + " installed snapshot " + std::to_string(snap.index));
  return {};
}

runtime::ProposeDone World::track(Node& n, uint64_t op) {
  return [this, op, id = n.id](Status st, uint64_t at) {
    if (!st.ok()) return;
    if (at == 0 || at > applied_.size() || applied_[at - 1].first == 0)
      return fail("acknowledged write lost: node " + std::to_string(id) + " acknowledged op " +
                  std::to_string(op) + " at index " + std::to_string(at) +
                  ", which was never applied");
    Entry mine{at, applied_[at - 1].first, EntryType::Data,
               std::make_shared<const std::string>(payload(op)), nullptr};
    if (applied_[at - 1].second != entry_hash(mine))
      return fail("acknowledged write lost: node " + std::to_string(id) + " acknowledged op " +
                  std::to_string(op) + " at index " + std::to_string(at) +
                  ", where another entry was applied");
    // The proposer reads its own write once it is acknowledged (RaftNode's promise).
    if (nodes_[id]->sm.index < at)
      return fail("read your writes: node " + std::to_string(id) + " acknowledged op " +
                  std::to_string(op) + " at index " + std::to_string(at) + " having applied " +
                  std::to_string(nodes_[id]->sm.index));
    ++result_.acked_writes;
    max_acked_ = std::max(max_acked_, at);
  };
}

// A follower hands a client write to the leader's ForwardService (the runtime's Replica
// decides when and what; this is the call over the simulated network).
void World::forward(Node& n, const PeerId& leader, std::shared_ptr<const std::string> data,
                    uint32_t timeout_ms, runtime::ReplicaEnv::ForwardDone done) {
  uint64_t id = next_forward_++;
  int l = index_of(leader);
  forwards_[id] = ForwardCall{n.id, n.epoch, l, std::move(data), std::move(done)};
  if (l < 0) return forward_reply(id, now_, rpc::kEHOSTDOWN, "no such peer");
  // Whatever happens to it, the call's deadline ends it.
  forward_reply(id, now_ + timeout_ms, rpc::kERPCTIMEDOUT, "reached timeout");
  if (!links_[n.id][l] || rng_.chance(healed_ ? 0.0 : s_.loss)) return;
  schedule(now_ + rng_.range(s_.min_delay_ms, s_.max_delay_ms), ForwardEvent{id});
}

void World::on_forward(uint64_t id) {
  auto it = forwards_.find(id);
  if (it == forwards_.end() || it->second.delivered) return;
  ForwardCall& c = it->second;
  Node& l = *nodes_[c.leader];
  if (!l.alive) return forward_reply(id, now_ + rng_.range(0, 2), rpc::kEHOSTDOWN, "refused");
  c.delivered = true;
  l.replica->propose(
      *c.data,
      [this, id, from = c.from, lid = l.id](Status st, uint64_t index) {
        Node& l = *nodes_[lid];
        std::string resp = runtime::forward_response(
            st, index, st.ok() || !l.replica ? PeerId{} : l.replica->core().leader());
        if (!links_[lid][from] || rng_.chance(healed_ ? 0.0 : s_.loss)) return;  // deadline
        forward_reply(id, now_ + rng_.range(s_.min_delay_ms, s_.max_delay_ms), 0, "", resp);
      },
      false);
}

void World::forward_reply(uint64_t id, uint64_t at, int32_t code, std::string text,
                          std::string resp) {
  schedule(at, ForwardReplyEvent{id, code, std::move(text), std::move(resp)});
}

// A follower copies a snapshot as the runtime does: the runtime's SnapshotFetch asks for it
// chunk by chunk over get_file calls that travel this network.
void World::copy_snapshot(Node& n, const SnapshotInstall& install, uint32_t call_timeout_ms,
                          std::function<void(storage::Status)> done) {
  auto c = std::make_unique<Copy>();
  c->id = ++n.next_copy;
  size_t slash = install.uri.find('/');
  c->leader = std::stoi(install.uri.substr(0, slash));
  c->call_timeout_ms = call_timeout_ms;
  c->fetch = std::make_unique<runtime::SnapshotFetch>(
      install.meta, std::stoll(install.uri.substr(slash + 1)), s_.chunk_bytes);
  c->sink.fail_writes = !healed_ && rng_.chance(s_.p_install_fail);
  c->done = std::move(done);
  n.copy = std::move(c);
  request_chunk(n);
}

void World::request_chunk(Node& n, uint64_t after_ms) {
  Copy& c = *n.copy;
  FileRequestEvent ev{n.id, n.epoch, c.id, c.leader, c.fetch->request()};
  bool lost = !links_[n.id][c.leader] || rng_.chance(healed_ ? 0.0 : s_.loss);
  if (lost) {  // no answer: the call's deadline passes
    FileReplyEvent timeout{n.id, n.epoch, c.id, rpc::kERPCTIMEDOUT, {}};
    schedule(now_ + after_ms + c.call_timeout_ms, std::move(timeout));
    return;
  }
  schedule(now_ + after_ms + rng_.range(s_.min_delay_ms, s_.max_delay_ms), std::move(ev));
}

void World::on_file_request(const FileRequestEvent& ev) {
  Node& l = *nodes_[ev.leader];
  if (l.alive && !healed_ && s_.p_crash_mid_install > 0 &&
      rng_.chance(s_.p_crash_mid_install / 2)) {
    trace("crash leader " + std::to_string(l.id) + " while it serves a snapshot");
    crash(l);
  }
  FileReplyEvent reply{ev.node, ev.epoch, ev.copy, 0, {}};
  if (!l.alive) {
    reply.transport_code = rpc::kEFAILEDSOCKET;  // connection refused
    schedule(now_ + rng_.range(0, 2), std::move(reply));
    return;
  }
  // A reader keeps its snapshot's files even once a newer one is published (the runtime's
  // SnapshotStore::lend): a leader that snapshots faster than a copy takes must not starve it.
  auto it = l.readers.find(ev.request.reader_id());
  if (it == l.readers.end()) {
    reply.reply.error_code = rpc::kENOENT;  // no such reader (restarted, or replaced)
    reply.reply.error_text = "Fail to find reader";
  } else {
    MemSource source(it->second.file);
    reply.reply = runtime::serve_get_file(it->second.info, ev.request, source);
    // As the runtime's FileService: a chunk served keeps the install alive.
    if (reply.reply.error_code == 0) {
      l.replica->snapshot_progress(nodes_[ev.node]->peer);
      served_[ev.node] =
          Served{l.id, l.epoch, l.core().term(), it->second.info.meta.last_included_index, now_};
    }
  }
  bool lost = !links_[l.id][ev.node] || rng_.chance(healed_ ? 0.0 : s_.loss);
  if (lost) {
    Node& n = *nodes_[ev.node];
    uint64_t timeout = n.copy ? n.copy->call_timeout_ms : s_.election_timeout_ms;
    reply = FileReplyEvent{ev.node, ev.epoch, ev.copy, rpc::kERPCTIMEDOUT, {}};
    schedule(now_ + timeout, std::move(reply));
    return;
  }
  schedule(now_ + rng_.range(s_.min_delay_ms, s_.max_delay_ms), std::move(reply));
}

void World::on_file_reply(Node& n, const FileReplyEvent& ev) {
  if (!n.copy || n.copy->id != ev.copy) return;
  if (!healed_ && s_.p_crash_mid_install > 0 && rng_.chance(s_.p_crash_mid_install)) {
    trace("crash node " + std::to_string(n.id) + " in the middle of a snapshot copy");
    return crash(n);
  }
  Copy& c = *n.copy;
  const auto& r = ev.reply;
  bool answered = ev.transport_code == 0 && r.error_code == 0;
  bool again =
      c.fetch->on_reply(ev.transport_code, "transport failure", r.error_code, r.error_text,
                        answered ? r.response.SerializeAsString() : "", r.attachment, c.sink);
  if (again) return request_chunk(n, 100);  // throttled: the runtime asks again after 100 ms
  switch (c.fetch->state()) {
    case runtime::SnapshotFetch::State::Fetching:
      return request_chunk(n);
    case runtime::SnapshotFetch::State::Done: {
      n.disk.temp = std::move(c.sink.files);
      auto done = std::move(c.done);
      n.copy.reset();
      return done({});
    }
    case runtime::SnapshotFetch::State::Failed: {
      trace("node " + std::to_string(n.id) + " snapshot copy failed: " + c.fetch->error().message);
      auto done = std::move(c.done);
      storage::Status st = c.fetch->error();
      n.copy.reset();
      return done(st);
    }
  }
}

void World::check_log(Node& n, const LogWrite& w) {
  for (const auto& e : w.entries) {
    auto prev = n.core().term_at(e.index - 1);
    auto key = std::make_pair(e.index, e.term);
    auto val = std::make_pair(entry_hash(e), prev.value_or(UINT64_MAX));
    auto [it, inserted] = log_ids_.emplace(key, val);
    if (!inserted && it->second.first != val.first)
      fail("log matching: two different entries at index " + std::to_string(e.index) + " term " +
           std::to_string(e.term));
    if (!inserted && prev && it->second.second != UINT64_MAX && it->second.second != *prev)
      fail("log matching: entry (" + std::to_string(e.index) + "," + std::to_string(e.term) +
           ") follows different terms on node " + std::to_string(n.id));
    if (e.type == EntryType::Configuration && e.conf) {
      Configuration before = n.core().conf_at(e.index - 1);
      const Configuration& c = *e.conf;
      size_t diff = 0;
      for (const auto& p : c.peers) diff += !contains(before.peers, p);
      for (const auto& p : before.peers) diff += !contains(c.peers, p);
      bool ok = c.peers == before.peers && c.old_peers == before.old_peers;  // same (new term)
      if (before.peers.empty()) ok = true;  // a replica outside any configuration learns one
      if (!ok && c.joint()) ok = !before.joint() && c.old_peers == before.peers;
      if (!ok && !c.joint()) ok = before.joint() ? before.peers == c.peers : diff <= 1;
      if (!ok)
        fail("configuration safety: " + before.to_string() + " -> " + c.to_string() + " at index " +
             std::to_string(e.index));
    }
  }
}

// The replica's metrics agree with what its Readies showed in this incarnation.
void World::check_metrics(Node& n) {
  if (!result_.ok) return;
  const runtime::ReplicaMetrics& m = n.replica->metrics();
  auto expect = [&](const char* what, uint64_t got, uint64_t seen) {
    if (result_.ok && got != seen)
      fail(std::string("metrics: node ") + std::to_string(n.id) + " counts " + std::to_string(got) +
           " " + what + ", its Readies showed " + std::to_string(seen));
  };
  expect("elections started", m.elections_started, n.seen_elections_started);
  expect("elections won", m.elections_won, n.seen_elections_won);
  expect("leader changes", m.leader_changes, n.seen_leader_changes);
}

void World::check_leader(Node& n) {
  const Raft& c = n.core();
  uint64_t term = c.term();
  auto [it, inserted] = leader_of_term_.emplace(term, n.id);
  if (!inserted && it->second != n.id)
    return fail("election safety: nodes " + std::to_string(it->second) + " and " +
                std::to_string(n.id) + " both lead term " + std::to_string(term));
  ++result_.elections;
  // Leader completeness: every entry committed in an earlier term is in this leader's log.
  for (size_t i = c.snapshot().last_included_index; i < applied_.size(); ++i) {
    if (applied_[i].first == 0 || commit_term_[i] >= term) continue;
    auto t = c.term_at(i + 1);
    if (t != applied_[i].first)
      return fail("leader completeness: leader " + std::to_string(n.id) + " of term " +
                  std::to_string(term) + " lacks committed entry " + std::to_string(i + 1));
  }
}

// Every Ready a replica takes, before the runtime handles it: the invariants, and the
// nemeses that strike at the moments where Raft's subtle rules matter.
void World::observe(Node& n, const Ready& rd) {
  if (!result_.ok) return;
  if (rd.log_write) check_log(n, *rd.log_write);
  const Raft& c = n.core();
  for (const auto& cc : rd.conf_changes) {
    if (cc.status.ok()) ++result_.conf_changes_ok;
    trace("node " + std::to_string(n.id) + " conf change " + std::to_string(cc.id) + ": " +
          code_name(cc.status.code) + " " + cc.new_conf.to_string());
  }
  if (rd.role_changed || rd.leader_changed)
    trace("node " + std::to_string(n.id) + " is " + role_name(c.role()) + " term " +
          std::to_string(c.term()) + " leader " + c.leader().to_string());
  if (rd.role_changed && c.role() == Role::Leader) check_leader(n);
  if (rd.role_changed && c.role() == Role::Leader) ++n.seen_elections_won;
  if (rd.role_changed && c.role() == Role::Candidate) ++n.seen_elections_started;
  if (rd.leader_changed && !c.leader().empty()) ++n.seen_leader_changes;
  if (!healed_ && rd.role_changed && c.role() == Role::Candidate &&
      rng_.chance(s_.p_replay_on_election)) {
    auto& h = history_[n.id];
    for (int k = 0; k < 4 && !h.empty(); ++k)
      schedule(now_ + rng_.range(1, 10), MsgEvent{h[rng_.below(h.size())]});
  }
  if (!healed_ && rd.role_changed && c.role() == Role::Leader) {
    for (auto& o : nodes_) {
      if (!o->alive || o.get() == &n || o->core().role() != Role::Leader) continue;
      if (!rng_.chance(s_.p_split_leaders)) continue;
      // Both reach the followers; the deposed one must notice their newer term.
      for (auto& row : links_) std::fill(row.begin(), row.end(), true);
      links_[n.id][o->id] = links_[o->id][n.id] = false;
      trace("split leaders " + std::to_string(n.id) + " and " + std::to_string(o->id));
    }
  }
  if (!healed_ && rd.role_changed && c.role() == Role::Leader && rng_.chance(s_.p_crash_new_leader))
    schedule(now_ + rng_.range(0, 2), CrashEvent{n.id});
  if (c.role() == Role::Leader) {
    if (!healed_ && c.commit_index() > last_commit_[n.id] &&
        rng_.chance(s_.p_isolate_after_commit)) {
      for (int b = 0; b < s_.nodes; ++b)
        if (b != n.id) links_[n.id][b] = links_[b][n.id] = false;
      trace("isolate leader " + std::to_string(n.id) + " after commit " +
            std::to_string(c.commit_index()));
    }
    last_commit_[n.id] = c.commit_index();
    if (!rd.committed.empty()) cover(rd.committed.back().index);  // applied after this look
    // Record the lowest term in which each index became committed (for completeness).
    for (uint64_t i = c.commit_index(); i > 0 && i - 1 < commit_term_.size(); --i) {
      if (commit_term_[i - 1] <= c.term()) break;
      commit_term_[i - 1] = c.term();
    }
    if (c.conf_index() <= c.commit_index() && !c.conf().is_voter(c.self()))
      fail("configuration safety: node " + std::to_string(n.id) +
           " leads although the committed configuration excludes it");
  }
}

Node* World::find_leader() {
  Node* best = nullptr;
  for (auto& n : nodes_)
    if (n->alive && n->core().role() == Role::Leader &&
        (!best || n->core().term() > best->core().term()))
      best = n.get();
  return best;
}

void World::inject_faults() {
  int N = s_.nodes;
  auto pick = [&] { return static_cast<int>(rng_.below(static_cast<uint64_t>(N))); };
  if (rng_.chance(s_.p_partition)) {
    std::vector<int> side(N);
    for (auto& x : side) x = static_cast<int>(rng_.below(2));
    for (int a = 0; a < N; ++a)
      for (int b = 0; b < N; ++b) links_[a][b] = side[a] == side[b];
    trace("partition");
  }
  if (rng_.chance(s_.p_one_way)) {
    int a = pick(), b = pick();
    links_[a][b] = false;
    trace("cut " + std::to_string(a) + "->" + std::to_string(b));
  }
  if (rng_.chance(s_.p_flap)) {
    int a = pick(), b = pick();
    links_[a][b] = links_[b][a] = !links_[a][b];
  }
  if (rng_.chance(s_.p_partition / 2)) {
    for (auto& row : links_) std::fill(row.begin(), row.end(), true);
    trace("network healed");
  }
  if (rng_.chance(s_.p_crash)) {
    schedule(now_, CrashEvent{pick()});
  }
  if (s_.p_false_hint > 0 && hint_rng_.chance(s_.p_false_hint)) {  // a connection merely reset
    auto hint_pick = [&] { return static_cast<int>(hint_rng_.below(static_cast<uint64_t>(N))); };
    int a = hint_pick(), b = hint_pick();
    schedule(now_, HintEvent{a, nodes_[a]->epoch, nodes_[b]->peer});
  }
  if (Node* l = find_leader(); l && rng_.chance(s_.p_kill_leader)) {
    schedule(now_ + rng_.range(0, 5), CrashEvent{l->id});
  }
  if (Node* l = find_leader(); l && rng_.chance(s_.p_isolate_leader)) {
    for (int b = 0; b < N; ++b)
      if (b != l->id) links_[l->id][b] = links_[b][l->id] = false;
    trace("isolate leader " + std::to_string(l->id));
  }
  if (rng_.chance(s_.p_restart)) {
    int i = pick();
    if (!nodes_[i]->alive) boot(*nodes_[i]);
  }
  Node* leader = find_leader();
  if (leader && rng_.chance(s_.p_membership)) {
    const Raft& c = leader->core();
    PeerList peers;
    for (auto& n : nodes_)
      if (rng_.chance(0.6)) insert_sorted(peers, n->peer);
    if (peers.empty()) insert_sorted(peers, nodes_[pick()]->peer);
    uint64_t kind = rng_.below(4);
    std::string method;
    if (kind == 0) {
      method = "add_peer";
      peers = {nodes_[pick()]->peer};
    } else if (kind == 1) {
      method = "remove_peer";
      peers = {nodes_[pick()]->peer};
    } else if (kind == 2) {
      method = "change_peers";
    } else {
      method = "change_learners";
      peers.clear();
      for (auto& n : nodes_)
        if (!contains(c.conf().peers, n->peer) && rng_.chance(0.5)) insert_sorted(peers, n->peer);
    }
    leader->replica->change_conf(method, peers,
                                 [this, id = leader->id, method](const ConfChangeResult& cc) {
                                   trace("membership change (" + method + ") by " +
                                         std::to_string(id) + ": " + code_name(cc.status.code));
                                 });
  }
  leader = find_leader();
  if (leader && rng_.chance(s_.p_transfer)) {
    // Sometimes ANY_PEER: the core picks the follower with the longest log.
    PeerId target = rng_.chance(0.3) ? PeerId{} : nodes_[pick()]->peer;
    if (leader->replica->transfer_leader(target).ok()) ++result_.transfers;
  }
  if (rng_.chance(s_.p_snapshot)) take_snapshot(*nodes_[pick()]);
}

// As `raftstore snapshot` on that replica: the runtime's snapshot executor takes it.
void World::take_snapshot(Node& n) {
  if (!n.alive) return;
  n.replica->snapshot([this, id = n.id](storage::Status st) {
    if (!st.ok()) trace("node " + std::to_string(id) + " snapshot failed: " + st.message);
  });
}

// The catch-up profile's load: the leader appends `bulk` client writes at once, as a
// runtime's proposal queue does, until the log is long enough.
void World::bulk_load() {
  Node* l = find_leader();
  if (!l || l->core().last_index() >= s_.log_target) return;
  for (uint32_t i = 0; i < s_.bulk; ++i) {
    uint64_t op = next_op_++;
    l->replica->propose(payload(op), track(*l, op), false);
  }
}

// After healing, with no client writes, the leader takes a replica that was never in the
// configuration (its log is empty) into it; the change must succeed.
void World::start_catchup() {
  if (catchup_done_ms_ || now_ < catchup_next_try_ms_) return;
  Node* l = find_leader();
  if (catchup_id_ && l && l->id == catchup_leader_ && l->epoch == catchup_epoch_)
    return;  // in flight
  catchup_id_ = 0;
  if (!l || l->core().conf_index() > l->core().commit_index()) return;
  catchup_next_try_ms_ = now_ + 10;
  if (!catchup_snapshots_ && s_.swap_in) {
    // As an operator's `raftstore snapshot` on every replica first: the newcomer then
    // installs a snapshot that ends where the leader's log ends.
    catchup_snapshots_ = true;
    for (auto& n : nodes_) take_snapshot(*n);
    catchup_next_try_ms_ = now_ + 40;
    return;
  }
  Node& newcomer = *nodes_[s_.voters];
  const Raft& c = l->core();
  PeerList peers{newcomer.peer};
  if (s_.swap_in) {
    peers = c.conf().peers;
    peers.erase(peers.begin() + static_cast<ptrdiff_t>(rng_.below(peers.size())));
    insert_sorted(peers, newcomer.peer);
  }
  uint64_t token = ++catchup_tokens_;
  catchup_id_ = token;
  catchup_leader_ = l->id;
  catchup_epoch_ = l->epoch;
  uint64_t log = c.last_index();
  std::string method = s_.swap_in ? "change_peers" : "add_peer";
  l->replica->change_conf(method, peers, [this, token](const ConfChangeResult& cc) {
    if (catchup_id_ != token) return;
    catchup_id_ = 0;
    if (cc.status.ok()) {
      catchup_done_ms_ = now_;
      result_.catchup_ms = now_ - catchup_started_ms_;
    } else if (cc.status.code == Code::CatchupFailed) {
      fail("catch-up: the newcomer could not join a healthy cluster: " + cc.status.message);
    }
  });
  bool started = catchup_id_ == token;  // not refused at once
  trace("catch-up: " + method + " of node " + std::to_string(newcomer.id) + " at log " +
        std::to_string(log) + (started ? ": started" : ": refused"));
  if (started) {
    if (!catchup_started_ms_) catchup_started_ms_ = now_;
    result_.catchup_entries = log;
  }
}

void World::client_ops() {
  // Clients talk to random replicas: leaders, stale leaders and followers alike. In the
  // catch-up profile the load writes before healing, and nobody writes while the newcomer
  // catches up (a write would show the leader the newcomer's log by itself).
  bool catchup = s_.bulk > 0;
  if ((!catchup || catchup_done_ms_) && rng_.chance(s_.p_propose)) {
    Node& n = *nodes_[rng_.below(static_cast<uint64_t>(s_.nodes))];
    if (n.alive) {
      uint64_t op = next_op_++;
      n.replica->propose(payload(op), track(n, op), s_.forward_proposals);
    }
  }
  if (rng_.chance(s_.p_read)) {
    Node& n = *nodes_[rng_.below(static_cast<uint64_t>(s_.nodes))];
    if (n.alive) {
      uint64_t ctx = next_ctx_++;
      reads_[ctx] = ReadCheck{now_, max_acked_, n.id};
      bool lease = rng_.chance(s_.p_lease_read);
      n.replica->read_index(lease, [this, ctx](Status st, uint64_t index) {
        auto it = reads_.find(ctx);
        if (it == reads_.end()) return;
        if (st.ok()) {
          if (index < it->second.must_see)
            fail("linearizable read: node " + std::to_string(it->second.node) + " read index " +
                 std::to_string(index) + " misses write " + std::to_string(it->second.must_see) +
                 " acknowledged before the read began");
          ++result_.reads_ok;
        }
        reads_.erase(it);
      });
    }
  }
}

void World::heal() {
  healed_ = true;
  // A healed network delivers promptly: liveness is only owed when messages beat timeouts.
  s_.max_delay_ms = std::min(s_.max_delay_ms, s_.min_delay_ms + s_.election_timeout_ms / 20);
  for (auto& row : links_) std::fill(row.begin(), row.end(), true);
  for (auto& n : nodes_)
    if (!n->alive) boot(*n);
  trace("HEAL: all nodes up, network reliable");
}

Result World::run() {
  // Liveness bound: 30 election timeouts, plus time to replicate a full backlog of
  // uncommitted entries one round trip and one fsync at a time.
  // Plus a snapshot copy (a chunk per round trip of a healed network), twice over.
  uint64_t copy_ms = 2 * (s_.snapshot_bytes / std::max<uint32_t>(1, s_.chunk_bytes) + 1) * 2 *
                     (s_.min_delay_ms + s_.election_timeout_ms / 20 + 1);
  uint64_t bound = s_.liveness_bound_ms
                       ? s_.liveness_bound_ms
                       : 30 * s_.election_timeout_ms +
                             kMaxUncommitted * (s_.disk_max_ms + 2 * s_.max_delay_ms + 1) + copy_ms;
  uint64_t heal_at = s_.chaos_ms;
  uint64_t deadline = heal_at + bound;
  uint64_t next_ms = 0;
  uint64_t liveness_op_index = 0;  // index of the post-heal write, once acknowledged
  uint64_t liveness_op_ms = 0;
  uint64_t acked_before_heal = 0;
  while (result_.ok) {
    uint64_t at = queue_.empty() ? next_ms : std::min(queue_.top().at, next_ms);
    now_ = at;
    if (now_ >= next_ms) {  // once per virtual millisecond: faults and clients
      next_ms = now_ + 1;
      bool loaded = false;
      if (s_.bulk && !healed_) {
        Node* l = find_leader();
        loaded = l && l->core().commit_index() >= s_.log_target;
      }
      if (!healed_ && (now_ >= heal_at || loaded)) {
        heal_at = now_;
        deadline = now_ + bound;
        if (s_.bulk) {  // the newcomer fetches the whole log (or a snapshot and the rest)
          uint64_t per_batch = s_.disk_max_ms + 2 * s_.max_delay_ms + 1;
          deadline += s_.log_target * per_batch / s_.max_entries_per_rpc;
        }
        heal();
        acked_before_heal = result_.acked_writes;
      }
      // The simulated disk fails only by crashing: a replica that stops itself is a bug.
      for (auto& n : nodes_)
        if (n->alive && n->replica->failed())
          fail("node " + std::to_string(n->id) + " stopped: " + n->replica->failure());
      if (!healed_) inject_faults();
      if (s_.bulk && !healed_) bulk_load();
      if (s_.bulk && healed_) start_catchup();
      client_ops();
      if (healed_ && result_.acked_writes > acked_before_heal && !liveness_op_index) {
        liveness_op_index = max_acked_;
        liveness_op_ms = now_;
        // Replicas that were far behind get time to fetch the lag: one batch per fsync and
        // round trip (a learner of a single-voter group may trail by hundreds of entries).
        uint64_t behind = liveness_op_index;
        for (auto& n : nodes_) behind = std::min(behind, n->sm.index);
        uint64_t per_batch = s_.disk_max_ms + 2 * s_.max_delay_ms + 1;
        deadline = std::max(
            deadline,
            now_ + bound + (liveness_op_index - behind) * per_batch / s_.max_entries_per_rpc);
      }
      if (liveness_op_index) {
        // Liveness: after healing, some write committed; now every member must catch up.
        Node* leader = find_leader();
        bool all = leader != nullptr;
        for (auto& n : nodes_)
          if (all && leader->core().conf().is_member(n->peer) && n->sm.index < liveness_op_index)
            all = false;
        // ... and every read issued between healing and that write must have been answered.
        for (const auto& [ctx, r] : reads_)
          if (r.started_ms >= heal_at && r.started_ms <= liveness_op_ms) all = false;
        if (s_.bulk && !catchup_done_ms_) all = false;
        if (all) break;
      }
      if (now_ >= deadline) {
        for (auto& n : nodes_) {
          if (!n->replica) continue;
          auto st = n->replica->status();
          trace("node " + std::to_string(n->id) + " " + role_name(st.role) + " term " +
                std::to_string(st.term) + " first " + std::to_string(st.first_index) + " last " +
                std::to_string(st.last_index) + " commit " + std::to_string(st.commit_index) +
                " durable " + std::to_string(st.durable_index) + " applied " +
                std::to_string(n->sm.index) + " conf " + st.conf.to_string());
          for (const auto& p : st.peers)
            trace("  peer " + p.id.to_string() + " match " + std::to_string(p.match_index) +
                  " next " + std::to_string(p.next_index) + " " + p.state);
        }
        for (const auto& [ctx, r] : reads_)
          if (r.started_ms >= heal_at)
            trace("unanswered read " + std::to_string(ctx) + " at node " + std::to_string(r.node) +
                  " since t=" + std::to_string(r.started_ms));
        if (s_.bulk && !catchup_done_ms_)
          fail("catch-up: the newcomer's " + std::string(s_.swap_in ? "change_peers" : "add_peer") +
               " did not complete within " + std::to_string(deadline - heal_at) + " ms of healing");
        fail(liveness_op_index
                 ? "liveness: members did not all apply index " +
                       std::to_string(liveness_op_index) + " (or a read went unanswered) within " +
                       std::to_string(bound) + " ms of healing"
                 : "liveness: no write committed within " + std::to_string(bound) +
                       " ms after healing");
        break;
      }
      continue;
    }
    Queued q = queue_.top();
    queue_.pop();
    ++result_.events;
    std::visit(
        [&](auto& ev) {
          using T = std::decay_t<decltype(ev)>;
          if constexpr (std::is_same_v<T, MsgEvent>) {
            int from = index_of(ev.env.from), to = index_of(ev.env.to);
            Node& n = *nodes_[to];
            if (from >= 0 && !links_[from][to]) return lost(ev.env);
            if (!n.alive) {  // connection refused
              if (s_.transport_failures && from >= 0 && is_request(ev.env.payload))
                schedule(now_ + rng_.range(0, 2),
                         RpcFailedEvent{from, nodes_[from]->epoch, n.peer, ev.env.rpc_id});
              return;
            }
            if (const auto* is = std::get_if<InstallSnapshotRequest>(&ev.env.payload))
              install_rpcs_[{to, ev.env.rpc_id}] = is->meta.last_included_index;
            if (from >= 0 && is_request(ev.env.payload)) {
              auto& open = unanswered_[to];
              if (open.size() > 4096) open.erase(open.begin(), open.begin() + 2048);
              open.push_back({from, nodes_[from]->epoch, ev.env.rpc_id});
            }
            if (trace_) trace(describe(ev.env));
            if (is_request(ev.env.payload))
              n.replica->receive(ev.env);
            else
              n.replica->answered(ev.env);
          } else if constexpr (std::is_same_v<T, TickEvent>) {
            Node& n = *nodes_[ev.node];
            if (!n.alive || n.epoch != ev.epoch) return;
            n.replica->tick();
            schedule(now_ + 5, TickEvent{ev.node, ev.epoch});
          } else if constexpr (std::is_same_v<T, DiskEvent>) {
            Node& n = *nodes_[ev.node];
            if (n.alive && n.epoch == ev.epoch) on_disk(n);
          } else if constexpr (std::is_same_v<T, FileRequestEvent>) {
            Node& n = *nodes_[ev.node];
            if (n.alive && n.epoch == ev.epoch) on_file_request(ev);
          } else if constexpr (std::is_same_v<T, FileReplyEvent>) {
            Node& n = *nodes_[ev.node];
            if (n.alive && n.epoch == ev.epoch) on_file_reply(n, ev);
          } else if constexpr (std::is_same_v<T, CrashEvent>) {
            if (!healed_) crash(*nodes_[ev.node]);
          } else if constexpr (std::is_same_v<T, HintEvent>) {
            Node& n = *nodes_[ev.node];
            if (!n.alive || n.epoch != ev.epoch) return;
            trace("node " + std::to_string(n.id) + " told " + ev.peer.to_string() + " is down");
            n.replica->peer_unreachable(ev.peer);
          } else if constexpr (std::is_same_v<T, RpcFailedEvent>) {
            Node& n = *nodes_[ev.node];
            if (!n.alive || n.epoch != ev.epoch) return;
            n.replica->call_failed(ev.peer, ev.rpc_id);
          } else if constexpr (std::is_same_v<T, PostEvent>) {
            if (live(ev.node, ev.epoch)) ev.work();
          } else if constexpr (std::is_same_v<T, SaveDoneEvent>) {
            ev.finish();
          } else if constexpr (std::is_same_v<T, ForwardEvent>) {
            on_forward(ev.call);
          } else if constexpr (std::is_same_v<T, ForwardReplyEvent>) {
            auto it = forwards_.find(ev.call);
            if (it == forwards_.end()) return;
            ForwardCall c = std::move(it->second);
            forwards_.erase(it);
            if (live(c.from, c.epoch)) c.done(ev.code, ev.text, ev.resp);
          }
        },
        q.ev);
  }
  for (auto& n : nodes_)
    if (n->replica) {
      const auto& c = n->core().counters();
      result_.dropped_invalid += c.total();
      check_metrics(*n);
    }
  return result_;
}

}  // namespace

Result run(const Scenario& s, const TraceSink& trace) {
  World w(s, trace);
  return w.run();
}

}  // namespace raftstore::sim
