#include "codec.h"

#include <google/protobuf/message_lite.h>

#include "raft.pb.h"
#include "raftstore.pb.h"

namespace raftstore::rpc {

using namespace raftstore::core;

namespace {

void put_meta(const SnapshotMeta& m, braft::SnapshotMeta* out) {
  out->set_last_included_index(static_cast<int64_t>(m.last_included_index));
  out->set_last_included_term(static_cast<int64_t>(m.last_included_term));
  put_peers(m.conf.peers, out->mutable_peers());
  put_peers(m.conf.old_peers, out->mutable_old_peers());
  put_peers(m.conf.learners, out->mutable_learners());
}

bool get_meta(const braft::SnapshotMeta& in, SnapshotMeta* out) {
  if (in.last_included_index() < 0 || in.last_included_term() < 0) return false;
  out->last_included_index = static_cast<uint64_t>(in.last_included_index());
  out->last_included_term = static_cast<uint64_t>(in.last_included_term());
  return get_peers(in.peers(), &out->conf.peers) &&
         get_peers(in.old_peers(), &out->conf.old_peers) &&
         get_peers(in.learners(), &out->conf.learners);
}

template <typename Msg>
void set_ids(const Envelope& e, Msg* m) {
  m->set_group_id(e.group);
  m->set_server_id(e.from.to_string());
  m->set_peer_id(e.to.to_string());
}

template <typename Msg>
bool get_ids(const Msg& m, Envelope* e) {
  auto from = PeerId::parse(m.server_id());
  auto to = PeerId::parse(m.peer_id());
  if (!from || !to) return false;
  e->group = m.group_id();
  e->from = *from;
  e->to = *to;
  return true;
}

bool nonneg(int64_t v) { return v >= 0; }
uint64_t u(int64_t v) { return static_cast<uint64_t>(v); }
int64_t s(uint64_t v) { return static_cast<int64_t>(v); }

template <typename Msg>
bool parse(const std::string& bytes, Msg* m) {
  // Partial parse, then the check: a missing required field is refused without a log line.
  return m->ParsePartialFromString(bytes) && m->IsInitialized();
}

}  // namespace

WireMessage encode(const Envelope& e) {
  WireMessage w;
  std::visit(
      [&](const auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, RequestVoteRequest>) {
          braft::RequestVoteRequest m;
          set_ids(e, &m);
          m.set_term(s(p.term));
          m.set_last_log_term(s(p.last_log_term));
          m.set_last_log_index(s(p.last_log_index));
          if (p.disrupted_leader) {
            m.mutable_disrupted_leader()->set_peer_id(p.disrupted_leader->peer_id.to_string());
            m.mutable_disrupted_leader()->set_term(s(p.disrupted_leader->term));
          }
          w = {kRaftService, p.pre_vote ? "pre_vote" : "request_vote", m.SerializeAsString(), {}};
        } else if constexpr (std::is_same_v<T, RequestVoteResponse>) {
          braft::RequestVoteResponse m;
          m.set_term(s(p.term));
          m.set_granted(p.granted);
          m.set_disrupted(false);
          m.set_previous_term(s(p.term));
          m.set_rejected_by_lease(p.rejected_by_lease);
          w.payload = m.SerializeAsString();
        } else if constexpr (std::is_same_v<T, AppendEntriesRequest>) {
          braft::AppendEntriesRequest m;
          set_ids(e, &m);
          m.set_term(s(p.term));
          m.set_prev_log_term(s(p.prev_log_term));
          m.set_prev_log_index(s(p.prev_log_index));
          m.set_committed_index(s(p.committed_index));
          for (const auto& entry : p.entries) {
            auto* em = m.add_entries();
            em->set_term(s(entry.term));
            em->set_type(static_cast<braft::EntryType>(entry.type));
            em->set_data_len(s(entry.data_size()));
            if (entry.conf) {
              put_peers(entry.conf->peers, em->mutable_peers());
              put_peers(entry.conf->old_peers, em->mutable_old_peers());
              put_peers(entry.conf->learners, em->mutable_learners());
            }
            if (entry.data) w.attachment += *entry.data;
          }
          w.service = kRaftService;
          w.method = "append_entries";
          w.payload = m.SerializeAsString();
        } else if constexpr (std::is_same_v<T, AppendEntriesResponse>) {
          if (p.busy) {
            w.error_code = kEBUSY;
            return;
          }
          braft::AppendEntriesResponse m;
          m.set_term(s(p.term));
          m.set_success(p.success);
          m.set_last_log_index(s(p.last_log_index));
          m.set_readonly(false);
          w.payload = m.SerializeAsString();
        } else if constexpr (std::is_same_v<T, InstallSnapshotRequest>) {
          braft::InstallSnapshotRequest m;
          set_ids(e, &m);
          m.set_term(s(p.term));
          put_meta(p.meta, m.mutable_meta());
          m.set_uri(p.uri);
          w = {kRaftService, "install_snapshot", m.SerializeAsString(), {}};
        } else if constexpr (std::is_same_v<T, InstallSnapshotResponse>) {
          braft::InstallSnapshotResponse m;
          m.set_term(s(p.term));
          m.set_success(p.success);
          w.payload = m.SerializeAsString();
        } else if constexpr (std::is_same_v<T, TimeoutNowRequest>) {
          braft::TimeoutNowRequest m;
          set_ids(e, &m);
          m.set_term(s(p.term));
          m.set_old_leader_stepped_down(p.old_leader_stepped_down);
          w = {kRaftService, "timeout_now", m.SerializeAsString(), {}};
        } else if constexpr (std::is_same_v<T, TimeoutNowResponse>) {
          braft::TimeoutNowResponse m;
          m.set_term(s(p.term));
          m.set_success(p.success);
          w.payload = m.SerializeAsString();
        } else if constexpr (std::is_same_v<T, ReadIndexRequest>) {
          wire::ReadIndexRequest m;
          set_ids(e, &m);
          m.set_term(s(p.term));
          m.set_ctx(p.ctx);
          w = {kExtService, "read_index", m.SerializeAsString(), {}};
        } else if constexpr (std::is_same_v<T, ReadIndexResponse>) {
          wire::ReadIndexResponse m;
          m.set_term(s(p.term));
          m.set_ctx(p.ctx);
          m.set_success(p.success);
          m.set_index(s(p.index));
          w.payload = m.SerializeAsString();
        }
      },
      e.payload);
  return w;
}

