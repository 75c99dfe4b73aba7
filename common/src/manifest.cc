#include "plexus/common/manifest.h"

#include <charconv>
#include <regex>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace plexus {

namespace {

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
    return std::stod(s);
  }
  return s;
}

nlohmann::json toJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar:
      // A tag of "!" marks a quoted scalar: always a string.
      return n.Tag() == "!" ? nlohmann::json(n.Scalar()) : plainScalar(n.Scalar());
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
        o[kv.first.as<std::string>()] = toJson(kv.second);
      }
      return o;
    }
    default:
      return nullptr;
  }
}

}  // namespace

Result<std::vector<nlohmann::json>> parseManifests(std::string_view text) {
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
    }
    if (doc.is_null()) {
      continue;
    }
    if (!doc.is_object()) {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("manifest document {}: must be an object with apiVersion and kind", i + 1));
    }
    if (doc.value("kind", "") == "List" && doc.contains("items")) {
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
