#include "plexus/cli/since.h"

#include <ctime>
#include <limits>

namespace plexus::cli {

namespace {
constexpr int64_t kNanosPerSecond = 1000000000;
constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / kNanosPerSecond;
// A duration: digits then one of s, m, h. The digits are summed with an overflow check (std::stoll threw
// out_of_range on 20 digits, and n * 3600 overflowed before that).
bool parseDuration(const std::string& text, int64_t* seconds) {
  if (text.size() < 2) {
    return false;
  }
  char unit = text.back();
  int64_t mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 0;
  if (mult == 0) {
    return false;
  }
  int64_t n = 0;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    char c = text[i];
    if (c < '0' || c > '9') {
      return false;
    }
    if (n > (kMaxSeconds - (c - '0')) / 10) {
      return false;
    }
    n = n * 10 + (c - '0');
  }
  if (n > kMaxSeconds / mult) {
    return false;
  }
  *seconds = n * mult;
  return true;
}
}  // namespace

bool parseSince(const std::string& text, int64_t now_unix_seconds, int64_t* out_unix_nano) {
  int64_t ago = 0;
  if (parseDuration(text, &ago)) {
    int64_t at = now_unix_seconds - ago;
    if (at < 0 || at > kMaxSeconds) {
      at = 0;  // longer ago than 1970: every stored flow
    }
    *out_unix_nano = at * kNanosPerSecond;
    return true;
  }
  struct tm tm {};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end || !(*end == '\0' || (end[0] == 'Z' && end[1] == '\0'))) {
    return false;
  }
  int64_t at = static_cast<int64_t>(timegm(&tm));
  if (at < 0 || at > kMaxSeconds) {
    return false;
  }
  *out_unix_nano = at * kNanosPerSecond;
  return true;
}

}  // namespace plexus::cli
