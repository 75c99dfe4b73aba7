#pragma once
// `plexus observe --since` and `--until`: a duration before now in Go's form, as hubble observe takes it ("30s",
// "5m", "1h30m", "1.5h", "250ms"), or an RFC 3339 time ("2006-01-02T15:04:05Z", "2006-01-02T15:04:05.5+02:00";
// without a zone, UTC), as nanoseconds since the epoch. Pure: the caller passes the clock's reading.

#include <cstdint>
#include <string>

namespace plexus::cli {

// A Go duration as nanoseconds: one or more <decimal><unit> with unit ns, us, µs, ms, s, m or h. False for
// anything else, for a negative duration and for one that does not fit in an int64.
bool parseDuration(const std::string& text, int64_t* out_nanos);

// False for anything else, and for values whose nanoseconds do not fit in an int64 (a time after 2262): they
// used to overflow, or throw from std::stoll (found while writing fuzz/fuzz_flow_filter). A duration longer ago
// than 1970 clamps to 0: every stored flow.
bool parseSince(const std::string& text, int64_t now_unix_seconds, int64_t* out_unix_nano);

}  // namespace plexus::cli
