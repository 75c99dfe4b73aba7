#pragma once
// Crash-safe file writes for state that must never be half-written (IPAM, endpoint records, queued CNI DELs).

#include <string>

#include "plexus/common/result.h"

namespace plexus {

// tmp + fsync + rename: a crash at any point leaves either the old file or the new one. With durable=false the
// fsync is left to the caller (syncFilesystem once after a batch).
Status writeFileAtomic(const std::string& path, const std::string& content, bool durable = true);
// syncfs(2) of the filesystem holding `path`: makes a batch of non-durable writes durable at once.
Status syncFilesystem(const std::string& path);

}  // namespace plexus
