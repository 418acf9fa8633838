// Which of a replica's own proposals an applied batch settles, and how. The runtime hands
// every proposal the core accepted to a ProposalTracker with the (index, term) the core gave
// it; the simulator does the same, so what counts as an acknowledged write is decided by
// the code that ships.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "raft.h"

namespace raftstore::runtime {

class ProposalTracker {
 public:
  using Done = std::function<void(core::Status, uint64_t index)>;

  // The core placed a proposal at (index, term).
  void add(uint64_t index, uint64_t term, Done done);
  // Entries applied here, in order: a proposal at one of their indices succeeded if the
  // entry there has its term (log matching: then it is the proposal), otherwise it was
  // overwritten by another leader's entry.
  void applied(const std::vector<core::Entry>& entries);
  // This replica stopped leading: what it appended but did not commit may still commit under
  // the next leader, or be cut off and its index never applied again, so every pending
  // proposal is settled now as unknown (LeaderChanged), as braft does on step-down.
  void leadership_lost();
  // A snapshot replaced the log up to `index`: whether those proposals made it is unknown.
  void passed_by_snapshot(uint64_t index);
  void fail_all(const core::Status& why);
  bool empty() const { return pending_.empty(); }

 private:
  void settle_all_up_to(uint64_t index, const core::Status& st);
  std::map<uint64_t, std::pair<uint64_t, Done>> pending_;  // index -> (term, done)
};

}  // namespace raftstore::runtime
