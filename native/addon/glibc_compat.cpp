// Only in the portable prebuild (RAFTSTORE_PREBUILD): the static libstdc++ and libgcc of
// Debian's GCC 12 were compiled against glibc 2.36 and reach for three symbols that older C
// libraries do not have. Defining them here, hidden, binds those references inside the addon,
// so it loads on glibc 2.28 and behaves the same on a new one. docs/prebuilds.md.
#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <cstdint>

#define RAFTSTORE_HIDDEN __attribute__((visibility("hidden")))

extern "C" {

// glibc 2.32: libstdc++ skips atomic reference counting while this is nonzero. Zero is
// always correct (the addon runs threads anyway); it only forgoes that optimisation.
RAFTSTORE_HIDDEN char __libc_single_threaded = 0;

// glibc 2.36: std::random_device's default source. getentropy (glibc 2.25) reads the same
// kernel generator.
RAFTSTORE_HIDDEN uint32_t arc4random(void) {
  uint32_t value = 0;
  while (getentropy(&value, sizeof value) != 0) {
  }
  return value;
}

// glibc 2.35: libgcc's unwinder asks for the object that holds a return address and its
// PT_GNU_EH_FRAME segment, and then uses nothing else; without an answer every C++ exception
// would terminate the process. This answers it with dl_iterate_phdr, which is what libgcc
// itself did before glibc had _dl_find_object. Layout of glibc's struct on x86_64 and
// aarch64 (no eh_dbase, no eh_count).
struct dl_find_object {
  unsigned long long dlfo_flags;
  void* dlfo_map_start;
  void* dlfo_map_end;
  struct link_map* dlfo_link_map;
  void* dlfo_eh_frame;
  unsigned long long reserved[7];
};

RAFTSTORE_HIDDEN int _dl_find_object(void* address, dl_find_object* result) {
  struct Search {
    uintptr_t pc;
    dl_find_object* out;
    bool found;
  } search{reinterpret_cast<uintptr_t>(address), result, false};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        auto* s = static_cast<Search*>(data);
        uintptr_t lo = UINTPTR_MAX, hi = 0;
        bool holds = false;
        void* eh_frame = nullptr;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
          if (ph.p_type == PT_LOAD) {
            lo = start < lo ? start : lo;
            hi = start + ph.p_memsz > hi ? start + ph.p_memsz : hi;
            holds = holds || (s->pc >= start && s->pc < start + ph.p_memsz);
          } else if (ph.p_type == PT_GNU_EH_FRAME) {
            eh_frame = reinterpret_cast<void*>(start);
          }
        }
        if (!holds) return 0;
        *s->out = dl_find_object{};
        s->out->dlfo_map_start = reinterpret_cast<void*>(lo);
        s->out->dlfo_map_end = reinterpret_cast<void*>(hi);
        s->out->dlfo_eh_frame = eh_frame;
        s->found = true;
        return 1;
      },
      &search);
  return search.found ? 0 : -1;
}
}
