#include "plexus/node/node.h"

#include <arpa/inet.h>  // inet_pton only: pure text parsing, no syscall

#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace plexus::node {

std::optional<Ipv4> Node::tunnelEndpoint() const {
  if (internal_ips.empty()) {
    return std::nullopt;
  }
  return internal_ips.front();
}

namespace {

using nlohmann::json;

// The manifest's fields are reached only through these helpers: operator[] on a const json and value() both
// throw or assert on a wrong type, and parseNode must turn every wrong type into an error instead.
const json* field(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return nullptr;
  }
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

class Parser {
 public:
  explicit Parser(std::string kind = "Node") : kind_(std::move(kind)) {}
  Error bad(const std::string& path, const std::string& why) const {
    std::string who = name_.empty() ? kind_ : fmt::format("{} {}", kind_, name_);
    return Error{ErrorCode::kInvalidArgument, fmt::format("{}: {}: {}", who, path, why)};
  }
  void setName(std::string name) { name_ = std::move(name); }
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
  std::string name_;
};

// Kubernetes node names are DNS-1123 subdomains: lowercase alphanumerics, '-' and '.', at most 253
// characters, starting and ending with an alphanumeric.
bool isDnsSubdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) {
    return false;
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-' || c == '.'; });
}

bool isIpv6Address(const std::string& s) {
  unsigned char buf[16];
  return s.find(':') != std::string::npos && inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool isIpv6Cidr(const std::string& s) {
  auto slash = s.find('/');
  if (slash == std::string::npos || !isIpv6Address(s.substr(0, slash))) {
    return false;
  }
  std::string_view len_text(s.data() + slash + 1, s.size() - slash - 1);
  int len = -1;
  auto [next, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  return ec == std::errc() && next == len_text.data() + len_text.size() && !len_text.empty() && len >= 0 &&
         len <= 128;
}

template <typename T>
void appendUnique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) {
    v.push_back(x);
  }
}

// The header every object shares: it must be a JSON object (called `root` in the error), its kind and
// apiVersion, when present, must be p's kind and `api_version`, and metadata.name must be a DNS-1123 subdomain.
// Returns the name and names p after it, so later errors say which object they are about.
Result<std::string> parseHeader(Parser& p, const json& object, const char* root, const char* api_version) {
  if (!object.is_object()) {
    return p.bad(root, "must be an object");
  }
  if (const json* kind = field(object, "kind"); kind != nullptr) {
    if (!kind->is_string() || kind->get_ref<const std::string&>() != p.kind()) {
      return p.bad("kind", "must be " + p.kind());
    }
  }
  if (const json* api = field(object, "apiVersion"); api != nullptr) {
    if (!api->is_string() || api->get_ref<const std::string&>() != api_version) {
      return p.bad("apiVersion", fmt::format("must be {}", api_version));
    }
  }
  const json* metadata = field(object, "metadata");
  if (metadata == nullptr || !metadata->is_object()) {
    return p.bad("metadata", "must be an object");
  }
  const json* name = field(*metadata, "name");
  if (name == nullptr || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    return p.bad("metadata.name", "required");
  }
  const std::string& text = name->get_ref<const std::string&>();
  if (!isDnsSubdomain(text)) {
    return p.bad("metadata.name", fmt::format("not a DNS-1123 subdomain: {:?}", text));
  }
  p.setName(text);
  return text;
}

// One pod CIDR entry: IPv4 is kept, well-formed IPv6 is skipped, anything else is an error. Kubernetes
// requires the "/len" form, so a bare address is not a CIDR here even though Ipv4Prefix::parse accepts one.
Status podCidr(const Parser& p, const json& j, const std::string& path, std::vector<Ipv4Prefix>& out) {
  if (!j.is_string()) {
    return p.bad(path, "must be a string");
  }
  const std::string& s = j.get_ref<const std::string&>();
  if (isIpv6Cidr(s)) {
    return Status::Ok();
  }
  auto prefix = s.find('/') == std::string::npos ? std::nullopt : Ipv4Prefix::parse(s);
  if (!prefix) {
    return p.bad(path, fmt::format("not a CIDR: {:?}", s));
  }
  appendUnique(out, *prefix);
  return Status::Ok();
}

