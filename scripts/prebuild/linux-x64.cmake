# Prebuild toolchain for linux-x64 (see toolchain.cmake).
set(RAFTSTORE_TRIPLE x86_64-linux-gnu)
set(RAFTSTORE_SYSROOT_ARCH amd64)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain.cmake)
