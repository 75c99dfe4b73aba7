#include "plexus/common/manifest.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>
#include <yaml.h>

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

// A ',' at the top level of a document whose root is not a block collection ("{a: 1},", "[a], b", "&x ,", ",") is
// refused with its line before parsing: such a document is never a manifest (the root must be a mapping). (yaml-cpp
// 0.7, the parser before libyaml, never returned on them: found by fuzz_grpc_requests and fuzz_manifest.) The scan follows quotes, comments and flow
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

bool allDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool coreFloat(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    s.remove_prefix(1);
  }
  size_t e = s.find_first_of("eE");
  std::string_view mantissa = s.substr(0, e);
  if (e != std::string_view::npos) {
    std::string_view exp = s.substr(e + 1);
    if (!exp.empty() && (exp[0] == '-' || exp[0] == '+')) {
      exp.remove_prefix(1);
    }
    if (!allDigits(exp)) {
      return false;
    }
  }
  size_t dot = mantissa.find('.');
  if (dot == std::string_view::npos) {
    return allDigits(mantissa);
  }
  std::string_view whole = mantissa.substr(0, dot);
  std::string_view frac = mantissa.substr(dot + 1);
  return whole.empty() ? allDigits(frac) : allDigits(whole) && (frac.empty() || allDigits(frac));
}

// YAML 1.2 core schema resolution for plain (unquoted) scalars. Most scalars of a manifest are names: the first
// character decides which of the schema's forms can match at all.
nlohmann::json plainScalar(std::string&& s) {
  if (s.empty()) {
    return nullptr;
  }
  switch (s[0]) {
    case '~': case 'n': case 'N':
      if (s == "~" || s == "null" || s == "Null" || s == "NULL") {
        return nullptr;
      }
      return std::move(s);
    case 't': case 'T':
      if (s == "true" || s == "True" || s == "TRUE") {
        return true;
      }
      return std::move(s);
    case 'f': case 'F':
      if (s == "false" || s == "False" || s == "FALSE") {
        return false;
      }
      return std::move(s);
    case '+': case '-': case '.': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7':
    case '8': case '9':
      break;  // a number, or text that starts like one
    default:
      return std::move(s);
  }
  std::string_view digits(s);
  if (digits[0] == '-' || digits[0] == '+') {
    digits.remove_prefix(1);
  }
  if (allDigits(digits)) {
    int64_t v = 0;
    const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
    auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), v);
    if (ec == std::errc() && ptr == s.data() + s.size()) {
      return v;
    }
    return std::move(s);  // out of range: keep the text
  }
  if (coreFloat(s)) {
    // strtod, not stod: "1e999" is out of range, which stod throws for (found by fuzz_manifest); keep the text.
    errno = 0;
    double v = std::strtod(s.c_str(), nullptr);
    if (errno == ERANGE || !std::isfinite(v)) {
      return std::move(s);
    }
    return v;
  }
  return std::move(s);
}

// A malformed manifest, thrown inside ManifestReader and caught in ManifestStream.
struct Malformed {
  std::string message;
};

constexpr int kMaxDepth = 512;  // collections inside collections

}  // namespace

