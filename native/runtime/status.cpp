// What status() and /raft_stat show.

#include <sstream>

#include "node_host_internal.h"

namespace raftstore::runtime {

std::string NodeHost::http_status(const std::string& path) {
  if (path != "/raft_stat" && path.rfind("/raft_stat/", 0) != 0) return "try /raft_stat\n";
  std::string group = path.size() > 11 ? path.substr(11) : "";
  std::ostringstream o;
  for (auto& [key, node] : nodes_) {
    if (!group.empty() && key.first != group) continue;
    core::NodeStatus s = node->status();
    const Replica::SnapshotStats& stats = node->replica().stats();
    o << "[" << key.first << "] " << key.second.to_string() << "\n"
      << "state: " << core::role_name(s.role) << "\nterm: " << s.term
      << "\nleader: " << s.leader.to_string() << "\nconf: " << s.conf.to_string()
      << "\nfirst_index: " << s.first_index << "\nlast_index: " << s.last_index
      << "\ncommitted_index: " << s.commit_index << "\napplied_index: " << s.applied_index
      << "\nsnapshot_index: " << node->snapshot_index()
      << "\nsnapshots_installed: " << stats.installed << "\nsnapshot_failures: " << stats.failures
      << "\nstuck_apply_transfers: " << stats.stuck_transfers << "\n";
    if (!stats.last_error.empty()) o << "last_snapshot_error: " << stats.last_error << "\n";
    for (const auto& p : s.peers)
      o << "replicator " << p.id.to_string() << ": match_index=" << p.match_index
        << " next_index=" << p.next_index << " state=" << p.state << "\n";
    o << "\n";
  }
  return o.str();
}

}  // namespace raftstore::runtime
