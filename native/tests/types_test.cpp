// Unit tests of the value types: braft PeerId text, peer lists and configurations
// (docs/braft-compatibility.md §2.6).
#include "types.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string>

namespace raftstore::core {
namespace {

PeerId Peer(uint32_t ip, uint16_t port, int32_t idx = 0, uint8_t role = 0) {
  PeerId p;
  p.ip = ip;
  p.port = port;
  p.idx = idx;
  p.role = role;
  return p;
}

constexpr uint32_t kLocalhost = 0x7f000001;  // 127.0.0.1

// Short names for the peers used in configuration tests: A..F = 10.0.0.1:8100..8105.
PeerId N(char name) { return Peer(0x0a000001, static_cast<uint16_t>(8100 + (name - 'A'))); }

PeerList L(std::initializer_list<char> names) {
  PeerList out;
  for (char n : names) insert_sorted(out, N(n));
  return out;
}

// --- PeerId::parse / to_string -------------------------------------------------------

struct ParseOk {
  const char* name;
  const char* text;
  PeerId want;
  const char* printed;  // to_string() always prints 4 fields
};

class PeerIdParseOk : public testing::TestWithParam<ParseOk> {};

TEST_P(PeerIdParseOk, ParsesAndPrintsFourFields) {
  const auto& c = GetParam();
  auto id = PeerId::parse(c.text);
  ASSERT_TRUE(id.has_value()) << c.text;
  EXPECT_EQ(id->ip, c.want.ip);
  EXPECT_EQ(id->port, c.want.port);
  EXPECT_EQ(id->idx, c.want.idx);
  EXPECT_EQ(id->role, c.want.role);
  EXPECT_EQ(id->to_string(), c.printed);
  // The printed form parses back to the same id (role included).
  auto again = PeerId::parse(id->to_string());
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, *id);
  EXPECT_EQ(again->role, id->role);
}

INSTANTIATE_TEST_SUITE_P(
    Types, PeerIdParseOk,
    testing::Values(
        ParseOk{"TwoFields", "127.0.0.1:8100", Peer(kLocalhost, 8100), "127.0.0.1:8100:0:0"},
        ParseOk{"ThreeFields", "127.0.0.1:8100:2", Peer(kLocalhost, 8100, 2), "127.0.0.1:8100:2:0"},
        ParseOk{"FourFieldsReplica", "127.0.0.1:8100:2:0", Peer(kLocalhost, 8100, 2, 0),
                "127.0.0.1:8100:2:0"},
        ParseOk{"FourFieldsWitness", "127.0.0.1:8100:2:1", Peer(kLocalhost, 8100, 2, 1),
                "127.0.0.1:8100:2:1"},
        ParseOk{"MaxPort", "255.255.255.255:65535", Peer(0xffffffff, 65535),
                "255.255.255.255:65535:0:0"},
        ParseOk{"ZeroPort", "10.1.2.3:0", Peer(0x0a010203, 0), "10.1.2.3:0:0:0"},
        ParseOk{"EmptyPeer", "0.0.0.0:0:0:0", Peer(0, 0), "0.0.0.0:0:0:0"},
        ParseOk{"MaxIdx", "1.2.3.4:5:2147483647", Peer(0x01020304, 5, 2147483647),
                "1.2.3.4:5:2147483647:0"}),
    [](const auto& info) { return std::string(info.param.name); });

struct ParseBad {
  const char* name;
  const char* text;
};

class PeerIdParseBad : public testing::TestWithParam<ParseBad> {};

TEST_P(PeerIdParseBad, IsRejected) {
  EXPECT_FALSE(PeerId::parse(GetParam().text).has_value()) << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(Types, PeerIdParseBad,
                         testing::Values(ParseBad{"Empty", ""},                                 //
                                         ParseBad{"OneField", "127.0.0.1"},                     //
                                         ParseBad{"FiveFields", "127.0.0.1:8100:0:0:0"},        //
                                         ParseBad{"Hostname", "localhost:8100"},                //
                                         ParseBad{"Ipv6", "::1:8100"},                          //
                                         ParseBad{"Ipv6Bracketed", "[::1]:8100"},               //
                                         ParseBad{"OctetTooLarge", "256.0.0.1:8100"},           //
                                         ParseBad{"ThreeOctets", "1.2.3:8100"},                 //
                                         ParseBad{"FiveOctets", "1.2.3.4.5:8100"},              //
                                         ParseBad{"EmptyOctet", "1..2.3:8100"},                 //
                                         ParseBad{"PortTooLarge", "127.0.0.1:65536"},           //
                                         ParseBad{"NegativePort", "127.0.0.1:-1"},              //
                                         ParseBad{"EmptyPort", "127.0.0.1:"},                   //
                                         ParseBad{"PortWithGarbage", "127.0.0.1:80x"},          //
                                         ParseBad{"LeadingSpace", " 127.0.0.1:8100"},           //
                                         ParseBad{"NegativeIdx", "127.0.0.1:8100:-1"},          //
                                         ParseBad{"IdxTooLarge", "127.0.0.1:8100:2147483648"},  //
                                         ParseBad{"IdxNotNumber", "127.0.0.1:8100:x"},          //
                                         ParseBad{"RoleTwo", "127.0.0.1:8100:0:2"},             //
                                         ParseBad{"EmptyRole", "127.0.0.1:8100:0:"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(PeerIdTest, EqualityAndOrderingIgnoreRole) {
  auto replica = PeerId::parse("1.2.3.4:5:6:0");
  auto witness = PeerId::parse("1.2.3.4:5:6:1");
  ASSERT_TRUE(replica && witness);
  EXPECT_EQ(*replica, *witness);
  EXPECT_FALSE(*replica < *witness);
  EXPECT_FALSE(*witness < *replica);
  EXPECT_NE(replica->to_string(), witness->to_string());  // but they print differently

  // Ordering: ip, then port, then idx.
  EXPECT_LT(Peer(1, 9, 9), Peer(2, 0, 0));
  EXPECT_LT(Peer(1, 1, 9), Peer(1, 2, 0));
  EXPECT_LT(Peer(1, 1, 1), Peer(1, 1, 2));
  EXPECT_FALSE(Peer(1, 1, 1) == Peer(1, 1, 2));
}

TEST(PeerIdTest, EmptyMeansAllZeroIgnoringRole) {
  EXPECT_TRUE(PeerId{}.empty());
  EXPECT_TRUE(Peer(0, 0, 0, 1).empty());
  EXPECT_FALSE(Peer(0, 0, 1).empty());
  EXPECT_FALSE(Peer(0, 1).empty());
  EXPECT_FALSE(Peer(1, 0).empty());
}

// --- peer lists --------------------------------------------------------------------

struct ListOk {
  const char* name;
  const char* text;
  const char* printed;
  size_t size;
};

class PeerListParseOk : public testing::TestWithParam<ListOk> {};

TEST_P(PeerListParseOk, ParsesSortedAndDeduped) {
  const auto& c = GetParam();
  auto list = parse_peer_list(c.text);
  ASSERT_TRUE(list.has_value()) << c.text;
  EXPECT_EQ(list->size(), c.size);
  EXPECT_TRUE(std::is_sorted(list->begin(), list->end()));
  EXPECT_EQ(to_string(*list), c.printed);
}

INSTANTIATE_TEST_SUITE_P(
    Types, PeerListParseOk,
    testing::Values(ListOk{"Empty", "", "", 0},
                    ListOk{"Single", "127.0.0.1:8100", "127.0.0.1:8100:0:0", 1},
                    ListOk{"TrailingComma", "127.0.0.1:8100:0,127.0.0.1:8101:0,",
                           "127.0.0.1:8100:0:0,127.0.0.1:8101:0:0", 2},
                    ListOk{"SortedOnParse", "127.0.0.1:8102,127.0.0.1:8100,127.0.0.1:8101",
                           "127.0.0.1:8100:0:0,127.0.0.1:8101:0:0,127.0.0.1:8102:0:0", 3},
                    ListOk{"SortedByIpThenPortThenIdx", "10.0.0.1:1:1,9.0.0.1:2,10.0.0.1:1:0",
                           "9.0.0.1:2:0:0,10.0.0.1:1:0:0,10.0.0.1:1:1:0", 3},
                    ListOk{"Deduped", "127.0.0.1:8100,127.0.0.1:8100:0:0,127.0.0.1:8100:0",
                           "127.0.0.1:8100:0:0", 1},
                    ListOk{"DedupIgnoresRole", "127.0.0.1:8100:0:0,127.0.0.1:8100:0:1",
                           "127.0.0.1:8100:0:0", 1}),
    [](const auto& info) { return std::string(info.param.name); });

struct ListBad {
  const char* name;
  const char* text;
};

class PeerListParseBad : public testing::TestWithParam<ListBad> {};

TEST_P(PeerListParseBad, IsRejected) {
  EXPECT_FALSE(parse_peer_list(GetParam().text).has_value()) << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(Types, PeerListParseBad,
                         testing::Values(ListBad{"BadFirst", "bogus,127.0.0.1:8100"},
                                         ListBad{"BadLast", "127.0.0.1:8100,bogus"},
                                         ListBad{"BadPort", "127.0.0.1:8100,127.0.0.1:99999"},
                                         ListBad{"BadRole", "127.0.0.1:8100:0:3"},
                                         ListBad{"SpaceAfterComma",
                                                 "127.0.0.1:8100, 127.0.0.1:8101"},
                                         ListBad{"Hostname", "127.0.0.1:8100,localhost:8101"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(PeerListTest, InsertEraseContainKeepSortedUnique) {
  PeerList l;
  insert_sorted(l, N('C'));
  insert_sorted(l, N('A'));
  insert_sorted(l, N('B'));
  insert_sorted(l, N('A'));
  EXPECT_EQ(l, L({'A', 'B', 'C'}));
  EXPECT_TRUE(contains(l, N('B')));
  erase_peer(l, N('B'));
  erase_peer(l, N('D'));  // absent: no-op
  EXPECT_EQ(l, L({'A', 'C'}));
  EXPECT_FALSE(contains(l, N('B')));
}

// --- Configuration -------------------------------------------------------------------

struct QuorumCase {
  const char* name;
  PeerList peers;
  PeerList old_peers;
  PeerList granted;
  bool quorum;
};

class ConfigurationQuorum : public testing::TestWithParam<QuorumCase> {};

TEST_P(ConfigurationQuorum, NeedsMajorityOfEachSide) {
  const auto& c = GetParam();
  Configuration conf{c.peers, c.old_peers, {}};
  EXPECT_EQ(conf.joint(), !c.old_peers.empty());
  EXPECT_EQ(conf.quorum([&](const PeerId& p) { return contains(c.granted, p); }), c.quorum);
}

INSTANTIATE_TEST_SUITE_P(
    Types, ConfigurationQuorum,
    testing::Values(
        QuorumCase{"SingleVoterAlone", L({'A'}), {}, L({'A'}), true},
        QuorumCase{"SingleVoterNobody", L({'A'}), {}, {}, false},
        QuorumCase{"ThreeOneOfThree", L({'A', 'B', 'C'}), {}, L({'A'}), false},
        QuorumCase{"ThreeTwoOfThree", L({'A', 'B', 'C'}), {}, L({'A', 'C'}), true},
        QuorumCase{"FourTwoIsNotMajority", L({'A', 'B', 'C', 'D'}), {}, L({'A', 'B'}), false},
        QuorumCase{"FourThreeOfFour", L({'A', 'B', 'C', 'D'}), {}, L({'B', 'C', 'D'}), true},
        QuorumCase{"NonMembersDoNotCount", L({'A', 'B', 'C'}), {}, L({'A', 'E', 'F'}), false},
        QuorumCase{"EmptyConfigurationHasNoQuorum", {}, {}, L({'A'}), false},
        // Joint: {A,B,D} new, {A,B,C} old.
        QuorumCase{"JointNewMajorityOnly", L({'A', 'B', 'D'}), L({'A', 'B', 'C'}), L({'A', 'D'}),
                   false},
        QuorumCase{"JointOldMajorityOnly", L({'A', 'B', 'D'}), L({'A', 'B', 'C'}), L({'A', 'C'}),
                   false},
        QuorumCase{"JointSharedMajority", L({'A', 'B', 'D'}), L({'A', 'B', 'C'}), L({'A', 'B'}),
                   true},
        QuorumCase{"JointBothMajorities", L({'A', 'B', 'D'}), L({'A', 'B', 'C'}),
                   L({'A', 'C', 'D'}), true},
        // Joint with disjoint sides: {D,E,F} new, {A,B,C} old.
        QuorumCase{"DisjointBoth", L({'D', 'E', 'F'}), L({'A', 'B', 'C'}), L({'A', 'B', 'D', 'E'}),
                   true},
        QuorumCase{"DisjointOldOnly", L({'D', 'E', 'F'}), L({'A', 'B', 'C'}),
                   L({'A', 'B', 'C', 'D'}), false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ConfigurationTest, VotersMembersAndAllMembers) {
  Configuration c{L({'A', 'B'}), L({'B', 'C'}), L({'D'})};
  for (char v : {'A', 'B', 'C'}) {
    EXPECT_TRUE(c.is_voter(N(v))) << v;
    EXPECT_TRUE(c.is_member(N(v))) << v;
  }
  EXPECT_FALSE(c.is_voter(N('D')));  // a learner does not vote
  EXPECT_TRUE(c.is_member(N('D')));
  EXPECT_FALSE(c.is_voter(N('E')));
  EXPECT_FALSE(c.is_member(N('E')));
  EXPECT_EQ(c.all_members(), L({'A', 'B', 'C', 'D'}));  // sorted, each once
  EXPECT_TRUE(c.joint());

  Configuration stable{L({'A', 'B', 'C'}), {}, {}};
  EXPECT_FALSE(stable.joint());
  EXPECT_EQ(stable.all_members(), L({'A', 'B', 'C'}));
  EXPECT_EQ(Configuration{}.all_members(), PeerList{});
}

TEST(ConfigurationTest, ToStringAndEquality) {
  Configuration c{L({'B', 'A'}), L({'C'}), L({'D'})};
  EXPECT_EQ(c.to_string(),
            "10.0.0.1:8100:0:0,10.0.0.1:8101:0:0 old=10.0.0.1:8102:0:0 learners=10.0.0.1:8103:0:0");
  EXPECT_EQ((Configuration{L({'A'}), {}, {}}).to_string(), "10.0.0.1:8100:0:0");
  EXPECT_EQ(c, (Configuration{L({'A', 'B'}), L({'C'}), L({'D'})}));
  EXPECT_FALSE(c == (Configuration{L({'A', 'B'}), {}, L({'D'})}));
}

TEST(LogIdTest, ComparesTermFirstThenIndex) {
  EXPECT_LT((LogId{100, 1}), (LogId{1, 2}));
  EXPECT_LT((LogId{1, 2}), (LogId{2, 2}));
  EXPECT_FALSE((LogId{2, 2}) < (LogId{2, 2}));
  EXPECT_EQ((LogId{2, 2}), (LogId{2, 2}));
}

}  // namespace
}  // namespace raftstore::core
