// Real replicas over loopback TCP in one process: election, replication, a leader's host
// destroyed and restarted from its data directory, two groups on one port, /raft_stat.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "cli.pb.h"
#include "codec.h"
#include "node_host.h"

namespace raftstore::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using core::PeerId;

// What a test replica applied. The state is shared with the state machine's callbacks, so
// a replica still running after the test body's locals are gone writes into live memory.
struct Applied {
  struct State {
    std::mutex mu;
    std::vector<std::string> data;  // DATA entries in apply order
  };
  std::shared_ptr<State> state = std::make_shared<State>();

  std::vector<std::string> get() const { return copy(*state); }
  static std::vector<std::string> copy(State& s) {
    std::lock_guard<std::mutex> l(s.mu);
    return s.data;
  }
  // A state machine over `data`; its snapshot is one file with a line per entry.
  StateMachine machine() const {
    StateMachine sm;
    sm.apply = [s = state](const std::vector<core::Entry>& es) {
      std::lock_guard<std::mutex> l(s->mu);
      for (const auto& e : es)
        if (e.type == core::EntryType::Data) s->data.push_back(*e.data);
    };
    sm.save = [s = state](const std::string& dir, StateMachine::SaveDone done) {
      // Captured now, written on another thread (as an application with a large state).
      std::thread([data = copy(*s), dir, done = std::move(done)] {
        std::ofstream out(dir + "/entries");
        for (const auto& d : data) out << d << "\n";
        out.close();
        done(out ? storage::Status{} : storage::Status{storage::Code::Io, "write failed"});
      }).detach();
    };
    sm.load = [s = state](const std::string& dir) {
      std::ifstream in(dir + "/entries");
      if (!in) return storage::Status{storage::Code::CorruptLog, "no entries file"};
      std::vector<std::string> loaded;
      for (std::string line; std::getline(in, line);) loaded.push_back(line);
      std::lock_guard<std::mutex> l(s->mu);
      s->data = std::move(loaded);
      return storage::Status{};
    };
    return sm;
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

  // A host on a free port below the kernel's ephemeral range; returns its index. A port in that
  // range could meanwhile become the source port of a peer's connection, and RestartHost would
  // then fail to bind it.
  int AddHost() {
    static std::mt19937 rng(std::random_device{}());
    int ephemeral_low = 32768;
    std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low;
    std::uniform_int_distribution<int> pick(10000, ephemeral_low - 1);
    std::unique_ptr<NodeHost> h;
    for (int attempt = 0; attempt < 100 && !h; ++attempt)
      if (!NodeHost::start("127.0.0.1", static_cast<uint16_t>(pick(rng)), &h).ok()) h.reset();
    // gtest reports an exception escaping a test as that test's failure.
    if (!h) throw std::runtime_error("no free port below " + std::to_string(ephemeral_low));
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
  // The options of replica i of `group` (on host i, in its own directory).
  NodeOptions OptionsFor(int i, const std::string& group, const core::Configuration& initial) {
    NodeOptions o;
    o.group = group;
    o.self = Peer(ports_[i]);
    o.data_dir = (root_ / group / std::to_string(i)).string();
    o.initial_conf = initial;
    o.raft.election_timeout_ms = 300;
    o.raft.max_election_delay_ms = 300;
    return o;
  }
  std::shared_ptr<Node> Start(int i, const std::string& group, Applied* applied,
                              const core::Configuration& initial) {
    NodeOptions o = OptionsFor(i, group, initial);
    o.forward_proposals = forward_;
    if (stamp_) {
      o.stamp_leader_time = true;
      o.wall_clock_ms = [i] { return 1000000ull * (i + 1); };  // a different clock per node
    }
    std::shared_ptr<Node> node;
    auto st = hosts_[i]->add_node(o, applied->machine(), &node);
    EXPECT_TRUE(st.ok()) << st.message;
    return node;
  }

  // Replicas 0-2 of group "g" (applying into applied[0..2]); the leader's index, or -1.
  int StartThree(Applied* applied) {
    for (int i = 0; i < 3; ++i) nodes_.push_back(Start(i, "g", &applied[i]));
    return WaitLeader(nodes_, 5s);
  }

  // Host i goes away (sockets closed, nothing more written) and comes back on its port.
  void StopHost(int i) {
    nodes_[i].reset();
    hosts_[i].reset();
  }
  void RestartHost(int i) {
    std::unique_ptr<NodeHost> h;
    ASSERT_TRUE(NodeHost::start("127.0.0.1", ports_[i], &h).ok());
    hosts_[i] = std::move(h);
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

  static bool WaitKnowsLeader(Node& n, std::chrono::milliseconds within) {
    auto end = std::chrono::steady_clock::now() + within;
    while (n.status().leader.empty()) {
      if (std::chrono::steady_clock::now() >= end) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
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
  bool forward_ = false;
  bool stamp_ = false;
  std::vector<std::unique_ptr<NodeHost>> hosts_;
  std::vector<uint16_t> ports_;
  core::Configuration conf_;
  std::vector<std::shared_ptr<Node>> nodes_;
};

TEST_F(RuntimeTest, ElectsReplicatesSurvivesLeaderLossAndCatchesUp) {
  Applied applied[3];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  EXPECT_EQ(nodes_[leader]->status().term, 2u);  // a new replica starts at term 1, as braft
  for (int k = 0; k < 50; ++k) {
    auto st = Propose(*nodes_[leader], "a" + std::to_string(k));
    ASSERT_TRUE(st.ok()) << st.message;
  }
  for (auto& a : applied) ASSERT_TRUE(WaitApplied(a, 50, 5s));
  EXPECT_EQ(applied[0].get(), applied[1].get());
  EXPECT_EQ(applied[1].get(), applied[2].get());

  StopHost(leader);
  int next = WaitLeader(nodes_, 5s);
  ASSERT_GE(next, 0);
  ASSERT_NE(next, leader);
  for (int k = 0; k < 20; ++k) ASSERT_TRUE(Propose(*nodes_[next], "b" + std::to_string(k)).ok());

  // It restarts from its data directory on the same port and catches up.
  RestartHost(leader);
  Applied again;
  nodes_[leader] = Start(leader, "g", &again);
  ASSERT_TRUE(WaitApplied(again, 70, 10s));
  EXPECT_EQ(again.get(), applied[next].get());
}

// Four writers keep proposing while the leader's host is torn down mid-stream: every write
// the old or the new leader acknowledged is applied, exactly once, on both survivors.
TEST_F(RuntimeTest, LeaderLossUnderLoadLosesNoAcknowledgedWrite) {
  Applied applied[3];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  std::mutex mu;
  std::vector<std::string> acked;
  std::atomic<bool> stop{false};
  std::shared_ptr<Node> target = nodes_[leader];  // under mu
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w)
    writers.emplace_back([&, w] {
      for (int k = 0; !stop; ++k) {
        std::string data = "w" + std::to_string(w) + "-" + std::to_string(k);
        std::shared_ptr<Node> n;
        {
          std::lock_guard<std::mutex> l(mu);
          n = target;
        }
        if (!n || !Propose(*n, data).ok()) {
          std::this_thread::sleep_for(5ms);
          continue;
        }
        std::lock_guard<std::mutex> l(mu);
        acked.push_back(data);
      }
    });
  std::this_thread::sleep_for(300ms);
  {
    std::lock_guard<std::mutex> l(mu);
    target.reset();
  }
  StopHost(leader);
  int next = WaitLeader(nodes_, 5s);
  ASSERT_GE(next, 0);
  {
    std::lock_guard<std::mutex> l(mu);
    target = nodes_[next];
  }
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& t : writers) t.join();
  ASSERT_FALSE(acked.empty());
  auto committed = applied[next].get();
  for (int i = 0; i < 3; ++i) {
    if (i == leader) continue;
    ASSERT_TRUE(WaitApplied(applied[i], committed.size(), 5s));
    auto got = applied[i].get();
    std::set<std::string> seen(got.begin(), got.end());
    EXPECT_EQ(seen.size(), got.size()) << "an entry was applied twice";
    for (const auto& a : acked) EXPECT_TRUE(seen.count(a)) << "acknowledged " << a << " is lost";
  }
}

// With forward_proposals a follower hands proposals to the leader (ForwardService); without
// it they are refused with NotLeader, as braft.
TEST_F(RuntimeTest, FollowersForwardProposalsWhenAsked) {
  forward_ = true;
  Applied applied[3];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  int follower = (leader + 1) % 3;
  ASSERT_TRUE(WaitKnowsLeader(*nodes_[follower], 5s));
  for (int k = 0; k < 10; ++k) {
    auto st = Propose(*nodes_[follower], "f" + std::to_string(k));
    ASSERT_TRUE(st.ok()) << st.message;
  }
  for (auto& a : applied) ASSERT_TRUE(WaitApplied(a, 10, 5s));
  EXPECT_EQ(applied[follower].get(), applied[leader].get());
}

// Every replica applies the time of the leader that appended the entry, wherever it was
// proposed: each node's clock here is different, so a proposer's stamp would show.
TEST_F(RuntimeTest, TheLeaderStampsItsTimeIntoEveryProposal) {
  forward_ = stamp_ = true;
  Applied applied[3];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  int follower = (leader + 1) % 3;
  ASSERT_TRUE(WaitKnowsLeader(*nodes_[follower], 5s));
  std::string blank(kLeaderTimeBytes, '\0');
  ASSERT_TRUE(Propose(*nodes_[follower], blank + "from a follower").ok());
  ASSERT_TRUE(Propose(*nodes_[leader], blank + "from the leader").ok());
  EXPECT_EQ(Propose(*nodes_[leader], "short").code, core::Code::InvalidArgument);
  uint64_t expected = 1000000ull * (leader + 1);
  for (auto& a : applied) {
    ASSERT_TRUE(WaitApplied(a, 2, 5s));
    for (const auto& d : a.get()) {
      uint64_t t = 0;
      for (size_t b = 0; b < kLeaderTimeBytes; ++b)
        t |= uint64_t{static_cast<unsigned char>(d[b])} << (8 * b);
      EXPECT_EQ(t, expected) << d.substr(kLeaderTimeBytes);
    }
  }
}

// The thread-safe calls the Node binding uses: read barriers and membership.
TEST_F(RuntimeTest, ReadIndexAndMembershipFromAnyThread) {
  Applied applied[3];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  for (int k = 0; k < 5; ++k) ASSERT_TRUE(Propose(*nodes_[leader], "r").ok());
  uint64_t commit = nodes_[leader]->status().commit_index;
  int follower = (leader + 1) % 3;
  ASSERT_TRUE(WaitKnowsLeader(*nodes_[follower], 5s));
  std::promise<std::pair<core::Status, uint64_t>> read;
  nodes_[follower]->read_index(false, [&](core::Status st, uint64_t i) {
    read.set_value({st, i});
  });
  auto [st, index] = read.get_future().get();
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_GE(index, commit);

  std::promise<core::ConfChangeResult> bad;
  nodes_[leader]->change_membership("add_peer", {},
                                    [&](const core::ConfChangeResult& r) { bad.set_value(r); });
  EXPECT_EQ(bad.get_future().get().status.code, core::Code::InvalidArgument);
  std::promise<core::ConfChangeResult> removed;
  nodes_[leader]->change_membership("remove_peer", {Peer(ports_[follower])},
                                    [&](const core::ConfChangeResult& r) { removed.set_value(r); });
  auto r = removed.get_future().get();
  ASSERT_TRUE(r.status.ok()) << r.status.message;
  EXPECT_EQ(r.new_conf.peers.size(), 2u);
  std::promise<core::Status> moved;
  nodes_[leader]->transfer_leadership(Peer(ports_[3 - leader - follower]),
                                      [&](core::Status s) { moved.set_value(s); });
  EXPECT_TRUE(moved.get_future().get().ok());
}

TEST_F(RuntimeTest, FollowersRefuseProposalsByDefault) {
  Applied applied[3];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  EXPECT_EQ(Propose(*nodes_[(leader + 1) % 3], "x").code, core::Code::NotLeader);
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
  auto st = hosts_[1]->add_node(o, b.machine(), &node);
  EXPECT_EQ(st.code, storage::Code::Locked) << st.message;

  // Destroying the host releases the directory, even while the application still holds
  // the node (its pending calls once kept it, and the lock, alive).
  std::shared_ptr<Node> held = nodes_[0];
  StopHost(0);
  RestartHost(0);
  o.self = Peer(ports_[0]);
  st = hosts_[0]->add_node(o, b.machine(), &node);
  EXPECT_TRUE(st.ok()) << st.message;
  Propose(*held, "x");  // a stopped node refuses, and does not crash
}

TEST_F(RuntimeTest, RaftStatAndUnknownGroups) {
  Applied applied[3];
  int leader = StartThree(applied);
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

CliReply Cli(uint16_t port, const std::string& method, const google::protobuf::MessageLite& req) {
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
  int leader = StartThree(applied);
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
  int leader = StartThree(applied);
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

// --- snapshots --------------------------------------------------------------------------

std::string RaftStat(uint16_t port) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  asio::write(s, asio::buffer(std::string("GET /raft_stat HTTP/1.1\r\n\r\n")));
  std::string page;
  std::error_code ec;
  char buf[4096];
  while (!ec) page.append(buf, s.read_some(asio::buffer(buf), ec));
  return page;
}

CliReply Snapshot(uint16_t port, const std::string& group, const PeerId& peer) {
  braft::SnapshotRequest req;
  req.set_group_id(group);
  req.set_peer_id(peer.to_string());
  return Cli(port, "snapshot", req);
}

// A replica that was away while the others compacted their logs gets a snapshot through
// InstallSnapshot and FileService, loads it, and continues with the log; a replica added
// after compaction does the same; and every replica restarts from its own snapshot.
TEST_F(RuntimeTest, CatchUpBySnapshotAfterCompaction) {
  Applied applied[4];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  for (int k = 0; k < 20; ++k) ASSERT_TRUE(Propose(*nodes_[leader], "a" + std::to_string(k)).ok());
  int away = (leader + 1) % 3, other = (leader + 2) % 3;
  ASSERT_TRUE(WaitApplied(applied[away], 20, 5s));
  StopHost(away);
  for (int k = 0; k < 300; ++k) ASSERT_TRUE(Propose(*nodes_[leader], "b" + std::to_string(k)).ok());
  ASSERT_TRUE(WaitApplied(applied[other], 320, 5s));
  for (int i : {leader, other}) {
    CliReply r = Snapshot(ports_[i], "g", Peer(ports_[i]));
    ASSERT_EQ(r.code, 0) << r.text;
    EXPECT_GE(nodes_[i]->snapshot_index(), 320u);
    EXPECT_GT(nodes_[i]->status().first_index, 300u);  // the log below it is gone
  }
  // A second snapshot with nothing new applied is a no-op that succeeds.
  EXPECT_EQ(Snapshot(ports_[leader], "g", Peer(ports_[leader])).code, 0);
  ASSERT_TRUE(Propose(*nodes_[leader], "c").ok());
  // Once snapshot() answers, status() already shows the compaction (RaftNode reads it then).
  uint64_t first_before = nodes_[leader]->status().first_index;
  std::promise<std::pair<storage::Status, uint64_t>> snap;
  nodes_[leader]->snapshot([&snap, n = nodes_[leader].get()](storage::Status st) {
    snap.set_value({st, n->status().first_index});
  });
  auto [snap_status, first_seen] = snap.get_future().get();
  ASSERT_TRUE(snap_status.ok()) << snap_status.message;
  EXPECT_GT(first_seen, first_before);

  RestartHost(away);
  Applied fresh;  // its state machine starts empty; the snapshot replaces it
  nodes_[away] = Start(away, "g", &fresh);
  ASSERT_TRUE(WaitApplied(fresh, 321, 10s));
  EXPECT_EQ(fresh.get(), applied[leader].get());
  EXPECT_GE(nodes_[away]->snapshot_index(), 320u);
  EXPECT_NE(RaftStat(ports_[away]).find("snapshots_installed: 1"), std::string::npos)
      << RaftStat(ports_[away]);

  // add_peer of a brand-new replica after compaction: it starts from the snapshot too.
  nodes_.push_back(StartNewcomer("g", &applied[3]));
  braft::AddPeerRequest add;
  add.set_group_id("g");
  add.set_leader_id(Peer(ports_[leader]).to_string());
  add.set_peer_id(Peer(ports_[3]).to_string());
  CliReply r = Cli(ports_[leader], "add_peer", add);
  ASSERT_EQ(r.code, 0) << r.text;
  ASSERT_TRUE(Propose(*nodes_[leader], "d").ok());
  ASSERT_TRUE(WaitApplied(applied[3], 322, 10s));
  EXPECT_EQ(applied[3].get(), applied[leader].get());

  // The leader restarts: its own snapshot is loaded, then the log after it is replayed.
  auto before = applied[leader].get();
  StopHost(leader);
  RestartHost(leader);
  Applied restarted;
  nodes_[leader] = Start(leader, "g", &restarted);
  ASSERT_TRUE(WaitApplied(restarted, before.size(), 10s));
  EXPECT_EQ(restarted.get(), before);
}

// snapshot_log_threshold takes snapshots on its own as the log grows.
TEST_F(RuntimeTest, SnapshotsByLogThreshold) {
  Applied applied[3];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  // Restart the leader with a threshold of 50 entries.
  StopHost(leader);
  RestartHost(leader);
  NodeOptions o = OptionsFor(leader, "g", conf_);
  o.snapshot_log_threshold = 50;
  Applied mine;
  ASSERT_TRUE(hosts_[leader]->add_node(o, mine.machine(), &nodes_[leader]).ok());
  int now_leader = WaitLeader(nodes_, 5s);
  ASSERT_GE(now_leader, 0);
  // Through whoever leads at the time: under a loaded sanitizer run an election may move the
  // leadership mid-way, and this test is about the threshold, not about who leads.
  for (int k = 0; k < 120; ++k) {
    auto end = std::chrono::steady_clock::now() + 5s;
    core::Status st;
    while (!(st = Propose(*nodes_[now_leader], std::to_string(k))).ok() &&
           std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(20ms);
      if (int l = WaitLeader(nodes_, 1s); l >= 0) now_leader = l;
    }
    ASSERT_TRUE(st.ok()) << st.message;
  }
  ASSERT_TRUE(WaitApplied(mine, 120, 5s));
  auto end = std::chrono::steady_clock::now() + 5s;
  while (nodes_[leader]->snapshot_index() < 100 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(10ms);
  EXPECT_GE(nodes_[leader]->snapshot_index(), 100u);
  EXPECT_EQ(nodes_[now_leader == leader ? (leader + 1) % 3 : now_leader]->snapshot_index(), 0u);
}

// A state machine may finish writing a snapshot on its own thread after its host stopped:
// the late `done` is dropped, not run on a freed node (ASan fails this test otherwise).
TEST_F(RuntimeTest, ASnapshotFinishedAfterItsHostStoppedIsDropped) {
  Applied applied[3];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  ASSERT_TRUE(Propose(*nodes_[leader], "x").ok());
  std::promise<StateMachine::SaveDone> saving;
  Applied mine;
  StateMachine sm = mine.machine();
  sm.save = [&saving](const std::string&, StateMachine::SaveDone done) {
    saving.set_value(std::move(done));  // finished later, by the test
  };
  StopHost(leader);
  RestartHost(leader);
  ASSERT_TRUE(hosts_[leader]->add_node(OptionsFor(leader, "g", conf_), sm, &nodes_[leader]).ok());
  ASSERT_TRUE(WaitApplied(mine, 1, 5s));
  nodes_[leader]->snapshot([](storage::Status) {});
  auto saved = saving.get_future();
  ASSERT_EQ(saved.wait_for(5s), std::future_status::ready);
  StopHost(leader);  // the node and its host are freed
  saved.get()(storage::Status{});
}

// FileService as braft's: the meta first, then chunks; errors for bad requests.
TEST(FileService, ServesASnapshotInChunks) {
  char tmpl[] = "/tmp/file_service_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  fs::path root = tmpl;
  std::unique_ptr<storage::SnapshotStore> store;
  ASSERT_TRUE(storage::SnapshotStore::open((root / "snap").string(), &store).ok());
  std::string temp;
  ASSERT_TRUE(store->begin(&temp).ok());
  std::string big(300 * 1024 + 7, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  std::ofstream(temp + "/data", std::ios::binary) << big;
  core::SnapshotMeta meta{42, 3, {}};
  meta.conf.peers = {PeerId{0x7f000001u, 8100, 0, 0}};
  const storage::SnapshotInfo* info = nullptr;
  ASSERT_TRUE(store->publish(meta, &info).ok());

  braft::GetFileRequest req;
  req.set_reader_id(1);
  req.set_filename(storage::kSnapshotMetaFile);
  req.set_count(0xffffffffLL);
  req.set_offset(0);
  FileReply r = read_snapshot_file(*info, req);
  ASSERT_EQ(r.error_code, 0) << r.error_text;
  EXPECT_TRUE(r.response.eof());
  storage::SnapshotInfo decoded;
  ASSERT_TRUE(storage::decode_snapshot_info(r.attachment.substr(12), &decoded));
  EXPECT_EQ(decoded.meta.last_included_index, 42u);
  ASSERT_EQ(decoded.files.size(), 1u);
  EXPECT_EQ(decoded.files[0].crc32c, storage::crc32c(big.data(), big.size()));

  std::string copy;
  req.set_filename("data");
  for (int64_t off = 0;;) {
    req.set_offset(off);
    req.set_count(kMaxChunkBytes);
    r = read_snapshot_file(*info, req);
    ASSERT_EQ(r.error_code, 0) << r.error_text;
    ASSERT_LE(r.response.read_size(), kMaxChunkBytes);
    copy += r.attachment.substr(12);
    off += r.response.read_size();
    if (r.response.eof()) break;
  }
  EXPECT_EQ(copy, big);

  req.set_count(0);
  EXPECT_EQ(read_snapshot_file(*info, req).error_code, rpc::kEREQUEST);
  req.set_count(10);
  req.set_offset(-1);
  EXPECT_EQ(read_snapshot_file(*info, req).error_code, rpc::kEREQUEST);
  req.set_offset(0);
  req.set_filename("../raft_meta");
  EXPECT_EQ(read_snapshot_file(*info, req).error_code, 1);  // EPERM: not in the snapshot
  fs::remove_all(root);
}

TEST(FileService, SnapshotUris) {
  auto uri = format_snapshot_uri(PeerId{0x7f000001u, 8100, 0, 0}, -34347888730403);
  EXPECT_EQ(uri, "remote://127.0.0.1:8100/-34347888730403");
  auto parsed = parse_snapshot_uri(uri);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->reader_id, -34347888730403);
  EXPECT_EQ(parsed->at.port(), 8100);
  for (const char* bad :
       {"", "remote://127.0.0.1/1", "remote://127.0.0.1:8100/", "local://x:1/2",
        "remote://127.0.0.1:0/1", "remote://127.0.0.1:8100/1x", "remote://nohost:8100/1"})
    EXPECT_FALSE(parse_snapshot_uri(bad)) << bad;
}

// reset_peer: after losing a majority, the survivor is forced into a configuration of
// itself and serves writes again (braft's unsafe recovery).
TEST_F(RuntimeTest, ResetPeerRecoversFromQuorumLoss) {
  Applied applied[3];
  int leader = StartThree(applied);
  ASSERT_GE(leader, 0);
  ASSERT_TRUE(Propose(*nodes_[leader], "x").ok());
  int survivor = (leader + 1) % 3;
  ASSERT_TRUE(WaitApplied(applied[survivor], 1, 5s));
  StopHost(leader);
  StopHost((leader + 2) % 3);
  braft::ResetPeerRequest reset;
  reset.set_group_id("g");
  reset.set_peer_id(Peer(ports_[survivor]).to_string());
  reset.add_new_peers(Peer(ports_[survivor]).to_string());
  CliReply r = Cli(ports_[survivor], "reset_peer", reset);
  ASSERT_EQ(r.code, 0) << r.text;
  ASSERT_EQ(WaitLeader(nodes_, 5s), survivor);
  ASSERT_TRUE(Propose(*nodes_[survivor], "y").ok());
  EXPECT_EQ(applied[survivor].get(), (std::vector<std::string>{"x", "y"}));
  // A malformed peer list is EINVAL and changes nothing.
  reset.add_new_peers("not-a-peer");
  EXPECT_EQ(Cli(ports_[survivor], "reset_peer", reset).code, 22);
  EXPECT_EQ(nodes_[survivor]->status().conf.peers.size(), 1u);
}

}  // namespace
}  // namespace raftstore::runtime
