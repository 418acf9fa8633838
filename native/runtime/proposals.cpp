#include "proposals.h"

#include "mutants.h"

namespace raftstore::runtime {

void ProposalTracker::add(uint64_t index, uint64_t term, Done done) {
  pending_[index] = {term, std::move(done)};
}

void ProposalTracker::applied(const std::vector<core::Entry>& entries) {
  for (const auto& e : entries) {
    auto it = pending_.find(e.index);
    if (it == pending_.end()) continue;
    bool mine = it->second.first == e.term;
    auto done = std::move(it->second.second);
    pending_.erase(it);
    done(mine ? core::Status{} : core::Status{core::Code::LeaderChanged, "entry was overwritten"},
         e.index);
  }
}

void ProposalTracker::settle_all_up_to(uint64_t index, const core::Status& st) {
  while (!pending_.empty() && pending_.begin()->first <= index) {
    auto node = pending_.extract(pending_.begin());
    node.mapped().second(st, node.key());
  }
}

void ProposalTracker::leadership_lost() {
  if (MUTANT(AckOnStepDown)) return settle_all_up_to(UINT64_MAX, {});
  settle_all_up_to(UINT64_MAX, {core::Code::LeaderChanged,
                                "leadership lost before the entry committed (the outcome is "
                                "unknown)"});
}

void ProposalTracker::passed_by_snapshot(uint64_t index) {
  settle_all_up_to(index, {core::Code::LeaderChanged, "replaced by a snapshot"});
}

void ProposalTracker::fail_all(const core::Status& why) { settle_all_up_to(UINT64_MAX, why); }

}  // namespace raftstore::runtime
