#pragma once
// The agent's memory allocator (agent/daemon/src/allocator.cc): jemalloc where the build links it, else glibc.

#include <string>

namespace plexus::agent {

// Settings that must come before the first large allocation (glibc's mmap threshold); first thing in main().
void initAllocator();

// "jemalloc 5.3.0-0-g54ea..." or "glibc", for the start-up log.
std::string allocatorName();

// Hands the pages that freed memory leaves behind back to the kernel now (after a bulk apply), instead of when the
// allocator would on its own.
void releaseFreedMemory();

}  // namespace plexus::agent
