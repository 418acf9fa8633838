// Error codes in responses: brpc's own (docs/braft-compatibility.md §1.4), and the errno values and
// braft RaftError codes that braft's services answer with.
#pragma once

#include <cstdint>

namespace raftstore::rpc {

constexpr int32_t kERPCTIMEDOUT = 1008;
constexpr int32_t kEFAILEDSOCKET = 1009;
constexpr int32_t kEHOSTDOWN = 112;
constexpr int32_t kENOSERVICE = 1001;
constexpr int32_t kENOMETHOD = 1002;
constexpr int32_t kEREQUEST = 1003;

constexpr int32_t kEPERM = 1;
constexpr int32_t kENOENT = 2;
constexpr int32_t kEIO = 5;
constexpr int32_t kEAGAIN = 11;
constexpr int32_t kEBUSY = 16;  // also AppendEntries while the follower installs a snapshot
constexpr int32_t kEINVAL = 22;
constexpr int32_t kECATCHUP = 10003;  // braft RaftError

}  // namespace raftstore::rpc
