// The host: its thread and port, its nodes, and routing each request to its service.

#include <future>

#include "codec.h"
#include "node_host_internal.h"

namespace raftstore::runtime {

storage::Status NodeHost::start(const std::string& ip, uint16_t port,
                                std::unique_ptr<NodeHost>* out) {
  auto host = std::make_unique<NodeHost>(Key{});
  NodeHost* h = host.get();
  try {
    asio::ip::tcp::endpoint at(asio::ip::make_address(ip), port);
    host->server_ = rpc::Server::start(
        host->io_, at,
        [h](rpc::Frame f, rpc::Server::Respond r) { h->on_request(std::move(f), r); },
        [h](const std::string& path) { return h->http_status(path); });
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
  if (service == "CliService") return on_cli(frame, respond);
  if (service == "FileService") return on_get_file(frame, respond);
  if (service == "ForwardService") return on_forward(frame, respond);
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

}  // namespace raftstore::runtime
