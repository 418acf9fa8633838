// The Node-API binding: a NodeHost per ip:port, and a Node per (group, peer) on it. Raft
// runs on the host's native thread; JavaScript only sees batches. Everything a node has to
// tell JavaScript (committed entries, finished proposals, role changes, snapshot requests)
// goes through one TypedThreadSafeFunction per node, in order, so an apply batch always
// reaches JavaScript before anything that depends on it. Calls never block (queue size 0):
// a stalled event loop delays applying, never Raft itself.
#include <napi.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

#include "node_host.h"

namespace raftstore::addon {
namespace {

// What crosses to JavaScript, owned by the queue until CallJs (or finalization) runs.
struct ApplyBatch {
  std::string packed;  // per entry: index u64, term u64, type u8, length u32 (LE), data
  uint64_t count = 0;
  uint64_t last_index = 0;
};
struct Settle {
  std::unique_ptr<Napi::Promise::Deferred> deferred;
  core::Status status;
  std::string leader;  // for NotLeader
  uint64_t index = 0;  // resolved with this number, unless conf is set
  std::optional<std::pair<core::PeerList, core::PeerList>> conf;  // (old, new) peers
};
struct Refused {  // a proposal the engine did not apply (success is reported by apply)
  uint64_t seq;
  core::Status status;
  std::string leader;  // for NotLeader
};
struct RoleChange {
  core::Role role;
  uint64_t term;
  std::string leader;
};
struct SaveRequest {  // write a snapshot into dir, then call snapshotDone(token, error?)
  std::string dir;
  uint64_t token;
};
struct LoadRequest {  // replace the state with the snapshot in dir, before any later apply
  std::string dir;
  uint64_t index;    // the last entry it covers
  std::string conf;  // its configuration, as conf_text
};
// A configuration for JavaScript: peers, old peers (joint), learners; lines of braft's text.
std::string conf_text(const core::Configuration& c) {
  return core::to_string(c.peers) + "\n" + core::to_string(c.old_peers) + "\n" +
         core::to_string(c.learners);
}

using Item = std::variant<ApplyBatch, Settle, Refused, RoleChange, SaveRequest, LoadRequest,
                          runtime::LogRecord>;

// Metric families (runtime/metrics.h) as JavaScript objects: {name, help, type, samples:
// [{name, labels, value}]}, each sample under its full name (with _bucket, _sum, _count).
Napi::Array families_to_js(Napi::Env env, const std::vector<runtime::MetricFamily>& families) {
  Napi::Array out = Napi::Array::New(env, families.size());
  for (size_t i = 0; i < families.size(); ++i) {
    const auto& f = families[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", f.name);
    o.Set("help", f.help);
    o.Set("type", f.type);
    Napi::Array samples = Napi::Array::New(env, f.samples.size());
    for (size_t j = 0; j < f.samples.size(); ++j) {
      Napi::Object smp = Napi::Object::New(env);
      smp.Set("name", f.name + f.samples[j].suffix);
      Napi::Object labels = Napi::Object::New(env);
      for (const auto& [k, v] : f.samples[j].labels) labels.Set(k, v);
      smp.Set("labels", labels);
      smp.Set("value", Napi::Number::New(env, f.samples[j].value));
      samples.Set(j, smp);
    }
    o.Set("samples", samples);
    out.Set(i, o);
  }
  return out;
}

// Snapshot saves in flight: created on the host thread, finished from JavaScript.
struct SaveTokens {
  std::mutex mu;
  uint64_t next = 1;
  std::map<uint64_t, runtime::StateMachine::SaveDone> done;
};

const char* error_code(core::Code c) {
  switch (c) {
    case core::Code::Ok:
      return "OK";
    case core::Code::NotLeader:
      return "ERR_RAFT_NOT_LEADER";
    case core::Code::Busy:
      return "ERR_RAFT_BUSY";
    case core::Code::InvalidArgument:
      return "ERR_RAFT_BAD_ARGUMENT";
    case core::Code::CatchupFailed:
      return "ERR_RAFT_CATCHUP_FAILED";
    case core::Code::LeaderChanged:
      return "ERR_RAFT_LEADER_CHANGED";
    case core::Code::Shutdown:
      return "ERR_RAFT_SHUTDOWN";
    case core::Code::ResultUnknown:
      return "ERR_RAFT_RESULT_UNKNOWN";
  }
  return "ERR_RAFT_INTERNAL";
}

Napi::Error make_error(Napi::Env env, const char* code, const std::string& message,
                       const std::string& leader = "") {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", code);
  if (!leader.empty()) e.Set("leader", leader);
  return e;
}

Napi::Array peer_array(Napi::Env env, const core::PeerList& peers) {
  Napi::Array a = Napi::Array::New(env, peers.size());
  for (size_t i = 0; i < peers.size(); ++i) a.Set(i, peers[i].to_string());
  return a;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

struct Context;
void call_js(Napi::Env env, Napi::Function callback, Context* ctx, Item* item);
void deliver(Napi::Env env, Napi::Function callback, Context* ctx, Item& item);
using Tsfn = Napi::TypedThreadSafeFunction<Context, Item, call_js>;

// JS-thread state of one node's queue; freed by the queue's finalizer.
struct Context {
  Tsfn tsfn;
  uint64_t unsettled = 0;  // proposals in flight: while any, the queue keeps Node alive
  void hold(Napi::Env env) {
    if (unsettled++ == 0) tsfn.Ref(env);
  }
  void settled(Napi::Env env) {
    if (--unsettled == 0) tsfn.Unref(env);
  }
};

// JS receives: ('apply', buffer, count, lastIndex) | ('role', role, term, leader).
void call_js(Napi::Env env, Napi::Function callback, Context* ctx, Item* raw) {
  std::unique_ptr<Item> item(raw);
  if (!env) return;  // the environment is going away: nobody is left to settle for
  try {
    deliver(env, callback, ctx, *item);
  } catch (const Napi::Error& e) {
    // The JavaScript callback threw. There is no caller to throw to: like a throwing event
    // listener, it becomes the process's uncaught exception (never a C++ terminate).
    napi_fatal_exception(env, e.Value());
  }
}

void deliver(Napi::Env env, Napi::Function callback, Context* ctx, Item& it_) {
  std::visit(
      [&](auto& it) {
        using T = std::decay_t<decltype(it)>;
        if constexpr (std::is_same_v<T, ApplyBatch>) {
          auto buf = Napi::Buffer<char>::Copy(env, it.packed.data(), it.packed.size());
          callback.Call({Napi::String::New(env, "apply"), buf,
                         Napi::Number::New(env, static_cast<double>(it.count)),
                         Napi::Number::New(env, static_cast<double>(it.last_index))});
        } else if constexpr (std::is_same_v<T, Settle>) {
          ctx->settled(env);
          if (it.status.ok() && it.conf) {
            Napi::Object r = Napi::Object::New(env);
            r.Set("oldPeers", peer_array(env, it.conf->first));
            r.Set("newPeers", peer_array(env, it.conf->second));
            it.deferred->Resolve(r);
          } else if (it.status.ok()) {
            it.deferred->Resolve(Napi::Number::New(env, static_cast<double>(it.index)));
          } else
            it.deferred->Reject(
                make_error(env, error_code(it.status.code), it.status.message, it.leader).Value());
        } else if constexpr (std::is_same_v<T, Refused>) {
          callback.Call(
              {Napi::String::New(env, "refused"),
               Napi::Number::New(env, static_cast<double>(it.seq)),
               make_error(env, error_code(it.status.code), it.status.message, it.leader).Value()});
        } else if constexpr (std::is_same_v<T, RoleChange>) {
          callback.Call({Napi::String::New(env, "role"),
                         Napi::String::New(env, core::role_name(it.role)),
                         Napi::Number::New(env, static_cast<double>(it.term)),
                         Napi::String::New(env, it.leader)});
        } else if constexpr (std::is_same_v<T, SaveRequest>) {
          callback.Call({Napi::String::New(env, "save"), Napi::String::New(env, it.dir),
                         Napi::Number::New(env, static_cast<double>(it.token))});
        } else if constexpr (std::is_same_v<T, LoadRequest>) {
          callback.Call({Napi::String::New(env, "load"), Napi::String::New(env, it.dir),
                         Napi::Number::New(env, static_cast<double>(it.index)),
                         Napi::String::New(env, it.conf)});
        } else if constexpr (std::is_same_v<T, runtime::LogRecord>) {
          Napi::Object fields = Napi::Object::New(env);
          for (const auto& [k, v] : it.fields) fields.Set(k, v);
          callback.Call({Napi::String::New(env, "log"),
                         Napi::String::New(env, runtime::level_name(it.level)),
                         Napi::String::New(env, it.message), fields});
        }
      },
      it_);
}

class Host : public Napi::ObjectWrap<Host> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "Host",
        {InstanceMethod<&Host::Close>("close"), InstanceMethod<&Host::Metrics>("metrics")});
  }
  // new Host(ip, port, adminAllow[], tls?: {ca, cert, key})
  explicit Host(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Host>(info) {
    Napi::Env env = info.Env();
    std::string ip = info[0].As<Napi::String>();
    uint32_t port = info[1].As<Napi::Number>().Uint32Value();
    runtime::HostOptions opt;
    if (info.Length() > 2 && info[2].IsArray()) {
      Napi::Array a = info[2].As<Napi::Array>();
      opt.admin_allow.clear();
      for (uint32_t i = 0; i < a.Length(); ++i)
        opt.admin_allow.push_back(a.Get(i).As<Napi::String>().Utf8Value());
    }
    if (info.Length() > 3 && info[3].IsObject()) {
      Napi::Object t = info[3].As<Napi::Object>();
      opt.tls = {t.Get("ca").As<Napi::String>(), t.Get("cert").As<Napi::String>(),
                 t.Get("key").As<Napi::String>()};
    }
    auto st = runtime::NodeHost::start(ip, static_cast<uint16_t>(port), &host_, std::move(opt));
    if (st.code == storage::Code::InvalidArgument)
      throw make_error(env, "ERR_RAFT_BAD_CONFIG", st.message);
    if (!st.ok()) throw make_error(env, "ERR_RAFT_LISTEN", st.message);
  }
  Napi::Value Metrics(const Napi::CallbackInfo& info) {
    if (!host_) return Napi::Array::New(info.Env());
    return families_to_js(info.Env(), host_->metrics());
  }
  runtime::NodeHost* get() const { return host_.get(); }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    host_.reset();
    return info.Env().Undefined();
  }

