// Messages to and from peers: requests go out through the environment (one channel per peer,
// bound to this replica's ip, in the threaded runtime); answers and transport failures go
// back to the core, which decides what to send next.

#include "replica.h"

namespace raftstore::runtime {

void Replica::send(core::Envelope env) {
  if (!core::is_request(env.payload)) return env_.respond(std::move(env));
  auto timeout = static_cast<uint32_t>(opt_.raft.election_timeout_ms);
  const storage::SnapshotInfo* lend = nullptr;
  if (auto* is = std::get_if<core::InstallSnapshotRequest>(&env.payload)) {
    // The snapshot the core names must be the one on disk; if not (a newer one is being
    // published), drop the request: the core sends it again.
    if (!published_ || published_->meta.last_included_index != is->meta.last_included_index) return;
    timeout = install_timeout_ms(opt_.raft);
    lend = &*published_;
  }
  env_.call(std::move(env), timeout, lend);
}

void Replica::receive(const core::Envelope& req) {
  if (failed_) return;
  core_->step(req, env_.now_ms());
  drain();
}

void Replica::answered(const core::Envelope& resp) {
  if (failed_) return;
  core_->step(resp, env_.now_ms());
  drain();
}

// Not sent, or no answer will come: the core retries soon.
void Replica::call_failed(const core::PeerId& to, uint64_t rpc_id) {
  if (failed_) return;
  core_->rpc_failed(to, rpc_id, env_.now_ms());
  drain();
}

void Replica::snapshot_progress(const core::PeerId& peer, uint64_t bytes) {
  if (failed_) return;
  {
    std::lock_guard<std::mutex> l(status_mu_);
    snapshot_bytes_sent_[peer] += bytes;
  }
  core_->snapshot_progress(peer, env_.now_ms());
}

void Replica::peer_unreachable(const core::PeerId& peer) {
  if (failed_) return;
  core_->peer_unreachable(peer, env_.now_ms());
  drain();
}

std::map<core::PeerId, uint64_t> Replica::snapshot_bytes_sent() {
  std::lock_guard<std::mutex> l(status_mu_);
  return snapshot_bytes_sent_;
}

}  // namespace raftstore::runtime
