#include "node_host.h"

#include <chrono>
#include <future>
#include <random>
#include <sstream>

#include "codec.h"

namespace raftstore::runtime {

using core::Envelope;

namespace {

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

bool is_response(const core::Payload& p) {
  return std::holds_alternative<core::RequestVoteResponse>(p) ||
         std::holds_alternative<core::AppendEntriesResponse>(p) ||
         std::holds_alternative<core::InstallSnapshotResponse>(p) ||
         std::holds_alternative<core::TimeoutNowResponse>(p) ||
         std::holds_alternative<core::ReadIndexResponse>(p);
}

constexpr int32_t kENOENT = 2;
constexpr int32_t kEINVAL = 22;

}  // namespace

// --- Node ------------------------------------------------------------------------------

Node::Node(Key, NodeHost& host, NodeOptions opt, ApplyFn apply)
    : host_(host), opt_(std::move(opt)), apply_(std::move(apply)) {}

storage::Status Node::open() {
  const std::string& dir = opt_.data_dir;
  if (auto st = storage::DirLock::acquire(dir, &lock_); !st.ok()) return st;
  meta_ = std::make_unique<storage::MetaStore>(dir + "/raft_meta");
  core::HardState hs;
  if (auto st = meta_->load(&hs); !st.ok()) return st;
  if (auto st = storage::SnapshotStore::open(dir + "/snapshot", &snapshots_); !st.ok()) return st;
  if (auto st = storage::SegmentLog::open(dir + "/log", {}, &log_); !st.ok()) return st;
  core::Boot boot;
  if (auto st = storage::make_boot(hs, *snapshots_, *log_, opt_.initial_conf, &boot); !st.ok())
    return st;
  core::Options o = opt_.raft;
  o.group = opt_.group;
  o.self = opt_.self;
  o.random = [rng = std::mt19937_64(std::random_device{}())]() mutable { return rng(); };
  core_ = std::make_unique<core::Raft>(std::move(o), std::move(boot), now_ms());
  ticker_ = std::make_unique<asio::steady_timer>(host_.io());
  drain();
  tick();
  return storage::Status{};
}

void Node::tick() {
  if (failed_) return;
  core_->tick(now_ms());
  drain();
  // Requests the core dropped (invalid or stale) are never answered; forget them.
  while (inbound_.size() > 4096) inbound_.erase(inbound_.begin());
  ticker_->expires_after(std::chrono::milliseconds(opt_.tick_ms));
  ticker_->async_wait([self = shared_from_this()](std::error_code ec) {
    if (!ec) self->tick();
  });
}

void Node::fail(const std::string& why) {
  // A replica that cannot persist stops rather than acknowledge what it did not store.
  failed_ = true;
  for (auto& [index, p] : proposals_) p.second(core::Status{core::Code::Shutdown, why}, index);
  proposals_.clear();
  if (ticker_) ticker_->cancel();
}

void Node::drain() {
  while (!failed_ && core_->has_ready()) {
    core::Ready rd = core_->take_ready();
    if (rd.hard_state) {
      if (auto st = meta_->save(*rd.hard_state); !st.ok()) return fail(st.message);
      core_->meta_persisted(rd.meta_seq);
    }
    if (rd.log_reset || rd.log_write || rd.compact_before) {
      if (auto st = log_->apply(rd); !st.ok()) return fail(st.message);
      if (rd.log_write && !rd.log_write->entries.empty()) core_->log_persisted(rd.log_write->seq);
    }
    for (auto& m : rd.messages) send(std::move(m));
    if (!rd.committed.empty()) {
      apply_(rd.committed);
      for (const auto& e : rd.committed) {
        auto it = proposals_.find(e.index);
        if (it == proposals_.end()) continue;
        bool mine = it->second.first == e.term;
        it->second.second(mine ? core::Status{}
                               : core::Status{core::Code::LeaderChanged, "entry was overwritten"},
                          e.index);
        proposals_.erase(it);
      }
    }
    if (rd.install_snapshot) core_->snapshot_installed(rd.install_snapshot->meta, false);
  }
  std::lock_guard<std::mutex> lock(status_mu_);
  status_ = core_->status();
}

void Node::send(Envelope env) {
  rpc::WireMessage w = rpc::encode(env);
  if (is_response(env.payload)) {
    auto it = inbound_.find(env.rpc_id);
    if (it == inbound_.end()) return;
    it->second(w.error_code, w.error_code ? "busy" : "", w.payload, w.attachment);
    inbound_.erase(it);
    return;
  }
  auto& ch = channels_[env.to];
  if (!ch) {
    asio::ip::tcp::endpoint at(asio::ip::address_v4(env.to.ip), env.to.port);
    ch = rpc::Channel::create(host_.io(), at);
  }
  uint32_t timeout = static_cast<uint32_t>(opt_.raft.election_timeout_ms);
  ch->call(w.service, w.method, std::move(w.payload), std::move(w.attachment), timeout,
           [self = shared_from_this(), req = std::move(env)](int32_t code, const std::string&,
                                                             rpc::Frame f) {
             if (code != 0 || self->failed_) return;  // lost: the core resends
             auto resp = rpc::decode_response(req, f.meta.response().error_code(), f.payload);
             if (!resp) return;
             self->core_->step(*resp, now_ms());
             self->drain();
           });
}

void Node::on_request(Envelope env, rpc::Server::Respond respond) {
  if (failed_) return respond(kEINVAL, "node is not active", "", "");  // as braft
  env.rpc_id = next_inbound_++;
  inbound_[env.rpc_id] = std::move(respond);
  core_->step(env, now_ms());
  drain();
}

void Node::propose(std::string data, ProposeDone done) {
  asio::post(host_.io(), [self = shared_from_this(), data = std::move(data),
                          done = std::move(done)]() mutable {
    if (self->failed_) return done(core::Status{core::Code::Shutdown, "stopped"}, 0);
    auto res = self->core_->propose(std::make_shared<const std::string>(std::move(data)), now_ms());
    if (!res.status.ok()) return done(res.status, 0);
    self->proposals_[res.index] = {res.term, std::move(done)};
    self->drain();
  });
}

core::NodeStatus Node::status() {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_;
}

// --- NodeHost --------------------------------------------------------------------------

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
  host->port_ = host->server_->port();
  host->thread_ = std::thread([h] { h->io_.run(); });
  *out = std::move(host);
  return storage::Status{};
}

