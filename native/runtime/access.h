// Who may call a port's administrative services (CliService: membership, reset, transfer,
// snapshot) and its ForwardService. Raft's own messages are not filtered here: the core
// drops what does not come from a member. Rules, in any order; a caller matching one is let
// in:
//   loopback   127.0.0.0/8 and ::1
//   peers      the address of any peer in the configuration of any group on this port
//   any        everyone (or "*")
//   a.b.c.d/n  an IPv4 network; a bare a.b.c.d is /32
// The default is loopback and peers. A refused call is answered EPERM, never dropped.
#pragma once

#include <asio/ip/address.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace raftstore::runtime {

class AccessPolicy {
 public:
  static std::vector<std::string> default_rules() { return {"loopback", "peers"}; }
  // Nullopt (and *error says which rule) if a rule is malformed or the list is empty.
  static std::optional<AccessPolicy> parse(const std::vector<std::string>& rules,
                                           std::string* error);
  // `is_peer` says whether an IPv4 address (host order) is a configured peer's.
  bool allows(const asio::ip::address& remote, const std::function<bool(uint32_t)>& is_peer) const;
  std::string to_string() const;

 private:
  struct Net {
    uint32_t addr, mask;
  };
  bool loopback_ = false, peers_ = false, any_ = false;
  std::vector<Net> nets_;
  std::vector<std::string> text_;
};

}  // namespace raftstore::runtime
