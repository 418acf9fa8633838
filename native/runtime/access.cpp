#include "access.h"

#include <asio/ip/address_v4.hpp>

namespace raftstore::runtime {

std::optional<AccessPolicy> AccessPolicy::parse(const std::vector<std::string>& rules,
                                                std::string* error) {
  AccessPolicy p;
  if (rules.empty()) {
    *error = "the access list is empty: name at least one of loopback, peers, any or a network";
    return std::nullopt;
  }
  for (const auto& r : rules) {
    p.text_.push_back(r);
    if (r == "loopback") {
      p.loopback_ = true;
    } else if (r == "peers") {
      p.peers_ = true;
    } else if (r == "any" || r == "*") {
      p.any_ = true;
    } else {
      size_t slash = r.find('/');
      std::string ip = r.substr(0, slash);
      int prefix = 32;
      if (slash != std::string::npos) {
        std::string bits = r.substr(slash + 1);
        if (bits.empty() || bits.size() > 2 ||
            bits.find_first_not_of("0123456789") != std::string::npos ||
            (prefix = std::stoi(bits)) > 32) {
          *error = "bad network prefix in access rule \"" + r + "\"";
          return std::nullopt;
        }
      }
      std::error_code ec;
      auto a = asio::ip::make_address_v4(ip, ec);
      if (ec) {
        *error = "access rule \"" + r +
                 "\" is none of loopback, peers, any or an IPv4 address or network";
        return std::nullopt;
      }
      uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
      p.nets_.push_back({a.to_uint() & mask, mask});
    }
  }
  return p;
}

bool AccessPolicy::allows(const asio::ip::address& remote,
                          const std::function<bool(uint32_t)>& is_peer) const {
  if (any_) return true;
  std::optional<asio::ip::address_v4> v4;
  if (remote.is_v4())
    v4 = remote.to_v4();
  else if (remote.is_v6() && remote.to_v6().is_v4_mapped())
    v4 = asio::ip::make_address_v4(asio::ip::v4_mapped, remote.to_v6());
  if (loopback_ && (remote.is_loopback() || (v4 && v4->is_loopback()))) return true;
  if (!v4) return false;
  uint32_t ip = v4->to_uint();
  for (const auto& n : nets_)
    if ((ip & n.mask) == n.addr) return true;
  return peers_ && is_peer(ip);
}

std::string AccessPolicy::to_string() const {
  std::string out;
  for (const auto& t : text_) {
    if (!out.empty()) out += ',';
    out += t;
  }
  return out;
}

}  // namespace raftstore::runtime
