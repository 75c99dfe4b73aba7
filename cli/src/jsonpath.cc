// kubectl-style JSONPath templates (the subset format.h documents), after Kubernetes' jsonpath package: a
// template is text and {…} actions; an action is a string literal, a path, or range/end around a body.
#include <cstdlib>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "plexus/cli/format.h"

namespace plexus::cli {

namespace {

struct Segment {
  enum class Kind { kField, kWildcard, kIndex, kSlice, kFilter } kind = Kind::kField;
  std::string name;              // kField
  long index = 0;                // kIndex
  std::optional<long> from, to;  // kSlice
  std::vector<Segment> sub;      // kFilter: the path after @
  std::string op;                // kFilter: "==", "!=" or "" (exists)
  nlohmann::json value;          // kFilter: the right-hand side
};

struct Path {
  bool from_root = false;  // $: the document, even inside range
  std::vector<Segment> segments;
};

struct Node {
  enum class Kind { kText, kPath, kRange } kind = Kind::kText;
  std::string text;
  Path path;
  std::vector<Node> body;  // kRange
};

Error parseError(const std::string& expr, size_t pos, const std::string& what) {
  return makeError(ErrorCode::kInvalidArgument, fmt::format("jsonpath {:?}: {} at offset {}", expr, what, pos));
}

class Parser {
 public:
  explicit Parser(const std::string& expr) : e_(expr) {}

  Result<std::vector<Node>> parse() {
    std::vector<std::vector<Node>*> stack;
    std::vector<Node> top;
    stack.push_back(&top);
    std::vector<size_t> range_at;
    size_t i = 0;
    while (i < e_.size()) {
      if (e_[i] != '{') {
        size_t next = e_.find('{', i);
        size_t close = e_.find('}', i);
        if (close != std::string::npos && (next == std::string::npos || close < next)) {
          return parseError(e_, close, "'}' without '{'");
        }
        Node t;
        t.text = e_.substr(i, next == std::string::npos ? std::string::npos : next - i);
        stack.back()->push_back(std::move(t));
        i = next == std::string::npos ? e_.size() : next;
        continue;
      }
      size_t start = i + 1;
      auto end = actionEnd(start);
      if (!end.ok()) {
        return end.error();
      }
      std::string action = trim(e_.substr(start, *end - start));
      i = *end + 1;
      if (action.empty()) {
        return parseError(e_, start, "empty action {}");
      }
      if (action.front() == '"' || action.front() == '\'') {
        auto lit = literal(action, start);
        if (!lit.ok()) {
          return lit.error();
        }
        Node t;
        t.text = *lit;
        stack.back()->push_back(std::move(t));
      } else if (action == "end") {
        if (stack.size() == 1) {
          return parseError(e_, start, "{end} without {range ...}");
        }
        stack.pop_back();
        range_at.pop_back();
      } else if (action.rfind("range ", 0) == 0 || action == "range") {
        auto p = path(trim(action.substr(5)), start + 6);
        if (!p.ok()) {
          return p.error();
        }
        Node r;
        r.kind = Node::Kind::kRange;
        r.path = std::move(*p);
        stack.back()->push_back(std::move(r));
        stack.push_back(&stack.back()->back().body);
        range_at.push_back(start);
      } else {
        auto p = path(action, start);
        if (!p.ok()) {
          return p.error();
        }
        Node n;
        n.kind = Node::Kind::kPath;
        n.path = std::move(*p);
        stack.back()->push_back(std::move(n));
      }
    }
    if (stack.size() > 1) {
      return parseError(e_, range_at.back(), "{range ...} without {end}");
    }
    return top;
  }

 private:
  static std::string trim(const std::string& s) {
    size_t a = s.find_first_not_of(" \t");
    size_t b = s.find_last_not_of(" \t");
    return a == std::string::npos ? "" : s.substr(a, b - a + 1);
  }

  // The '}' closing the action that starts at `i`, skipping quoted text.
  Result<size_t> actionEnd(size_t i) const {
    char quote = 0;
    for (size_t j = i; j < e_.size(); ++j) {
      char c = e_[j];
      if (quote) {
        if (c == '\\') {
          ++j;
        } else if (c == quote) {
          quote = 0;
        }
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '{') {
        return parseError(e_, j, "'{' inside an action");
      } else if (c == '}') {
        return j;
      }
    }
    return parseError(e_, i - 1, quote ? "unterminated quoted string" : "'{' without '}'");
  }