std::optional<Envelope> decode_request(const std::string& service, const std::string& method,
                                       const std::string& payload, const std::string& attachment) {
  Envelope e;
  // brpc resolves a package-less service name by its short name too.
  bool raft = service == kRaftService || service == "RaftService";
  bool ext = service == kExtService || service == "RaftExtService";
  if (raft && (method == "pre_vote" || method == "request_vote")) {
    braft::RequestVoteRequest m;
    if (!parse(payload, &m) || !get_ids(m, &e) || !nonneg(m.term()) || !nonneg(m.last_log_term()) ||
        !nonneg(m.last_log_index()))
      return std::nullopt;
    RequestVoteRequest r{method == "pre_vote", u(m.term()), u(m.last_log_term()),
                         u(m.last_log_index()), std::nullopt};
    if (m.has_disrupted_leader()) {
      auto id = PeerId::parse(m.disrupted_leader().peer_id());
      if (!id || !nonneg(m.disrupted_leader().term())) return std::nullopt;
      r.disrupted_leader = TermLeader{*id, u(m.disrupted_leader().term())};
    }
    e.payload = r;
  } else if (raft && method == "append_entries") {
    braft::AppendEntriesRequest m;
    if (!parse(payload, &m) || !get_ids(m, &e) || !nonneg(m.term()) || !nonneg(m.prev_log_term()) ||
        !nonneg(m.prev_log_index()) || !nonneg(m.committed_index()))
      return std::nullopt;
    AppendEntriesRequest r{
        u(m.term()), u(m.prev_log_term()), u(m.prev_log_index()), {}, u(m.committed_index())};
    size_t offset = 0;
    for (int i = 0; i < m.entries_size(); ++i) {
      const auto& em = m.entries(i);
      int64_t len = em.data_len();
      if (len < 0 || static_cast<uint64_t>(len) > attachment.size() - offset || em.term() < 0)
        return std::nullopt;
      Entry entry;
      entry.index = r.prev_log_index + 1 + static_cast<uint64_t>(i);
      entry.term = u(em.term());
      entry.type = static_cast<EntryType>(em.type());
      if (entry.type == EntryType::Unknown) return std::nullopt;
      if (entry.type == EntryType::Configuration) {
        Configuration c;
        if (!get_peers(em.peers(), &c.peers) || !get_peers(em.old_peers(), &c.old_peers) ||
            !get_peers(em.learners(), &c.learners))
          return std::nullopt;
        entry.conf = std::make_shared<const Configuration>(std::move(c));
      }
      if (len > 0 || entry.type == EntryType::Data)
        entry.data = std::make_shared<const std::string>(attachment.substr(offset, u(len)));
      offset += u(len);
      r.entries.push_back(std::move(entry));
    }
    if (offset != attachment.size()) return std::nullopt;
    e.payload = std::move(r);
  } else if (raft && method == "install_snapshot") {
    braft::InstallSnapshotRequest m;
    InstallSnapshotRequest r;
    if (!parse(payload, &m) || !get_ids(m, &e) || !nonneg(m.term()) || !get_meta(m.meta(), &r.meta))
      return std::nullopt;
    r.term = u(m.term());
    r.uri = m.uri();
    e.payload = std::move(r);
  } else if (raft && method == "timeout_now") {
    braft::TimeoutNowRequest m;
    if (!parse(payload, &m) || !get_ids(m, &e) || !nonneg(m.term())) return std::nullopt;
    e.payload = TimeoutNowRequest{u(m.term()), m.old_leader_stepped_down()};
  } else if (ext && method == "read_index") {
    wire::ReadIndexRequest m;
    if (!parse(payload, &m) || !get_ids(m, &e) || !nonneg(m.term())) return std::nullopt;
    e.payload = ReadIndexRequest{u(m.term()), m.ctx()};
  } else {
    return std::nullopt;
  }
  return e;
}

