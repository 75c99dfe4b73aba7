#pragma once
// Cuts a manifest into pieces that each fit one apply request: at YAML document boundaries ("---" lines), packing
// whole documents up to max_bytes per piece. A document larger than max_bytes is a piece of its own (the agent
// accepts requests up to its own limit). Concatenating the pieces gives the documents back in order.

#include <cstddef>
#include <string>
#include <vector>

namespace plexus::cli {

std::vector<std::string> manifestChunks(const std::string& text, size_t max_bytes);

}  // namespace plexus::cli
