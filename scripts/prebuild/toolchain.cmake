# Debian's g++ 12 for ${RAFTSTORE_TRIPLE}, compiling and linking against the Debian 11 sysroot
# that sysroot.sh makes (glibc 2.31), so every C library symbol binds to the oldest version
# that has it. Debian's compilers look in the build machine's own glibc (the native one) or in
# the cross glibc 2.36 under /usr/<triple> (the cross one) before any sysroot, so the C
# library's headers, start files and link stubs are named explicitly, ahead of those.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${RAFTSTORE_TRIPLE}-gcc-12)
set(CMAKE_CXX_COMPILER ${RAFTSTORE_TRIPLE}-g++-12)
set(CMAKE_SYSROOT ${CMAKE_CURRENT_LIST_DIR}/../../build/sysroot/${RAFTSTORE_SYSROOT_ARCH})
get_filename_component(CMAKE_SYSROOT ${CMAKE_SYSROOT} ABSOLUTE)

execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=include
                OUTPUT_VARIABLE _gcc_include OUTPUT_STRIP_TRAILING_WHITESPACE)
# The C++ headers that belong to this compiler's libstdc++, wherever Debian put them.
if(EXISTS /usr/${RAFTSTORE_TRIPLE}/include/c++/12)
  set(_cxx /usr/${RAFTSTORE_TRIPLE}/include/c++/12)
  set(_cxx_arch ${_cxx}/${RAFTSTORE_TRIPLE})
else()
  set(_cxx /usr/include/c++/12)
  set(_cxx_arch /usr/include/${RAFTSTORE_TRIPLE}/c++/12)
endif()
set(_inc "-nostdinc -isystem ${_cxx} -isystem ${_cxx_arch} -isystem ${_cxx}/backward")
string(APPEND _inc " -isystem ${_gcc_include}")
string(APPEND _inc " -isystem ${CMAKE_SYSROOT}/usr/include/${RAFTSTORE_TRIPLE} -isystem ${CMAKE_SYSROOT}/usr/include")
set(_inc_C "-nostdinc -isystem ${_gcc_include} -isystem ${CMAKE_SYSROOT}/usr/include/${RAFTSTORE_TRIPLE} -isystem ${CMAKE_SYSROOT}/usr/include")
set(_inc_CXX "${_inc}")
# Prepended to whatever flags the caller gives (cmake-js sets CMAKE_CXX_FLAGS itself, which
# would replace *_FLAGS_INIT); the toolchain file is read more than once, so only once.
foreach(_lang C CXX)
  if(NOT "${CMAKE_${_lang}_FLAGS}" MATCHES "-nostdinc")
    set(CMAKE_${_lang}_FLAGS "${_inc_${_lang}} ${CMAKE_${_lang}_FLAGS}")
  endif()
endforeach()
set(_lib "-B${CMAKE_SYSROOT}/usr/lib/${RAFTSTORE_TRIPLE} -L${CMAKE_SYSROOT}/usr/lib/${RAFTSTORE_TRIPLE}")
string(APPEND _lib " -L${CMAKE_SYSROOT}/lib/${RAFTSTORE_TRIPLE} -Wl,-rpath-link,${CMAKE_SYSROOT}/lib/${RAFTSTORE_TRIPLE}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "${_lib}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "${_lib}")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
