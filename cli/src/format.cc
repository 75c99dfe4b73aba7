#include "plexus/cli/format.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

namespace plexus::cli {

namespace {

// YAML 1.1 and 1.2 readers take these plain scalars as something other than a string.
bool readsAsNonString(const std::string& s) {
  if (s.empty()) {
    return true;
  }
  std::string lower = s;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  static const char* const kWords[] = {"null", "~", "true", "false", "yes",   "no",    "on",
                                       "off",  "y", "n",    ".inf",  "-.inf", "+.inf", ".nan"};
  for (const char* w : kWords) {
    if (lower == w) {
      return true;
    }
  }
  char* end = nullptr;
  (void)std::strtod(s.c_str(), &end);
  if (end != s.c_str() && *end == '\0') {
    return true;
  }
  // Octal and hex forms, and anything with leading or trailing space, are safer quoted too.
  return lower.rfind("0x", 0) == 0 || lower.rfind("0o", 0) == 0 || std::isspace(static_cast<unsigned char>(s[0])) ||
         std::isspace(static_cast<unsigned char>(s.back()));
}

void emitYaml(YAML::Emitter& out, const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::object:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::Block << YAML::BeginMap;
      for (const auto& [k, v] : j.items()) {
        out << YAML::Key;
        if (readsAsNonString(k)) {
          out << YAML::DoubleQuoted;
        }
        out << k << YAML::Value;
        emitYaml(out, v);
      }
      out << YAML::EndMap;
      return;
    case nlohmann::json::value_t::array:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::Block << YAML::BeginSeq;
      for (const auto& v : j) {
        emitYaml(out, v);
      }
      out << YAML::EndSeq;
      return;
    case nlohmann::json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      if (readsAsNonString(s)) {
        out << YAML::DoubleQuoted;
      }
      out << s;
      return;
    }
    case nlohmann::json::value_t::boolean: out << (j.get<bool>() ? "true" : "false"); return;
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded: out << YAML::Null; return;
    default: out << j.dump(); return;  // numbers as JSON writes them (integers stay integers)
  }
}

}  // namespace

std::string outputChoices(const std::vector<std::string>& text_forms) {
  std::vector<std::string> all = text_forms;
  all.insert(all.end(), kStructuredOutputs.begin(), kStructuredOutputs.end());
  std::string out;
  for (size_t i = 0; i < all.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == all.size() ? " or " : ", ") + all[i];
  }
  return out;
}

Result<OutputFormat> parseOutput(const std::string& text, const std::vector<std::string>& text_forms) {
  OutputFormat f;
  f.text_form = text_forms.empty() ? "table" : text_forms.front();
  if (text.empty()) {
    return f;
  }
  if (std::find(text_forms.begin(), text_forms.end(), text) != text_forms.end()) {
    f.text_form = text;
    return f;
  }
  if (text == "json") {
    f.kind = Output::kJson;
    return f;
  }
  if (text == "yaml") {
    f.kind = Output::kYaml;
    return f;
  }
  const std::string prefix = "jsonpath=";
  if (text.rfind(prefix, 0) == 0) {
    std::string expr = text.substr(prefix.size());
    // -o jsonpath='{.a}' reaches us without quotes from a shell; from a file or an exec array it may keep them.
    if (expr.size() >= 2 && (expr.front() == '\'' || expr.front() == '"') && expr.back() == expr.front()) {
      expr = expr.substr(1, expr.size() - 2);
    }
    if (expr.empty()) {
      return makeError(ErrorCode::kInvalidArgument, "-o jsonpath= needs a template, e.g. -o jsonpath='{.items[*].id}'");
    }
    auto check = evalJsonPath(nlohmann::json::object(), expr);  // parse errors show before any RPC
    if (!check.ok()) {
      return check.error();
    }
    f.kind = Output::kJsonPath;
    f.jsonpath = expr;
    return f;
  }
  if (text == "jsonpath") {
    return makeError(ErrorCode::kInvalidArgument, "-o jsonpath needs a template: -o jsonpath='{.items[*].id}'");
  }
  return makeError(ErrorCode::kInvalidArgument,
                   fmt::format("unknown output format {:?}: use {}", text, outputChoices(text_forms)));
}

std::string toYaml(const nlohmann::json& doc) {
  YAML::Emitter out;
  out.SetIndent(2);
  emitYaml(out, doc);
  std::string text = out.c_str();
  return text.empty() || text.back() == '\n' ? text : text + "\n";
}

Result<std::string> renderDocument(const nlohmann::json& doc, const OutputFormat& format) {
  switch (format.kind) {
    case Output::kYaml: return toYaml(doc);
    case Output::kJsonPath: {
      auto text = evalJsonPath(doc, format.jsonpath);
      if (!text.ok()) {
        return text.error();
      }
      return text->empty() || text->back() == '\n' ? *text : *text + "\n";
    }
    case Output::kJson:
    case Output::kTable: break;
  }
  return doc.dump(2) + "\n";
}

std::string renderTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size(), 0);
  for (size_t i = 0; i < header.size(); ++i) {
    width[i] = header[i].size();
  }
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < width.size(); ++i) {
      std::string c = i < cells.size() ? cells[i] : "";
      out += c;
      if (i + 1 < width.size()) {
        out += std::string(width[i] - c.size() + 3, ' ');
      }
    }
    while (!out.empty() && out.back() == ' ') {
      out.pop_back();
    }
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows) {
    out += line(r);
  }
  return out;
}

nlohmann::json toJson(const google::protobuf::Message& m) {
  std::string text;
  google::protobuf::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &text, opts);
  return nlohmann::json::parse(text, nullptr, false);
}

nlohmann::json cellJson(const std::string& cell) {
  if (!cell.empty() && cell.size() < 19 && std::all_of(cell.begin(), cell.end(), ::isdigit)) {
    return std::stoull(cell);
  }
  return cell;
}

}  // namespace plexus::cli
