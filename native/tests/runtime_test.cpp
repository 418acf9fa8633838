// Real replicas over loopback TCP in one process: election, replication, a leader's host
// destroyed and restarted from its data directory, two groups on one port, /raft_stat.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "cli.pb.h"
#include "codec.h"
#include "node_host.h"

namespace raftstore::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using core::PeerId;

struct Applied {
  std::mutex mu;
  std::vector<std::string> data;  // DATA entries in apply order
  std::vector<std::string> get() {
    std::lock_guard<std::mutex> l(mu);
    return data;
  }
};

class RuntimeTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/runtime_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    for (int i = 0; i < 3; ++i) AddHost();
    for (uint16_t p : ports_) core::insert_sorted(conf_.peers, Peer(p));
  }
  void TearDown() override {
    nodes_.clear();
    hosts_.clear();
    fs::remove_all(root_);
  }
  static PeerId Peer(uint16_t port) { return PeerId{0x7f000001u, port, 0, 0}; }

  // A host on a free port; returns its index.
  int AddHost() {
    std::unique_ptr<NodeHost> h;
    EXPECT_TRUE(NodeHost::start("127.0.0.1", 0, &h).ok());
    ports_.push_back(h->port());
    hosts_.push_back(std::move(h));
    return static_cast<int>(hosts_.size()) - 1;
  }

  // Node i of `group`, started with the group's initial configuration.
  std::shared_ptr<Node> Start(int i, const std::string& group, Applied* applied) {
    return Start(i, group, applied, conf_);
  }
  // A replica on a new host that starts with no configuration, waiting to be added.
  std::shared_ptr<Node> StartNewcomer(const std::string& group, Applied* applied) {
    return Start(AddHost(), group, applied, core::Configuration{});
  }
  std::shared_ptr<Node> Start(int i, const std::string& group, Applied* applied,
                              const core::Configuration& initial) {
    NodeOptions o;
    o.group = group;
    o.self = Peer(ports_[i]);
    o.data_dir = (root_ / group / std::to_string(i)).string();
    o.initial_conf = initial;
    o.raft.election_timeout_ms = 300;
    o.raft.max_election_delay_ms = 300;
    std::shared_ptr<Node> node;
    auto st = hosts_[i]->add_node(
        o,
        [applied](const std::vector<core::Entry>& es) {
          std::lock_guard<std::mutex> l(applied->mu);
          for (const auto& e : es)
            if (e.type == core::EntryType::Data) applied->data.push_back(*e.data);
        },
        &node);
    EXPECT_TRUE(st.ok()) << st.message;
    return node;
  }

  // The node that is leader (and agreed on by itself), waiting up to `within`.
  static int WaitLeader(const std::vector<std::shared_ptr<Node>>& nodes,
                        std::chrono::milliseconds within) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      for (size_t i = 0; i < nodes.size(); ++i)
        if (nodes[i] && nodes[i]->status().role == core::Role::Leader) return static_cast<int>(i);
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

  static core::Status Propose(Node& n, const std::string& data) {
    std::promise<core::Status> done;
    n.propose(data, [&](core::Status st, uint64_t) { done.set_value(st); });
    return done.get_future().get();
  }

  static bool WaitApplied(Applied& a, size_t n, std::chrono::milliseconds within) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      if (a.get().size() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  fs::path root_;
  std::vector<std::unique_ptr<NodeHost>> hosts_;
  std::vector<uint16_t> ports_;
  core::Configuration conf_;
  std::vector<std::shared_ptr<Node>> nodes_;
};

TEST_F(RuntimeTest, ElectsReplicatesSurvivesLeaderLossAndCatchesUp) {
  Applied applied[3];
  for (int i = 0; i < 3; ++i) nodes_.push_back(Start(i, "g", &applied[i]));
  int leader = WaitLeader(nodes_, 5s);
  ASSERT_GE(leader, 0);
  EXPECT_EQ(nodes_[leader]->status().term, 2u);  // a new replica starts at term 1, as braft
  for (int k = 0; k < 50; ++k) {
    auto st = Propose(*nodes_[leader], "a" + std::to_string(k));
    ASSERT_TRUE(st.ok()) << st.message;
  }
  for (auto& a : applied) ASSERT_TRUE(WaitApplied(a, 50, 5s));
  EXPECT_EQ(applied[0].get(), applied[1].get());
  EXPECT_EQ(applied[1].get(), applied[2].get());

  // The leader's whole host goes away (sockets closed, nothing more written).
  nodes_[leader].reset();
  hosts_[leader].reset();
  int next = WaitLeader(nodes_, 5s);
  ASSERT_GE(next, 0);
  ASSERT_NE(next, leader);
  for (int k = 0; k < 20; ++k) ASSERT_TRUE(Propose(*nodes_[next], "b" + std::to_string(k)).ok());

  // It restarts from its data directory on the same port and catches up.
  std::unique_ptr<NodeHost> h;
  ASSERT_TRUE(NodeHost::start("127.0.0.1", ports_[leader], &h).ok());
  hosts_[leader] = std::move(h);
  Applied again;
  nodes_[leader] = Start(leader, "g", &again);
  ASSERT_TRUE(WaitApplied(again, 70, 10s));
  EXPECT_EQ(again.get(), applied[next].get());
}

