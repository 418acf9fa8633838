// The pieces behind /metrics and the access list, alone: histograms, the text format, the
// access rules.
#include <gtest/gtest.h>

#include "access.h"
#include "metrics.h"

namespace raftstore::runtime {
namespace {

TEST(Histogram, CountsIntoCumulativeBuckets) {
  Histogram h(kCountBuckets);  // 1, 2, 4, ...
  for (uint64_t v : {1, 1, 3, 4, 5, 100000}) h.observe(v);
  auto c = h.cumulative();
  ASSERT_EQ(c.size(), kCountBuckets.bounds.size() + 1);
  EXPECT_EQ(c[0], 2u);  // <= 1
  EXPECT_EQ(c[1], 2u);  // <= 2
  EXPECT_EQ(c[2], 4u);  // <= 4: 3 and 4 (a bound is inclusive, as Prometheus's le)
  EXPECT_EQ(c[3], 5u);  // <= 8
  EXPECT_EQ(c.back(), 6u);
  EXPECT_EQ(h.count(), 6u);
  EXPECT_EQ(h.sum(), 100014u);
}

TEST(Prometheus, MergesFamiliesAcrossReplicasAndEscapesLabels) {
  ReplicaMetrics m;
  m.proposal_commit.observe(1500);  // 1.5 ms
  ++m.elections_won;
  core::NodeStatus s;
  s.role = core::Role::Leader;
  s.term = 7;
  s.last_index = 10;
  core::PeerStatus p;
  p.id = *core::PeerId::parse("127.0.0.1:2:0");
  p.match_index = 4;
  p.last_ack_ms = 1000;
  s.peers.push_back(p);
  auto a = collect_metrics("g\"1", *core::PeerId::parse("127.0.0.1:1:0"), s, 3, m, 3500);
  auto b = collect_metrics("g2", *core::PeerId::parse("127.0.0.1:1:0"), core::NodeStatus{}, 0,
                           ReplicaMetrics{}, 0);
  std::string text = render_prometheus({a, b});
  EXPECT_EQ(text.find("# TYPE raftstore_term gauge"), text.rfind("# TYPE raftstore_term gauge"))
      << "one TYPE line per family";
  EXPECT_NE(text.find("raftstore_term{group=\"g\\\"1\",peer=\"127.0.0.1:1:0:0\"} 7\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("raftstore_term{group=\"g2\",peer=\"127.0.0.1:1:0:0\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("raftstore_proposal_commit_seconds_bucket{group=\"g\\\"1\",peer=\"127.0.0.1:"
                      "1:0:0\",le=\"0.0025\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("raftstore_proposal_commit_seconds_sum{group=\"g\\\"1\",peer=\"127.0.0.1:1:0:"
                      "0\"} 0.0015\n"),
            std::string::npos);
  EXPECT_NE(text.find("raftstore_peer_replication_lag_entries{group=\"g\\\"1\",peer=\"127.0.0.1:1:"
                      "0:0\",target=\"127.0.0.1:2:0:0\"} 6\n"),
            std::string::npos);
  EXPECT_NE(text.find("raftstore_peer_last_contact_seconds{group=\"g\\\"1\",peer=\"127.0.0.1:1:0:"
                      "0\",target=\"127.0.0.1:2:0:0\"} 2.5\n"),
            std::string::npos);
  EXPECT_EQ(text.find("g2\",peer=\"127.0.0.1:1:0:0\",target"), std::string::npos)
      << "a follower reports no peers";
}

TEST(AccessPolicy, ParsesRulesAndAdmitsByThem) {
  std::string error;
  auto peers = [](uint32_t ip) { return ip == asio::ip::make_address_v4("10.0.0.5").to_uint(); };
  auto d = AccessPolicy::parse(AccessPolicy::default_rules(), &error);
  ASSERT_TRUE(d) << error;
  EXPECT_TRUE(d->allows(asio::ip::make_address("127.0.0.9"), peers));
  EXPECT_TRUE(d->allows(asio::ip::make_address("::1"), peers));
  EXPECT_TRUE(d->allows(asio::ip::make_address("10.0.0.5"), peers));
  EXPECT_TRUE(d->allows(asio::ip::make_address("::ffff:10.0.0.5"), peers));
  EXPECT_FALSE(d->allows(asio::ip::make_address("10.0.0.6"), peers));
  auto net = AccessPolicy::parse({"192.168.0.0/16", "8.8.8.8"}, &error);
  ASSERT_TRUE(net) << error;
  EXPECT_TRUE(net->allows(asio::ip::make_address("192.168.44.1"), peers));
  EXPECT_TRUE(net->allows(asio::ip::make_address("8.8.8.8"), peers));
  EXPECT_FALSE(net->allows(asio::ip::make_address("8.8.8.9"), peers));
  EXPECT_FALSE(net->allows(asio::ip::make_address("127.0.0.1"), peers)) << "loopback not listed";
  EXPECT_FALSE(net->allows(asio::ip::make_address("10.0.0.5"), peers)) << "peers not listed";
  auto any = AccessPolicy::parse({"*"}, &error);
  ASSERT_TRUE(any);
  EXPECT_TRUE(any->allows(asio::ip::make_address("2001:db8::1"), peers));
  EXPECT_EQ(net->to_string(), "192.168.0.0/16,8.8.8.8");
  for (auto bad : std::vector<std::vector<std::string>>{
           {}, {"10.0.0.0/33"}, {"10.0.0.0/"}, {"lo"}, {"10.0.0"}, {"10.0.0.0/8x"}}) {
    error.clear();
    EXPECT_FALSE(AccessPolicy::parse(bad, &error)) << (bad.empty() ? "(empty)" : bad[0]);
    EXPECT_FALSE(error.empty());
  }
}

}  // namespace
}  // namespace raftstore::runtime
