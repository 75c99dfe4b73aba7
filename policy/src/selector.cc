#include "plexus/policy/selector.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

namespace plexus::policy {

namespace {
// Label sources Cilium knows; a prefix before ':' that is not one of them is part of the key.
constexpr std::array<const char*, 8> kSources = {"k8s", "reserved", "any", "cidr", "container", "unspec",
                                                  "cni", "cilium-generated"};

std::pair<std::string, std::string> splitSource(const std::string& text) {
  auto colon = text.find(':');
  if (colon != std::string::npos) {
    std::string src = text.substr(0, colon);
    if (std::find(kSources.begin(), kSources.end(), src) != kSources.end()) {
      return {src, text.substr(colon + 1)};
    }
  }
  return {"any", text};
}

const char* opName(Op op) {
  switch (op) {
    case Op::kIn: return "In";
    case Op::kNotIn: return "NotIn";
    case Op::kExists: return "Exists";
    case Op::kDoesNotExist: return "DoesNotExist";
  }
  return "?";
}

bool isSpace(char c) { return c == ' ' || c == '\t'; }

std::string trim(const std::string& s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && isSpace(s[b])) {
    ++b;
  }
  while (e > b && isSpace(s[e - 1])) {
    --e;
  }
  return s.substr(b, e - b);
}

// A key or value token: no spaces, separators, operators or parentheses (Kubernetes keys add '/', '.', '-').
bool isToken(const std::string& s) {
  return !s.empty() && s.find_first_of(" \t,=!()") == std::string::npos;
}

// Requirements are separated by commas outside parentheses ("a in (x,y),b" is two requirements).
Result<std::vector<std::string>> splitRequirements(const std::string& text) {
  std::vector<std::string> parts;
  std::string cur;
  int depth = 0;
  for (char c : text) {
    if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
    }
    if (depth < 0 || depth > 1) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("label selector {:?}: unbalanced parentheses", text));
    }
    if (c == ',' && depth == 0) {
      parts.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (depth != 0) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("label selector {:?}: unbalanced parentheses", text));
  }
  parts.push_back(trim(cur));
  return parts;
}

// "key in (a, b)" / "key notin (a,b)": the set form. Returns false when `text` is not in that form.
bool parseSetRequirement(const std::string& text, Requirement* r, std::string* err) {
  auto open = text.find('(');
  if (open == std::string::npos || text.back() != ')') {
    return false;
  }
  std::string head = trim(text.substr(0, open));
  auto space = head.find_last_of(" \t");
  if (space == std::string::npos) {
    return false;
  }
  std::string op = head.substr(space + 1);
  std::string key = trim(head.substr(0, space));
  if (op != "in" && op != "notin") {
    return false;
  }
  if (!isToken(key)) {
    *err = fmt::format("key {:?} is not a label key", key);
    return true;
  }
  std::string inner = text.substr(open + 1, text.size() - open - 2);
  size_t pos = 0;
  while (pos <= inner.size()) {
    size_t comma = inner.find(',', pos);
    std::string v = trim(inner.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    if (!v.empty() && !isToken(v)) {
      *err = fmt::format("value {:?} is not a label value", v);
      return true;
    }
    r->values.push_back(v);
    if (comma == std::string::npos) {
      break;
    }
    pos = comma + 1;
  }
  std::tie(r->source, r->key) = splitSource(key);
  r->op = op == "in" ? Op::kIn : Op::kNotIn;
  return true;
}
}  // namespace

Result<Selector> Selector::parseText(const std::string& text) {
  auto parts = splitRequirements(text);
  if (!parts.ok()) {
    return parts.error();
  }
  auto bad = [&](const std::string& why) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("label selector {:?}: {}", text, why));
  };
  std::vector<Requirement> reqs;
  for (const auto& part : *parts) {
    if (part.empty()) {
      return bad("empty requirement");
    }
    Requirement r;
    std::string err;
    if (parseSetRequirement(part, &r, &err)) {
      if (!err.empty()) {
        return bad(err);
      }
      reqs.push_back(std::move(r));
      continue;
    }
    std::string key;
    std::string value;
    if (part.front() == '!') {
      key = trim(part.substr(1));
      r.op = Op::kDoesNotExist;
    } else if (auto ne = part.find("!="); ne != std::string::npos) {
      key = trim(part.substr(0, ne));
      value = trim(part.substr(ne + 2));
      r.op = Op::kNotIn;
    } else if (auto eq = part.find('='); eq != std::string::npos) {
      key = trim(part.substr(0, eq));
      size_t v = part.compare(eq, 2, "==") == 0 ? eq + 2 : eq + 1;
      value = trim(part.substr(v));
      r.op = Op::kIn;
    } else {
      key = part;
      r.op = Op::kExists;
    }
    if (!isToken(key)) {
      return bad(fmt::format("{:?} is not a label key", key));
    }
    if (!value.empty() && !isToken(value)) {
      return bad(fmt::format("{:?} is not a label value", value));
    }
    std::tie(r.source, r.key) = splitSource(key);
    if (r.op == Op::kIn || r.op == Op::kNotIn) {
      r.values.push_back(value);
    }
    reqs.push_back(std::move(r));
  }
  return Selector(std::move(reqs));
}

namespace {
bool keyMatches(const Requirement& r, const Label& l) {
  return l.key == r.key && (r.source == "any" || r.source == l.source);
}
}  // namespace