TEST_F(RuntimeTest, TwoGroupsShareEachPort) {
  Applied a[3], b[3];
  std::vector<std::shared_ptr<Node>> ga, gb;
  for (int i = 0; i < 3; ++i) {
    ga.push_back(Start(i, "alpha", &a[i]));
    gb.push_back(Start(i, "beta", &b[i]));
  }
  int la = WaitLeader(ga, 5s), lb = WaitLeader(gb, 5s);
  ASSERT_GE(la, 0);
  ASSERT_GE(lb, 0);
  ASSERT_TRUE(Propose(*ga[la], "to-alpha").ok());
  ASSERT_TRUE(Propose(*gb[lb], "to-beta").ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(WaitApplied(a[i], 1, 5s));
    ASSERT_TRUE(WaitApplied(b[i], 1, 5s));
    EXPECT_EQ(a[i].get(), std::vector<std::string>{"to-alpha"});
    EXPECT_EQ(b[i].get(), std::vector<std::string>{"to-beta"});
  }
}

TEST_F(RuntimeTest, DataDirectoryIsLocked) {
  Applied a, b;
  nodes_.push_back(Start(0, "g", &a));
  NodeOptions o;
  o.group = "g2";
  o.self = Peer(ports_[1]);
  o.data_dir = (root_ / "g" / "0").string();  // node 0's directory
  o.initial_conf = conf_;
  std::shared_ptr<Node> node;
  auto st = hosts_[1]->add_node(
      o, [](const std::vector<core::Entry>&) {}, &node);
  EXPECT_EQ(st.code, storage::Code::Locked) << st.message;
}

TEST_F(RuntimeTest, RaftStatAndUnknownGroups) {
  Applied applied[3];
  for (int i = 0; i < 3; ++i) nodes_.push_back(Start(i, "g", &applied[i]));
  int leader = WaitLeader(nodes_, 5s);
  ASSERT_GE(leader, 0);

  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), ports_[leader]));
  asio::write(s, asio::buffer(std::string("GET /raft_stat HTTP/1.1\r\n\r\n")));
  std::string page;
  std::error_code ec;
  char buf[4096];
  while (!ec) page.append(buf, s.read_some(asio::buffer(buf), ec));
  EXPECT_NE(page.find("state: leader"), std::string::npos) << page;
  EXPECT_NE(page.find("replicator 127.0.0.1:"), std::string::npos) << page;

  // A request for a group this port does not host: ENOENT, as braft.
  std::promise<int32_t> code;
  auto ch = rpc::Channel::create(
      io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), ports_[0]));
  core::Envelope env{"nope", Peer(ports_[1]), Peer(ports_[0]), 1,
                     core::TimeoutNowRequest{5, false}};
  rpc::WireMessage w = rpc::encode(env);
  ch->call(w.service, w.method, w.payload, w.attachment, 2000,
           [&](int32_t c, const std::string&, rpc::Frame f) {
             code.set_value(c ? c : f.meta.response().error_code());
             io.stop();  // the channel keeps reading otherwise
           });
  io.run();
  EXPECT_EQ(code.get_future().get(), 2);
}

// --- CliService, as braft_cli drives it ----------------------------------------------------

struct CliReply {
  int32_t code = 0;  // transport or RPC error
  std::string text;
  std::string payload;
};