  Result<std::string> literal(const std::string& s, size_t pos) const {
    if (s.size() < 2 || s.back() != s.front()) {
      return parseError(e_, pos, "unterminated string literal");
    }
    std::string out;
    for (size_t j = 1; j + 1 < s.size(); ++j) {
      if (s[j] != '\\' || j + 2 >= s.size()) {
        out += s[j];
        continue;
      }
      char c = s[++j];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
    }
    return out;
  }

  Result<Path> path(const std::string& p, size_t pos) const {
    Path out;
    size_t j = 0;
    if (p.empty()) {
      return parseError(e_, pos, "range needs a path");
    }
    if (p[0] == '$') {
      out.from_root = true;
      j = 1;
    } else if (p[0] == '@') {
      j = 1;
    }
    auto segs = segments(p, j, pos, false);
    if (!segs.ok()) {
      return segs.error();
    }
    out.segments = std::move(*segs);
    return out;
  }

  // Segments from p[j] to the end (or, in a filter, to the comparison operator or ')').
  Result<std::vector<Segment>> segments(const std::string& p, size_t& j, size_t pos, bool in_filter) const {
    std::vector<Segment> out;
    bool first = true;
    while (j < p.size()) {
      char c = p[j];
      if (in_filter && (c == '=' || c == '!' || c == '<' || c == '>' || c == ')' || c == ' ')) {
        break;
      }
      if (c == '.') {
        ++j;
        if (j < p.size() && p[j] == '.') {
          return parseError(e_, pos + j, "recursive descent (..) is not supported");
        }
        if (j >= p.size() || p[j] == '[') {
          first = false;
          continue;  // "." alone: the current value; ".[0]" as "[0]"
        }
        if (p[j] == '*') {
          ++j;
          Segment w;
          w.kind = Segment::Kind::kWildcard;
          out.push_back(std::move(w));
          first = false;
          continue;
        }
      } else if (c != '[' && !first) {
        return parseError(e_, pos + j, fmt::format("unexpected {:?}", std::string(1, c)));
      }
      first = false;
      if (j < p.size() && p[j] == '[') {
        auto s = bracket(p, j, pos);
        if (!s.ok()) {
          return s.error();
        }
        out.push_back(std::move(*s));
        continue;
      }
      size_t k = j;
      while (k < p.size() &&
             (std::isalnum(static_cast<unsigned char>(p[k])) || p[k] == '_' || p[k] == '-' || p[k] == '/')) {
        ++k;
      }
      if (k == j) {
        return parseError(e_, pos + j, fmt::format("unexpected {:?}", std::string(1, p[j])));
      }
      Segment s;
      s.name = p.substr(j, k - j);
      out.push_back(std::move(s));
      j = k;
    }
    return out;
  }

  static std::optional<long> number(const std::string& s) {
    if (s.empty()) {
      return std::nullopt;
    }
    char* end = nullptr;
    long v = std::strtol(s.c_str(), &end, 10);
    return *end == '\0' ? std::optional<long>(v) : std::nullopt;
  }

  Result<Segment> bracket(const std::string& p, size_t& j, size_t pos) const {
    size_t open = j;
    Segment s;
    if (p.compare(j, 3, "[?(") == 0) {
      j += 3;
      if (j >= p.size() || p[j] != '@') {
        return parseError(e_, pos + j, "a filter starts with @ ([?(@.key==\"value\")])");
      }
      ++j;
      auto sub = segments(p, j, pos, true);
      if (!sub.ok()) {
        return sub.error();
      }
      s.kind = Segment::Kind::kFilter;
      s.sub = std::move(*sub);
      while (j < p.size() && p[j] == ' ') {
        ++j;
      }
      if (p.compare(j, 2, "==") == 0 || p.compare(j, 2, "!=") == 0) {
        s.op = p.substr(j, 2);
        j += 2;
        size_t close = p.find(")]", j);
        if (close == std::string::npos) {
          return parseError(e_, pos + open, "filter without ')]'");
        }
        std::string rhs = trim(p.substr(j, close - j));
        if (!rhs.empty() && rhs.front() == '\'') {
          rhs = "\"" + rhs.substr(1, rhs.size() >= 2 ? rhs.size() - 2 : 0) + "\"";
        }
        s.value = nlohmann::json::parse(rhs, nullptr, false);
        if (s.value.is_discarded() || s.value.is_structured()) {
          return parseError(e_, pos + j,
                            fmt::format("filter value {:?}: use a quoted string, a number, true, "
                                        "false or null",
                                        rhs));
        }
        j = close + 2;
        return s;
      }
      if (p.compare(j, 2, ")]") != 0) {
        return parseError(e_, pos + j, "filter operator: use == or !=");
      }
      j += 2;
      return s;
    }
    size_t close = p.find(']', j);
    if (close == std::string::npos) {
      return parseError(e_, pos + open, "'[' without ']'");
    }
    std::string in = trim(p.substr(j + 1, close - j - 1));
    j = close + 1;
    if (in == "*") {
      s.kind = Segment::Kind::kWildcard;
      return s;
    }
    if (in.size() >= 2 && (in.front() == '\'' || in.front() == '"') && in.back() == in.front()) {
      s.name = in.substr(1, in.size() - 2);
      return s;
    }
    size_t colon = in.find(':');
    if (colon != std::string::npos) {
      std::string a = trim(in.substr(0, colon));
      std::string b = trim(in.substr(colon + 1));
      s.kind = Segment::Kind::kSlice;
      s.from = number(a);
      s.to = number(b);
      if ((!a.empty() && !s.from) || (!b.empty() && !s.to) || b.find(':') != std::string::npos) {
        return parseError(e_, pos + open, fmt::format("bad slice [{}]: use [start:end]", in));
      }
      return s;
    }
    auto n = number(in);
    if (!n) {
      return parseError(e_, pos + open,
                        fmt::format("bad index [{}]: use a number, *, start:end, 'key' or ?(@.key==value)", in));
    }
    s.kind = Segment::Kind::kIndex;
    s.index = *n;
    return s;
  }

