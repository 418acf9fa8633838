#include "proposals.h"

#include "mutants.h"
#include "raftstore.pb.h"
#include "replica.h"
#include "rpc_codes.h"

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

// A replica's proposals: queued from any thread, given to the core in batches, forwarded to
// the leader from a follower (raftstore.ForwardService), settled by the tracker above.

void Replica::propose(std::string data, ProposeDone done, bool may_forward) {
  if (opt_.stamp_leader_time && data.size() < kLeaderTimeBytes)
    return done({core::Code::InvalidArgument, "a proposal must start with " +
                                                  std::to_string(kLeaderTimeBytes) +
                                                  " bytes for the leader's time"},
                0);
  bool schedule = false;
  bool closed = false;
  {
    std::lock_guard<std::mutex> l(proposals_mu_);
    closed = proposals_closed_;
    if (!closed) {
      queued_.push_back({std::move(data), std::move(done), may_forward, env_.now_us()});
      schedule = !flush_scheduled_;
      flush_scheduled_ = true;
    }
  }
  if (closed) return done(core::Status{core::Code::Shutdown, "stopped"}, 0);
  // One handler takes everything queued by then: one append, one AppendEntries round
  // and one log write for the lot (braft batches its apply queue the same way).
  if (schedule && !post_([this] { flush_proposals(); })) settle_queued("the node host is gone");
}

void Replica::settle_queued(const std::string& why) {
  std::vector<Queued> queued;
  {
    std::lock_guard<std::mutex> l(proposals_mu_);
    queued.swap(queued_);
    // Nothing is scheduled any more: the next proposal tries to post (and fails) again.
    if (!MUTANT(ProposalsOpenAfterStop)) flush_scheduled_ = false;
  }
  for (auto& q : queued) q.done(core::Status{core::Code::Shutdown, why}, 0);
}

void Replica::flush_proposals() {
  std::vector<Queued> queued;
  {
    std::lock_guard<std::mutex> l(proposals_mu_);
    queued.swap(queued_);
    flush_scheduled_ = false;
  }
  if (failed_) {
    for (auto& q : queued) q.done(core::Status{core::Code::Shutdown, "stopped"}, 0);
    return;
  }
  // Stamped here whether or not this replica leads: an entry only ever enters a log through
  // propose_batch on the leader, which stamps it again if it came forwarded.
  uint64_t wall = 0;
  if (opt_.stamp_leader_time) wall = opt_.wall_clock_ms ? opt_.wall_clock_ms() : env_.wall_ms();
  std::vector<std::shared_ptr<const std::string>> data;
  data.reserve(queued.size());
  for (auto& q : queued) {
    if (opt_.stamp_leader_time)  // propose refused anything shorter
      for (size_t i = 0; i < kLeaderTimeBytes; ++i) q.data[i] = static_cast<char>(wall >> (8 * i));
    data.push_back(std::make_shared<const std::string>(std::move(q.data)));
  }
  auto results = core_->propose_batch(data, env_.now_ms());
  for (size_t i = 0; i < results.size(); ++i) {
    Queued& q = queued[i];
    // Counted and timed when settled (on this thread, while the replica lives).
    q.done = counted(metrics_.proposals_ok, metrics_.proposals_failed, metrics_.proposal_commit,
                     q.queued_us, std::move(q.done));
    bool elsewhere = !core_->leader().empty() && !(core_->leader() == opt_.self);
    if (results[i].status.code == core::Code::NotLeader && q.may_forward && elsewhere)
      forward(std::move(data[i]), std::move(q.done));
    else if (results[i].status.code == core::Code::Busy && opt_.forward_proposals &&
             core_->transferring_leadership())
      // braft says EBUSY; to RaftNode (which forwards) leadership is moving: as NotLeader,
      // placed nowhere, worth sending again once the new leader is known.
      q.done({core::Code::NotLeader, results[i].status.message}, 0);
    else if (!results[i].status.ok())
      q.done(results[i].status, 0);
    else
      proposals_.add(results[i].index, results[i].term, std::move(q.done));
  }
  drain();
}

void Replica::forward(std::shared_ptr<const std::string> data, ProposeDone done) {
  core::PeerId leader = core_->leader();
  env_.forward(leader, std::move(data), install_timeout_ms(opt_.raft),
               [this, leader, done = std::move(done)](int32_t code, const std::string& text,
                                                      const std::string& resp) mutable {
                 forward_answered(leader, code, text, resp, std::move(done));
               });
}

void Replica::forward_answered(const core::PeerId& leader, int32_t code, const std::string& text,
                               const std::string& payload, ProposeDone done) {
  raftstore::wire::ForwardResponse resp;
  // Not connected: the request was never sent, so it was placed nowhere.
  if (code == rpc::kEHOSTDOWN) {
    ++metrics_.forwards_failed;
    return done(
        {core::Code::NotLeader, "leader " + leader.to_string() + " is not reachable: " + text}, 0);
  }
  if (code != 0 || !resp.ParseFromString(payload)) {
    ++metrics_.forwards_failed;
    return done({core::Code::LeaderChanged,
                 "forwarding to " + leader.to_string() +
                     " failed (the outcome is unknown): " + (code ? text : "bad response")},
                0);
  }
  if (resp.success()) {
    ++metrics_.forwards_ok;
    return forwarded_applied(static_cast<uint64_t>(resp.index()), std::move(done));
  }
  ++metrics_.forwards_failed;
  auto c = static_cast<core::Code>(resp.code());
  // The leader stopping, or a code it should not send: the outcome is unknown.
  if (c == core::Code::Ok || c == core::Code::Shutdown ||
      resp.code() > static_cast<int32_t>(core::Code::Shutdown))
    c = core::Code::LeaderChanged;
  done({c, resp.message()}, 0);
}

std::string forward_response(const core::Status& st, uint64_t index, const core::PeerId& leader) {
  raftstore::wire::ForwardResponse resp;
  resp.set_success(st.ok());
  if (st.ok()) {
    resp.set_index(static_cast<int64_t>(index));
  } else {
    resp.set_code(static_cast<int32_t>(st.code));
    resp.set_message(st.message);
    if (!leader.empty()) resp.set_leader_id(leader.to_string());
  }
  return resp.SerializeAsString();
}

void Replica::forwarded_applied(uint64_t index, ProposeDone done) {
  if (failed_) return done({core::Code::Shutdown, "stopped"}, index);
  if (index > core_->applied_index() && !MUTANT(AckForwardedBeforeLocalApply)) {
    forwarded_.emplace(index, std::move(done));
    return;
  }
  for (auto [from, to] : skipped_)
    if (index > from && index <= to)
      return done({core::Code::ResultUnknown, "committed at index " + std::to_string(index) +
                                                  ", but this replica caught up past it by "
                                                  "installing a snapshot"},
                  index);
  done({}, index);
}

}  // namespace raftstore::runtime
