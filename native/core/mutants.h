// Planted bugs that the simulator must catch. The shipped core is built without
// RAFTSTORE_MUTANTS, so every MUTANT(x) is the constant `false` and compiles away; the
// simulator links a second build of the same sources where a mutant can be switched on.
#pragma once

namespace raftstore::core {

enum class Mutant : int {
  None = 0,
  VoteWithoutLogCheck,        // grant (pre-)votes without comparing logs
  CountOtherTermVotes,        // count vote responses from another term
  CommitPreviousTerm,         // commit an earlier term's entry by counting replicas
  VoteBeforeDurable,          // answer a vote before the vote is durable
  SkipTruncate,               // keep a conflicting entry instead of truncating the suffix
  ApplyBeyondCommit,          // hand out entries for apply beyond the commit index
  NoStepDownOnHigherTerm,     // ignore a higher term in responses
  RemovedLeaderKeepsLeading,  // a leader outside the committed configuration stays
  AckBeforeDurable,           // a follower acknowledges entries before they are durable
  NoProbeIdlePeer,            // a peer whose log is unknown gets heartbeats only, no probe
  StalledInstallNotRetried,   // a lost or failed InstallSnapshot is never sent again
  InstallProgressIgnored,     // a snapshot copy that takes longer than the install timeout is
                              // abandoned while it still progresses (and begun again, forever)
  // In runtime code that the simulator runs (native/runtime/snapshot_transfer.cpp):
  ChunkOffsetOffByOne,      // a snapshot copy asks for each next chunk one byte too far
  InstallAckBeforeDurable,  // a copied snapshot is adopted (and acknowledged) before it is
                            // published
  // native/runtime/proposals.cpp:
  AckOnStepDown,  // a leader stepping down reports what it appended as applied
  // native/runtime/ (Replica, hosted by the simulator):
  SkipGroupSync,                 // the log writer reports a batch durable without syncing it
  AckForwardedBeforeLocalApply,  // a forwarded write is acknowledged before it applies here
  LeaseReadWithoutLease,         // a lease read answers without checking the lease
  ProposalsOpenAfterStop,        // a stopped replica still queues proposals nobody will flush
  ElectionCountedAsWon,          // metrics: an election started is also counted as won
  Count
};

const char* mutant_name(Mutant m);

#ifdef RAFTSTORE_MUTANTS
// Per thread: the simulator runs schedules on several threads at once, each with its own.
extern thread_local Mutant g_active_mutant;
#define MUTANT(name) (::raftstore::core::g_active_mutant == ::raftstore::core::Mutant::name)
#else
#define MUTANT(name) false
#endif

}  // namespace raftstore::core
