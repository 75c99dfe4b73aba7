#pragma once
// `plexus observe --since`: a duration before now ("30s", "5m", "2h") or an RFC 3339 UTC time
// ("2006-01-02T15:04:05Z"), as nanoseconds since the epoch. Pure: the caller passes the clock's reading.

#include <cstdint>
#include <string>

namespace plexus::cli {

// False for anything else, and for values whose nanoseconds do not fit in an int64 (a duration longer than
// the time since 1970, a time after 2262): they used to overflow, or throw from std::stoll (found while writing fuzz/fuzz_flow_filter).
bool parseSince(const std::string& text, int64_t now_unix_seconds, int64_t* out_unix_nano);

}  // namespace plexus::cli
