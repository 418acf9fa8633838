// Helpers shared by the files of the runtime (one role a file; see node_host.h).
#pragma once

#include <algorithm>
#include <chrono>

#include "node_host.h"

namespace raftstore::runtime {

using core::Envelope;

// The status page's HTML, script and style (status_page.cpp): one file, no external assets.
const std::string& status_page_html();

template <typename Clock>
inline uint64_t ms_of() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
          .count());
}
// Raft's timers: monotonic.
inline uint64_t now_ms() { return ms_of<std::chrono::steady_clock>(); }
// Metrics' clock.
inline uint64_t monotonic_us() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

using rpc::kEAGAIN;
using rpc::kEBUSY;
using rpc::kECATCHUP;
using rpc::kEINVAL;
using rpc::kEIO;
using rpc::kENOENT;
using rpc::kEPERM;

// braft's status codes for the core's refusals.
inline int32_t errno_of(core::Code c) {
  switch (c) {
    case core::Code::Ok:
      return 0;
    case core::Code::NotLeader:
      return kEPERM;
    case core::Code::Busy:
      return kEBUSY;
    case core::Code::InvalidArgument:
      return kEINVAL;
    case core::Code::CatchupFailed:
      return kECATCHUP;
    case core::Code::LeaderChanged:
      return kEPERM;
    case core::Code::Shutdown:
    case core::Code::ResultUnknown:
      return kEINVAL;
  }
  return kEINVAL;
}

}  // namespace raftstore::runtime
