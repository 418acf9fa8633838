#include "raft.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "mutants.h"

namespace raftstore::core {

#ifdef RAFTSTORE_MUTANTS
thread_local Mutant g_active_mutant = Mutant::None;
#endif

const char* mutant_name(Mutant m) {
  switch (m) {
    case Mutant::None:
      return "none";
    case Mutant::VoteWithoutLogCheck:
      return "vote-without-log-check";
    case Mutant::CountOtherTermVotes:
      return "count-other-term-votes";
    case Mutant::CommitPreviousTerm:
      return "commit-previous-term";
    case Mutant::VoteBeforeDurable:
      return "vote-before-durable";
    case Mutant::SkipTruncate:
      return "skip-truncate";
    case Mutant::ApplyBeyondCommit:
      return "apply-beyond-commit";
    case Mutant::NoStepDownOnHigherTerm:
      return "no-step-down-on-higher-term";
    case Mutant::RemovedLeaderKeepsLeading:
      return "removed-leader-keeps-leading";
    case Mutant::AckBeforeDurable:
      return "ack-before-durable";
    case Mutant::NoProbeIdlePeer:
      return "no-probe-idle-peer";
    case Mutant::StalledInstallNotRetried:
      return "stalled-install-not-retried";
    case Mutant::InstallProgressIgnored:
      return "install-progress-ignored";
    case Mutant::ChunkOffsetOffByOne:
      return "chunk-offset-off-by-one";
    case Mutant::InstallAckBeforeDurable:
      return "install-ack-before-durable";
    case Mutant::AckOnStepDown:
      return "ack-on-step-down";
    case Mutant::SkipGroupSync:
      return "skip-group-sync";
    case Mutant::AckForwardedBeforeLocalApply:
      return "ack-forwarded-before-local-apply";
    case Mutant::LeaseReadWithoutLease:
      return "lease-read-without-lease";
    case Mutant::ProposalsOpenAfterStop:
      return "proposals-open-after-stop";
    case Mutant::ElectionCountedAsWon:
      return "election-counted-as-won";
    case Mutant::Count:
      break;
  }
  return "?";
}

const char* role_name(Role r) {
  switch (r) {
    case Role::Follower:
      return "follower";
    case Role::Candidate:
      return "candidate";
    case Role::Leader:
      return "leader";
    case Role::Learner:
      return "learner";
  }
  return "?";
}

const char* code_name(Code c) {
  switch (c) {
    case Code::Ok:
      return "OK";
    case Code::NotLeader:
      return "NOT_LEADER";
    case Code::Busy:
      return "BUSY";
    case Code::InvalidArgument:
      return "INVALID_ARGUMENT";
    case Code::CatchupFailed:
      return "CATCHUP_FAILED";
    case Code::LeaderChanged:
      return "LEADER_CHANGED";
    case Code::Shutdown:
      return "SHUTDOWN";
    case Code::ResultUnknown:
      return "RESULT_UNKNOWN";
  }
  return "?";
}

namespace {

Status error(Code c, std::string msg) { return Status{c, std::move(msg)}; }

// Largest index that a majority of `set` has, given each member's match index.
template <typename MatchOf>
uint64_t majority_match(const PeerList& set, MatchOf&& match_of) {
  if (set.empty()) return UINT64_MAX;  // an empty side of a joint config imposes nothing
  std::vector<uint64_t> m;
  m.reserve(set.size());
  for (const auto& p : set) m.push_back(match_of(p));
  std::sort(m.begin(), m.end(), std::greater<>());
  return m[set.size() / 2];
}

}  // namespace

// ---------------------------------------------------------------------------------------
// construction

Raft::Raft(Options options, Boot boot, uint64_t now_ms) : opt_(std::move(options)), now_(now_ms) {
  if (!opt_.random) opt_.random = [] { return uint64_t{0}; };
  if (opt_.catchup_timeout_ms == 0) opt_.catchup_timeout_ms = opt_.election_timeout_ms;
  if (opt_.install_snapshot_timeout_ms == 0)
    opt_.install_snapshot_timeout_ms = 10 * opt_.election_timeout_ms;
  if (opt_.max_entries_per_rpc == 0) opt_.max_entries_per_rpc = 1;
  if (opt_.max_inflight_appends == 0) opt_.max_inflight_appends = 1;

  // RPC ids must not repeat across restarts, or a late answer to a request sent before a
  // crash would be taken for the answer to a new one.
  next_rpc_ = (opt_.random() >> 2) + 1;
  hs_ = boot.hard_state;
  base_conf_ = boot.initial_conf;
  if (boot.snapshot) {
    snapshot_ = *boot.snapshot;
    base_conf_ = snapshot_.conf;
    first_index_ = snapshot_.last_included_index + 1;
    commit_ = applied_ = durable_ = snapshot_.last_included_index;
  }
  // Keep the stored entries that continue the snapshot; a log that does not line up with
  // the snapshot was superseded by it (an install interrupted before the log was reset).
  auto& es = boot.entries;
  bool usable = !es.empty() && check_boot(boot).ok();
  if (usable && boot.snapshot) {
    uint64_t s = snapshot_.last_included_index;
    usable = es.front().index <= s + 1 && es.back().index >= s;
    if (usable && es.front().index <= s)
      usable = es[s - es.front().index].term == snapshot_.last_included_term;
  }
  if (usable) {
    first_index_ = es.front().index;
    for (auto& e : es) {
      if (e.type == EntryType::Configuration && e.conf) conf_log_[e.index] = *e.conf;
      log_.push_back(std::move(e));
    }
    durable_ = last_index();
  } else if (!es.empty() && boot.snapshot) {
    ready_.log_reset = snapshot_;  // storage must drop the stale log too
  }
  if (hs_.term == 0) set_hard_state(1, PeerId{});  // as braft: a new node starts at term 1
  // Log and meta are separate files: the log may have reached the disk before the term.
  if (hs_.term < last_term()) set_hard_state(last_term(), PeerId{});
  rebuild_conf();
  last_leader_contact_ = now_ms;  // a restarted voter must not help depose a leased leader
  reset_election_timer(now_ms);
  // As braft's Node::init: when this node is the configuration's only voter there is no one
  // to wait for (nor any other leader's lease), so it campaigns at its first tick.
  sole_voter_start_ = !conf_.joint() && conf_.peers.size() == 1 && conf_.peers[0] == opt_.self;
}

Status Raft::check_boot(const Boot& boot) {
  const auto& es = boot.entries;
  for (size_t i = 0; i < es.size(); ++i) {
    if (es[i].term == 0) return error(Code::InvalidArgument, "log entry with term 0");
    if (i > 0 && es[i].index != es[i - 1].index + 1)
      return error(Code::InvalidArgument, "gap in the log at index " + std::to_string(es[i].index));
    if (i > 0 && es[i].term < es[i - 1].term)
      return error(Code::InvalidArgument, "term goes down at index " + std::to_string(es[i].index));
  }
  if (es.empty()) return Status{};
  uint64_t expect_at_most = boot.snapshot ? boot.snapshot->last_included_index + 1 : 1;
  if (boot.snapshot ? es.front().index > expect_at_most : es.front().index != 1)
    return error(Code::InvalidArgument, "log starts at " + std::to_string(es.front().index) +
                                            ", expected at most " + std::to_string(expect_at_most));
  return Status{};
}

// ---------------------------------------------------------------------------------------
// helpers

std::optional<uint64_t> Raft::term_at(uint64_t index) const {
  if (index == 0) return 0;
  if (index == snapshot_.last_included_index) return snapshot_.last_included_term;
  if (index < first_index_ || index > last_index()) return std::nullopt;
  return log_[index - first_index_].term;
}

const Entry* Raft::entry_at(uint64_t index) const {
  if (index < first_index_ || index > last_index()) return nullptr;
  return &log_[index - first_index_];
}

uint64_t Raft::last_term() const {
  return log_.empty() ? snapshot_.last_included_term : log_.back().term;
}

bool Raft::committed_in_term() const { return term_at(commit_) == hs_.term; }

void Raft::set_hard_state(uint64_t term, const PeerId& vote) {
  hs_.term = term;
  hs_.voted_for = vote;
  ready_.hard_state = hs_;
  ready_.meta_seq = ++meta_seq_;
}

void Raft::set_role(Role r) {
  if (r == Role::Follower && !conf_.is_voter(opt_.self) && contains(conf_.learners, opt_.self))
    r = Role::Learner;
  if (r != role_) {
    role_ = r;
    ready_.role_changed = true;
  }
}

void Raft::set_leader(const PeerId& p) {
  if (p == leader_) return;
  leader_ = p;
  ready_.leader_changed = true;
  // Reads forwarded to the previous leader will not be answered by the new one.
  for (auto& [rpc, fr] : forwarded_reads_)
    ready_.reads.push_back({fr.ctx, error(Code::LeaderChanged, "leader changed"), 0});
  forwarded_reads_.clear();
}

void Raft::reset_election_timer(uint64_t now) {
  uint64_t t = opt_.election_timeout_ms;
  uint64_t spread = std::min(t, opt_.max_election_delay_ms);
  election_deadline_ = now + t + (spread ? opt_.random() % (spread + 1) : 0);
}

// A voter campaigns. So does a replica whose removal it does not know to be committed (a
// voter in the configuration at its commit index, or in any later one): it may hold the only
// log that can finish the change, and without it the remaining voters could never elect
// anyone. It counts votes in its latest configuration. (After a restart the commit index is
// low, so this errs towards campaigning, which costs nothing but a refused pre-vote.)
bool Raft::can_campaign() const {
  if (conf_.is_voter(opt_.self)) return true;
  if (conf_index_ <= commit_) return false;
  if (conf_at(commit_).is_voter(opt_.self)) return true;
  for (auto it = conf_log_.upper_bound(commit_); it != conf_log_.end(); ++it)
    if (it->second.is_voter(opt_.self)) return true;
  return false;
}

bool Raft::heard_from_leader_within(uint64_t ms, uint64_t now) const {
  return !leader_unreachable_ && now < last_leader_contact_ + ms;
}

void Raft::peer_unreachable(const PeerId& peer, uint64_t now) {
  now_ = now;
  if (opt_.leader_lease || role_ == Role::Leader || leader_.empty() || !(peer == leader_)) return;
  leader_unreachable_ = true;
  // Everyone who heard it would campaign at once and split the vote, so take turns: the
  // voters (less the leader) in id order, half a heartbeat apart. The first whose pre-vote
  // succeeds asks for real votes well before the next one's turn, and a vote granted
  // resets the granter's timer.
  uint64_t rank = 0;
  for (const auto& p : conf_.peers) {
    if (p == opt_.self) break;
    if (!(p == peer)) ++rank;
  }
  uint64_t turn = std::max<uint64_t>(2, opt_.heartbeat_ms() / 2);
  uint64_t at = now + rank * turn + opt_.random() % (turn / 2);
  election_deadline_ = std::min(election_deadline_, at);
}

void Raft::snapshot_progress(const PeerId& peer, uint64_t now) {
  now_ = now;
  auto* pr = role_ == Role::Leader ? progress(peer) : nullptr;
  if (pr && pr->state == ProgressState::Snapshot && !MUTANT(InstallProgressIgnored))
    pr->snapshot_sent_ms = std::max(pr->snapshot_sent_ms, now);
}

void Raft::rpc_failed(const PeerId& peer, uint64_t rpc_id, uint64_t now) {
  now_ = now;
  auto* prp = role_ == Role::Leader ? progress(peer) : nullptr;
  if (!prp) return;
  auto& pr = *prp;
  uint64_t retry_at = now + opt_.heartbeat_ms();
  if (pr.state == ProgressState::Snapshot && rpc_id == pr.snapshot_rpc) {
    if (MUTANT(StalledInstallNotRetried)) return;
    pr.state = ProgressState::Probe;
    pr.next = pr.match + 1;
    pr.paused_until_ms = retry_at;
    return;
  }
  Inflight f{};
  if (!pop_inflight(pr, rpc_id, &f) || f.heartbeat) return;
  // A lost append: what was sent after it cannot land either. Probe again from the match.
  for (auto it = pr.inflight.begin(); it != pr.inflight.end();)
    it = it->heartbeat ? std::next(it) : pr.inflight.erase(it);
  pr.appends_inflight = 0;
  pr.state = ProgressState::Probe;
  pr.next = pr.match + 1;
  pr.paused_until_ms = retry_at;
}

void Raft::send(const PeerId& to, Payload p, uint64_t rpc_id) {
  Envelope e{opt_.group, opt_.self, to, rpc_id ? rpc_id : next_rpc_++, std::move(p)};
  if (meta_durable_seq_ < meta_seq_ || !held_.empty())
    held_.push_back(std::move(e));
  else
    ready_.messages.push_back(std::move(e));
}

void Raft::send_response(const PeerId& to, uint64_t rpc_id, Payload p) {
  send(to, std::move(p), rpc_id);
}

Ready Raft::take_ready() {
  if (read_round_needed_) {
    read_round_needed_ = false;
    // One read round at a time: reads that arrive meanwhile ride on the next one.
    if (role_ == Role::Leader && round_acked(read_round_rpc_)) broadcast_heartbeat(now_);
  }
  if (ready_.log_write && !ready_.log_write->entries.empty()) {
    ready_.log_write->seq = next_write_seq_++;
    writes_.push_back({ready_.log_write->seq, ready_.log_write->entries.back().index, UINT64_MAX});
  }
  return std::exchange(ready_, Ready{});
}

bool Raft::round_acked(uint64_t rpc) const {
  return conf_.quorum([&](const PeerId& p) {
    if (p == opt_.self) return true;
    auto it = progress_.find(p);
    return it != progress_.end() && it->second.acked_rpc >= rpc;
  });
}

// ---------------------------------------------------------------------------------------
// persistence callbacks

void Raft::meta_persisted(uint64_t seq) {
  meta_durable_seq_ = std::max(meta_durable_seq_, seq);
  if (meta_durable_seq_ < meta_seq_) return;
  for (auto& m : held_) ready_.messages.push_back(std::move(m));
  held_.clear();
  if (role_ == Role::Candidate &&
      conf_.quorum([&](const PeerId& p) { return contains(votes_, p); }))
    become_leader(now_);  // a single voter, now that its vote is durable
}

void Raft::log_persisted(uint64_t write_seq) {
  while (!writes_.empty() && writes_.front().seq <= write_seq) {
    const auto& w = writes_.front();
    // Writes are durable in order; one overtaken by a truncation vouches only below it.
    if (w.seq == write_seq)
      durable_ = std::max(durable_, std::min({w.last_index, w.cap, last_index()}));
    writes_.pop_front();
  }
  flush_acks();
  if (role_ == Role::Leader) maybe_commit(now_);
}

void Raft::flush_acks() {
  auto it = pending_acks_.begin();
  for (; it != pending_acks_.end() && it->index <= durable_; ++it) {
    if (it->term != hs_.term) continue;  // that leader is gone
    if (it->snapshot)
      send_response(it->to, it->rpc_id, InstallSnapshotResponse{hs_.term, true});
    else
      send_response(it->to, it->rpc_id, AppendEntriesResponse{hs_.term, true, it->index, false});
  }
  pending_acks_.erase(pending_acks_.begin(), it);
}

void Raft::ack_when_durable(PendingAck ack) {
  auto pos =
      std::upper_bound(pending_acks_.begin(), pending_acks_.end(), ack,
                       [](const PendingAck& a, const PendingAck& b) { return a.index < b.index; });
  pending_acks_.insert(pos, ack);
  flush_acks();
}

// ---------------------------------------------------------------------------------------
// log

void Raft::record_write(uint64_t from, const std::vector<Entry>& entries) {
  if (!ready_.log_write) {
    ready_.log_write = LogWrite{0, from, entries};
    return;
  }
  auto& w = *ready_.log_write;
  if (from <= w.from_index) {
    w.from_index = from;
    w.entries = entries;
  } else {
    w.entries.resize(std::min<uint64_t>(w.entries.size(), from - w.from_index));
    w.entries.insert(w.entries.end(), entries.begin(), entries.end());
  }
}

void Raft::append_local(std::vector<Entry> entries) {
  if (entries.empty()) return;
  record_write(entries.front().index, entries);
  bool conf_changed = false;
  for (auto& e : entries) {
    if (e.type == EntryType::Configuration && e.conf) {
      conf_log_[e.index] = *e.conf;
      conf_changed = true;
    }
    log_.push_back(std::move(e));
  }
  if (conf_changed) rebuild_conf();
}

void Raft::truncate_suffix(uint64_t from) {
  while (!log_.empty() && log_.back().index >= from) log_.pop_back();
  conf_log_.erase(conf_log_.lower_bound(from), conf_log_.end());
  durable_ = std::min(durable_, from - 1);
  for (auto& w : writes_) w.cap = std::min(w.cap, from - 1);
  rebuild_conf();
}

void Raft::rebuild_conf() {
  if (!conf_log_.empty() && (!reset_conf_ || conf_log_.rbegin()->first > reset_conf_index_)) {
    conf_ = conf_log_.rbegin()->second;
    conf_index_ = conf_log_.rbegin()->first;
    reset_conf_.reset();
  } else if (reset_conf_) {
    conf_ = *reset_conf_;
    conf_index_ = 0;
  } else {
    conf_ = base_conf_;
    conf_index_ = 0;
  }
  if (role_ == Role::Follower || role_ == Role::Learner) set_role(Role::Follower);
  if (role_ == Role::Leader) sync_progress_with_conf(now_);
}

void Raft::maybe_commit(uint64_t now) {
  auto match_of = [&](const PeerId& p) -> uint64_t {
    if (p == opt_.self) return durable_;
    auto it = progress_.find(p);
    return it == progress_.end() ? 0 : it->second.match;
  };
  uint64_t n =
      std::min(majority_match(conf_.peers, match_of), majority_match(conf_.old_peers, match_of));
  n = std::min(n, last_index());
  if (n <= commit_) return;
  // Raft §5.4.2: only an entry of the current term is committed by counting replicas.
  if (term_at(n) != hs_.term && !MUTANT(CommitPreviousTerm)) return;
  advance_commit(n, now);
}

void Raft::advance_commit(uint64_t index, uint64_t now) {
  if (index <= commit_) return;
  commit_ = std::min(index, last_index());
  emit_committed();
  if (role_ != Role::Leader) return;
  if (committed_in_term() && !reads_waiting_commit_.empty()) {
    auto waiting = std::move(reads_waiting_commit_);
    reads_waiting_commit_.clear();
    for (auto& [ctx, r] : waiting) serve_read(ctx, r.from, r.from_rpc, now);
  }
  for (const auto& [peer, pr] : progress_)
    if (!(peer == opt_.self)) notify_commit(peer, now);
  advance_conf_change(now);
  if (role_ == Role::Leader && conf_index_ <= commit_ && !conf_.is_voter(opt_.self) &&
      !MUTANT(RemovedLeaderKeepsLeading)) {
    // braft ELEADERREMOVED: the configuration without us is committed; stop leading.
    become_follower(PeerId{}, now);
  }
}

void Raft::emit_committed() {
  uint64_t upto = MUTANT(ApplyBeyondCommit) ? last_index() : commit_;
  for (uint64_t i = applied_ + 1; i <= upto; ++i)
    ready_.committed.push_back(log_[i - first_index_]);
  applied_ = std::max(applied_, upto);
}

std::optional<SnapshotMeta> Raft::snapshot_meta_at(uint64_t index) const {
  auto term = term_at(index);
  if (!term || index > applied_ || index == 0) return std::nullopt;
  return SnapshotMeta{index, *term, conf_at(index)};
}

Configuration Raft::conf_at(uint64_t index) const {
  auto it = conf_log_.upper_bound(index);
  return it == conf_log_.begin() ? base_conf_ : std::prev(it)->second;
}

void Raft::snapshot_taken(const SnapshotMeta& meta) {
  uint64_t idx = meta.last_included_index;
  if (idx <= snapshot_.last_included_index || idx > applied_ ||
      term_at(idx) != meta.last_included_term)
    return;
  snapshot_ = meta;
  base_conf_ = meta.conf;
  conf_log_.erase(conf_log_.begin(), conf_log_.upper_bound(idx));
  uint64_t keep_from = idx + 1 > opt_.snapshot_log_margin ? idx + 1 - opt_.snapshot_log_margin : 1;
  compact(std::max(keep_from, first_index_));
  rebuild_conf();
}

void Raft::compact(uint64_t new_first) {
  if (new_first <= first_index_) return;
  while (!log_.empty() && log_.front().index < new_first) log_.pop_front();
  first_index_ = new_first;
  ready_.compact_before = new_first;
}

bool Raft::snapshot_installed(const SnapshotMeta& meta, bool ok) {
  if (!installing_snapshot_ || install_ack_.index != meta.last_included_index) return false;
  installing_snapshot_ = false;
  bool adopt = ok && meta.last_included_index > commit_;
  if (adopt) {
    uint64_t idx = meta.last_included_index;
    snapshot_ = meta;
    base_conf_ = meta.conf;
    reset_conf_.reset();
    commit_ = applied_ = idx;
    if (term_at(idx) == meta.last_included_term && idx <= last_index()) {
      // Raft §7: our entries after the snapshot may already count towards a commit
      // quorum, so they stay; only the covered prefix goes.
      conf_log_.erase(conf_log_.begin(), conf_log_.upper_bound(idx));
      compact(idx + 1);
      durable_ = std::max(durable_, idx);
    } else {
      log_.clear();
      conf_log_.clear();
      pending_acks_.clear();
      first_index_ = idx + 1;
      durable_ = idx;
      for (auto& w : writes_) w.cap = std::min(w.cap, idx);
      ready_.log_reset = meta;
      ready_.log_write.reset();  // anything not yet written is superseded
    }
    rebuild_conf();
  }
  if (install_ack_.term != hs_.term) return adopt;
  if (ok && !adopt)  // overtaken by our own commit index: acknowledge once durable
    ack_when_durable(
        {install_ack_.to, install_ack_.rpc_id, hs_.term, meta.last_included_index, true});
  else
    send_response(install_ack_.to, install_ack_.rpc_id, InstallSnapshotResponse{hs_.term, ok});
  return adopt;
}

// ---------------------------------------------------------------------------------------
// roles

void Raft::become_follower(const PeerId& leader, uint64_t now) {
  if (role_ == Role::Leader) {
    fail_reads(Code::NotLeader, "leadership lost");
    finish_conf_change(error(Code::LeaderChanged, "leadership lost"));
    abort_transfer();
    progress_.clear();
    departing_.clear();
  }
  pre_voting_ = false;
  votes_.clear();
  set_role(Role::Follower);
  set_leader(leader);
  reset_election_timer(now);
}

void Raft::step_down_to(uint64_t term, uint64_t now) {
  if (term > hs_.term) set_hard_state(term, PeerId{});
  become_follower(PeerId{}, now);
}

void Raft::start_pre_vote(uint64_t now) {
  pre_voting_ = true;
  votes_ = {opt_.self};
  election_rpc_ = next_rpc_ - 1;
  reset_election_timer(now);
  if (conf_.quorum([&](const PeerId& p) { return contains(votes_, p); })) {
    become_candidate(now, false);
    return;
  }
  auto last = last_log_id();
  for (const auto& p : conf_.all_members())
    if (p != opt_.self && conf_.is_voter(p))
      send(p, RequestVoteRequest{true, hs_.term + 1, last.term, last.index, std::nullopt});
}

void Raft::become_candidate(uint64_t now, bool from_timeout_now) {
  std::optional<TermLeader> disrupted;
  if (from_timeout_now) disrupted = TermLeader{leader_, hs_.term};
  pre_voting_ = false;
  set_hard_state(hs_.term + 1, opt_.self);
  set_role(Role::Candidate);
  set_leader(PeerId{});
  votes_ = {opt_.self};
  election_rpc_ = next_rpc_ - 1;
  reset_election_timer(now);
  // Our own vote counts once it is durable (meta_persisted), like every other vote.
  auto last = last_log_id();
  for (const auto& p : conf_.all_members())
    if (p != opt_.self && conf_.is_voter(p))
      send(p, RequestVoteRequest{false, hs_.term, last.term, last.index, disrupted});
}

void Raft::become_leader(uint64_t now) {
  set_role(Role::Leader);
  set_leader(opt_.self);
  votes_.clear();
  lease_revoked_ = false;
  transfer_target_ = PeerId{};
  timeout_now_sent_ = false;
  reset_progress(now);
  next_quorum_check_ = now + opt_.election_timeout_ms;
  // As braft: the first entry of a term is the current configuration, so that the new
  // leader commits something of its own term (and finishes an interrupted joint change).
  Configuration c = conf_;
  if (c.joint()) {
    cc_ = ConfChange{};
    cc_.active = true;
    cc_.stage = ConfChange::Joint;
    cc_.old_conf = Configuration{c.old_peers, {}, c.learners};
    cc_.new_peers = c.peers;
    cc_.new_learners = c.learners;
    cc_.started_ms = now;
  }
  append_conf(c, now);
  if (cc_.active) cc_.entry_index = last_index();
  broadcast_heartbeat(now);
}

void Raft::reset_progress(uint64_t now) {
  progress_.clear();
  departing_.clear();
  sync_progress_with_conf(now);
}

void Raft::sync_progress_with_conf(uint64_t now) {
  PeerList want = conf_.all_members();
  for (const auto& [p, deadline] : departing_) insert_sorted(want, p);
  if (cc_.active) {
    for (const auto& p : cc_.new_peers) insert_sorted(want, p);
    // A peer the change removes is still replicated to until the change commits (as braft
    // stops its replicator only then), and told the commit: it learns it was removed,
    // instead of waiting for a leader forever. It never counts for a quorum.
    for (const auto& p : cc_.old_conf.all_members()) insert_sorted(want, p);
  }
  for (auto it = progress_.begin(); it != progress_.end();)
    it = contains(want, it->first) ? std::next(it) : progress_.erase(it);
  for (const auto& p : want) {
    if (p == opt_.self || progress_.count(p)) continue;
    Progress pr;
    pr.next = last_index() + 1;
    pr.last_ack_ms = now;  // grace period for check-quorum
    progress_.emplace(p, pr);
  }
}

Raft::Progress* Raft::progress(const PeerId& p) {
  auto it = progress_.find(p);
  return it == progress_.end() ? nullptr : &it->second;
}

// ---------------------------------------------------------------------------------------
// ticks

void Raft::tick(uint64_t now) {
  now_ = now;
  if (role_ == Role::Leader) {
    if (now >= next_quorum_check_) {
      next_quorum_check_ = now + opt_.election_timeout_ms;
      check_quorum(now);
      if (role_ != Role::Leader) return;
    }
    if (!transfer_target_.empty() && now >= transfer_deadline_) abort_transfer();
    if (!departing_.empty()) release_departing(now);
    // An append unanswered for an election timeout was lost (or its answer was): resend.
    uint64_t retry = opt_.election_timeout_ms;
    for (auto& [peer, pr] : progress_) {
      // Lost requests or responses: fall back to probing from the last known match.
      bool stalled_snapshot = pr.state == ProgressState::Snapshot &&
                              now >= pr.snapshot_sent_ms + opt_.install_snapshot_timeout_ms &&
                              !MUTANT(StalledInstallNotRetried);
      bool stalled_append = false;
      for (const auto& f : pr.inflight)
        if (!f.heartbeat) {
          stalled_append = now >= f.sent_ms + retry;
          break;
        }
      while (!pr.inflight.empty() && now >= pr.inflight.front().sent_ms + opt_.election_timeout_ms)
        pr.inflight.pop_front();
      if (stalled_snapshot || stalled_append) {
        pr.state = ProgressState::Probe;
        pr.next = pr.match + 1;
        pr.inflight.clear();
        pr.appends_inflight = 0;
      }
    }
    if (now >= next_heartbeat_) broadcast_heartbeat(now);
    confirm_reads();  // the configuration may have shrunk to fewer peers than were asked
    replicate_all(now);
    advance_conf_change(now);
    return;
  }
  // A forwarded read whose answer was lost fails rather than waiting forever.
  for (auto it = forwarded_reads_.begin(); it != forwarded_reads_.end();) {
    if (now < it->second.sent_ms + opt_.election_timeout_ms) {
      ++it;
      continue;
    }
    ready_.reads.push_back({it->second.ctx, error(Code::LeaderChanged, "read index timed out"), 0});
    it = forwarded_reads_.erase(it);
  }
  if (sole_voter_start_ && role_ == Role::Follower) {
    sole_voter_start_ = false;
    start_pre_vote(now);
    return;
  }
  if (now < election_deadline_) return;
  if (!can_campaign()) {  // learners and non-members never campaign
    reset_election_timer(now);
    return;
  }
  if (role_ == Role::Candidate) {
    // braft raft_step_down_when_vote_timedout: back to follower, then pre-vote again.
    become_follower(PeerId{}, now);
    start_pre_vote(now);
    return;
  }
  // In lease mode even an unknown leader may still hold a lease (we may have just restarted).
  uint64_t lease = opt_.election_timeout_ms + (opt_.leader_lease ? opt_.max_clock_drift_ms : 0);
  if ((!leader_.empty() || opt_.leader_lease) && heard_from_leader_within(lease, now)) {
    reset_election_timer(now);
    return;
  }
  set_leader(PeerId{});
  start_pre_vote(now);
}

void Raft::check_quorum(uint64_t now) {
  uint64_t t = opt_.election_timeout_ms;
  bool ok = conf_.quorum([&](const PeerId& p) {
    if (p == opt_.self) return true;
    auto* pr = progress(p);
    return pr && now < pr->last_ack_ms + t;
  });
  if (!ok) become_follower(PeerId{}, now);
}

bool Raft::lease_valid(uint64_t now) const {
  if (!opt_.leader_lease || role_ != Role::Leader || lease_revoked_ || !committed_in_term())
    return false;
  return conf_.quorum([&](const PeerId& p) {
    if (p == opt_.self) return true;
    auto it = progress_.find(p);
    return it != progress_.end() && it->second.acked_sent_ms > 0 &&
           now < it->second.acked_sent_ms + opt_.election_timeout_ms;
  });
}

// ---------------------------------------------------------------------------------------
// replication (leader)

void Raft::replicate_all(uint64_t now) {
  for (auto& [peer, pr] : progress_) replicate(peer, now);
}

void Raft::send_snapshot(const PeerId& to, Progress& pr, uint64_t now) {
  pr.state = ProgressState::Snapshot;
  pr.snapshot_sent_ms = now;
  pr.inflight.clear();
  pr.appends_inflight = 0;
  pr.snapshot_rpc = next_rpc_;
  pr.snapshot_index = snapshot_.last_included_index;
  send(to, InstallSnapshotRequest{hs_.term, snapshot_, {}});
}

void Raft::replicate(const PeerId& to, uint64_t now) {
  auto* prp = progress(to);
  if (!prp || role_ != Role::Leader) return;
  auto& pr = *prp;
  if (pr.state == ProgressState::Snapshot || now < pr.paused_until_ms) return;
  uint32_t window = pr.state == ProgressState::Probe ? 1 : opt_.max_inflight_appends;
  // A peer we know nothing about (new to the group, or just restarted) while no entry is
  // waiting: ask with an empty append at next - 1, as braft's replicator does, so that its
  // rejection (with its last index) starts the catch-up. Heartbeats cannot: they are
  // anchored at the known match and always succeed.
  if (pr.state == ProgressState::Probe && pr.appends_inflight == 0 && pr.next > last_index() &&
      pr.match + 1 < pr.next && !MUTANT(NoProbeIdlePeer)) {
    uint64_t prev = pr.next - 1;
    auto prev_term = term_at(prev);
    if (!prev_term) return send_snapshot(to, pr, now);
    pr.inflight.push_back({next_rpc_, now, prev, false, true});
    ++pr.appends_inflight;
    send(to, AppendEntriesRequest{hs_.term, *prev_term, prev, {}, commit_});
    return;
  }
  while (pr.appends_inflight < window && pr.next <= last_index()) {
    uint64_t prev = pr.next - 1;
    auto prev_term = term_at(prev);
    if (pr.next < first_index_ || !prev_term) {
      send_snapshot(to, pr, now);
      return;
    }
    AppendEntriesRequest req{hs_.term, *prev_term, prev, {}, commit_};
    uint64_t bytes = 0;
    for (uint64_t i = pr.next; i <= last_index() && req.entries.size() < opt_.max_entries_per_rpc;
         ++i) {
      const Entry& e = log_[i - first_index_];
      if (!req.entries.empty() && bytes + e.data_size() > opt_.max_bytes_per_rpc) break;
      bytes += e.data_size();
      req.entries.push_back(e);
    }
    uint64_t last = prev + req.entries.size();
    pr.commit_told = std::max(pr.commit_told, std::min(commit_, last));
    pr.inflight.push_back({next_rpc_, now, last, false});
    ++pr.appends_inflight;
    pr.next = last + 1;
    send(to, std::move(req));
  }
}

void Raft::send_heartbeat(const PeerId& to, uint64_t now) {
  auto* pr = progress(to);
  if (!pr) return;
  // Anchored at the follower's known match so that pipelined appends are not disturbed.
  uint64_t prev = pr->match;
  auto prev_term = term_at(prev);
  if (!prev_term) prev = 0, prev_term = 0;
  if (pr->inflight.size() >= 1024) {  // forget the oldest; never lose count of appends
    if (!pr->inflight.front().heartbeat && pr->appends_inflight) --pr->appends_inflight;
    pr->inflight.pop_front();
  }
  pr->inflight.push_back({next_rpc_, now, prev, true});
  pr->commit_told = std::max(pr->commit_told, std::min(commit_, prev));
  send(to, AppendEntriesRequest{hs_.term, *prev_term, prev, {}, commit_});
}

void Raft::notify_commit(const PeerId& to, uint64_t now) {
  auto* pr = progress(to);
  if (!opt_.notify_commit || !pr || role_ != Role::Leader || pr->state != ProgressState::Replicate)
    return;
  // An append still to be sent will carry it; otherwise say it now (once per advance).
  if (pr->next <= last_index() || std::min(commit_, pr->match) <= pr->commit_told) return;
  send_heartbeat(to, now);
}

void Raft::broadcast_heartbeat(uint64_t now) {
  next_heartbeat_ = now + opt_.heartbeat_ms();
  read_round_rpc_ = next_rpc_;
  for (auto& [peer, pr] : progress_) send_heartbeat(peer, now);
}

bool Raft::pop_inflight(Progress& pr, uint64_t rpc_id, Inflight* out) {
  for (auto it = pr.inflight.begin(); it != pr.inflight.end(); ++it) {
    if (it->rpc_id != rpc_id) continue;
    *out = *it;
    if (!it->heartbeat && pr.appends_inflight) --pr.appends_inflight;
    pr.inflight.erase(it);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// message handling

bool Raft::validate(const Envelope& m) {
  if (m.group != opt_.group) return ++counters_.wrong_group, false;
  if (!(m.to == opt_.self)) return ++counters_.wrong_target, false;
  if (m.from.empty() || m.from == opt_.self) return ++counters_.unknown_sender, false;
  bool ok = std::visit(
      [&](const auto& p) -> bool {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, AppendEntriesRequest>) {
          if (p.term == 0 || p.prev_log_term > p.term) return false;
          uint64_t prev_term = p.prev_log_term;
          for (size_t i = 0; i < p.entries.size(); ++i) {
            const Entry& e = p.entries[i];
            if (e.index != p.prev_log_index + 1 + i || e.term > p.term || e.term < prev_term ||
                e.term == 0)
              return false;
            if (e.type == EntryType::Configuration && (!e.conf || e.conf->peers.empty()))
              return false;
            prev_term = e.term;
          }
          return true;
        } else if constexpr (std::is_same_v<T, RequestVoteRequest>) {
          return p.term > 0 && p.last_log_term <= p.term;
        } else if constexpr (std::is_same_v<T, InstallSnapshotRequest>) {
          return p.term > 0 && p.meta.last_included_index > 0 && p.meta.last_included_term > 0 &&
                 p.meta.last_included_term <= p.term && !p.meta.conf.peers.empty();
        } else if constexpr (std::is_same_v<T, TimeoutNowRequest> ||
                             std::is_same_v<T, ReadIndexRequest>) {
          return p.term > 0;
        } else {
          return true;
        }
      },
      m.payload);
  if (!ok) ++counters_.malformed;
  return ok;
}

void Raft::step(const Envelope& m, uint64_t now) {
  now_ = now;
  if (!validate(m)) return;
  std::visit([&](const auto& p) { handle(m, p, now); }, m.payload);
}

void Raft::handle(const Envelope& m, const RequestVoteRequest& r, uint64_t now) {
  bool log_ok =
      !(LogId{r.last_log_index, r.last_log_term} < last_log_id()) || MUTANT(VoteWithoutLogCheck);
  uint64_t lease_ms = opt_.election_timeout_ms + (opt_.leader_lease ? opt_.max_clock_drift_ms : 0);
  if (r.pre_vote) {
    // Pre-vote changes nothing. It is refused while we still hear from a live leader, so a
    // partitioned or removed node cannot disrupt a healthy group when it comes back.
    bool sticky = role_ == Role::Leader || ((!leader_.empty() || opt_.leader_lease) &&
                                            heard_from_leader_within(lease_ms, now));
    bool granted = r.term >= hs_.term && log_ok && !sticky;
    send_response(m.from, m.rpc_id, RequestVoteResponse{true, hs_.term, granted, sticky});
    return;
  }
  if (r.term < hs_.term) {
    send_response(m.from, m.rpc_id, RequestVoteResponse{false, hs_.term, false, false});
    return;
  }
  bool repeat = r.term == hs_.term && hs_.voted_for == m.from;  // already granted
  if (opt_.leader_lease && !repeat && role_ != Role::Leader &&
      heard_from_leader_within(lease_ms, now)) {
    // A leader may still serve lease reads, whatever term we have since heard of; only that
    // leader can waive its lease (TimeoutNow), which the candidate proves by naming it.
    bool waived = r.disrupted_leader && r.disrupted_leader->peer_id == lease_leader_ &&
                  r.disrupted_leader->term == lease_term_;
    if (!waived) {
      send_response(m.from, m.rpc_id, RequestVoteResponse{false, hs_.term, false, true});
      return;
    }
  }
  if (r.term > hs_.term) step_down_to(r.term, now);
  bool granted = (hs_.voted_for.empty() || hs_.voted_for == m.from) && log_ok;
  if (granted && hs_.voted_for.empty()) {
    set_hard_state(hs_.term, m.from);
    reset_election_timer(now);
  }
  RequestVoteResponse resp{false, hs_.term, granted, false};
  if (granted && MUTANT(VoteBeforeDurable)) {
    ready_.messages.push_back(Envelope{opt_.group, opt_.self, m.from, m.rpc_id, resp});
    return;
  }
  send_response(m.from, m.rpc_id, resp);
}

void Raft::handle(const Envelope& m, const RequestVoteResponse& r, uint64_t now) {
  if (!conf_.is_voter(m.from)) return void(++counters_.unknown_sender);
  if (r.term > hs_.term) return step_down_to(r.term, now);
  bool current = m.rpc_id > election_rpc_ || MUTANT(CountOtherTermVotes);
  if (r.pre_vote) {
    if (!pre_voting_ || role_ != Role::Follower || !current) return void(++counters_.stale);
  } else {
    if (role_ != Role::Candidate || !current) return void(++counters_.stale);
    if (r.term != hs_.term && !MUTANT(CountOtherTermVotes)) return void(++counters_.stale);
  }
  if (!r.granted) return;
  insert_sorted(votes_, m.from);
  if (!conf_.quorum([&](const PeerId& p) { return contains(votes_, p); })) return;
  if (r.pre_vote)
    become_candidate(now, false);
  else
    become_leader(now);
}

void Raft::handle(const Envelope& m, const AppendEntriesRequest& r, uint64_t now) {
  if (r.term < hs_.term) {
    send_response(m.from, m.rpc_id, AppendEntriesResponse{hs_.term, false, last_index(), false});
    return;
  }
  if (r.term > hs_.term) step_down_to(r.term, now);
  if (role_ == Role::Leader || (!leader_.empty() && !(leader_ == m.from))) {
    // Two leaders in one term cannot happen in a correct cluster; as braft, both step down.
    step_down_to(hs_.term + 1, now);
    send_response(m.from, m.rpc_id, AppendEntriesResponse{hs_.term, false, last_index(), false});
    return;
  }
  if (role_ == Role::Candidate || pre_voting_) become_follower(m.from, now);
  set_leader(m.from);
  last_leader_contact_ = now;
  leader_unreachable_ = false;
  lease_leader_ = m.from;
  lease_term_ = hs_.term;
  reset_election_timer(now);

  if (installing_snapshot_ && !r.entries.empty()) {
    send_response(m.from, m.rpc_id, AppendEntriesResponse{hs_.term, false, last_index(), true});
    return;
  }
  if (r.prev_log_index > last_index()) {
    send_response(m.from, m.rpc_id, AppendEntriesResponse{hs_.term, false, last_index(), false});
    return;
  }
  // Entries below our snapshot are committed, so they match whatever the leader holds.
  if (r.prev_log_index >= snapshot_.last_included_index) {
    auto t = term_at(r.prev_log_index);
    if (t && *t != r.prev_log_term) {
      // Hint: skip back over the conflicting term (the leader takes min(next-1, hint+1)).
      uint64_t i = r.prev_log_index;
      while (i > std::max(commit_ + 1, first_index_) && term_at(i - 1) == t) --i;
      send_response(m.from, m.rpc_id, AppendEntriesResponse{hs_.term, false, i - 1, false});
      return;
    }
  }
  size_t k = 0;
  for (; k < r.entries.size(); ++k) {
    const Entry& e = r.entries[k];
    if (e.index < first_index_ || e.index <= snapshot_.last_included_index) continue;
    if (e.index > last_index()) break;
    if (term_at(e.index) == e.term) continue;
    if (MUTANT(SkipTruncate)) continue;
    if (e.index <= commit_) {  // a leader asking to erase committed entries is broken
      ++counters_.malformed;
      return;
    }
    truncate_suffix(e.index);
    break;
  }
  if (k < r.entries.size())
    append_local(
        std::vector<Entry>(r.entries.begin() + static_cast<ptrdiff_t>(k), r.entries.end()));

  uint64_t last_new = r.prev_log_index + r.entries.size();
  advance_commit(std::min(r.committed_index, last_new), now);
  if (MUTANT(ApplyBeyondCommit)) emit_committed();
  if (last_new <= durable_ || MUTANT(AckBeforeDurable)) {
    send_response(m.from, m.rpc_id, AppendEntriesResponse{hs_.term, true, last_new, false});
  } else {
    ack_when_durable({m.from, m.rpc_id, hs_.term, last_new});
  }
}

void Raft::handle(const Envelope& m, const AppendEntriesResponse& r, uint64_t now) {
  auto* prp = role_ == Role::Leader ? progress(m.from) : nullptr;
  if (!prp) return void(++counters_.unknown_sender);
  if (r.term > hs_.term && !MUTANT(NoStepDownOnHigherTerm)) return step_down_to(r.term, now);
  if (r.term < hs_.term) return void(++counters_.stale);
  auto& pr = *prp;
  Inflight f{};
  if (!pop_inflight(pr, m.rpc_id, &f)) return void(++counters_.stale);
  pr.last_ack_ms = now;
  pr.acked_sent_ms = std::max(pr.acked_sent_ms, f.sent_ms);
  pr.acked_rpc = std::max(pr.acked_rpc, m.rpc_id);
  if (r.success && f.heartbeat && pr.state == ProgressState::Probe) {
    // A probe is answered at once (it carries nothing to make durable), so a heartbeat sent
    // after it and answered first means it was lost: probe again now, not after T.
    for (auto it = pr.inflight.begin(); it != pr.inflight.end(); ++it)
      if (it->probe && it->sent_ms < f.sent_ms) {
        if (pr.appends_inflight) --pr.appends_inflight;
        pr.inflight.erase(it);
        break;
      }
  }
  if (r.success) {
    if (f.last_index > pr.match) pr.match = f.last_index;
    pr.next = std::max(pr.next, pr.match + 1);
    if (pr.state == ProgressState::Probe && !f.heartbeat) pr.state = ProgressState::Replicate;
    maybe_commit(now);
    if (role_ != Role::Leader) return;
    if (m.from == transfer_target_) maybe_send_timeout_now(m.from, now);
    advance_conf_change(now);
  } else if (r.busy) {  // installing a snapshot: retry later, not at round-trip speed
    pr.state = ProgressState::Probe;
    pr.next = pr.match + 1;
    pr.paused_until_ms = now + opt_.election_timeout_ms / 2;
  } else if (!f.heartbeat || f.last_index > 0) {
    pr.next = std::max(pr.match + 1, std::min(pr.next - 1, r.last_log_index + 1));
    pr.state = ProgressState::Probe;
    for (auto it = pr.inflight.begin(); it != pr.inflight.end();)
      it = it->heartbeat ? std::next(it) : pr.inflight.erase(it);
    pr.appends_inflight = 0;
  }
  confirm_reads();
  if (role_ == Role::Leader && progress(m.from)) {
    replicate(m.from, now);
    notify_commit(m.from, now);
  }
}

void Raft::handle(const Envelope& m, const InstallSnapshotRequest& r, uint64_t now) {
  if (r.term < hs_.term) {
    send_response(m.from, m.rpc_id, InstallSnapshotResponse{hs_.term, false});
    return;
  }
  if (r.term > hs_.term) step_down_to(r.term, now);
  if (role_ == Role::Leader || (!leader_.empty() && !(leader_ == m.from))) {
    step_down_to(hs_.term + 1, now);
    send_response(m.from, m.rpc_id, InstallSnapshotResponse{hs_.term, false});
    return;
  }
  if (role_ == Role::Candidate || pre_voting_) become_follower(m.from, now);
  set_leader(m.from);
  last_leader_contact_ = now;
  leader_unreachable_ = false;
  lease_leader_ = m.from;
  lease_term_ = hs_.term;
  reset_election_timer(now);
  uint64_t idx = r.meta.last_included_index;
  if (idx <= commit_) {  // we hold it already; say so once it is durable here too
    ack_when_durable({m.from, m.rpc_id, hs_.term, idx, true});
    return;
  }
  if (installing_snapshot_) {
    if (install_ack_.index == idx) {
      install_ack_ = {m.from, m.rpc_id, hs_.term, idx};  // answer the newest copy
    } else {
      send_response(m.from, m.rpc_id, InstallSnapshotResponse{hs_.term, false});
    }
    return;
  }
  installing_snapshot_ = true;
  install_ack_ = {m.from, m.rpc_id, hs_.term, idx};
  ready_.install_snapshot = SnapshotInstall{m.from, r.meta, r.uri};
}

void Raft::handle(const Envelope& m, const InstallSnapshotResponse& r, uint64_t now) {
  auto* pr = role_ == Role::Leader ? progress(m.from) : nullptr;
  if (!pr) return void(++counters_.unknown_sender);
  if (r.term > hs_.term && !MUTANT(NoStepDownOnHigherTerm)) return step_down_to(r.term, now);
  if (r.term < hs_.term || pr->state != ProgressState::Snapshot || m.rpc_id != pr->snapshot_rpc)
    return void(++counters_.stale);
  pr->last_ack_ms = now;
  pr->state = ProgressState::Probe;
  if (!r.success) pr->paused_until_ms = now + opt_.election_timeout_ms / 2;
  if (r.success) {
    pr->match = std::max(pr->match, pr->snapshot_index);
    pr->next = pr->match + 1;
    maybe_commit(now);
    advance_conf_change(now);
  }
  if (role_ == Role::Leader && r.success) replicate(m.from, now);
}

void Raft::handle(const Envelope& m, const TimeoutNowRequest& r, uint64_t now) {
  if (r.term > hs_.term) step_down_to(r.term, now);  // braft EHIGHERTERMREQUEST
  bool ok = r.term == hs_.term && role_ == Role::Follower && leader_ == m.from && can_campaign() &&
            !installing_snapshot_;
  if (!ok) {
    send_response(m.from, m.rpc_id, TimeoutNowResponse{hs_.term, false});
    return;
  }
  // As braft: with leases the old leader learns of the new term from the vote, not from us.
  uint64_t reply_term = opt_.leader_lease ? hs_.term : hs_.term + 1;
  send_response(m.from, m.rpc_id, TimeoutNowResponse{reply_term, true});
  become_candidate(now, true);
}

void Raft::handle(const Envelope& /*m*/, const TimeoutNowResponse& r, uint64_t now) {
  if (r.term > hs_.term) step_down_to(r.term, now);
}

// ---------------------------------------------------------------------------------------
// proposals and reads

ProposeResult Raft::propose(std::shared_ptr<const std::string> data, uint64_t now) {
  std::vector<std::shared_ptr<const std::string>> one{std::move(data)};
  return propose_batch(std::move(one), now).front();
}

std::vector<ProposeResult> Raft::propose_batch(std::vector<std::shared_ptr<const std::string>> data,
                                               uint64_t now) {
  now_ = now;
  std::vector<ProposeResult> out;
  out.reserve(data.size());
  std::vector<Entry> entries;
  for (auto& d : data) {
    Status refused;
    uint64_t uncommitted = last_index() + entries.size() - commit_;
    if (role_ != Role::Leader)
      refused = error(Code::NotLeader, leader_.empty() ? "no leader" : leader_.to_string());
    else if (!transfer_target_.empty())
      refused = error(Code::Busy, "Is transferring leadership");
    else if (opt_.max_uncommitted_entries && uncommitted >= opt_.max_uncommitted_entries)
      refused = error(Code::Busy, "too many uncommitted entries");
    if (!refused.ok()) {
      out.push_back({std::move(refused), 0, 0});
      continue;
    }
    entries.push_back(
        Entry{last_index() + 1 + entries.size(), hs_.term, EntryType::Data, std::move(d), nullptr});
    out.push_back({Status{}, entries.back().index, entries.back().term});
  }
  if (!entries.empty()) {
    append_local(std::move(entries));
    replicate_all(now);  // one round of AppendEntries for the whole batch
  }
  return out;
}

void Raft::read_index(uint64_t ctx, uint64_t now) {
  now_ = now;
  if (role_ == Role::Leader) return serve_read(ctx, PeerId{}, 0, now);
  if (leader_.empty()) {
    ready_.reads.push_back({ctx, error(Code::NotLeader, "no leader"), 0});
    return;
  }
  forwarded_reads_[next_rpc_] = {ctx, now};
  send(leader_, ReadIndexRequest{hs_.term, ctx});
}

void Raft::serve_read(uint64_t ctx, const PeerId& from, uint64_t from_rpc, uint64_t now) {
  PendingRead r{ctx, from, from_rpc, commit_, next_rpc_};
  if (!committed_in_term()) {
    reads_waiting_commit_.emplace_back(ctx, r);
    return;
  }
  bool alone = conf_.quorum([&](const PeerId& p) { return p == opt_.self; });
  if (alone || lease_valid(now)) return answer_read(r, Status{});
  reads_.push_back(r);
  read_round_needed_ = true;
}

void Raft::answer_read(PendingRead& r, Status status) {
  if (r.from.empty()) {
    ready_.reads.push_back({r.ctx, std::move(status), r.index});
  } else {
    send_response(r.from, r.from_rpc, ReadIndexResponse{hs_.term, r.ctx, status.ok(), r.index});
  }
}

void Raft::confirm_reads() {
  while (!reads_.empty() && round_acked(reads_.front().need_rpc)) {
    answer_read(reads_.front(), Status{});
    reads_.pop_front();
  }
  // Reads that arrived while the last round was out need a round of their own.
  if (!reads_.empty() && round_acked(read_round_rpc_)) read_round_needed_ = true;
}

void Raft::fail_reads(Code code, const char* why) {
  for (auto& r : reads_) answer_read(r, error(code, why));
  for (auto& [ctx, r] : reads_waiting_commit_) answer_read(r, error(code, why));
  reads_.clear();
  reads_waiting_commit_.clear();
}

void Raft::handle(const Envelope& m, const ReadIndexRequest& r, uint64_t now) {
  if (role_ != Role::Leader) {
    send_response(m.from, m.rpc_id, ReadIndexResponse{hs_.term, r.ctx, false, 0});
    return;
  }
  serve_read(r.ctx, m.from, m.rpc_id, now);
}

void Raft::handle(const Envelope& m, const ReadIndexResponse& r, uint64_t) {
  auto it = forwarded_reads_.find(m.rpc_id);
  if (it == forwarded_reads_.end() || !(m.from == leader_) || it->second.ctx != r.ctx)
    return void(++counters_.stale);
  uint64_t ctx = it->second.ctx;
  forwarded_reads_.erase(it);
  if (r.success)
    ready_.reads.push_back({ctx, Status{}, r.index});
  else
    ready_.reads.push_back({ctx, error(Code::NotLeader, "leader refused the read"), 0});
}

// ---------------------------------------------------------------------------------------
// membership

Status Raft::change_peers(uint64_t id, const PeerList& new_peers, uint64_t now) {
  PeerList learners;
  for (const auto& p : conf_.learners)
    if (!contains(new_peers, p)) learners.push_back(p);
  return start_conf_change(id, new_peers, learners, now);
}

Status Raft::add_peer(uint64_t id, const PeerId& peer, uint64_t now) {
  PeerList peers = conf_.peers;
  insert_sorted(peers, peer);
  return change_peers(id, peers, now);
}

Status Raft::remove_peer(uint64_t id, const PeerId& peer, uint64_t now) {
  PeerList peers = conf_.peers;
  erase_peer(peers, peer);
  return change_peers(id, peers, now);
}

Status Raft::change_learners(uint64_t id, const PeerList& learners, uint64_t now) {
  for (const auto& p : learners)
    if (contains(conf_.peers, p))
      return error(Code::InvalidArgument, "a learner cannot be a voter");
  return start_conf_change(id, conf_.peers, learners, now);
}

Status Raft::start_conf_change(uint64_t id, PeerList peers, PeerList learners, uint64_t now) {
  now_ = now;
  if (role_ != Role::Leader) return error(Code::NotLeader, "Not leader");
  if (peers.empty()) return error(Code::InvalidArgument, "new configuration is empty");
  if (cc_.active || conf_index_ > commit_)
    return error(Code::Busy, "Doing another configuration change");
  if (!transfer_target_.empty()) return error(Code::Busy, "Is transferring leadership");
  if (peers == conf_.peers && learners == conf_.learners) {
    ready_.conf_changes.push_back({id, Status{}, conf_, conf_});
    return Status{};
  }
  cc_ = ConfChange{};
  cc_.id = id;
  cc_.active = true;
  cc_.stage = ConfChange::CatchingUp;
  cc_.old_conf = conf_;
  cc_.new_peers = std::move(peers);
  cc_.new_learners = std::move(learners);
  cc_.started_ms = now;
  sync_progress_with_conf(now);
  replicate_all(now);
  advance_conf_change(now);
  return Status{};
}

void Raft::advance_conf_change(uint64_t now) {
  if (!cc_.active || role_ != Role::Leader) return;
  switch (cc_.stage) {
    case ConfChange::CatchingUp: {
      bool caught_up = true;
      for (const auto& p : cc_.new_peers) {
        if (p == opt_.self || cc_.old_conf.is_voter(p)) continue;
        auto* pr = progress(p);
        auto& [seen_match, seen_ms] = cc_.catchup.try_emplace(p, 0, cc_.started_ms).first->second;
        bool answered = pr && pr->last_ack_ms > cc_.started_ms;
        // As braft's _is_catchup: an append or a snapshot to it succeeded (match is only ever
        // raised by an acknowledgement), it needs no snapshot, and it is within the margin.
        // Being within the margin at match 0 is not catching up.
        if (answered && pr->match > 0 && pr->match + 1 >= first_index_ &&
            pr->match + opt_.catchup_margin >= last_index())
          continue;
        caught_up = false;
        // Progress: its match moved, or a snapshot is on its way to a peer that still answers
        // (heartbeats are answered during an install); a snapshot sent into silence is not.
        bool installing = answered && pr->state == ProgressState::Snapshot &&
                          now < pr->last_ack_ms + opt_.catchup_timeout_ms;
        if (pr && (pr->match > seen_match || installing)) {
          seen_match = std::max(seen_match, pr->match);
          seen_ms = now;
        }
        if (now >= seen_ms + opt_.catchup_timeout_ms) {
          finish_conf_change(
              error(Code::CatchupFailed,
                    "new peer " + p.to_string() + " could not catch up: no progress for " +
                        std::to_string(opt_.catchup_timeout_ms) + " ms at match index " +
                        std::to_string(pr ? pr->match : 0) + " of " + std::to_string(last_index()) +
                        (answered ? "" : " (it never answered)")));
          return;
        }
      }
      if (!caught_up) return;
      size_t changes = 0;
      for (const auto& p : cc_.new_peers) changes += !contains(cc_.old_conf.peers, p);
      for (const auto& p : cc_.old_conf.peers) changes += !contains(cc_.new_peers, p);
      if (changes > 1) {
        cc_.stage = ConfChange::Joint;
        append_conf({cc_.new_peers, cc_.old_conf.peers, cc_.new_learners}, now);
      } else {  // one changed peer: a single step, as braft
        cc_.stage = ConfChange::Stable;
        append_conf({cc_.new_peers, {}, cc_.new_learners}, now);
      }
      cc_.entry_index = last_index();
      return;
    }
    case ConfChange::Joint:
      if (commit_ < cc_.entry_index) return;
      cc_.stage = ConfChange::Stable;
      append_conf({cc_.new_peers, {}, cc_.new_learners}, now);
      cc_.entry_index = last_index();
      return;
    case ConfChange::Stable:
      if (commit_ >= cc_.entry_index) finish_conf_change(Status{});
      return;
  }
}

void Raft::finish_conf_change(Status st) {
  if (!cc_.active) return;
  ConfChangeResult res{cc_.id, std::move(st), cc_.old_conf, conf_};
  cc_ = ConfChange{};
  if (role_ == Role::Leader && res.status.ok())
    for (const auto& peer : res.old_conf.all_members())
      if (!conf_.is_member(peer) && !(peer == opt_.self))
        departing_.emplace(peer, now_ + opt_.election_timeout_ms);
  if (res.id != 0) ready_.conf_changes.push_back(std::move(res));
  if (role_ == Role::Leader) sync_progress_with_conf(now_);
}

// A removed peer is let go once it was told the commit of the configuration without it.
void Raft::release_departing(uint64_t now) {
  bool released = false;
  for (auto it = departing_.begin(); it != departing_.end();) {
    auto* pr = progress(it->first);
    if (pr && pr->commit_told < conf_index_ && now < it->second) {
      ++it;
      continue;
    }
    it = departing_.erase(it);
    released = true;
  }
  if (released) sync_progress_with_conf(now);
}

void Raft::append_conf(Configuration c, uint64_t now) {
  Entry e{last_index() + 1, hs_.term, EntryType::Configuration, nullptr,
          std::make_shared<const Configuration>(std::move(c))};
  append_local({e});
  replicate_all(now);
}

Status Raft::reset_peers(const PeerList& new_peers, uint64_t now) {
  now_ = now;
  if (new_peers.empty()) return error(Code::InvalidArgument, "new configuration is empty");
  if (role_ == Role::Leader && cc_.active)
    return error(Code::Busy, "Doing another configuration change");
  if (new_peers == conf_.peers && !conf_.joint()) return Status{};
  reset_conf_ = Configuration{new_peers, {}, conf_.learners};
  reset_conf_index_ = last_index();
  step_down_to(hs_.term + 1, now);  // braft ESETPEER
  rebuild_conf();
  return Status{};
}

// ---------------------------------------------------------------------------------------
// leadership transfer

Status Raft::transfer_leader(const PeerId& target, uint64_t now) {
  now_ = now;
  if (role_ != Role::Leader) return error(Code::NotLeader, "Not leader");
  if (!transfer_target_.empty()) return error(Code::Busy, "Is transferring leadership");
  if (cc_.active) return error(Code::Busy, "Doing another configuration change");
  PeerId to = target;
  if (to.empty()) {  // ANY_PEER: the voter with the longest log
    uint64_t best = 0;
    for (auto& [p, pr] : progress_)
      if (contains(conf_.peers, p) && (to.empty() || pr.match > best)) to = p, best = pr.match;
    if (to.empty()) return error(Code::InvalidArgument, "no peer to transfer to");
  }
  if (to == opt_.self) return Status{};
  if (!contains(conf_.peers, to) || !progress(to))
    return error(Code::InvalidArgument, "peer " + to.to_string() + " is not in the configuration");
  transfer_target_ = to;
  transfer_deadline_ = now + opt_.election_timeout_ms;
  timeout_now_sent_ = false;
  maybe_send_timeout_now(to, now);
  replicate(to, now);
  return Status{};
}

void Raft::maybe_send_timeout_now(const PeerId& to, uint64_t /*now*/) {
  auto* pr = progress(to);
  if (!pr || timeout_now_sent_ || pr->match < last_index()) return;
  timeout_now_sent_ = true;
  lease_revoked_ = true;  // the target may be elected before our lease runs out
  send(to, TimeoutNowRequest{hs_.term, false});
}

void Raft::abort_transfer() {
  transfer_target_ = PeerId{};
  timeout_now_sent_ = false;
}

// ---------------------------------------------------------------------------------------

NodeStatus Raft::status() const {
  NodeStatus s;
  s.role = role_;
  s.term = hs_.term;
  s.leader = leader_;
  s.first_index = first_index_;
  s.last_index = last_index();
  s.commit_index = commit_;
  s.durable_index = durable_;
  s.applied_index = applied_;
  s.conf = conf_;
  for (const auto& [p, pr] : progress_) {
    static constexpr const char* names[] = {"probe", "replicate", "snapshot"};
    s.peers.push_back({p, pr.match, pr.next, pr.last_ack_ms, names[static_cast<int>(pr.state)]});
  }
  return s;
}

}  // namespace raftstore::core
