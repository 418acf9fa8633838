// braft's CliService (docs/braft-compatibility.md §2.3), so that braft_cli manages our groups.

#include "cli.pb.h"
#include "codec.h"
#include "node_host_internal.h"

namespace raftstore::runtime {

std::string NodeHost::error_text(int32_t code, const std::string& message) const {
  // brpc's convention: which server, which code, then the message.
  return "[127.0.0.1:" + std::to_string(port_) + "][E" + std::to_string(code) + "]" + message;
}

std::shared_ptr<Node> NodeHost::find(const std::string& group, const std::string& peer,
                                     int32_t* code, std::string* text) {
  if (!peer.empty()) {
    auto id = core::PeerId::parse(peer);
    auto it = id ? nodes_.find({group, *id}) : nodes_.end();
    if (it != nodes_.end()) return it->second;
    *code = kENOENT;
    *text = "Fail to find node " + peer + " in group " + group;
    return nullptr;
  }
  std::shared_ptr<Node> only;
  for (auto& [key, node] : nodes_) {
    if (key.first != group) continue;
    if (only) {
      *code = kEINVAL;
      *text = "peer must be specified since there're multiple nodes in group " + group;
      return nullptr;
    }
    only = node;
  }
  if (!only) {
    *code = kENOENT;
    *text = "Fail to find node in group " + group;
  }
  return only;
}

// braft's CliService (docs/braft-compatibility.md §2.3), so that braft_cli manages our groups.
void NodeHost::on_cli(const rpc::Frame& frame, const rpc::Server::Respond& respond) {
  const std::string& method = frame.meta.request().method_name();
  int32_t code = 0;
  std::string text;
  auto refuse = [&](int32_t c, const std::string& t) { respond(c, error_text(c, t), "", ""); };
  auto bad = [&] { refuse(rpc::kEREQUEST, "Fail to parse request of " + method); };
  auto peers_reply = [this, respond](auto response) {
    return [this, respond, response](const core::ConfChangeResult& r) mutable {
      if (!r.status.ok())
        return respond(errno_of(r.status.code),
                       error_text(errno_of(r.status.code), r.status.message), "", "");
      rpc::put_peers(r.old_conf.peers, response.mutable_old_peers());
      rpc::put_peers(r.new_conf.peers, response.mutable_new_peers());
      respond(0, "", response.SerializeAsString(), "");
    };
  };
  auto status_reply = [this, respond](auto response) {
    return [this, respond, response](core::Status st) {
      if (!st.ok())
        return respond(errno_of(st.code), error_text(errno_of(st.code), st.message), "", "");
      respond(0, "", response.SerializeAsString(), "");
    };
  };
  if (method == "get_leader") {
    braft::GetLeaderRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    core::PeerId leader;
    if (req.has_peer_id() && !req.peer_id().empty()) {
      auto node = find(req.group_id(), req.peer_id(), &code, &text);
      if (!node) return refuse(code, text);
      leader = node->status().leader;
    } else {
      bool any = false;
      for (auto& [key, node] : nodes_)
        if (key.first == req.group_id()) {
          any = true;
          if (leader.empty()) leader = node->status().leader;
        }
      if (!any) return refuse(kENOENT, "No nodes in group " + req.group_id());
    }
    if (leader.empty()) return refuse(kEAGAIN, "Unknown leader");
    braft::GetLeaderResponse resp;
    resp.set_leader_id(leader.to_string());
    return respond(0, "", resp.SerializeAsString(), "");
  }
  if (method == "add_peer" || method == "remove_peer") {
    braft::AddPeerRequest req;  // RemovePeerRequest has the same fields and numbers
    if (!req.ParseFromString(frame.payload)) return bad();
    auto peer = core::PeerId::parse(req.peer_id());
    if (!peer) return refuse(kEINVAL, "Fail to parse peer_id " + req.peer_id());
    auto node = find(req.group_id(), req.leader_id(), &code, &text);
    if (!node) return refuse(code, text);
    if (method == "add_peer")
      node->replica().change_conf(method, {*peer}, peers_reply(braft::AddPeerResponse{}));
    else
      node->replica().change_conf(method, {*peer}, peers_reply(braft::RemovePeerResponse{}));
    return;
  }
  if (method == "change_peers") {
    braft::ChangePeersRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    core::PeerList peers;
    if (!rpc::get_peers(req.new_peers(), &peers)) return refuse(kEINVAL, "Fail to parse new_peers");
    auto node = find(req.group_id(), req.leader_id(), &code, &text);
    if (!node) return refuse(code, text);
    return node->replica().change_conf(method, peers, peers_reply(braft::ChangePeersResponse{}));
  }
  if (method == "reset_peer") {
    braft::ResetPeerRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    core::PeerList peers;
    if (!rpc::get_peers(req.new_peers(), &peers)) return refuse(kEINVAL, "Fail to parse new_peers");
    auto node = find(req.group_id(), req.peer_id(), &code, &text);
    if (!node) return refuse(code, text);
    return node->reset_peers(peers, status_reply(braft::ResetPeerResponse{}));
  }
  if (method == "transfer_leader") {
    braft::TransferLeaderRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    core::PeerId target;  // absent or 0.0.0.0:0:0: any peer
    if (req.has_peer_id()) {
      auto id = core::PeerId::parse(req.peer_id());
      if (!id) return refuse(kEINVAL, "Fail to parse peer_id " + req.peer_id());
      target = *id;
    }
    auto node = find(req.group_id(), req.leader_id(), &code, &text);
    if (!node) return refuse(code, text);
    return node->transfer_leadership(target, status_reply(braft::TransferLeaderResponse{}));
  }
  if (method == "snapshot") {
    braft::SnapshotRequest req;
    if (!req.ParseFromString(frame.payload)) return bad();
    auto node = find(req.group_id(), req.has_peer_id() ? req.peer_id() : "", &code, &text);
    if (!node) return refuse(code, text);
    // Answered once the snapshot is published (braft answers when its save is done).
    return node->snapshot([this, respond](storage::Status st) {
      if (st.ok()) return respond(0, "", braft::SnapshotResponse{}.SerializeAsString(), "");
      int32_t c = st.code == storage::Code::InvalidArgument ? kEINVAL : kEIO;
      respond(c, error_text(c, st.message), "", "");
    });
  }
  refuse(rpc::kENOMETHOD, "Fail to find method=CliService/" + method);
}

}  // namespace raftstore::runtime
