// Messages to and from peers: requests go out over one channel per peer (bound to this
// replica's ip); answers and transport failures go back to the core.

#include "codec.h"
#include "node_host_internal.h"

namespace raftstore::runtime {

void Node::send(Envelope env) {
  int64_t reader = 0;
  uint32_t timeout = static_cast<uint32_t>(opt_.raft.election_timeout_ms);
  if (auto* is = std::get_if<core::InstallSnapshotRequest>(&env.payload)) {
    // The snapshot the core names must be the one on disk; if not (a newer one is being
    // published), drop the request: the core sends it again.
    if (!published_ || published_->meta.last_included_index != is->meta.last_included_index) return;
    timeout = install_timeout_ms(opt_.raft);
    reader = host_.open_reader(*published_, timeout + opt_.raft.election_timeout_ms);
    is->uri = format_snapshot_uri(opt_.self, reader);
  }
  rpc::WireMessage w = rpc::encode(env);
  if (is_response(env.payload)) {
    auto it = inbound_.find(env.rpc_id);
    if (it == inbound_.end()) return;
    it->second(w.error_code, w.error_code ? "busy" : "", w.payload, w.attachment);
    inbound_.erase(it);
    return;
  }
  channel_to(env.to)->call(
      w.service, w.method, std::move(w.payload), std::move(w.attachment), timeout,
      [self = shared_from_this(), req = std::move(env), reader](int32_t code, const std::string&,
                                                                rpc::Frame f) {
        if (reader) self->host_.close_reader(reader);
        if (self->failed_) return;
        if (code != 0) {  // not sent, or no answer will come: the core retries soon
          self->core_->rpc_failed(req.to, req.rpc_id, now_ms());
          return self->drain();
        }
        auto resp = rpc::decode_response(req, f.meta.response().error_code(), f.payload);
        if (!resp) return;
        self->core_->step(*resp, now_ms());
        self->drain();
      });
}

// Outgoing connections leave from this replica's own address, so that on a multi-homed
// host the peers see the source they know it by.
const std::shared_ptr<rpc::Channel>& Node::channel_to(const core::PeerId& peer) {
  auto& ch = channels_[peer];
  if (!ch) {
    rpc::ChannelOptions o;
    o.bind_address = asio::ip::address_v4(opt_.self.ip);
    ch = rpc::Channel::create(host_.io(),
                              asio::ip::tcp::endpoint(asio::ip::address_v4(peer.ip), peer.port), o);
  }
  return ch;
}

void Node::on_request(Envelope env, rpc::Server::Respond respond) {
  if (failed_) return respond(kEINVAL, "node is not active", "", "");  // as braft
  env.rpc_id = next_inbound_++;
  inbound_[env.rpc_id] = std::move(respond);
  core_->step(env, now_ms());
  drain();
}

void Node::peer_unreachable(const core::PeerId& peer) {
  if (failed_) return;
  core_->peer_unreachable(peer, now_ms());
  drain();
}

}  // namespace raftstore::runtime