// The documents of a YAML (or JSON) stream built straight into JSON from libyaml's events, without a node graph in
// between (yaml-cpp's took several times longer than the rest of an apply). Anchors are kept per document; an alias
// copies its node, within a budget of nodes (`billion laughs`: nested aliases would otherwise multiply).
class ManifestReader {
 public:
  explicit ManifestReader(std::string_view text) : text_(text), budget_(8 * text.size() + 4096) {
    yaml_parser_initialize(&parser_);
    yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()), text.size());
    yaml_parser_set_encoding(&parser_, YAML_UTF8_ENCODING);
  }
  ~ManifestReader() { yaml_parser_delete(&parser_); }
  ManifestReader(const ManifestReader&) = delete;
  ManifestReader& operator=(const ManifestReader&) = delete;

  // The next document's root (null for an empty one), or nullopt at the end of the stream.
  std::optional<nlohmann::json> next() {
    for (;;) {
      Event ev = read();
      if (ev.get().type == YAML_STREAM_END_EVENT) {
        return std::nullopt;
      }
      if (ev.get().type != YAML_DOCUMENT_START_EVENT) {
        continue;  // stream start, document end
      }
      ++document_;
      anchors_.clear();
      Event root = read();
      nlohmann::json out = build(root, 0);
      return out;
    }
  }

  size_t document() const { return document_; }

 private:
  struct Event {
    yaml_event_t ev{};
    bool owned = false;
    Event() = default;
    Event(Event&& o) noexcept : ev(o.ev), owned(o.owned) { o.owned = false; }
    Event& operator=(Event&&) = delete;
    ~Event() {
      if (owned) {
        yaml_event_delete(&ev);
      }
    }
    const yaml_event_t& get() const { return ev; }
  };

  Event read() {
    Event e;
    if (!yaml_parser_parse(&parser_, &e.ev)) {
      throw Malformed{parserError()};
    }
    e.owned = true;
    return e;
  }

  std::string parserError() const {
    std::string problem = parser_.problem ? parser_.problem : "malformed YAML";
    if (parser_.error == YAML_READER_ERROR) {
      // The reader refuses bytes that are not UTF-8 (and control characters): name the document they are in.
      if (problem.find("UTF-8") != std::string::npos || problem.find("Unicode") != std::string::npos) {
        return fmt::format("manifest document {}: text that is not UTF-8", documentAt(parser_.problem_offset));
      }
      return fmt::format("manifest document {}: {}", documentAt(parser_.problem_offset), problem);
    }
    return fmt::format("manifest: line {}, column {}: {}", parser_.problem_mark.line + 1,
                       parser_.problem_mark.column + 1, problem);
  }

  // The 1-based document holding byte `offset`: the "---" lines before it (one at the very start opens document 1).
  size_t documentAt(size_t offset) const {
    size_t doc = 1;
    std::string_view before = text_.substr(0, std::min(offset, text_.size()));
    size_t pos = 0;
    while (pos < before.size()) {
      if (before.compare(pos, 3, "---") == 0 && pos > 0) {
        ++doc;
      }
      size_t nl = before.find('\n', pos);
      if (nl == std::string_view::npos) {
        break;
      }
      pos = nl + 1;
    }
    return doc;
  }

  void spend(size_t nodes) {
    if (nodes > budget_) {
      throw Malformed{fmt::format("manifest document {}: aliases expand to too many nodes", document_)};
    }
    budget_ -= nodes;
  }

  static size_t nodesOf(const nlohmann::json& j) {
    size_t n = 1;
    if (j.is_structured()) {
      for (const auto& c : j) {
        n += nodesOf(c);
      }
    }
    return n;
  }

  void anchor(const yaml_char_t* name, const nlohmann::json& value) {
    if (name) {
      anchors_[reinterpret_cast<const char*>(name)] = {value, nodesOf(value)};
    }
  }

  std::string mark(const yaml_event_t& e) const {
    return fmt::format("manifest document {}: line {}, column {}", document_, e.start_mark.line + 1,
                       e.start_mark.column + 1);
  }

  nlohmann::json build(const Event& event, int depth) {
    const yaml_event_t& e = event.get();
    spend(1);
    switch (e.type) {
      case YAML_SCALAR_EVENT: {
        std::string text(reinterpret_cast<const char*>(e.data.scalar.value), e.data.scalar.length);
        const char* tag = reinterpret_cast<const char*>(e.data.scalar.tag);
        bool str = e.data.scalar.style != YAML_PLAIN_SCALAR_STYLE || (tag && std::string_view(tag) == YAML_STR_TAG);
        checkedText(text);
        nlohmann::json out = str ? nlohmann::json(std::move(text)) : plainScalar(std::move(text));
        anchor(e.data.scalar.anchor, out);
        return out;
      }
      case YAML_ALIAS_EVENT: {
        auto it = anchors_.find(reinterpret_cast<const char*>(e.data.alias.anchor));
        if (it == anchors_.end()) {
          throw Malformed{mark(e) + ": an alias to an unknown anchor"};
        }
        spend(it->second.second);
        return it->second.first;
      }
      case YAML_SEQUENCE_START_EVENT: {
        if (depth >= kMaxDepth) {
          throw Malformed{mark(e) + ": nested too deeply"};
        }
        nlohmann::json out = nlohmann::json::array();
        for (;;) {
          Event item = read();
          if (item.get().type == YAML_SEQUENCE_END_EVENT) {
            break;
          }
          out.push_back(build(item, depth + 1));
        }
        anchor(e.data.sequence_start.anchor, out);
        return out;
      }
      case YAML_MAPPING_START_EVENT: {
        if (depth >= kMaxDepth) {
          throw Malformed{mark(e) + ": nested too deeply"};
        }
        nlohmann::json out = nlohmann::json::object();
        auto& members = out.get_ref<nlohmann::json::object_t&>();
        for (;;) {
          Event key = read();
          if (key.get().type == YAML_MAPPING_END_EVENT) {
            break;
          }
          std::string name;
          bool scalar = key.get().type == YAML_SCALAR_EVENT;
          if (scalar && !key.get().data.scalar.anchor) {  // the common case, without a JSON value in between
            spend(1);
            name.assign(reinterpret_cast<const char*>(key.get().data.scalar.value), key.get().data.scalar.length);
            checkedText(name);
          } else {
            nlohmann::json k = build(key, depth + 1);
            if (k.is_structured()) {
              throw Malformed{mark(key.get()) + ": a key that is not text"};
            }
            name = k.is_string() ? k.get<std::string>() : k.is_null() ? "" : k.dump();
            if (scalar) {  // a key is its text as written (1.0 stays "1.0")
              name.assign(reinterpret_cast<const char*>(key.get().data.scalar.value), key.get().data.scalar.length);
            }
          }
          Event value = read();
          // Keys often come in order (apiVersion, kind, metadata): the end as the hint makes those inserts O(1).
          members.insert_or_assign(members.end(), std::move(name), build(value, depth + 1));
        }
        anchor(e.data.mapping_start.anchor, out);
        return out;
      }
      default:
        throw Malformed{mark(e) + ": unexpected YAML event"};
    }
  }

  std::string_view text_;
  yaml_parser_t parser_{};
  size_t budget_;
  size_t document_ = 0;
  std::unordered_map<std::string, std::pair<nlohmann::json, size_t>> anchors_;
};

