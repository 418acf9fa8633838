// What status() and /raft_stat show.

#include <sstream>

#include "node_host_internal.h"

namespace raftstore::runtime {

core::NodeStatus Node::status() {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_;
}

void Node::refresh_status() {
  std::lock_guard<std::mutex> lock(status_mu_);
  status_ = core_->status();
}

std::string NodeHost::http_status(const std::string& path) {
  if (path != "/raft_stat" && path.rfind("/raft_stat/", 0) != 0) return "try /raft_stat\n";
  std::string group = path.size() > 11 ? path.substr(11) : "";
  std::ostringstream o;
  for (auto& [key, node] : nodes_) {
    if (!group.empty() && key.first != group) continue;
    core::NodeStatus s = node->status();
    o << "[" << key.first << "] " << key.second.to_string() << "\n"
      << "state: " << core::role_name(s.role) << "\nterm: " << s.term
      << "\nleader: " << s.leader.to_string() << "\nconf: " << s.conf.to_string()
      << "\nfirst_index: " << s.first_index << "\nlast_index: " << s.last_index
      << "\ncommitted_index: " << s.commit_index << "\napplied_index: " << s.applied_index
      << "\nsnapshot_index: " << node->published_index_
      << "\nsnapshots_installed: " << node->snapshots_installed_
      << "\nsnapshot_failures: " << node->snapshot_failures_
      << "\nstuck_apply_transfers: " << node->stuck_transfers_ << "\n";
    if (!node->last_snapshot_error_.empty())
      o << "last_snapshot_error: " << node->last_snapshot_error_ << "\n";
    for (const auto& p : s.peers)
      o << "replicator " << p.id.to_string() << ": match_index=" << p.match_index
        << " next_index=" << p.next_index << " state=" << p.state << "\n";
    o << "\n";
  }
  return o.str();
}

}  // namespace raftstore::runtime
