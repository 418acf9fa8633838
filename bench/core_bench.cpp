// raftstore-bench-core: how much CPU the pure Raft core costs per committed entry.
// Three cores in one thread, messages handed over at once, persistence instant: what is
// left is the core's own bookkeeping (log, progress, commit, apply hand-off). The runtime's
// I/O costs come on top; this number bounds what the core alone can sustain.
//   raftstore-bench-core [--entries N] [--size BYTES] [--batch B]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "raft.h"

using namespace raftstore::core;

namespace {

struct Replica {
  std::unique_ptr<Raft> raft;
  uint64_t applied = 0;
};

class Cluster {
 public:
  explicit Cluster(int n) {
    Configuration conf;
    for (int i = 0; i < n; ++i) insert_sorted(conf.peers, peer(i));
    for (int i = 0; i < n; ++i) {
      Options o;
      o.group = "bench";
      o.self = peer(i);
      o.random = [x = uint64_t(i + 1)]() mutable { return x = x * 6364136223846793005ULL + 1; };
      Boot b;
      b.initial_conf = conf;
      replicas_.push_back({std::make_unique<Raft>(o, b, now_), 0});
    }
  }
  static PeerId peer(int i) { return PeerId{0x7f000001u, static_cast<uint16_t>(8100 + i), 0, 0}; }
  Raft& raft(int i) { return *replicas_[i].raft; }
  uint64_t applied(int i) const { return replicas_[i].applied; }

  void tick(uint64_t ms) {
    now_ += ms;
    for (auto& r : replicas_) r.raft->tick(now_);
    settle();
  }
  // Drain every Ready and deliver every message until nothing moves.
  void settle() {
    bool moved = true;
    while (moved) {
      moved = false;
      for (size_t i = 0; i < replicas_.size(); ++i) {
        Raft& r = *replicas_[i].raft;
        while (r.has_ready()) {
          moved = true;
          Ready rd = r.take_ready();
          if (rd.hard_state) r.meta_persisted(rd.meta_seq);
          if (rd.log_write && !rd.log_write->entries.empty()) r.log_persisted(rd.log_write->seq);
          replicas_[i].applied += rd.committed.size();
          for (auto& m : rd.messages) inbox_.push_back(std::move(m));
        }
      }
      while (!inbox_.empty()) {
        moved = true;
        Envelope m = std::move(inbox_.front());
        inbox_.pop_front();
        replicas_[m.to.port - 8100].raft->step(m, now_);
      }
    }
  }

 private:
  std::vector<Replica> replicas_;
  std::deque<Envelope> inbox_;
  uint64_t now_ = 0;
};

uint64_t flag(int argc, char** argv, const char* name, uint64_t fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::strtoull(argv[i + 1], nullptr, 10);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t entries = flag(argc, argv, "--entries", 1000000);
  uint64_t size = flag(argc, argv, "--size", 64);
  uint64_t batch = flag(argc, argv, "--batch", 64);
  Cluster c(3);
  int leader = -1;
  for (int t = 0; t < 100 && leader < 0; ++t) {
    c.tick(100);
    for (int i = 0; i < 3; ++i)
      if (c.raft(i).role() == Role::Leader) leader = i;
  }
  if (leader < 0) {
    std::fprintf(stderr, "no leader elected\n");
    return 1;
  }
  auto payload = std::make_shared<const std::string>(size, 'x');
  uint64_t base = c.applied(leader);
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t done = 0; done < entries;) {
    for (uint64_t k = 0; k < batch && done < entries; ++k, ++done)
      if (!c.raft(leader).propose(payload, 0).status.ok()) return 1;
    c.settle();
  }
  c.tick(100);  // followers learn the final commit index
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  uint64_t applied = c.applied(leader) - base;
  for (int i = 0; i < 3; ++i)
    if (c.applied(i) < applied) {
      std::fprintf(stderr, "replica %d applied %llu of %llu\n", i, (unsigned long long)c.applied(i),
                   (unsigned long long)applied);
      return 1;
    }
  std::printf(
      "core: 3 replicas, %llu entries of %llu bytes, batches of %llu: %.0f entries/s, "
      "%.2f us per entry (all three cores on one thread)\n",
      (unsigned long long)applied, (unsigned long long)size, (unsigned long long)batch,
      applied / secs, secs * 1e6 / applied);
  return 0;
}
