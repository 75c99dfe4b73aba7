#include "plexus/cli/manifest_chunks.h"

namespace plexus::cli {

namespace {
// A line that starts a new YAML document: "---" alone or followed by a space or a comment.
bool separator(const std::string& text, size_t at) {
  if (text.compare(at, 3, "---") != 0) {
    return false;
  }
  size_t after = at + 3;
  return after == text.size() || text[after] == '\n' || text[after] == '\r' || text[after] == ' ' ||
         text[after] == '\t' || text[after] == '#';
}
}  // namespace

std::vector<std::string> manifestChunks(const std::string& text, size_t max_bytes) {
  // Document starts: 0 and every separator line.
  std::vector<size_t> starts{0};
  for (size_t at = 0; at < text.size();) {
    if (at > 0 && separator(text, at)) {
      starts.push_back(at);
    }
    size_t nl = text.find('\n', at);
    at = nl == std::string::npos ? text.size() : nl + 1;
  }
  starts.push_back(text.size());
  std::vector<std::string> out;
  size_t begin = 0;
  for (size_t i = 1; i < starts.size(); ++i) {
    // Close the current piece before the document that would make it too large.
    if (starts[i] - begin > max_bytes && starts[i - 1] > begin) {
      out.push_back(text.substr(begin, starts[i - 1] - begin));
      begin = starts[i - 1];
    }
  }
  if (begin < text.size() || out.empty()) {
    out.push_back(text.substr(begin));
  }
  return out;
}

}  // namespace plexus::cli
