#pragma once
// Crash-safe file writes for state that must never be half-written (IPAM, endpoint records, queued CNI DELs).

#include <string>

#include "plexus/common/result.h"

namespace plexus {

// tmp + fsync + rename: a crash at any point leaves either the old file or the new one.
Status writeFileAtomic(const std::string& path, const std::string& content);

}  // namespace plexus