CliReply Cli(uint16_t port, const std::string& method, const google::protobuf::Message& req) {
  asio::io_context io;
  auto ch =
      rpc::Channel::create(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  CliReply out;
  ch->call("braft.CliService", method, req.SerializeAsString(), "", 10000,
           [&](int32_t c, const std::string& t, rpc::Frame f) {
             out.code = c ? c : f.meta.response().error_code();
             out.text = c ? t : f.meta.response().error_text();
             out.payload = f.payload;
             io.stop();
           });
  io.run();
  return out;
}

TEST_F(RuntimeTest, CliServiceManagesTheGroup) {
  Applied applied[4];
  for (int i = 0; i < 3; ++i) nodes_.push_back(Start(i, "g", &applied[i]));
  int leader = WaitLeader(nodes_, 5s);
  ASSERT_GE(leader, 0);
  std::string leader_id = Peer(ports_[leader]).to_string();

  // get_leader, with and without peer_id, at every node.
  for (int i = 0; i < 3; ++i) {
    braft::GetLeaderRequest req;
    req.set_group_id("g");
    CliReply r = Cli(ports_[i], "get_leader", req);
    ASSERT_EQ(r.code, 0) << r.text;
    braft::GetLeaderResponse resp;
    ASSERT_TRUE(resp.ParseFromString(r.payload));
    EXPECT_EQ(resp.leader_id(), leader_id);
    req.set_peer_id(Peer(ports_[i]).to_string());
    r = Cli(ports_[i], "get_leader", req);
    ASSERT_EQ(r.code, 0) << r.text;
  }

  // add_peer: a fourth replica, started with no configuration, joins and catches up.
  nodes_.push_back(StartNewcomer("g", &applied[3]));
  ASSERT_TRUE(Propose(*nodes_[leader], "before").ok());
  braft::AddPeerRequest add;
  add.set_group_id("g");
  add.set_leader_id(leader_id);
  add.set_peer_id(Peer(ports_[3]).to_string());
  CliReply r = Cli(ports_[leader], "add_peer", add);
  ASSERT_EQ(r.code, 0) << r.text;
  braft::AddPeerResponse added;
  ASSERT_TRUE(added.ParseFromString(r.payload));
  EXPECT_EQ(added.old_peers_size(), 3);
  EXPECT_EQ(added.new_peers_size(), 4);
  ASSERT_TRUE(Propose(*nodes_[leader], "after").ok());
  ASSERT_TRUE(WaitApplied(applied[3], 2, 5s));
  EXPECT_EQ(applied[3].get(), (std::vector<std::string>{"before", "after"}));

  // add_peer at a follower: EPERM, braft's "Not leader".
  int follower = (leader + 1) % 3;
  add.set_leader_id(Peer(ports_[follower]).to_string());
  EXPECT_EQ(Cli(ports_[follower], "add_peer", add).code, 1);

  // remove_peer takes it out again.
  braft::RemovePeerRequest remove;
  remove.set_group_id("g");
  remove.set_leader_id(leader_id);
  remove.set_peer_id(Peer(ports_[3]).to_string());
  r = Cli(ports_[leader], "remove_peer", remove);
  ASSERT_EQ(r.code, 0) << r.text;
  braft::RemovePeerResponse removed;
  ASSERT_TRUE(removed.ParseFromString(r.payload));
  EXPECT_EQ(removed.new_peers_size(), 3);

  // transfer_leader to a follower: it leads soon after.
  braft::TransferLeaderRequest transfer;
  transfer.set_group_id("g");
  transfer.set_leader_id(leader_id);
  transfer.set_peer_id(Peer(ports_[follower]).to_string());
  r = Cli(ports_[leader], "transfer_leader", transfer);
  ASSERT_EQ(r.code, 0) << r.text;
  auto end = std::chrono::steady_clock::now() + 5s;
  while (nodes_[follower]->status().role != core::Role::Leader &&
         std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(nodes_[follower]->status().role, core::Role::Leader);

  // Errors as braft gives them.
  braft::GetLeaderRequest nope;
  nope.set_group_id("nope");
  r = Cli(ports_[0], "get_leader", nope);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.text.find("No nodes in group nope"), std::string::npos) << r.text;
  EXPECT_EQ(Cli(ports_[0], "get_leaderz", nope).code, rpc::kENOMETHOD);
}

// change_peers with several changes goes through a joint configuration; a leader that is
// not in the new configuration steps down once it commits.
TEST_F(RuntimeTest, ChangePeersReplacesTwoReplicas) {
  Applied applied[5];
  for (int i = 0; i < 3; ++i) nodes_.push_back(Start(i, "g", &applied[i]));
  int leader = WaitLeader(nodes_, 5s);
  ASSERT_GE(leader, 0);
  ASSERT_TRUE(Propose(*nodes_[leader], "old").ok());
  for (int i = 3; i < 5; ++i) nodes_.push_back(StartNewcomer("g", &applied[i]));
  // Keep the leader, replace the other two.
  braft::ChangePeersRequest change;
  change.set_group_id("g");
  change.set_leader_id(Peer(ports_[leader]).to_string());
  for (int i : {leader, 3, 4}) change.add_new_peers(Peer(ports_[i]).to_string());
  CliReply r = Cli(ports_[leader], "change_peers", change);
  ASSERT_EQ(r.code, 0) << r.text;
  braft::ChangePeersResponse resp;
  ASSERT_TRUE(resp.ParseFromString(r.payload));
  EXPECT_EQ(resp.old_peers_size(), 3);
  EXPECT_EQ(resp.new_peers_size(), 3);
  ASSERT_TRUE(Propose(*nodes_[leader], "new").ok());
  for (int i : {3, 4}) {
    ASSERT_TRUE(WaitApplied(applied[i], 2, 5s));
    EXPECT_EQ(applied[i].get(), (std::vector<std::string>{"old", "new"}));
  }
  // The newcomers end in the new configuration, out of the joint phase.
  auto conf = nodes_[3]->status().conf;
  EXPECT_EQ(conf.peers.size(), 3u);
  EXPECT_TRUE(conf.old_peers.empty());
}

}  // namespace
}  // namespace raftstore::runtime
