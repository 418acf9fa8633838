// raftstore.ForwardService on the leader: a follower hands it a proposal and learns when it
// was applied (the follower's side is Replica::forward, proposals.cpp).

#include "node_host_internal.h"
#include "raftstore.pb.h"

namespace raftstore::runtime {

// A proposal forwarded by a replica that is not the leader: proposed here, never forwarded
// again (no loops), answered once applied here.
void NodeHost::on_forward(const rpc::Frame& frame, const rpc::Server::Respond& respond) {
  raftstore::wire::ForwardRequest req;
  if (frame.meta.request().method_name() != "propose" || !req.ParseFromString(frame.payload))
    return respond(rpc::kEREQUEST, error_text(rpc::kEREQUEST, "bad ForwardService request"), "",
                   "");
  int32_t code = 0;
  std::string text;
  auto node = find(req.group_id(), req.peer_id(), &code, &text);
  if (!node) return respond(code, error_text(code, text), "", "");
  node->replica().propose(
      frame.attachment,
      [node, respond](core::Status st, uint64_t index) {
        respond(0, "",
                forward_response(st, index, st.ok() ? core::PeerId{} : node->status().leader), "");
      },
      false);
}

}  // namespace raftstore::runtime
