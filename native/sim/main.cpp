// raftstore-sim: run seeded schedules against the real core and check Raft's invariants.
//   raftstore-sim --seeds N [--start S] [--jobs J] [--mutant NAME]
//   raftstore-sim --seed S [--trace] [--mutant NAME]
//   raftstore-sim --mutants [--budget B] [--jobs J]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sim.h"

using raftstore::core::Mutant;
using raftstore::core::mutant_name;
namespace sim = raftstore::sim;

namespace {

struct Args {
  uint64_t seeds = 0, start = 1, seed = 0, budget = 5000;  // budget: as npm test
  unsigned jobs = 0;
  bool trace = false, mutants = false, single = false, verbose = false;
  Mutant mutant = Mutant::None;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "raftstore-sim: %s\n"
               "usage: raftstore-sim --seeds N [--start S] [--jobs J] [--mutant NAME]\n"
               "       raftstore-sim --seed S [--trace] [--mutant NAME]\n"
               "       raftstore-sim --mutants [--budget B] [--jobs J]\n",
               why);
  std::exit(2);
}

uint64_t number(const char* flag, const char* v) {
  if (!v) usage((std::string(flag) + " needs a value").c_str());
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (!*v || *end) usage((std::string(flag) + " expects a number, got '" + v + "'").c_str());
  return n;
}

Mutant parse_mutant(const char* v) {
  for (int m = 0; m < static_cast<int>(Mutant::Count); ++m)
    if (v && std::strcmp(v, mutant_name(static_cast<Mutant>(m))) == 0)
      return static_cast<Mutant>(m);
  std::string list;
  for (int m = 1; m < static_cast<int>(Mutant::Count); ++m)
    list += std::string(" ") + mutant_name(static_cast<Mutant>(m));
  usage(("unknown mutant; one of:" + list).c_str());
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (f == "--seeds")
      a.seeds = number("--seeds", v), ++i;
    else if (f == "--start")
      a.start = number("--start", v), ++i;
    else if (f == "--seed")
      a.seed = number("--seed", v), a.single = true, ++i;
    else if (f == "--budget")
      a.budget = number("--budget", v), ++i;
    else if (f == "--jobs")
      a.jobs = static_cast<unsigned>(number("--jobs", v)), ++i;
    else if (f == "--mutant")
      a.mutant = parse_mutant(v), ++i;
    else if (f == "--trace")
      a.trace = true;
    else if (f == "--verbose")
      a.verbose = true;
    else if (f == "--mutants")
      a.mutants = true;
    else
      usage(("unknown flag " + f).c_str());
  }
  if (!a.single && !a.mutants && a.seeds == 0) usage("say --seeds N, --seed S or --mutants");
  if (a.jobs == 0) a.jobs = std::max(1u, std::thread::hardware_concurrency());
  return a;
}

std::string replay(uint64_t seed, Mutant m) {
  std::string cmd = "npm run sim -- --seed " + std::to_string(seed) + " --trace";
  if (m != Mutant::None) cmd += std::string(" --mutant ") + mutant_name(m);
  return cmd;
}

// Runs seeds [start, start+count) on `jobs` threads. With stop_at_first, stops handing out
// seeds after a violation and reports the lowest failing seed.
struct Batch {
  uint64_t ran = 0, violations = 0, first_fail = 0;
  std::string first_violation;
  sim::Result totals;
};