NodeHost::~NodeHost() {
  if (server_) server_->stop();
  work_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

storage::Status NodeHost::add_node(NodeOptions opt, ApplyFn apply, std::shared_ptr<Node>* out) {
  std::promise<storage::Status> result;
  asio::post(io_, [&] {
    auto key = std::make_pair(opt.group, opt.self);
    if (nodes_.count(key)) {
      result.set_value({storage::Code::InvalidArgument,
                        "node " + opt.self.to_string() + " of group " + opt.group + " exists"});
      return;
    }
    auto node = std::make_shared<Node>(Node::Key{}, *this, std::move(opt), std::move(apply));
    auto st = node->open();
    if (st.ok()) nodes_[key] = *out = node;
    result.set_value(st);
  });
  return result.get_future().get();
}

void NodeHost::on_request(rpc::Frame frame, rpc::Server::Respond respond) {
  const auto& req = frame.meta.request();
  std::string service = req.service_name();
  if (service.rfind("braft.", 0) == 0) service = service.substr(6);
  if (service.rfind("raftstore.", 0) == 0) service = service.substr(10);
  if (service != "RaftService" && service != "RaftExtService")
    return respond(rpc::kENOSERVICE, "Fail to find service=" + req.service_name(), "", "");
  auto env =
      rpc::decode_request(req.service_name(), req.method_name(), frame.payload, frame.attachment);
  if (!env) return respond(rpc::kEREQUEST, "bad request for " + req.method_name(), "", "");
  auto it = nodes_.find({env->group, env->to});
  if (it == nodes_.end())
    return respond(kENOENT, "Fail to find node " + env->to.to_string() + " in group " + env->group,
                   "", "");
  it->second->on_request(std::move(*env), std::move(respond));
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
      << "\ncommitted_index: " << s.commit_index << "\napplied_index: " << s.applied_index << "\n";
    for (const auto& p : s.peers)
      o << "replicator " << p.id.to_string() << ": match_index=" << p.match_index
        << " next_index=" << p.next_index << " state=" << p.state << "\n";
    o << "\n";
  }
  return o.str();
}

}  // namespace raftstore::runtime
