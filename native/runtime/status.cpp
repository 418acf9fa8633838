// What a replica's port shows over HTTP: the status page (status_page.cpp) and its
// /status.json, Prometheus's /metrics, and braft's /raft_stat.

#include <sstream>

#include "node_host_internal.h"

namespace raftstore::runtime {

rpc::Server::HttpResponse NodeHost::http(const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  if (path == "/" || path == "/status")
    return {200, "text/html; charset=utf-8", status_page_html()};
  if (path == "/status.json") return {200, "application/json", status_json()};
  if (path == "/metrics") {
    std::vector<std::vector<MetricFamily>> parts{metrics()};
    for (auto& [key, node] : nodes_) parts.push_back(node->metrics());
    return {200, "text/plain; version=0.0.4; charset=utf-8", render_prometheus(parts)};
  }
  if (path == "/raft_stat" || path.rfind("/raft_stat/", 0) == 0)
    return {200, "text/plain; charset=utf-8", raft_stat(path.size() > 11 ? path.substr(11) : "")};
  return {404, "text/plain; charset=utf-8",
          "not found: try / (status page), /status.json, /metrics or /raft_stat\n"};
}

std::vector<MetricFamily> Node::metrics() {
  return collect_metrics(opt_.group, opt_.self, replica_->status(), replica_->snapshot_index(),
                         replica_->metrics(), runtime::now_ms(), replica_->snapshot_bytes_sent());
}

std::string NodeHost::raft_stat(const std::string& group) {
  std::ostringstream o;
  for (auto& [key, node] : nodes_) {
    if (!group.empty() && key.first != group) continue;
    core::NodeStatus s = node->status();
    const ReplicaMetrics& m = node->replica().metrics();
    o << "[" << key.first << "] " << key.second.to_string() << "\n"
      << "state: " << core::role_name(s.role) << "\nterm: " << s.term
      << "\nleader: " << s.leader.to_string() << "\nconf: " << s.conf.to_string()
      << "\nfirst_index: " << s.first_index << "\nlast_index: " << s.last_index
      << "\ncommitted_index: " << s.commit_index << "\napplied_index: " << s.applied_index
      << "\nsnapshot_index: " << node->snapshot_index()
      << "\nsnapshots_installed: " << m.snapshots_installed
      << "\nsnapshot_failures: " << m.snapshot_failures
      << "\nstuck_apply_transfers: " << m.stuck_apply_transfers << "\n";
    if (const std::string& e = node->replica().last_snapshot_error(); !e.empty())
      o << "last_snapshot_error: " << e << "\n";
    for (const auto& p : s.peers)
      o << "replicator " << p.id.to_string() << ": match_index=" << p.match_index
        << " next_index=" << p.next_index << " state=" << p.state << "\n";
    o << "\n";
  }
  return o.str();
}

void NodeHost::sample_lag() {
  for (auto it = lag_history_.begin(); it != lag_history_.end();)
    it = nodes_.count(it->first) ? std::next(it) : lag_history_.erase(it);
  for (auto& [key, node] : nodes_) {
    core::NodeStatus s = node->status();
    auto& peers = lag_history_[key];
    if (s.role != core::Role::Leader) {
      peers.clear();  // a new term as leader starts a new chart
      continue;
    }
    for (const auto& p : s.peers) {
      if (p.id == key.second) continue;
      auto& h = peers[p.id];
      h.push_back(peer_lag(s, p));
      if (h.size() > kLagHistory) h.pop_front();
    }
  }
  if (!sampler_) return;
  sampler_->expires_after(std::chrono::seconds(1));
  sampler_->async_wait([this](std::error_code ec) {
    if (!ec) sample_lag();
  });
}

namespace {

std::string peer_array(const core::PeerList& peers) {
  std::string out = "[";
  for (size_t i = 0; i < peers.size(); ++i) {
    if (i) out += ',';
    out += json_string(peers[i].to_string());
  }
  out += ']';
  return out;
}

}  // namespace

// The status page's data: every group on this port, its peers (with a minute of lag, one
// sample a second) and its recent events.
std::string NodeHost::status_json() {
  uint64_t now = runtime::now_ms();
  std::ostringstream o;
  o << "{\"address\":" << json_string(ip_ + ":" + std::to_string(port_))
    << ",\"time_ms\":" << ms_of<std::chrono::system_clock>() << ",\"groups\":[";
  bool first = true;
  for (auto& [key, node] : nodes_) {
    core::NodeStatus s = node->status();
    auto sent = node->replica().snapshot_bytes_sent();
    o << (first ? "" : ",") << "{\"group\":" << json_string(key.first)
      << ",\"peer\":" << json_string(key.second.to_string())
      << ",\"role\":" << json_string(core::role_name(s.role)) << ",\"term\":" << s.term
      << ",\"leader\":" << (s.leader.empty() ? "null" : json_string(s.leader.to_string()))
      << ",\"conf\":{\"peers\":" << peer_array(s.conf.peers)
      << ",\"old_peers\":" << peer_array(s.conf.old_peers)
      << ",\"learners\":" << peer_array(s.conf.learners)
      << ",\"joint\":" << (s.conf.joint() ? "true" : "false") << "}"
      << ",\"first_index\":" << s.first_index << ",\"last_index\":" << s.last_index
      << ",\"commit_index\":" << s.commit_index << ",\"applied_index\":" << s.applied_index
      << ",\"snapshot_index\":" << node->snapshot_index()
      << ",\"snapshot_bytes\":" << node->replica().metrics().snapshot_bytes << ",\"peers\":[";
    bool fp = true;
    if (s.role == core::Role::Leader)
      for (const auto& p : s.peers) {
        if (p.id == key.second) continue;
        o << (fp ? "" : ",") << "{\"id\":" << json_string(p.id.to_string())
          << ",\"match_index\":" << p.match_index << ",\"next_index\":" << p.next_index
          << ",\"lag\":" << peer_lag(s, p) << ",\"last_contact_ms\":"
          << (p.last_ack_ms ? std::to_string(now > p.last_ack_ms ? now - p.last_ack_ms : 0)
                            : "null")
          << ",\"state\":" << json_string(p.state)
          << ",\"snapshot_bytes_sent\":" << (sent.count(p.id) ? sent[p.id] : 0)
          << ",\"lag_history\":[";
        if (auto h = lag_history_.find(key); h != lag_history_.end())
          if (auto ph = h->second.find(p.id); ph != h->second.end())
            for (size_t i = 0; i < ph->second.size(); ++i) o << (i ? "," : "") << ph->second[i];
        o << "]}";
        fp = false;
      }
    o << "],\"events\":[";
    bool fe = true;
    for (const auto& r : node->recent_events()) {
      o << (fe ? "" : ",") << "{\"time_ms\":" << r.wall_ms
        << ",\"level\":" << json_string(level_name(r.level))
        << ",\"message\":" << json_string(r.message) << ",\"fields\":{";
      for (size_t i = 0; i < r.fields.size(); ++i)
        o << (i ? "," : "") << json_string(r.fields[i].first) << ":"
          << json_string(r.fields[i].second);
      o << "}}";
      fe = false;
    }
    o << "]}";
    first = false;
  }
  o << "]}";
  return o.str();
}

}  // namespace raftstore::runtime
