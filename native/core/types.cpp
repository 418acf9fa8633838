#include "types.h"

#include <algorithm>
#include <charconv>

namespace raftstore::core {

namespace {

template <typename T>
bool parse_uint(std::string_view s, T max, T& out) {
  if (s.empty() || s.size() > 10) return false;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v > static_cast<uint64_t>(max))
    return false;
  out = static_cast<T>(v);
  return true;
}

std::optional<uint32_t> parse_ipv4(std::string_view s) {
  uint32_t ip = 0;
  for (int i = 0; i < 4; ++i) {
    size_t dot = s.find('.');
    if ((dot == std::string_view::npos) != (i == 3)) return std::nullopt;
    uint32_t octet = 0;
    if (!parse_uint<uint32_t>(s.substr(0, dot), 255, octet)) return std::nullopt;
    ip = (ip << 8) | octet;
    if (dot != std::string_view::npos) s.remove_prefix(dot + 1);
  }
  return ip;
}

}  // namespace

std::string PeerId::to_string() const {
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8) {
    out += std::to_string((ip >> shift) & 0xff);
    out += shift ? '.' : ':';
  }
  out += std::to_string(port) + ':' + std::to_string(idx) + ':' + std::to_string(role);
  return out;
}

std::optional<PeerId> PeerId::parse(std::string_view text) {
  std::string_view fields[4];
  size_t n = 0;
  while (true) {
    if (n == 4) return std::nullopt;
    size_t colon = text.find(':');
    fields[n++] = text.substr(0, colon);
    if (colon == std::string_view::npos) break;
    text.remove_prefix(colon + 1);
  }
  if (n < 2) return std::nullopt;
  PeerId id;
  auto ip = parse_ipv4(fields[0]);
  if (!ip) return std::nullopt;
  id.ip = *ip;
  if (!parse_uint<uint16_t>(fields[1], 65535, id.port)) return std::nullopt;
  if (n >= 3 && !parse_uint<int32_t>(fields[2], INT32_MAX, id.idx)) return std::nullopt;
  if (n == 4 && !parse_uint<uint8_t>(fields[3], 1, id.role)) return std::nullopt;
  return id;
}

bool contains(const PeerList& list, const PeerId& p) {
  return std::binary_search(list.begin(), list.end(), p);
}

void insert_sorted(PeerList& list, const PeerId& p) {
  auto it = std::lower_bound(list.begin(), list.end(), p);
  if (it == list.end() || !(*it == p)) list.insert(it, p);
}

void erase_peer(PeerList& list, const PeerId& p) {
  auto it = std::lower_bound(list.begin(), list.end(), p);
  if (it != list.end() && *it == p) list.erase(it);
}

std::optional<PeerList> parse_peer_list(std::string_view text) {
  PeerList out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    auto id = PeerId::parse(text.substr(0, comma));
    if (!id) return std::nullopt;
    insert_sorted(out, *id);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::string to_string(const PeerList& list) {
  std::string out;
  for (const auto& p : list) {
    if (!out.empty()) out += ',';
    out += p.to_string();
  }
  return out;
}

PeerList Configuration::all_members() const {
  PeerList out = peers;
  for (const auto& p : old_peers) insert_sorted(out, p);
  for (const auto& p : learners) insert_sorted(out, p);
  return out;
}

std::string Configuration::to_string() const {
  std::string out = core::to_string(peers);
  if (!old_peers.empty()) out += " old=" + core::to_string(old_peers);
  if (!learners.empty()) out += " learners=" + core::to_string(learners);
  return out;
}

const char* payload_name(const Payload& p) {
  static constexpr const char* names[] = {"RequestVoteRequest",     "RequestVoteResponse",
                                          "AppendEntriesRequest",   "AppendEntriesResponse",
                                          "InstallSnapshotRequest", "InstallSnapshotResponse",
                                          "TimeoutNowRequest",      "TimeoutNowResponse",
                                          "ReadIndexRequest",       "ReadIndexResponse"};
  return names[p.index()];
}

}  // namespace raftstore::core