std::optional<Envelope> decode_response(const Envelope& request, int32_t error_code,
                                        const std::string& payload) {
  Envelope e{request.group, request.to, request.from, request.rpc_id, {}};
  bool ok = std::visit(
      [&](const auto& req) -> bool {
        using T = std::decay_t<decltype(req)>;
        if constexpr (std::is_same_v<T, AppendEntriesRequest>) {
          if (error_code == kEBUSY) {  // installing a snapshot: retry later, same term
            e.payload = AppendEntriesResponse{req.term, false, 0, true};
            return true;
          }
        }
        if (error_code != 0) return false;
        if constexpr (std::is_same_v<T, RequestVoteRequest>) {
          braft::RequestVoteResponse m;
          if (!parse(payload, &m) || !nonneg(m.term())) return false;
          e.payload =
              RequestVoteResponse{req.pre_vote, u(m.term()), m.granted(), m.rejected_by_lease()};
        } else if constexpr (std::is_same_v<T, AppendEntriesRequest>) {
          braft::AppendEntriesResponse m;
          if (!parse(payload, &m) || !nonneg(m.term()) || !nonneg(m.last_log_index())) return false;
          e.payload = AppendEntriesResponse{u(m.term()), m.success(), u(m.last_log_index()), false};
        } else if constexpr (std::is_same_v<T, InstallSnapshotRequest>) {
          braft::InstallSnapshotResponse m;
          if (!parse(payload, &m) || !nonneg(m.term())) return false;
          e.payload = InstallSnapshotResponse{u(m.term()), m.success()};
        } else if constexpr (std::is_same_v<T, TimeoutNowRequest>) {
          braft::TimeoutNowResponse m;
          if (!parse(payload, &m) || !nonneg(m.term())) return false;
          e.payload = TimeoutNowResponse{u(m.term()), m.success()};
        } else if constexpr (std::is_same_v<T, ReadIndexRequest>) {
          wire::ReadIndexResponse m;
          if (!parse(payload, &m) || !nonneg(m.term()) || !nonneg(m.index())) return false;
          e.payload = ReadIndexResponse{u(m.term()), m.ctx(), m.success(), u(m.index())};
        } else {
          return false;  // not a request
        }
        return true;
      },
      request.payload);
  if (!ok) return std::nullopt;
  return e;
}

}  // namespace raftstore::rpc
