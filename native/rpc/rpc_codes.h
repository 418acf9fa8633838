// brpc error codes used by the transport and the services (braft-protocol.md §1.4).
#pragma once

#include <cstdint>

namespace raftstore::rpc {

constexpr int32_t kERPCTIMEDOUT = 1008;
constexpr int32_t kEFAILEDSOCKET = 1009;
constexpr int32_t kEHOSTDOWN = 112;
constexpr int32_t kENOSERVICE = 1001;
constexpr int32_t kENOMETHOD = 1002;
constexpr int32_t kEREQUEST = 1003;

}  // namespace raftstore::rpc