Batch run_batch(uint64_t start, uint64_t count, unsigned jobs, Mutant m, bool stop_at_first,
                bool print_failures, bool verbose) {
  Batch b;
  std::mutex mu;
  std::atomic<uint64_t> next{start};
  std::atomic<bool> stop{false};
  auto worker = [&] {
    while (!stop) {
      uint64_t seed = next++;
      if (seed >= start + count) return;
      auto sc = sim::Scenario::from_seed(seed);
      sc.mutant = m;
      auto r = sim::run(sc);
      std::lock_guard<std::mutex> lock(mu);
      ++b.ran;
      b.totals.events += r.events;
      b.totals.acked_writes += r.acked_writes;
      b.totals.reads_ok += r.reads_ok;
      b.totals.elections += r.elections;
      b.totals.crashes += r.crashes;
      b.totals.snapshots_installed += r.snapshots_installed;
      b.totals.conf_changes_ok += r.conf_changes_ok;
      b.totals.transfers += r.transfers;
      b.totals.messages += r.messages;
      if (verbose)
        std::printf("seed %llu: %s events=%llu acked=%llu\n", (unsigned long long)seed,
                    r.ok ? "ok" : "VIOLATION", (unsigned long long)r.events,
                    (unsigned long long)r.acked_writes);
      if (!r.ok) {
        ++b.violations;
        if (!b.first_fail || seed < b.first_fail)
          b.first_fail = seed, b.first_violation = r.violation;
        if (print_failures)
          std::printf("FAIL seed=%llu at t=%llums: %s\n  scenario: %s\n  replay: %s\n",
                      (unsigned long long)seed, (unsigned long long)r.violation_at_ms,
                      r.violation.c_str(), sc.describe().c_str(), replay(seed, m).c_str());
        if (stop_at_first) stop = true;
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned j = 0; j < jobs; ++j) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  return b;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  auto t0 = std::chrono::steady_clock::now();

  if (a.single) {
    auto sc = sim::Scenario::from_seed(a.seed);
    sc.mutant = a.mutant;
    std::printf("scenario: %s\n", sc.describe().c_str());
    sim::TraceSink sink;
    if (a.trace) sink = [](const std::string& line) { std::printf("%s\n", line.c_str()); };
    auto r = sim::run(sc, sink);
    std::printf(
        "events=%llu messages=%llu elections=%llu acked_writes=%llu reads=%llu crashes=%llu "
        "snapshots_installed=%llu conf_changes=%llu transfers=%llu dropped=%llu\n",
        (unsigned long long)r.events, (unsigned long long)r.messages,
        (unsigned long long)r.elections, (unsigned long long)r.acked_writes,
        (unsigned long long)r.reads_ok, (unsigned long long)r.crashes,
        (unsigned long long)r.snapshots_installed, (unsigned long long)r.conf_changes_ok,
        (unsigned long long)r.transfers, (unsigned long long)r.dropped_invalid);
    if (!r.ok)
      std::printf("VIOLATION at t=%llums: %s\n", (unsigned long long)r.violation_at_ms,
                  r.violation.c_str());
    std::printf("sim: 1 schedules, %d violations\n", r.ok ? 0 : 1);
    return r.ok ? 0 : 1;
  }

  if (a.mutants) {
    int caught = 0, total = 0;
    for (int mi = 1; mi < static_cast<int>(Mutant::Count); ++mi) {
      auto m = static_cast<Mutant>(mi);
      ++total;
      auto tm = std::chrono::steady_clock::now();
      auto b = run_batch(1, a.budget, a.jobs, m, true, false, false);
      if (b.violations) {
        ++caught;
        std::printf("mutant %-30s caught at seed %llu (%.1fs): %s\n  replay: %s\n", mutant_name(m),
                    (unsigned long long)b.first_fail, seconds_since(tm), b.first_violation.c_str(),
                    replay(b.first_fail, m).c_str());
      } else {
        std::printf("mutant %-30s NOT caught in %llu schedules\n", mutant_name(m),
                    (unsigned long long)b.ran);
      }
    }
    std::printf("mutants: %d of %d caught\n", caught, total);
    return caught == total ? 0 : 1;
  }

  auto b = run_batch(a.start, a.seeds, a.jobs, a.mutant, false, true, a.verbose);
  double secs = seconds_since(t0);
  std::printf(
      "totals: events=%llu messages=%llu elections=%llu acked_writes=%llu reads=%llu "
      "crashes=%llu snapshots_installed=%llu conf_changes=%llu transfers=%llu\n",
      (unsigned long long)b.totals.events, (unsigned long long)b.totals.messages,
      (unsigned long long)b.totals.elections, (unsigned long long)b.totals.acked_writes,
      (unsigned long long)b.totals.reads_ok, (unsigned long long)b.totals.crashes,
      (unsigned long long)b.totals.snapshots_installed,
      (unsigned long long)b.totals.conf_changes_ok, (unsigned long long)b.totals.transfers);
  std::printf("rate: %.1f schedules/s on %u threads (%.0f per hour)\n", b.ran / secs, a.jobs,
              b.ran / secs * 3600);
  std::printf("sim: %llu schedules, %llu violations\n", (unsigned long long)b.ran,
              (unsigned long long)b.violations);
  return b.violations ? 1 : 0;
}