  const std::string& e_;
};

using Values = std::vector<const nlohmann::json*>;

Values apply(const std::vector<Segment>& segments, Values in);

bool keep(const Segment& filter, const nlohmann::json& item) {
  Values got = apply(filter.sub, {&item});
  if (filter.op.empty()) {
    return !got.empty();
  }
  bool equal = std::any_of(got.begin(), got.end(), [&](const nlohmann::json* v) { return *v == filter.value; });
  return filter.op == "==" ? equal : !got.empty() && !equal;
}

Values apply(const std::vector<Segment>& segments, Values in) {
  for (const auto& s : segments) {
    Values out;
    for (const nlohmann::json* v : in) {
      switch (s.kind) {
        case Segment::Kind::kField:
          if (v->is_object() && v->contains(s.name)) {
            out.push_back(&(*v)[s.name]);
          }
          break;
        case Segment::Kind::kWildcard:
          if (v->is_structured()) {
            for (const auto& x : *v) {
              out.push_back(&x);
            }
          }
          break;
        case Segment::Kind::kIndex: {
          if (!v->is_array()) {
            break;
          }
          long n = static_cast<long>(v->size());
          long i = s.index < 0 ? n + s.index : s.index;
          if (i >= 0 && i < n) {
            out.push_back(&(*v)[static_cast<size_t>(i)]);
          }
          break;
        }
        case Segment::Kind::kSlice: {
          if (!v->is_array()) {
            break;
          }
          long n = static_cast<long>(v->size());
          auto clamp = [n](long x) { return std::max(0L, std::min(n, x < 0 ? n + x : x)); };
          long a = clamp(s.from.value_or(0));
          long b = clamp(s.to.value_or(n));
          for (long i = a; i < b; ++i) {
            out.push_back(&(*v)[static_cast<size_t>(i)]);
          }
          break;
        }
        case Segment::Kind::kFilter:
          if (v->is_array()) {
            for (const auto& x : *v) {
              if (keep(s, x)) {
                out.push_back(&x);
              }
            }
          }
          break;
      }
    }
    in = std::move(out);
  }
  return in;
}

void render(const std::vector<Node>& nodes, const nlohmann::json& root, const nlohmann::json& current,
            std::string* out) {
  for (const auto& n : nodes) {
    if (n.kind == Node::Kind::kText) {
      *out += n.text;
      continue;
    }
    Values got = apply(n.path.segments, {n.path.from_root ? &root : &current});
    if (n.kind == Node::Kind::kRange) {
      for (const nlohmann::json* v : got) {
        render(n.body, root, *v, out);
      }
      continue;
    }
    for (size_t i = 0; i < got.size(); ++i) {
      *out += i == 0 ? "" : " ";
      *out += got[i]->is_string() ? got[i]->get<std::string>() : got[i]->dump();
    }
  }
}

}  // namespace

Result<std::string> evalJsonPath(const nlohmann::json& doc, const std::string& expr) {
  auto nodes = Parser(expr).parse();
  if (!nodes.ok()) {
    return nodes.error();
  }
  nlohmann::json root = doc.is_array() ? nlohmann::json{{"items", doc}} : doc;
  std::string out;
  render(*nodes, root, root, &out);
  return out;
}

}  // namespace plexus::cli
