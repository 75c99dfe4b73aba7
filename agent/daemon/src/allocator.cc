// The agent's allocator. A bulk apply builds and frees tens of thousands of small JSON trees on two threads (the
// request's thread parses, the reconcile thread frees what the other allocated): under glibc's malloc, allocation,
// cross-thread frees and fastbin consolidation were about a quarter of both threads. jemalloc (Debian's
// libjemalloc) has per-thread caches and frees into the owning arena cheaply: the same apply takes about 40% less
// CPU (docs/benchmarks.md). Its configuration is linked into the binary (MALLOC_CONF still overrides it):
//   narenas:2            two arenas for a 2-vCPU node's two busy threads, not four per CPU: fewer half-empty pages;
//   background_thread    a thread of jemalloc's own returns unused pages while the agent is idle, so the RSS at rest
//                        does not keep the peak of the largest apply;
//   dirty_decay_ms:1000  ...within a second of their last use;
//   muzzy_decay_ms:0     and returns them outright (MADV_DONTNEED), so that they leave the RSS.
// Sanitizer builds (PLEXUS_FUZZ) keep glibc's malloc, which the sanitizers replace.
#include "plexus/agent/allocator.h"

#include <malloc.h>

#ifdef PLEXUS_JEMALLOC
#include <jemalloc/jemalloc.h>

extern "C" {
// Read by jemalloc at its initialisation (before main), by this name.
const char* malloc_conf = "narenas:2,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
}
#endif

namespace plexus::agent {

#define PLEXUS_STR2(x) #x
#define PLEXUS_STR(x) PLEXUS_STR2(x)

void initAllocator() {
#ifndef PLEXUS_JEMALLOC
  // Buffers from 256 KiB up (a bulk apply's request text, its parse buffers) are mapped for themselves and given
  // back when freed. glibc otherwise raises this threshold to the largest buffer freed so far, after which such
  // buffers come from the heap and leave it fragmented: 3-6 MiB more RSS after a 5 MB apply.
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
#endif
}

std::string allocatorName() {
#ifdef PLEXUS_JEMALLOC
  const char* version = nullptr;
  size_t size = sizeof(version);
  if (mallctl("version", &version, &size, nullptr, 0) == 0 && version != nullptr) {
    return std::string("jemalloc ") + version;
  }
  return "jemalloc";
#else
  return "glibc";
#endif
}

void releaseFreedMemory() {
#ifdef PLEXUS_JEMALLOC
  (void)mallctl("arena." PLEXUS_STR(MALLCTL_ARENAS_ALL) ".purge", nullptr, nullptr, nullptr, 0);
#else
  malloc_trim(0);
#endif
}

}  // namespace plexus::agent
