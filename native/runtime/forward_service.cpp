// raftstore.ForwardService: a follower hands a proposal to the leader and learns when it
// has applied it too.

#include "node_host_internal.h"
#include "raftstore.pb.h"

namespace raftstore::runtime {

void Node::forward(std::shared_ptr<const std::string> data, ProposeDone done) {
  core::PeerId leader = core_->leader();
  raftstore::wire::ForwardRequest req;
  req.set_group_id(opt_.group);
  req.set_peer_id(leader.to_string());
  channel_to(leader)->call(
      "raftstore.ForwardService", "propose", req.SerializeAsString(), *data,
      install_timeout_ms(opt_.raft),
      [self = shared_from_this(), leader, done = std::move(done)](
          int32_t code, const std::string& text, rpc::Frame f) mutable {
        raftstore::wire::ForwardResponse resp;
        // Not connected: the request was never sent, so it was placed nowhere.
        if (code == rpc::kEHOSTDOWN)
          return done({core::Code::NotLeader,
                       "leader " + leader.to_string() + " is not reachable: " + text},
                      0);
        if (code == 0) code = f.meta.response().error_code();
        if (code != 0 || !resp.ParseFromString(f.payload))
          return done({core::Code::LeaderChanged,
                       "forwarding to " + leader.to_string() +
                           " failed (the outcome is unknown): " + (code ? text : "bad response")},
                      0);
        if (resp.success())
          return self->forwarded_applied(static_cast<uint64_t>(resp.index()), std::move(done));
        auto c = static_cast<core::Code>(resp.code());
        // The leader stopping, or a code it should not send: the outcome is unknown.
        if (c == core::Code::Ok || c == core::Code::Shutdown ||
            resp.code() > static_cast<int32_t>(core::Code::Shutdown))
          c = core::Code::LeaderChanged;
        done({c, resp.message()}, 0);
      });
}

void Node::forwarded_applied(uint64_t index, ProposeDone done) {
  if (failed_) return done({core::Code::Shutdown, "stopped"}, index);
  if (index > core_->applied_index()) {
    forwarded_.emplace(index, std::move(done));
    return;
  }
  for (auto [from, to] : skipped_)
    if (index > from && index <= to)
      return done({core::Code::ResultUnknown, "committed at index " + std::to_string(index) +
                                                  ", but this replica caught up past it by "
                                                  "installing a snapshot"},
                  index);
  done({}, index);
}

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
  node->enqueue(
      frame.attachment,
      [node, respond](core::Status st, uint64_t index) {
        raftstore::wire::ForwardResponse resp;
        resp.set_success(st.ok());
        if (st.ok())
          resp.set_index(static_cast<int64_t>(index));
        else {
          resp.set_code(static_cast<int32_t>(st.code));
          resp.set_message(st.message);
          if (auto leader = node->status().leader; !leader.empty())
            resp.set_leader_id(leader.to_string());
        }
        respond(0, "", resp.SerializeAsString(), "");
      },
      false);
}

}  // namespace raftstore::runtime
