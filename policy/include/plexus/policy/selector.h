#pragma once
// Label selectors over security-identity labels (pure). Identity labels are "source:key=value" strings
// ("k8s:app=web", "reserved:host", "cidr:10.0.0.0/8"); a selector key may name its source ("k8s:app") or not
// ("app", "any:app": any source), as in Cilium's endpoint selectors.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/result.h"

namespace plexus::policy {

struct Label {
  std::string source;  // "k8s", "reserved", "cidr", ... ; "any" only in selector keys
  std::string key;
  std::string value;
  friend bool operator==(const Label&, const Label&) = default;
  friend auto operator<=>(const Label&, const Label&) = default;
};

// "k8s:app=web" -> {k8s, app, web}; "app=web" -> {any, app, web}; "reserved:host" -> {reserved, host, ""}.
Label parseLabel(const std::string& text);
std::vector<Label> parseLabels(const std::vector<std::string>& texts);

enum class Op { kIn, kNotIn, kExists, kDoesNotExist };

struct Requirement {
  std::string source = "any";
  std::string key;
  Op op = Op::kExists;
  std::vector<std::string> values;  // sorted, unique
  bool matches(const std::vector<Label>& labels) const;
};

// A conjunction of requirements; the empty selector selects everything.
class Selector {
 public:
  Selector() = default;
  explicit Selector(std::vector<Requirement> reqs);
  // Parses a Kubernetes LabelSelector (matchLabels + matchExpressions). `field` names it in errors.
  static Result<Selector> parse(const nlohmann::json& j, const std::string& field);
  // Parses the string form kubectl -l and hubble observe -l take: comma-separated requirements "k=v", "k==v",
  // "k!=v", "k", "!k", "k in (a,b)", "k notin (a,b)". A key without a known source ("app") matches any source,
  // so "app=web" selects "k8s:app=web"; "k8s:app=web" selects only that source.
  static Result<Selector> parseText(const std::string& text);

  Selector& add(Requirement r);
  bool matches(const std::vector<Label>& labels) const;
  bool empty() const { return reqs_.empty(); }
  // Whether some requirement constrains this key (any source, or the given one).
  bool mentions(const std::string& key) const;
  const std::vector<Requirement>& requirements() const { return reqs_; }
  // Canonical text, independent of the order requirements were given in: the selector cache's key.
  const std::string& str() const { return text_; }

  friend bool operator==(const Selector& a, const Selector& b) { return a.text_ == b.text_; }
  friend auto operator<=>(const Selector& a, const Selector& b) { return a.text_ <=> b.text_; }

 private:
  void canonicalise();
  std::vector<Requirement> reqs_;
  std::string text_ = "{}";
};

// Well-known identity label keys.
inline constexpr const char* kPodNamespaceKey = "io.kubernetes.pod.namespace";
inline constexpr const char* kNamespaceLabelPrefix = "io.cilium.k8s.namespace.labels.";

}  // namespace plexus::policy
