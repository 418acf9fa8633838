# Prebuild toolchain for linux-arm64 (see toolchain.cmake).
set(RAFTSTORE_TRIPLE aarch64-linux-gnu)
set(RAFTSTORE_SYSROOT_ARCH arm64)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain.cmake)
