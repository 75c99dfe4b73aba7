#include "plexus/common/manifest.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <regex>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace plexus {

namespace {

// A document that cannot become JSON text (thrown inside toJson, caught in parseManifests).
struct NotJson {
  std::string reason;
};

// Well-formed UTF-8 (RFC 3629 §4): no overlong forms, no surrogates, nothing above U+10FFFF. Every string of a
// manifest ends up in JSON text (the state journal, API answers), and nlohmann's dump() throws on anything else.
bool validUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

const std::string& checkedText(const std::string& s) {
  if (!validUtf8(s)) {
    throw NotJson{"text that is not UTF-8"};
  }
  return s;
}

// yaml-cpp 0.7 (Debian 12) never returns from LoadAll() when a ',' follows at the top level of a document whose
// root is not a block collection: "{a: 1},", "[a], b", "&x ,", "," (its parser loops on the flow-entry token;
// found by fuzz_grpc_requests and fuzz_manifest, a 10 s timeout each). Such a document is never a manifest (the
// root must be a mapping), so it is refused before yaml-cpp sees it. The scan follows quotes, comments and flow
// brackets; it stops looking at a document once a line shows its root is a block mapping or sequence, and it
// refuses a few odd documents yaml-cpp would read (a root plain scalar with a comma, a root key with a comma).
// Returns the 1-based line of the first such comma, or 0.
size_t lineOfTopLevelComma(std::string_view text) {
  size_t line = 1;
  int depth = 0;         // flow brackets open
  char quote = 0;        // '"' or '\'' while inside a quoted scalar
  bool decided = false;  // this document's root is a block collection
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view l = text.substr(pos, end - pos);
    size_t i = 0;
    if (quote == 0 && (l.substr(0, 3) == "---" || l.substr(0, 3) == "...") &&
        (l.size() == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r')) {
      decided = false;
      depth = 0;
      i = 3;
    }
    if (quote == 0 && !l.empty() && l[0] == '%') {
      // A directive line starts a new document for yaml-cpp, even without "---" (found by fuzz_grpc_requests).
      decided = false;
      depth = 0;
      l = {};
    }
    if (decided) {
      l = {};
    }
    if (quote == 0 && depth == 0) {
      size_t first = l.find_first_not_of(" \t\r", i);
      if (first != std::string_view::npos && (l[first] == '-' || l[first] == '?') &&
          (first + 1 == l.size() || l[first + 1] == ' ' || l[first + 1] == '\t' || l[first + 1] == '\r')) {
        decided = true;
        l = {};
      }
    }
    for (; i < l.size(); ++i) {
      char c = l[i];
      char prev = i == 0 ? ' ' : l[i - 1];
      bool token_start = prev == ' ' || prev == '\t' || (depth > 0 && (prev == '[' || prev == '{' || prev == ','));
      if (quote == '"') {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          quote = 0;
        }
        continue;
      }
      if (quote == '\'') {
        if (c == '\'' && i + 1 < l.size() && l[i + 1] == '\'') {
          ++i;
        } else if (c == '\'') {
          quote = 0;
        }
        continue;
      }
      if (c == '#' && (i == 0 || prev == ' ' || prev == '\t')) {
        break;
      }
      if ((c == '"' || c == '\'') && (token_start || i == 0)) {
        quote = c;
      } else if ((c == '[' || c == '{') && (depth > 0 || token_start || i == 0)) {
        ++depth;
      } else if ((c == ']' || c == '}') && depth > 0) {
        --depth;
      } else if (c == ',' && depth == 0) {
        return line;
      } else if (c == ':' && depth == 0 && (i + 1 == l.size() || l[i + 1] == ' ' || l[i + 1] == '\t' || l[i + 1] == '\r')) {
        decided = true;
        break;
      }
    }
    pos = end + 1;
    ++line;
  }
  return 0;
}

// YAML 1.2 core schema resolution for plain (unquoted) scalars.
nlohmann::json plainScalar(const std::string& s) {
  static const std::regex kNull("^(~|null|Null|NULL|)$");
  static const std::regex kTrue("^(true|True|TRUE)$");
  static const std::regex kFalse("^(false|False|FALSE)$");
  static const std::regex kInt("^[-+]?[0-9]+$");
  static const std::regex kFloat(R"(^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$)");
  if (std::regex_match(s, kNull)) {
    return nullptr;
  }
  if (std::regex_match(s, kTrue)) {
    return true;
  }
  if (std::regex_match(s, kFalse)) {
    return false;
  }
  if (std::regex_match(s, kInt)) {
    int64_t v = 0;
    const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
    auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), v);
    if (ec == std::errc() && ptr == s.data() + s.size()) {
      return v;
    }
    return s;  // out of range: keep the text
  }
  if (std::regex_match(s, kFloat)) {
    // strtod, not stod: "1e999" is out of range, which stod throws for (found by fuzz_manifest); keep the text.
    errno = 0;
    double v = std::strtod(s.c_str(), nullptr);
    if (errno == ERANGE || !std::isfinite(v)) {
      return s;
    }
    return v;
  }
  return s;
}

nlohmann::json toJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar:
      // A tag of "!" marks a quoted scalar: always a string.
      return n.Tag() == "!" ? nlohmann::json(checkedText(n.Scalar())) : plainScalar(checkedText(n.Scalar()));
    case YAML::NodeType::Sequence: {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& item : n) {
        a.push_back(toJson(item));
      }
      return a;
    }
    case YAML::NodeType::Map: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& kv : n) {
        o[checkedText(kv.first.as<std::string>())] = toJson(kv.second);
      }
      return o;
    }
    default:
      return nullptr;
  }
}

}  // namespace

Result<std::vector<nlohmann::json>> parseManifests(std::string_view text) {
  if (size_t line = lineOfTopLevelComma(text); line > 0) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("manifest: line {}: ',' outside a flow collection ([...] or {{...}})", line));
  }
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("manifest: line {}, column {}: {}", e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  std::vector<nlohmann::json> out;
  for (size_t i = 0; i < docs.size(); ++i) {
    nlohmann::json doc;
    try {
      doc = toJson(docs[i]);
    } catch (const YAML::Exception& e) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("manifest document {}: {}", i + 1, e.msg));
    } catch (const NotJson& e) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("manifest document {}: {}", i + 1, e.reason));
    }
    if (doc.is_null()) {
      continue;
    }
    if (!doc.is_object()) {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("manifest document {}: must be an object with apiVersion and kind", i + 1));
    }
    if (doc.contains("kind") && doc["kind"] == "List" && doc.contains("items")) {
      if (!doc["items"].is_array()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("manifest document {}: items: must be a list", i + 1));
      }
      for (auto& item : doc["items"]) {
        out.push_back(std::move(item));
      }
      continue;
    }
    out.push_back(std::move(doc));
  }
  return out;
}

std::string describeObject(const nlohmann::json& object) {
  std::string kind = object.is_object() && object.contains("kind") && object["kind"].is_string()
                         ? object["kind"].get<std::string>()
                         : "object";
  std::string name;
  std::string ns;
  if (object.is_object() && object.contains("metadata") && object["metadata"].is_object()) {
    const auto& md = object["metadata"];
    if (md.contains("name") && md["name"].is_string()) {
      name = md["name"].get<std::string>();
    }
    if (md.contains("namespace") && md["namespace"].is_string()) {
      ns = md["namespace"].get<std::string>();
    }
  }
  if (name.empty()) {
    return kind + " <unnamed>";
  }
  return ns.empty() ? kind + " " + name : kind + " " + ns + "/" + name;
}

}  // namespace plexus
