// The host: its thread and port, its nodes, and routing each request to its service.

#include <future>

#include "codec.h"
#include "node_host_internal.h"

namespace raftstore::runtime {

storage::Status NodeHost::start(const std::string& ip, uint16_t port,
                                std::unique_ptr<NodeHost>* out, HostOptions options) {
  auto host = std::make_unique<NodeHost>(Key{});
  NodeHost* h = host.get();
  std::string error;
  host->access_ = AccessPolicy::parse(options.admin_allow, &error);
  if (!host->access_) return storage::Status{storage::Code::InvalidArgument, error};
  const rpc::TlsFiles& t = options.tls;
  if (!t.ca.empty() || !t.cert.empty() || !t.key.empty()) {
    host->tls_ = rpc::TlsConfig::load(t, &error);
    if (!host->tls_) return storage::Status{storage::Code::InvalidArgument, error};
  }
  host->ip_ = ip;
  try {
    asio::ip::tcp::endpoint at(asio::ip::make_address(ip), port);
    host->server_ = rpc::Server::start(
        host->io_, at,
        [h](rpc::Frame f, rpc::Server::Respond r) { h->on_request(std::move(f), r); },
        [h](const std::string& path) { return h->http(path); }, rpc::kDefaultMaxBody, host->tls_);
  } catch (const std::exception& e) {
    return storage::Status{storage::Code::Io,
                           "listen on " + ip + ":" + std::to_string(port) + ": " + e.what()};
  }
  host->server_->on_close([h](uint64_t connection) {
    auto it = h->connection_routes_.find(connection);
    if (it == h->connection_routes_.end()) return;
    for (const auto& [group, to, from] : it->second)
      if (auto node = h->nodes_.find({group, to}); node != h->nodes_.end())
        node->second->replica().peer_unreachable(from);
    h->connection_routes_.erase(it);
  });
  host->port_ = host->server_->port();
  host->sampler_ = std::make_unique<asio::steady_timer>(host->io_);
  h->sample_lag();
  host->thread_ = std::thread([h] { h->io_.run(); });
  *out = std::move(host);
  return storage::Status{};
}

NodeHost::~NodeHost() {
  gate_->close();
  if (thread_.joinable()) {
    std::promise<void> stopped;
    asio::post(io_, [&] {
      for (auto& [key, node] : nodes_) node->stop();
      sampler_.reset();  // io objects must not outlive the io_context
      stopped.set_value();
    });
    stopped.get_future().wait();
  }
  if (server_) server_->stop();
  work_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

storage::Status NodeHost::add_node(NodeOptions opt, StateMachine sm, std::shared_ptr<Node>* out) {
  std::promise<storage::Status> result;
  asio::post(io_, [&] {
    auto key = std::make_pair(opt.group, opt.self);
    if (nodes_.count(key)) {
      result.set_value({storage::Code::InvalidArgument,
                        "node " + opt.self.to_string() + " of group " + opt.group + " exists"});
      return;
    }
    auto node = std::make_shared<Node>(Node::Key{}, *this, std::move(opt), std::move(sm));
    auto st = node->open();
    if (st.ok()) nodes_[key] = *out = node;
    result.set_value(st);
  });
  return result.get_future().get();
}

bool NodeHost::remove_node(const std::string& group, const core::PeerId& self) {
  std::promise<bool> removed;
  asio::post(io_, [&] {
    auto it = nodes_.find({group, self});
    if (it == nodes_.end()) return removed.set_value(false);
    it->second->stop();
    nodes_.erase(it);
    removed.set_value(true);
  });
  return removed.get_future().get();
}

void NodeHost::add_service(const std::string& full_name, rpc::Server::Handler handler) {
  std::promise<void> done;
  asio::post(io_, [&] {
    services_[full_name] = std::move(handler);
    done.set_value();
  });
  done.get_future().wait();
}

void NodeHost::on_request(rpc::Frame frame, rpc::Server::Respond respond) {
  const auto& req = frame.meta.request();
  std::string service = req.service_name();
  if (service.rfind("braft.", 0) == 0) service = service.substr(6);
  if (service.rfind("raftstore.", 0) == 0) service = service.substr(10);
  if (service == "CliService") {
    // get_leader only reads: braft_cli and clients ask it of any replica.
    if (req.method_name() != "get_leader" && !admitted(frame, service, respond)) return;
    return on_cli(frame, respond);
  }
  if (service == "FileService") return on_get_file(frame, respond);
  if (service == "ForwardService") {
    if (!admitted(frame, service, respond)) return;
    return on_forward(frame, respond);
  }
  if (service != "RaftService" && service != "RaftExtService") {
    auto it = services_.find(req.service_name());
    if (it == services_.end())
      return respond(rpc::kENOSERVICE, "Fail to find service=" + req.service_name(), "", "");
    return it->second(std::move(frame), std::move(respond));
  }
  auto env =
      rpc::decode_request(req.service_name(), req.method_name(), frame.payload, frame.attachment);
  if (!env) return respond(rpc::kEREQUEST, "bad request for " + req.method_name(), "", "");
  auto it = nodes_.find({env->group, env->to});
  if (it == nodes_.end())
    return respond(kENOENT, "Fail to find node " + env->to.to_string() + " in group " + env->group,
                   "", "");
  auto& routes = connection_routes_[frame.connection];
  if (routes.size() < 64 && std::none_of(routes.begin(), routes.end(), [&](const Route& r) {
        return std::get<2>(r) == env->from && std::get<1>(r) == env->to &&
               std::get<0>(r) == env->group;
      }))
    routes.emplace_back(env->group, env->to, env->from);
  it->second->on_request(std::move(*env), std::move(respond));
}

bool NodeHost::admitted(const rpc::Frame& frame, const std::string& service,
                        const rpc::Server::Respond& respond) {
  bool ok = access_->allows(frame.remote, [this](uint32_t ip) {
    for (const auto& [key, node] : nodes_) {
      const core::Configuration& c = node->replica().core().conf();
      for (const auto* set : {&c.peers, &c.old_peers, &c.learners})
        for (const auto& p : *set)
          if (p.ip == ip) return true;
    }
    return false;
  });
  if (ok) return true;
  ++(service == "CliService" ? denied_cli_ : denied_forward_);
  respond(kEPERM,
          error_text(kEPERM, service + "/" + frame.meta.request().method_name() +
                                 " is not allowed from " + frame.remote.to_string() +
                                 " (allowed: " + access_->to_string() + ")"),
          "", "");
  return false;
}

std::vector<MetricFamily> NodeHost::metrics() const {
  const rpc::ServerStats& st = server_->stats();
  auto one = [](const char* name, const char* type, const char* help, double v) {
    return MetricFamily{name, help, type, {{"", {}, v}}};
  };
  std::vector<MetricFamily> out;
  out.push_back(one("raftstore_port_connections_total", "counter", "Connections this port accepted",
                    static_cast<double>(st.connections)));
  out.push_back(one("raftstore_port_requests_total", "counter",
                    "baidu_std requests this port received", static_cast<double>(st.requests)));
  out.push_back(one("raftstore_port_bad_frames_total", "counter",
                    "Connections closed for a malformed or oversized frame",
                    static_cast<double>(st.bad_frames)));
  out.push_back(one("raftstore_port_http_requests_total", "counter",
                    "HTTP requests this port answered", static_cast<double>(st.http_requests)));
  out.push_back(one("raftstore_port_tls_refused_total", "counter",
                    "Connections closed because their TLS handshake failed (no certificate, or "
                    "one the CA did not sign)",
                    static_cast<double>(st.tls_refused)));
  out.push_back(one("raftstore_port_tls_reloads_total", "counter",
                    "Times the port loaded changed TLS files (certificate rotation)",
                    tls_ ? static_cast<double>(tls_->reloads()) : 0));
  out.push_back(one("raftstore_port_tls_reload_failures_total", "counter",
                    "Times changed TLS files could not be loaded (the previous ones stay)",
                    tls_ ? static_cast<double>(tls_->reload_failures()) : 0));
  MetricFamily denied{"raftstore_access_denied_total",
                      "Calls refused with EPERM by the access list, by service",
                      "counter",
                      {}};
  denied.samples.push_back({"", {{"service", "CliService"}}, static_cast<double>(denied_cli_)});
  denied.samples.push_back(
      {"", {{"service", "ForwardService"}}, static_cast<double>(denied_forward_)});
  out.push_back(std::move(denied));
  for (auto& f : out)
    for (auto& smp : f.samples)
      smp.labels.insert(smp.labels.begin(), {"port", std::to_string(port_)});
  return out;
}

}  // namespace raftstore::runtime