Label parseLabel(const std::string& text) {
  // The value follows the first '='; the source precedes the first ':' when it is a known source.
  auto eq = text.find('=');
  std::string kv = eq == std::string::npos ? text : text.substr(0, eq);
  auto [src, key] = splitSource(kv);
  return Label{src, key, eq == std::string::npos ? "" : text.substr(eq + 1)};
}

std::vector<Label> parseLabels(const std::vector<std::string>& texts) {
  std::vector<Label> out;
  out.reserve(texts.size());
  for (const auto& t : texts) {
    out.push_back(parseLabel(t));
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool Requirement::matches(const std::vector<Label>& labels) const {
  bool present = false;
  bool in = false;
  for (const auto& l : labels) {
    if (!keyMatches(*this, l)) {
      continue;
    }
    present = true;
    in = in || std::binary_search(values.begin(), values.end(), l.value);
  }
  switch (op) {
    case Op::kIn: return in;
    case Op::kNotIn: return !in;  // as in Kubernetes: an absent key is "not in"
    case Op::kExists: return present;
    case Op::kDoesNotExist: return !present;
  }
  return false;
}

Selector::Selector(std::vector<Requirement> reqs) : reqs_(std::move(reqs)) { canonicalise(); }

Selector& Selector::add(Requirement r) {
  reqs_.push_back(std::move(r));
  canonicalise();
  return *this;
}

void Selector::canonicalise() {
  for (auto& r : reqs_) {
    std::sort(r.values.begin(), r.values.end());
    r.values.erase(std::unique(r.values.begin(), r.values.end()), r.values.end());
  }
  std::vector<std::string> parts;
  for (const auto& r : reqs_) {
    parts.push_back(fmt::format("{}:{} {} ({})", r.source, r.key, opName(r.op), fmt::join(r.values, ",")));
  }
  std::sort(parts.begin(), parts.end());
  parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
  text_ = fmt::format("{{{}}}", fmt::join(parts, "; "));
}

bool Selector::matches(const std::vector<Label>& labels) const {
  return std::all_of(reqs_.begin(), reqs_.end(), [&](const Requirement& r) { return r.matches(labels); });
}

bool Selector::mentions(const std::string& key) const {
  return std::any_of(reqs_.begin(), reqs_.end(), [&](const Requirement& r) { return r.key == key; });
}

Result<Selector> Selector::parse(const nlohmann::json& j, const std::string& field) {
  if (j.is_null()) {
    return Selector();
  }
  if (!j.is_object()) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("{}: must be a label selector object", field));
  }
  std::vector<Requirement> reqs;
  for (const auto& [k, v] : j.items()) {
    if (k != "matchLabels" && k != "matchExpressions") {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.{}: unknown field", field, k));
    }
  }
  if (j.contains("matchLabels") && !j["matchLabels"].is_null()) {
    if (!j["matchLabels"].is_object()) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.matchLabels: must be a map", field));
    }
    for (const auto& [k, v] : j["matchLabels"].items()) {
      if (!v.is_string() && !v.is_null()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.matchLabels.{}: must be a string", field, k));
      }
      if (k.empty()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.matchLabels: empty key", field));
      }
      auto [src, key] = splitSource(k);
      reqs.push_back(Requirement{src, key, Op::kIn, {v.is_null() ? "" : v.get<std::string>()}});
    }
  }
  if (j.contains("matchExpressions") && !j["matchExpressions"].is_null()) {
    const auto& exprs = j["matchExpressions"];
    if (!exprs.is_array()) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.matchExpressions: must be a list", field));
    }
    for (size_t i = 0; i < exprs.size(); ++i) {
      std::string f = fmt::format("{}.matchExpressions[{}]", field, i);
      const auto& e = exprs[i];
      if (!e.is_object() || !e.contains("key") || !e["key"].is_string() || e["key"].get<std::string>().empty()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.key: required", f));
      }
      if (!e.contains("operator") || !e["operator"].is_string()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.operator: required", f));
      }
      std::string op = e["operator"];
      Requirement r;
      std::tie(r.source, r.key) = splitSource(e["key"].get<std::string>());
      if (op == "In") {
        r.op = Op::kIn;
      } else if (op == "NotIn") {
        r.op = Op::kNotIn;
      } else if (op == "Exists") {
        r.op = Op::kExists;
      } else if (op == "DoesNotExist") {
        r.op = Op::kDoesNotExist;
      } else {
        return makeError(ErrorCode::kInvalidArgument,
                         fmt::format("{}.operator: {:?} is not In, NotIn, Exists or DoesNotExist", f, op));
      }
      const auto values = e.value("values", nlohmann::json::array());
      if (!values.is_array() && !values.is_null()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.values: must be a list", f));
      }
      for (const auto& v : values) {
        if (!v.is_string()) {
          return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.values: must be strings", f));
        }
        r.values.push_back(v);
      }
      bool set_op = r.op == Op::kIn || r.op == Op::kNotIn;
      if (set_op && r.values.empty()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.values: required for {}", f, op));
      }
      if (!set_op && !r.values.empty()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("{}.values: must be empty for {}", f, op));
      }
      reqs.push_back(std::move(r));
    }
  }
  return Selector(std::move(reqs));
}

}  // namespace plexus::policy