 private:
  std::unique_ptr<runtime::NodeHost> host_;
};

class Node : public Napi::ObjectWrap<Node> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "Node",
        {InstanceMethod<&Node::Propose>("propose"), InstanceMethod<&Node::Ref>("ref"),
         InstanceMethod<&Node::Unref>("unref"),
         InstanceMethod<&Node::ChangeMembership>("changeMembership"),
         InstanceMethod<&Node::TransferLeader>("transferLeader"),
         InstanceMethod<&Node::ResetPeers>("resetPeers"),
         InstanceMethod<&Node::ReadIndex>("readIndex"), InstanceMethod<&Node::Snapshot>("snapshot"),
         InstanceMethod<&Node::SnapshotDone>("snapshotDone"),
         InstanceMethod<&Node::Status>("status"), InstanceMethod<&Node::SetApplied>("setApplied"),
         InstanceMethod<&Node::Metrics>("metrics"), InstanceMethod<&Node::Events>("events"),
         InstanceMethod<&Node::Close>("close")});
  }

  // new Node(host, options, callback)
  explicit Node(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Node>(info) {
    Napi::Env env = info.Env();
    Host* host = Host::Unwrap(info[0].As<Napi::Object>());
    if (!host->get()) throw make_error(env, "ERR_RAFT_SHUTDOWN", "the host is closed");
    host_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
    host_ = host->get();
    Napi::Object o = info[1].As<Napi::Object>();
    runtime::NodeOptions opt;
    opt.group = o.Get("group").As<Napi::String>();
    auto self = core::PeerId::parse(o.Get("self").As<Napi::String>().Utf8Value());
    auto conf = core::parse_peer_list(o.Get("config").As<Napi::String>().Utf8Value());
    if (!self || !conf) throw make_error(env, "ERR_RAFT_BAD_CONFIG", "malformed peer id or config");
    opt.self = *self;
    opt.initial_conf.peers = *conf;
    opt.data_dir = o.Get("dir").As<Napi::String>();
    opt.raft.election_timeout_ms = o.Get("electionTimeoutMs").As<Napi::Number>().Int64Value();
    opt.raft.max_election_delay_ms = o.Get("maxElectionDelayMs").As<Napi::Number>().Int64Value();
    opt.raft.leader_lease = o.Get("leaderLease").As<Napi::Boolean>();
    opt.raft.max_uncommitted_entries =
        o.Get("maxUncommittedEntries").As<Napi::Number>().Int64Value();
    opt.snapshot_interval_s = o.Get("snapshotIntervalS").As<Napi::Number>().Uint32Value();
    opt.snapshot_log_threshold = o.Get("snapshotLogThreshold").As<Napi::Number>().Int64Value();
    opt.forward_proposals = true;  // propose() works on every replica
    opt.stuck_apply_timeout_ms = o.Get("stuckApplyTimeoutMs").As<Napi::Number>().Uint32Value();
    opt.stamp_leader_time = true;  // Entry.time: one clock, the leader's, for every replica
    if (auto level = o.Get("logLevel"); level.IsString()) {
      if (!runtime::parse_level(level.As<Napi::String>().Utf8Value(), &opt.log_level))
        throw make_error(env, "ERR_RAFT_BAD_ARGUMENT",
                         "logLevel must be debug, info, warn or error");
    }
    group_ = opt.group;
    self_ = opt.self;

    auto ctx = std::make_unique<Context>();
    tsfn_ = Tsfn::New(env, info[2].As<Napi::Function>(), "raftstore-node", 0, 1, ctx.get(),
                      [](Napi::Env, void*, Context* c) { std::unique_ptr<Context> owned(c); });
    ctx->tsfn = tsfn_;
    ctx_ = ctx.release();  // the queue owns it now; its finalizer frees it
    tsfn_.Unref(env);      // a node alone does not keep the process alive; its proposals do
    runtime::StateMachine sm;
    Tsfn tsfn = tsfn_;
    sm.apply = [tsfn](const std::vector<core::Entry>& entries) mutable {
      auto batch = std::make_unique<Item>(ApplyBatch{});
      auto& b = std::get<ApplyBatch>(*batch);
      for (const auto& e : entries) {
        std::string conf;
        if (e.type == core::EntryType::Configuration && e.conf) conf = conf_text(*e.conf);
        const std::string* d = e.conf ? &conf : e.data.get();
        put_le(b.packed, e.index, 8);
        put_le(b.packed, e.term, 8);
        b.packed.push_back(static_cast<char>(e.type));
        put_le(b.packed, d ? d->size() : 0, 4);
        if (d) b.packed += *d;
        ++b.count;
        b.last_index = e.index;
      }
      if (tsfn.NonBlockingCall(batch.get()) == napi_ok) batch.release();
    };
    if (o.Get("snapshots").As<Napi::Boolean>()) {
      // JavaScript captures its state when it takes the save request off the queue, which
      // is after every batch handed out before it: the state at the index the meta names.
      sm.save = [tsfn, tokens = tokens_](const std::string& dir,
                                         runtime::StateMachine::SaveDone done) mutable {
        uint64_t token;
        {
          std::lock_guard<std::mutex> l(tokens->mu);
          token = tokens->next++;
          tokens->done[token] = std::move(done);
        }
        auto item = std::make_unique<Item>(SaveRequest{dir, token});
        if (tsfn.NonBlockingCall(item.get()) == napi_ok) return void(item.release());
        runtime::StateMachine::SaveDone failed;
        {
          std::lock_guard<std::mutex> l(tokens->mu);
          failed = std::move(tokens->done[token]);
          tokens->done.erase(token);
        }
        failed({storage::Code::Io, "the node is closing"});
      };
      // Queued like a batch, so it happens before any later apply; a failure in
      // JavaScript stops the replica there (ERR_RAFT_STATE_MACHINE).
      sm.load = [tsfn](const std::string& dir) mutable {
        storage::SnapshotInfo info;
        if (auto st = storage::SnapshotStore::read_info(dir, &info); !st.ok()) return st;
        auto item = std::make_unique<Item>(
            LoadRequest{dir, info.meta.last_included_index, conf_text(info.meta.conf)});
        if (tsfn.NonBlockingCall(item.get()) != napi_ok)
          return storage::Status{storage::Code::Io, "the node is closing"};
        item.release();
        return storage::Status{};
      };
    }
    // Log records go through the queue like everything else, in order with the batches.
    opt.log = [tsfn](const runtime::LogRecord& r) mutable {
      auto item = std::make_unique<Item>(r);
      if (tsfn.NonBlockingCall(item.get()) == napi_ok) item.release();
    };
    sm.on_role = [tsfn](core::Role role, uint64_t term, const core::PeerId& leader) mutable {
      auto item =
          std::make_unique<Item>(RoleChange{role, term, leader.empty() ? "" : leader.to_string()});
      if (tsfn.NonBlockingCall(item.get()) == napi_ok) item.release();
    };
    auto st = host_->add_node(opt, std::move(sm), &node_);
    if (!st.ok()) {
      tsfn_.Release();
      throw make_error(env, storage::code_string(st.code), st.message);
    }
  }

  // A promise settled from the host thread, through the queue, exactly once.
  class Later {
   public:
    Later(Tsfn tsfn, std::unique_ptr<Napi::Promise::Deferred> d, std::shared_ptr<runtime::Node> n)
        : tsfn_(tsfn), deferred_(std::move(d)), node_(std::move(n)) {}
    void settle(core::Status st, uint64_t index,
                std::optional<std::pair<core::PeerList, core::PeerList>> conf = std::nullopt) {
      if (!deferred_) return;
      auto item = std::make_unique<Item>(
          Settle{std::move(deferred_), std::move(st), "", index, std::move(conf)});
      auto& s = std::get<Settle>(*item);
      if (s.status.code == core::Code::NotLeader)
        if (auto leader = node_->status().leader; !leader.empty()) s.leader = leader.to_string();
      if (tsfn_.NonBlockingCall(item.get()) == napi_ok) item.release();
    }

   private:
    Tsfn tsfn_;
    std::unique_ptr<Napi::Promise::Deferred> deferred_;
    std::shared_ptr<runtime::Node> node_;
  };

  template <typename Start>
  Napi::Value settle_later(Napi::Env env, Start&& start) {
    auto deferred = std::make_unique<Napi::Promise::Deferred>(env);
    Napi::Promise promise = deferred->Promise();
    if (!node_) {
      deferred->Reject(make_error(env, "ERR_RAFT_SHUTDOWN", "the node is closed").Value());
      return promise;
    }
    ctx_->hold(env);
    start(std::make_shared<Later>(tsfn_, std::move(deferred), node_));
    return promise;
  }

  static core::PeerList peers_of(Napi::Env env, Napi::Value v) {
    core::PeerList out;
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      std::string text = a.Get(i).As<Napi::String>();
      auto id = core::PeerId::parse(text);
      if (!id) throw make_error(env, "ERR_RAFT_BAD_ARGUMENT", "malformed peer id " + text);
      core::insert_sorted(out, *id);
    }
    return out;
  }

  // propose(buffer) -> Promise<index>: settled once the entry is committed and handed to
  // the state machine here (or refused).
  // propose(buffer, seq): nothing to wait for here. The entry's result comes with its
  // apply batch; only a refusal comes back, as ('refused', seq, error). No promise or queue
  // item per successful proposal: at high rates that was most of the bridge's cost.
  Napi::Value Propose(const Napi::CallbackInfo& info) {
    if (!node_) throw make_error(info.Env(), "ERR_RAFT_SHUTDOWN", "the node is closed");
    auto buf = info[0].As<Napi::Buffer<char>>();
    auto seq = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    std::string data(buf.Data(), buf.Length());
    node_->propose(std::move(data),
                   [tsfn = tsfn_, seq, node = node_](core::Status st, uint64_t) mutable {
                     if (st.ok()) return;
                     auto item = std::make_unique<Item>(Refused{seq, std::move(st), ""});
                     auto& r = std::get<Refused>(*item);
                     if (r.status.code == core::Code::NotLeader)
                       if (auto leader = node->status().leader; !leader.empty())
                         r.leader = leader.to_string();
                     if (tsfn.NonBlockingCall(item.get()) == napi_ok) item.release();
                   });
    return info.Env().Undefined();
  }
  // While proposals are in flight the node keeps the process alive (RaftNode counts them).
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (node_) ctx_->hold(info.Env());
    return info.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (node_) ctx_->settled(info.Env());
    return info.Env().Undefined();
  }

  // changeMembership('add_peer' | 'remove_peer' | 'change_peers', peers[]) ->
  // Promise<{oldPeers, newPeers}>, settled when the change commits.
  Napi::Value ChangeMembership(const Napi::CallbackInfo& info) {
    std::string method = info[0].As<Napi::String>();
    auto peers = peers_of(info.Env(), info[1]);
    return settle_later(info.Env(), [&](std::shared_ptr<Later> later) {
      node_->change_membership(method, peers, [later](const core::ConfChangeResult& r) {
        later->settle(r.status, 0, std::make_pair(r.old_conf.peers, r.new_conf.peers));
      });
    });
  }
  // transferLeader(peer | '') -> Promise<void>; '' lets the engine pick (ANY_PEER).
  Napi::Value TransferLeader(const Napi::CallbackInfo& info) {
    std::string text = info[0].As<Napi::String>();
    core::PeerId target;
    if (!text.empty()) {
      auto id = core::PeerId::parse(text);
      if (!id) throw make_error(info.Env(), "ERR_RAFT_BAD_ARGUMENT", "malformed peer id " + text);
      target = *id;
    }
    return settle_later(info.Env(), [&](std::shared_ptr<Later> later) {
      node_->transfer_leadership(target, [later](core::Status st) { later->settle(st, 0); });
    });
  }
  Napi::Value ResetPeers(const Napi::CallbackInfo& info) {
    auto peers = peers_of(info.Env(), info[0]);
    return settle_later(info.Env(), [&](std::shared_ptr<Later> later) {
      node_->reset_peers(peers, [later](core::Status st) { later->settle(st, 0); });
    });
  }
  // readIndex(lease) -> Promise<index>
  Napi::Value ReadIndex(const Napi::CallbackInfo& info) {
    bool lease = info[0].As<Napi::Boolean>();
    return settle_later(info.Env(), [&](std::shared_ptr<Later> later) {
      node_->read_index(lease,
                        [later](core::Status st, uint64_t index) { later->settle(st, index); });
    });
  }
  Napi::Value Snapshot(const Napi::CallbackInfo& info) {
    return settle_later(info.Env(), [&](std::shared_ptr<Later> later) {
      node_->snapshot([later](storage::Status st) {
        later->settle(
            st.ok() ? core::Status{} : core::Status{core::Code::InvalidArgument, st.message}, 0);
      });
    });
  }

  Napi::Value Status(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    if (!node_) return env.Null();
    core::NodeStatus s = node_->status();
    auto num = [&](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
    auto list = [&](const core::PeerList& peers) {
      Napi::Array a = Napi::Array::New(env, peers.size());
      for (size_t i = 0; i < peers.size(); ++i) a.Set(i, peers[i].to_string());
      return a;
    };
    out.Set("role", core::role_name(s.role));
    out.Set("term", num(s.term));
    out.Set("leaderId",
            s.leader.empty() ? env.Null() : Napi::String::New(env, s.leader.to_string()));
    out.Set("firstIndex", num(s.first_index));
    out.Set("lastIndex", num(s.last_index));
    out.Set("commitIndex", num(s.commit_index));
    out.Set("nativeAppliedIndex", num(s.applied_index));
    out.Set("appliedIndex", num(applied_.load()));
    out.Set("snapshotIndex", num(node_->snapshot_index()));
    Napi::Object conf = Napi::Object::New(env);
    conf.Set("peers", list(s.conf.peers));
    conf.Set("oldPeers", list(s.conf.old_peers));
    conf.Set("learners", list(s.conf.learners));
    out.Set("configuration", conf);
    Napi::Array peers = Napi::Array::New(env, s.peers.size());
    for (size_t i = 0; i < s.peers.size(); ++i) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("id", s.peers[i].id.to_string());
      p.Set("matchIndex", num(s.peers[i].match_index));
      p.Set("nextIndex", num(s.peers[i].next_index));
      p.Set("lastContactMs", num(s.peers[i].last_ack_ms));
      p.Set("state", s.peers[i].state);
      peers.Set(i, p);
    }
    out.Set("peers", peers);
    return out;
  }

  Napi::Value Metrics(const Napi::CallbackInfo& info) {
    if (!node_) return Napi::Array::New(info.Env());
    return families_to_js(info.Env(), node_->metrics());
  }
  // The recent info-and-above records: [{timeMs, level, message, fields}].
  Napi::Value Events(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!node_) return Napi::Array::New(env);
    auto records = node_->recent_events();
    Napi::Array out = Napi::Array::New(env, records.size());
    for (size_t i = 0; i < records.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("timeMs", Napi::Number::New(env, static_cast<double>(records[i].wall_ms)));
      o.Set("level", runtime::level_name(records[i].level));
      o.Set("message", records[i].message);
      Napi::Object fields = Napi::Object::New(env);
      for (const auto& [k, v] : records[i].fields) fields.Set(k, v);
      o.Set("fields", fields);
      out.Set(i, o);
    }
    return out;
  }

  // snapshotDone(token, error?): JavaScript finished writing the snapshot files.
  Napi::Value SnapshotDone(const Napi::CallbackInfo& info) {
    auto token = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
    runtime::StateMachine::SaveDone done;
    {
      std::lock_guard<std::mutex> l(tokens_->mu);
      auto it = tokens_->done.find(token);
      if (it == tokens_->done.end()) return info.Env().Undefined();
      done = std::move(it->second);
      tokens_->done.erase(it);
    }
    if (info.Length() > 1 && info[1].IsString())
      done({storage::Code::Io,
            "state machine snapshot failed: " + info[1].As<Napi::String>().Utf8Value()});
    else
      done({});
    return info.Env().Undefined();
  }

  // JavaScript applied everything up to this index.
  Napi::Value SetApplied(const Napi::CallbackInfo& info) {
    applied_.store(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
    if (node_) node_->report_applied(applied_.load());
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (node_) {
      host_->remove_node(group_, self_);  // fails what is pending, releases the directory
      node_.reset();
      tsfn_.Release();
    }
    return info.Env().Undefined();
  }

 private:
  Napi::ObjectReference host_ref_;  // keeps the host alive while this node is
  runtime::NodeHost* host_ = nullptr;
  std::shared_ptr<runtime::Node> node_;
  std::string group_;
  core::PeerId self_;
  Tsfn tsfn_;
  Context* ctx_ = nullptr;  // JS thread only
  std::shared_ptr<SaveTokens> tokens_ = std::make_shared<SaveTokens>();
  std::atomic<uint64_t> applied_{0};
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Host", Host::Init(env));
  exports.Set("Node", Node::Init(env));
  return exports;
}

}  // namespace
}  // namespace raftstore::addon

static Napi::Object InitRaftstore(Napi::Env env, Napi::Object exports) {
  return raftstore::addon::Init(env, exports);
}
NODE_API_MODULE(raftstore, InitRaftstore)
