// The core's messages on braft's wire: RaftService methods with braft's messages (entry
// data in the attachment, configurations in EntryMeta), and our ReadIndex under the
// `raftstore.RaftExtService` name. Responses carry no group or peer ids on the wire; the
// caller matches them to their request by correlation id and passes that request here.
#pragma once

#include <optional>
#include <string>

#include "raft.h"
#include "rpc_codes.h"

namespace raftstore::rpc {

constexpr const char* kRaftService = "braft.RaftService";
constexpr const char* kExtService = "raftstore.RaftExtService";

struct WireMessage {
  std::string service;  // set for requests
  std::string method;   // set for requests
  std::string payload;
  std::string attachment;
  int32_t error_code = 0;  // responses: an RPC error instead of a payload
};

// Peer ids to and from a repeated string field of a braft message.
template <typename List>
void put_peers(const core::PeerList& peers, List* out) {
  for (const auto& p : peers) *out->Add() = p.to_string();
}
// False if any id is malformed.
template <typename List>
bool get_peers(const List& in, core::PeerList* out) {
  for (const auto& text : in) {
    auto id = core::PeerId::parse(text);
    if (!id) return false;
    core::insert_sorted(*out, *id);
  }
  return true;
}

// Requests and responses from the core.
WireMessage encode(const core::Envelope& e);

// A request as received. Returns nullopt (the caller answers EREQUEST) when the method is
// unknown, the payload does not parse, a peer id is malformed, or the attachment does not
// match the entries' data lengths.
std::optional<core::Envelope> decode_request(const std::string& service, const std::string& method,
                                             const std::string& payload,
                                             const std::string& attachment);

// The response to `request` (as it was sent), or nullopt if it does not parse.
std::optional<core::Envelope> decode_response(const core::Envelope& request, int32_t error_code,
                                              const std::string& payload);

}  // namespace raftstore::rpc
