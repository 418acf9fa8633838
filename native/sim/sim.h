// Deterministic simulator: the real core on N replicas, a virtual clock, a faulty network
// and disks that lose unsynced writes on crash. Every schedule is derived from one seed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "mutants.h"

namespace raftstore::sim {

// xoshiro256** seeded through splitmix64: small, fast and identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }

 private:
  uint64_t s_[4];
};

struct Scenario {
  uint64_t seed = 1;
  const char* profile = "mixed";
  int nodes = 3;     // the universe of replicas
  int voters = 3;    // initial voters (nodes 0..voters-1)
  int learners = 0;  // initial learners (the next ones); the rest start outside
  bool leader_lease = false;
  uint64_t election_timeout_ms = 200;
  uint64_t max_election_delay_ms = 200;
  uint64_t clock_drift_ms = 50;
  uint32_t max_entries_per_rpc = 1024;
  uint64_t max_bytes_per_rpc = 512 * 1024;
  uint32_t max_inflight = 8;
  uint64_t snapshot_margin = 0;
  uint64_t min_delay_ms = 1, max_delay_ms = 10;
  uint64_t disk_min_ms = 0, disk_max_ms = 5;
  double loss = 0.0, duplicate = 0.0;
  double p_partition = 0.0, p_one_way = 0.0, p_flap = 0.0, p_crash = 0.0, p_restart = 0.0;
  double p_crash_after_vote = 0.0;  // targeted: crash right after granting a vote
  double p_kill_leader = 0.0, p_isolate_leader = 0.0;  // nemeses aimed at the leader
  double late_duplicate = 0.0;  // a copy of a message arrives again much later
  // Targeted nemeses, fired at the moments where Raft's subtle rules matter:
  double p_crash_new_leader = 0.0;      // a new leader dies before replicating anything
  double p_isolate_after_commit = 0.0;  // a leader is cut off right after its commit advances
  double p_replay_on_election = 0.0;    // old messages to a new candidate are delivered again
  double p_split_leaders = 0.0;         // a new leader and a stale one cannot reach each other
  double p_snapshot = 0.0, p_membership = 0.0, p_transfer = 0.0;
  double p_install_fail = 0.0;  // fetching a snapshot from the leader fails
  // The runtime's peer_unreachable hints: each live replica is told of a crash with this
  // probability, and wrong hints (about live peers) arrive at this rate.
  double p_down_hint = 0.0, p_false_hint = 0.0;
  bool notify_commit = false;  // Options::notify_commit
  // Catch-up profile: the leader takes `bulk` proposals a millisecond until the log holds
  // `log_target` entries (followers crash, restart and install snapshots meanwhile); after
  // healing, with no client writes, the leader adds a replica started with an empty
  // configuration (or swaps one in with change_peers), which must succeed.
  uint32_t bulk = 0;
  uint64_t log_target = 0;
  bool swap_in = false;           // change_peers(one voter out, the newcomer in)
  uint64_t max_uncommitted = 64;  // Options::max_uncommitted_entries
  // Requests to a crashed replica fail in transport (connection refused or closed) and the
  // sender is told (Raft::rpc_failed), as the runtime's channels do.
  bool transport_failures = false;
  // Snapshot copies run the runtime's code (native/runtime/snapshot_transfer.h): the state
  // machine's snapshot file is padded to this size, and copied in chunks of this many bytes.
  uint32_t snapshot_bytes = 16;
  uint32_t chunk_bytes = 1 << 17;
  uint32_t entry_bytes = 0;  // client writes padded to this size (0: a few bytes)
  double p_crash_mid_install =
      0.0;  // a chunk of a snapshot copy arriving, or being served, crashes that replica
  int slow_disk_node = -1;  // this replica's disk is slow during the faults
  uint64_t slow_disk_ms = 0;
  // The runtime around the core (native/runtime/replica.h) as the simulator hosts it:
  bool forward_proposals = false;   // a follower hands client writes to the leader
  double p_lease_read = 0.0;        // a read asks for the leader's lease (if leader_lease)
  double p_torn_commit = 0.0;       // a log writer batch is cut short by a crash
  uint64_t snapshot_threshold = 0;  // NodeOptions::snapshot_log_threshold
  double p_propose = 0.3, p_read = 0.2;
  uint64_t chaos_ms = 4000;        // faults happen in [0, chaos_ms)
  uint64_t liveness_bound_ms = 0;  // after healing; 0: derived from timeouts and latencies
  core::Mutant mutant = core::Mutant::None;

  std::string describe() const;
  // The whole schedule (sizes, timing, fault rates, features) is drawn from the seed.
  static Scenario from_seed(uint64_t seed);
};

struct Result {
  bool ok = true;
  std::string violation;  // which invariant, with the evidence
  uint64_t violation_at_ms = 0;
  uint64_t events = 0;
  uint64_t messages = 0;
  uint64_t elections = 0;  // leaders elected
  uint64_t acked_writes = 0;
  uint64_t reads_ok = 0;
  uint64_t crashes = 0;
  uint64_t snapshots_installed = 0;
  uint64_t conf_changes_ok = 0;
  uint64_t catchup_ms = 0;       // catch-up profile: the newcomer's change took this long
  uint64_t catchup_entries = 0;  // and the log it joined was this long
  uint64_t transfers = 0;
  uint64_t dropped_invalid = 0;  // messages the cores dropped as invalid or stale
};

using TraceSink = std::function<void(const std::string&)>;
Result run(const Scenario& s, const TraceSink& trace = nullptr);

}  // namespace raftstore::sim
