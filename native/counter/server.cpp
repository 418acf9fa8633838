// raftstore-counter-server: braft's counter example on raftstore. A replicated 64-bit
// counter; example.CounterService/fetch_add returns the value before the addition, and a
// follower answers with a redirect to the leader. Flags follow braft's example.
#include <csignal>
#include <cstdio>
#include <map>
#include <thread>

#include "counter.pb.h"
#include "flags.h"
#include "node_host.h"

using namespace raftstore;

namespace {

volatile std::sig_atomic_t g_stop = 0;

struct Counter {
  int64_t value = 0;                   // host thread only
  std::map<uint64_t, int64_t> before;  // index -> value before that entry (until answered)
};

}  // namespace

int main(int argc, char** argv) {
  try {
    counter::Flags f(argc, argv,
                     {{"ip", "127.0.0.1"},
                      {"port", "8100"},
                      {"conf", ""},
                      {"group", "Counter"},
                      {"data_path", "./data"},
                      {"election_timeout_ms", "5000"},
                      {"snapshot_interval", "30"}});
    auto conf = core::parse_peer_list(f.str("conf"));
    // Empty (braft's way to start a new replica): it waits, never campaigning, until a
    // leader adds it (add_peer); a data directory with a configuration uses that instead.
    if (!conf) {
      std::fprintf(stderr,
                   "ERR_RAFT_BAD_CONFIG: -conf must list the peers, e.g. "
                   "127.0.0.1:8100:0,127.0.0.1:8101:0,127.0.0.1:8102:0, or be empty (\"\") "
                   "for a replica that waits to be added with add_peer\n");
      return 2;
    }
    int64_t port = f.num("port"), timeout = f.num("election_timeout_ms");
    if (port <= 0 || port > 65535 || timeout <= 0) {
      std::fprintf(stderr,
                   "ERR_RAFT_BAD_CONFIG: -port must be 1-65535 and "
                   "-election_timeout_ms positive\n");
      return 2;
    }
    int64_t snapshot_interval = f.num("snapshot_interval");
    if (snapshot_interval < 0) {
      std::fprintf(stderr, "ERR_RAFT_BAD_CONFIG: -snapshot_interval must be 0 (off) or more\n");
      return 2;
    }

    std::unique_ptr<runtime::NodeHost> host;
    if (auto st = runtime::NodeHost::start(f.str("ip"), static_cast<uint16_t>(port), &host);
        !st.ok()) {
      std::fprintf(stderr, "%s: %s\n", storage::code_string(st.code), st.message.c_str());
      return 1;
    }
    auto self = core::PeerId::parse(f.str("ip") + ":" + std::to_string(port) + ":0");
    auto state = std::make_shared<Counter>();
    runtime::NodeOptions o;
    o.group = f.str("group");
    o.self = *self;
    o.data_dir = f.str("data_path");
    o.initial_conf.peers = *conf;
    o.raft.election_timeout_ms = static_cast<uint64_t>(timeout);
    o.raft.max_election_delay_ms = std::min<uint64_t>(static_cast<uint64_t>(timeout), 1000);
    o.snapshot_interval_s = static_cast<uint32_t>(snapshot_interval);
    // Followers serve nothing here (they redirect), so they need not hear of each commit at
    // once; as braft, they learn it from the next append or heartbeat.
    o.raft.notify_commit = false;
    runtime::StateMachine sm;
    sm.apply = [state](const std::vector<core::Entry>& entries) {
      for (const auto& e : entries) {
        if (e.type != core::EntryType::Data) continue;
        example::FetchAddRequest req;
        if (!req.ParseFromString(*e.data)) continue;  // not ours; deterministic everywhere
        state->before[e.index] = state->value;
        state->value += req.value();
      }
      while (state->before.size() > 100000) state->before.erase(state->before.begin());
    };
    // The snapshot is one file, "data", holding the value in decimal.
    sm.save = [state](const std::string& dir, runtime::StateMachine::SaveDone done) {
      std::string path = dir + "/data";
      std::FILE* out = std::fopen(path.c_str(), "w");
      bool ok = out && std::fprintf(out, "%lld\n", static_cast<long long>(state->value)) > 0;
      if (out && std::fclose(out) != 0) ok = false;
      done(ok ? storage::Status{} : storage::os_error("write " + path));
    };
    sm.load = [state](const std::string& dir) {
      std::string path = dir + "/data";
      std::FILE* in = std::fopen(path.c_str(), "r");
      long long v = 0;
      bool ok = in && std::fscanf(in, "%lld", &v) == 1;
      if (in) std::fclose(in);
      if (!ok) return storage::Status{storage::Code::CorruptLog, path + ": no counter value"};
      state->value = v;
      state->before.clear();
      return storage::Status{};
    };
    std::shared_ptr<runtime::Node> node;
    auto st = host->add_node(o, std::move(sm), &node);
    if (!st.ok()) {
      std::fprintf(stderr, "%s: %s\n", storage::code_string(st.code), st.message.c_str());
      return 1;
    }
    host->add_service(
        "example.CounterService", [node, state](rpc::Frame frame, rpc::Server::Respond respond) {
          example::CounterResponse resp;
          auto redirect = [&] {
            resp.set_success(false);
            auto leader = node->status().leader;
            if (!leader.empty()) resp.set_redirect(leader.to_string());
            respond(0, "", resp.SerializeAsString(), "");
          };
          const std::string& method = frame.meta.request().method_name();
          if (node->status().role != core::Role::Leader) return redirect();
          if (method == "get") {
            resp.set_success(true);
            resp.set_value(state->value);
            return respond(0, "", resp.SerializeAsString(), "");
          }
          if (method != "fetch_add")
            return respond(rpc::kENOMETHOD, "Fail to find method=CounterService/" + method, "", "");
          example::FetchAddRequest req;
          if (!req.ParseFromString(frame.payload))
            return respond(rpc::kEREQUEST, "bad FetchAddRequest", "", "");
          node->propose(frame.payload, [node, state, respond](core::Status st, uint64_t index) {
            example::CounterResponse r;
            auto it = state->before.find(index);
            r.set_success(st.ok() && it != state->before.end());
            if (r.success()) {
              r.set_value(it->second);
              state->before.erase(it);
            } else if (auto leader = node->status().leader; !leader.empty()) {
              r.set_redirect(leader.to_string());
            }
            respond(0, "", r.SerializeAsString(), "");
          });
        });
    std::fprintf(stderr, "counter-server: serving group %s as %s on port %lld\n", o.group.c_str(),
                 self->to_string().c_str(), static_cast<long long>(port));
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ERR_RAFT_BAD_CONFIG: %s\n", e.what());
    return 2;
  }
}
