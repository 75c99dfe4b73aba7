#include "plexus/cli/since.h"

#include <ctime>
#include <limits>
#include <string_view>

namespace plexus::cli {

namespace {
constexpr int64_t kNanosPerSecond = 1000000000;
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMaxSeconds = kMax / kNanosPerSecond;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// The unit at the front of `s`, longest first ("ms" before "m"); 0 when there is none.
int64_t unitNanos(std::string_view s, size_t* len) {
  static const std::pair<std::string_view, int64_t> kUnits[] = {
      {"ns", 1}, {"us", 1000}, {"\xc2\xb5s", 1000}, {"\xce\xbcs", 1000}, {"ms", 1000000},
      {"s", kNanosPerSecond}, {"m", 60 * kNanosPerSecond}, {"h", 3600 * kNanosPerSecond}};
  for (const auto& [name, nanos] : kUnits) {
    if (s.substr(0, name.size()) == name) {
      *len = name.size();
      return nanos;
    }
  }
  return 0;
}

// "05" -> 0.05 of the unit, to nanosecond precision (further digits are dropped, as Go does).
int64_t fraction(std::string_view digits, int64_t unit) {
  int64_t scale = 1;
  int64_t num = 0;
  for (char c : digits) {
    if (scale > kMax / 10 / unit) {
      break;
    }
    num = num * 10 + (c - '0');
    scale *= 10;
  }
  // num/scale < 1, so num * unit / scale < unit; num * unit may overflow for long fractions: divide first.
  return num * (unit / scale) + (num * (unit % scale)) / scale;
}

// "2006-01-02T15:04:05[.frac][Z|+hh:mm|-hh:mm]"; no zone means UTC.
bool parseRfc3339(const std::string& text, int64_t* out) {
  struct tm tm {};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end) {
    return false;
  }
  int64_t frac = 0;
  if (*end == '.') {
    ++end;
    int digits = 0;
    for (; isDigit(*end); ++end, ++digits) {
      if (digits < 9) {
        frac = frac * 10 + (*end - '0');
      }
    }
    if (digits == 0) {
      return false;
    }
    for (int i = digits; i < 9; ++i) {
      frac *= 10;
    }
  }
  int64_t offset = 0;
  if (*end == 'Z') {
    ++end;
  } else if (*end == '+' || *end == '-') {
    int sign = *end == '-' ? -1 : 1;
    if (!(isDigit(end[1]) && isDigit(end[2]) && end[3] == ':' && isDigit(end[4]) && isDigit(end[5]))) {
      return false;
    }
    int hh = (end[1] - '0') * 10 + (end[2] - '0');
    int mm = (end[4] - '0') * 10 + (end[5] - '0');
    if (hh > 23 || mm > 59) {
      return false;
    }
    offset = sign * (hh * 3600 + mm * 60);
    end += 6;
  }
  if (*end != '\0') {
    return false;
  }
  int64_t at = static_cast<int64_t>(timegm(&tm)) - offset;
  if (at < 0 || at >= kMaxSeconds) {
    return false;
  }
  *out = at * kNanosPerSecond + frac;
  return true;
}
}  // namespace

bool parseDuration(const std::string& text, int64_t* out_nanos) {
  std::string_view s(text);
  if (s.empty()) {
    return false;
  }
  int64_t total = 0;
  while (!s.empty()) {
    size_t i = 0;
    int64_t whole = 0;
    for (; i < s.size() && isDigit(s[i]); ++i) {
      if (whole > (kMax - (s[i] - '0')) / 10) {
        return false;
      }
      whole = whole * 10 + (s[i] - '0');
    }
    size_t int_digits = i;
    std::string_view frac;
    if (i < s.size() && s[i] == '.') {
      size_t start = ++i;
      for (; i < s.size() && isDigit(s[i]); ++i) {
      }
      frac = s.substr(start, i - start);
    }
    if (int_digits == 0 && frac.empty()) {
      return false;
    }
    size_t unit_len = 0;
    int64_t unit = unitNanos(s.substr(i), &unit_len);
    if (unit == 0) {
      return false;
    }
    if (whole > kMax / unit) {
      return false;
    }
    int64_t part = whole * unit + fraction(frac, unit);
    if (part < 0 || total > kMax - part) {
      return false;
    }
    total += part;
    s = s.substr(i + unit_len);
  }
  *out_nanos = total;
  return true;
}

bool parseSince(const std::string& text, int64_t now_unix_seconds, int64_t* out_unix_nano) {
  int64_t ago = 0;
  if (parseDuration(text, &ago)) {
    if (now_unix_seconds < 0 || now_unix_seconds > kMaxSeconds) {
      return false;
    }
    int64_t now = now_unix_seconds * kNanosPerSecond;
    *out_unix_nano = ago >= now ? 0 : now - ago;  // longer ago than 1970: every stored flow
    return true;
  }
  return parseRfc3339(text, out_unix_nano);
}

}  // namespace plexus::cli