Status parseSpec(const Parser& p, const json& manifest, Node& node) {
  const json* spec = field(manifest, "spec");
  if (spec == nullptr || spec->is_null()) {
    return Status::Ok();
  }
  if (!spec->is_object()) {
    return p.bad("spec", "must be an object");
  }
  if (const json* single = field(*spec, "podCIDR"); single != nullptr && !single->is_null()) {
    // An empty podCIDR is what the API server shows before the node IPAM controller has run.
    if (!(single->is_string() && single->get_ref<const std::string&>().empty())) {
      auto st = podCidr(p, *single, "spec.podCIDR", node.pod_cidrs);
      if (!st.ok()) {
        return st;
      }
    }
  }
  if (const json* list = field(*spec, "podCIDRs"); list != nullptr && !list->is_null()) {
    if (!list->is_array()) {
      return p.bad("spec.podCIDRs", "must be a list");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      auto st = podCidr(p, (*list)[i], fmt::format("spec.podCIDRs[{}]", i), node.pod_cidrs);
      if (!st.ok()) {
        return st;
      }
    }
  }
  return Status::Ok();
}

Status parseAddresses(const Parser& p, const json& manifest, Node& node) {
  const json* status = field(manifest, "status");
  if (status == nullptr || status->is_null()) {
    return Status::Ok();
  }
  if (!status->is_object()) {
    return p.bad("status", "must be an object");
  }
  const json* addresses = field(*status, "addresses");
  if (addresses == nullptr || addresses->is_null()) {
    return Status::Ok();
  }
  if (!addresses->is_array()) {
    return p.bad("status.addresses", "must be a list");
  }
  for (size_t i = 0; i < addresses->size(); ++i) {
    const json& a = (*addresses)[i];
    std::string path = fmt::format("status.addresses[{}]", i);
    if (!a.is_object()) {
      return p.bad(path, "must be an object");
    }
    const json* type = field(a, "type");
    if (type == nullptr || !type->is_string()) {
      return p.bad(path + ".type", "must be a string");
    }
    const json* address = field(a, "address");
    if (address == nullptr || !address->is_string()) {
      return p.bad(path + ".address", "must be a string");
    }
    // Hostname, ExternalIP, InternalDNS...: not used for routing, and a Hostname is not an address at all.
    if (type->get_ref<const std::string&>() != "InternalIP") {
      continue;
    }
    const std::string& text = address->get_ref<const std::string&>();
    if (isIpv6Address(text)) {
      continue;
    }
    auto ip = Ipv4::parse(text);
    if (!ip) {
      return p.bad(path + ".address", fmt::format("not an IP address: {:?}", text));
    }
    appendUnique(node.internal_ips, *ip);
  }
  return Status::Ok();
}

}  // namespace

Result<Node> parseNode(const json& manifest) {
  Parser p;
  auto name = parseHeader(p, manifest, "manifest", "v1");
  if (!name.ok()) {
    return name.error();
  }
  Node node;
  node.name = std::move(*name);
  if (auto st = parseSpec(p, manifest, node); !st.ok()) {
    return st.error();
  }
  if (auto st = parseAddresses(p, manifest, node); !st.ok()) {
    return st.error();
  }
  return node;
}

Result<PodCidrClaim> parsePlexusNode(const json& object) {
  Parser p("PlexusNode");
  auto name = parseHeader(p, object, "object", "plexus.io/v1alpha1");
  if (!name.ok()) {
    return name.error();
  }
  PodCidrClaim claim;
  claim.name = std::move(*name);
  const json* spec = field(object, "spec");
  if (spec == nullptr || spec->is_null()) {
    return claim;
  }
  if (!spec->is_object()) {
    return p.bad("spec", "must be an object");
  }
  const json* ipam = field(*spec, "ipam");
  if (ipam == nullptr || ipam->is_null()) {
    return claim;
  }
  if (!ipam->is_object()) {
    return p.bad("spec.ipam", "must be an object");
  }
  const json* list = field(*ipam, "podCIDRs");
  if (list == nullptr || list->is_null()) {
    return claim;
  }
  if (!list->is_array()) {
    return p.bad("spec.ipam.podCIDRs", "must be a list");
  }
  for (size_t i = 0; i < list->size(); ++i) {
    if (auto st = podCidr(p, (*list)[i], fmt::format("spec.ipam.podCIDRs[{}]", i), claim.pod_cidrs); !st.ok()) {
      return st.error();
    }
  }
  return claim;
}

std::string describe(const Node& node) {
  std::vector<std::string> ips;
  for (const auto& ip : node.internal_ips) {
    ips.push_back(ip.toString());
  }
  std::vector<std::string> cidrs;
  for (const auto& c : node.pod_cidrs) {
    cidrs.push_back(c.toString());
  }
  auto joined = [](const std::vector<std::string>& v) {
    return v.empty() ? std::string("none") : fmt::format("{}", fmt::join(v, ", "));
  };
  return fmt::format("{} (internal {}, pod CIDRs {})", node.name, joined(ips), joined(cidrs));
}

}  // namespace plexus::node