ManifestStream::ManifestStream(std::string_view text) : text_(text) {}
ManifestStream::~ManifestStream() = default;

Result<std::optional<nlohmann::json>> ManifestStream::next() {
  if (done_) {
    return std::optional<nlohmann::json>();
  }
  if (!reader_) {
    if (size_t line = lineOfTopLevelComma(text_); line > 0) {
      done_ = true;
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("manifest: line {}: ',' outside a flow collection ([...] or {{...}})", line));
    }
    reader_ = std::make_unique<ManifestReader>(text_);
  }
  while (item_ >= items_.size()) {
    items_.clear();
    item_ = 0;
    std::optional<nlohmann::json> doc;
    try {
      doc = reader_->next();
    } catch (const Malformed& e) {
      done_ = true;
      return makeError(ErrorCode::kInvalidArgument, e.message);
    } catch (const NotJson& e) {
      done_ = true;
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("manifest document {}: {}", reader_->document(), e.reason));
    }
    if (!doc) {
      done_ = true;
      return std::optional<nlohmann::json>();
    }
    if (doc->is_null()) {
      continue;
    }
    if (!doc->is_object()) {
      done_ = true;
      return makeError(ErrorCode::kInvalidArgument, fmt::format("manifest document {}: must be an object with "
                                                                "apiVersion and kind",
                                                                reader_->document()));
    }
    if (doc->contains("kind") && (*doc)["kind"] == "List" && doc->contains("items")) {
      if (!(*doc)["items"].is_array()) {
        done_ = true;
        return makeError(ErrorCode::kInvalidArgument,
                         fmt::format("manifest document {}: items: must be a list", reader_->document()));
      }
      for (auto& item : (*doc)["items"]) {
        items_.push_back(std::move(item));
      }
      continue;
    }
    return std::optional<nlohmann::json>(std::move(*doc));
  }
  return std::optional<nlohmann::json>(std::move(items_[item_++]));
}

Result<std::vector<nlohmann::json>> parseManifests(std::string_view text) {
  std::vector<nlohmann::json> out;
  ManifestStream stream(text);
  for (;;) {
    auto next = stream.next();
    if (!next.ok()) {
      return next.error();
    }
    if (!*next) {
      return out;
    }
    out.push_back(std::move(**next));
  }
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
