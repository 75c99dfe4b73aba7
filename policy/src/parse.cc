// Parsers for NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy. Fields we do not
// enforce (L7 rules, FQDNs, groups, ...) are refused by name rather than ignored: ignoring a field of an
// allow rule can widen it, and ignoring a deny would fail open.
#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "plexus/policy/policy.h"

namespace plexus::policy {

namespace {

using json = nlohmann::json;

Error invalid(const std::string& field, const std::string& why) {
  return makeError(ErrorCode::kInvalidArgument, fmt::format("{}: {}", field, why));
}

uint32_t ruleId(const std::string& origin) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : origin) {
    h = (h ^ c) * 16777619u;
  }
  return h == 0 ? 1 : h;
}

// Rejects fields outside `known`, and names the ones this build deliberately does not enforce.
Status checkFields(const json& obj, const std::string& field, const std::set<std::string>& known,
                   const std::set<std::string>& unsupported = {}) {
  for (const auto& [k, v] : obj.items()) {
    if (unsupported.count(k)) {
      return invalid(field + "." + k, "not supported by this build (refused rather than ignored)");
    }
    if (!known.count(k)) {
      return invalid(field + "." + k, "unknown field");
    }
  }
  return Status::Ok();
}

Result<const json*> listField(const json& obj, const std::string& key, const std::string& field) {
  static const json kEmpty = json::array();
  if (!obj.contains(key) || obj[key].is_null()) {
    return &kEmpty;
  }
  if (!obj[key].is_array()) {
    return invalid(field + "." + key, "must be a list");
  }
  return &obj[key];
}

Requirement nsIs(const std::string& ns) { return Requirement{"k8s", kPodNamespaceKey, Op::kIn, {ns}}; }
Requirement isPod() { return Requirement{"k8s", kPodNamespaceKey, Op::kExists, {}}; }

Result<uint8_t> parseProto(const json& j, const std::string& field, bool allow_any, uint8_t dflt) {
  if (!j.contains("protocol") || j["protocol"].is_null()) {
    return dflt;
  }
  if (!j["protocol"].is_string()) {
    return invalid(field + ".protocol", "must be a string");
  }
  std::string p = j["protocol"];
  if (p == "TCP") return kProtoTcp;
  if (p == "UDP") return kProtoUdp;
  if (p == "SCTP") return kProtoSctp;
  if (p == "ANY" && allow_any) return kProtoAny;
  return invalid(field + ".protocol", fmt::format("{:?} is not {}", p, allow_any ? "TCP, UDP, SCTP or ANY"
                                                                                    : "TCP, UDP or SCTP"));
}

bool isIanaSvcName(const std::string& s) {
  return !s.empty() && s.size() <= 15 &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::islower(c) || std::isdigit(c) || c == '-'; }) &&
         std::any_of(s.begin(), s.end(), [](char c) { return std::islower(c); });
}

// `port` (a number, a numeric string or a name) and `endPort` into spec.
Status parsePortValue(const json& j, const std::string& field, PortSpec* spec) {
  if (j.contains("port") && !j["port"].is_null()) {
    const auto& p = j["port"];
    if (p.is_number_integer()) {
      int64_t n = p.get<int64_t>();
      if (n < 0 || n > 65535) {
        return invalid(field + ".port", "must be 0-65535");
      }
      spec->port = static_cast<uint16_t>(n);
    } else if (p.is_string()) {
      std::string s = p;
      if (!s.empty() && std::all_of(s.begin(), s.end(), ::isdigit)) {
        if (s.size() > 5 || std::stoi(s) > 65535) {
          return invalid(field + ".port", "must be 0-65535");
        }
        spec->port = static_cast<uint16_t>(std::stoi(s));
      } else if (isIanaSvcName(s)) {
        spec->name = s;
      } else {
        return invalid(field + ".port", fmt::format("{:?} is neither a port number nor a port name", s));
      }
    } else {
      return invalid(field + ".port", "must be a number or a name");
    }
  }
  if (j.contains("endPort") && !j["endPort"].is_null()) {
    if (!j["endPort"].is_number_integer()) {
      return invalid(field + ".endPort", "must be a number");
    }
    int64_t e = j["endPort"].get<int64_t>();
    if (!spec->name.empty()) {
      return invalid(field + ".endPort", "cannot be used with a named port");
    }
    if (e < spec->port || e > 65535 || spec->port == 0) {
      return invalid(field + ".endPort", "must be within 1-65535 and >= port");
    }
    spec->end_port = static_cast<uint16_t>(e);
  }
  return Status::Ok();
}

Result<Peers> ipBlockPeer(const std::string& cidr_text, const json& except, const std::string& field,
                          std::set<Ipv4Prefix>* cidrs) {
  auto cidr = Ipv4Prefix::parse(cidr_text);
  if (!cidr) {
    return invalid(field, fmt::format("{:?} is not an IPv4 CIDR", cidr_text));
  }
  Selector s({Requirement{"cidr", cidrLabelKey(*cidr), Op::kExists, {}}});
  cidrs->insert(*cidr);
  if (!except.is_null()) {
    if (!except.is_array()) {
      return invalid(field + ".except", "must be a list");
    }
    for (size_t i = 0; i < except.size(); ++i) {
      auto ex = except[i].is_string() ? Ipv4Prefix::parse(except[i].get<std::string>()) : std::nullopt;
      if (!ex) {
        return invalid(fmt::format("{}.except[{}]", field, i), "is not an IPv4 CIDR");
      }
      if (!cidr->contains(*ex)) {
        return invalid(fmt::format("{}.except[{}]", field, i), fmt::format("must be inside {}", cidr->toString()));
      }
      cidrs->insert(*ex);
      s.add(Requirement{"cidr", cidrLabelKey(*ex), Op::kDoesNotExist, {}});
    }
  }
  Peers p;
  p.selectors.push_back(std::move(s));
  return p;
}

// ---- NetworkPolicy ----

Result<Selector> namespaceSelector(const json& j, const std::string& field) {
  auto sel = Selector::parse(j, field);
  if (!sel) {
    return sel.error();
  }
  // Namespace labels appear on pod identities as k8s:io.cilium.k8s.namespace.labels.<key>.
  std::vector<Requirement> reqs;
  for (auto r : sel->requirements()) {
    r.source = "k8s";
    r.key = std::string(kNamespaceLabelPrefix) + r.key;
    reqs.push_back(std::move(r));
  }
  reqs.push_back(isPod());
  return Selector(std::move(reqs));
}

Result<Peers> npPeer(const json& j, const std::string& field, const std::string& ns, std::set<Ipv4Prefix>* cidrs) {
  if (!j.is_object()) {
    return invalid(field, "must be an object");
  }
  if (Status s = checkFields(j, field, {"podSelector", "namespaceSelector", "ipBlock"}); !s.ok()) {
    return s.error();
  }
  bool has_pod = j.contains("podSelector") && !j["podSelector"].is_null();
  bool has_ns = j.contains("namespaceSelector") && !j["namespaceSelector"].is_null();
  bool has_ip = j.contains("ipBlock") && !j["ipBlock"].is_null();
  if (has_ip) {
    if (has_pod || has_ns) {
      return invalid(field, "ipBlock cannot be combined with podSelector or namespaceSelector");
    }
    const auto& b = j["ipBlock"];
    if (!b.is_object() || !b.contains("cidr") || !b["cidr"].is_string()) {
      return invalid(field + ".ipBlock.cidr", "required");
    }
    if (Status s = checkFields(b, field + ".ipBlock", {"cidr", "except"}); !s.ok()) {
      return s.error();
    }
    return ipBlockPeer(b["cidr"], b.value("except", json()), field + ".ipBlock", cidrs);
  }
  if (!has_pod && !has_ns) {
    return invalid(field, "one of podSelector, namespaceSelector or ipBlock is required");
  }
  std::vector<Requirement> reqs;
  if (has_pod) {
    auto pod = Selector::parse(j["podSelector"], field + ".podSelector");
    if (!pod) {
      return pod.error();
    }
    reqs = pod->requirements();
    for (auto& r : reqs) {
      if (r.source == "any") {
        r.source = "k8s";
      }
    }
  }
  if (has_ns) {
    auto nss = namespaceSelector(j["namespaceSelector"], field + ".namespaceSelector");
    if (!nss) {
      return nss.error();
    }
    for (const auto& r : nss->requirements()) {
      reqs.push_back(r);
    }
  } else {
    reqs.push_back(nsIs(ns));  // a podSelector alone selects in the policy's namespace
  }
  Peers p;
  p.selectors.emplace_back(std::move(reqs));
  return p;
}

Result<std::vector<PortSpec>> npPorts(const json& rule, const std::string& field) {
  auto list = listField(rule, "ports", field);
  if (!list) {
    return list.error();
  }
  std::vector<PortSpec> out;
  for (size_t i = 0; i < (*list)->size(); ++i) {
    std::string f = fmt::format("{}.ports[{}]", field, i);
    const auto& p = (**list)[i];
    if (!p.is_object()) {
      return invalid(f, "must be an object");
    }
    if (Status s = checkFields(p, f, {"port", "endPort", "protocol"}); !s.ok()) {
      return s.error();
    }
    PortSpec spec;
    auto proto = parseProto(p, f, false, kProtoTcp);  // NetworkPolicy: an omitted protocol is TCP
    if (!proto) {
      return proto.error();
    }
    spec.proto = *proto;
    if (Status s = parsePortValue(p, f, &spec); !s.ok()) {
      return s.error();
    }
    out.push_back(std::move(spec));
  }
  return out;
}

// ---- CiliumNetworkPolicy ----

// Adds the policy's namespace to a CNP endpoint selector that does not name one (nor a reserved identity).
Selector namespaced(Selector s, const std::string& ns) {
  bool reserved = std::any_of(s.requirements().begin(), s.requirements().end(),
                              [](const Requirement& r) { return r.source == "reserved"; });
  if (ns.empty()) {
    // CCNP: `{}` means every pod in the cluster, not every identity (Cilium restricts the wildcard the same way).
    if (s.empty()) {
      s.add(isPod());
    }
    return s;
  }
  if (!reserved && !s.mentions(kPodNamespaceKey)) {
    s.add(nsIs(ns));
  }
  return s;
}

Result<Peers> entitiesPeer(const json& list, const std::string& field) {
  Peers p;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_string()) {
      return invalid(fmt::format("{}[{}]", field, i), "must be a string");
    }
    std::string e = list[i];
    auto reserved = [&](const char* name) { p.selectors.emplace_back(std::vector<Requirement>{
                                                Requirement{"reserved", name, Op::kExists, {}}}); };
    if (e == "all") {
      p.all = true;
    } else if (e == "world" || e == "world-ipv4") {
      reserved("world");
    } else if (e == "cluster") {
      for (const char* r : {"host", "remote-node", "init", "health", "unmanaged", "kube-apiserver", "ingress"}) {
        reserved(r);
      }
      p.selectors.emplace_back(std::vector<Requirement>{isPod()});
    } else if (e == "host" || e == "remote-node" || e == "kube-apiserver" || e == "init" || e == "health" ||
               e == "unmanaged" || e == "ingress") {
      reserved(e.c_str());
    } else {
      return invalid(fmt::format("{}[{}]", field, i), fmt::format("unknown entity {:?}", e));
    }
  }
  return p;
}

Result<std::vector<PortSpec>> cnpPorts(const json& rule, const std::string& field) {
  auto list = listField(rule, "toPorts", field);
  if (!list) {
    return list.error();
  }
  std::vector<PortSpec> out;
  for (size_t i = 0; i < (*list)->size(); ++i) {
    std::string f = fmt::format("{}.toPorts[{}]", field, i);
    const auto& pr = (**list)[i];
    if (!pr.is_object()) {
      return invalid(f, "must be an object");
    }
    if (Status s = checkFields(pr, f, {"ports"},
                               {"rules", "listener", "originatingTLS", "terminatingTLS", "serverNames"});
        !s.ok()) {
      return s.error();
    }
    auto ports = listField(pr, "ports", f);
    if (!ports) {
      return ports.error();
    }
    if ((*ports)->empty()) {
      out.push_back(PortSpec{});  // no ports: every port
    }
    for (size_t k = 0; k < (*ports)->size(); ++k) {
      std::string pf = fmt::format("{}.ports[{}]", f, k);
      const auto& p = (**ports)[k];
      if (!p.is_object()) {
        return invalid(pf, "must be an object");
      }
      if (Status s = checkFields(p, pf, {"port", "endPort", "protocol"}); !s.ok()) {
        return s.error();
      }
      PortSpec spec;
      auto proto = parseProto(p, pf, true, kProtoAny);  // CNP: an omitted protocol is any protocol
      if (!proto) {
        return proto.error();
      }
      spec.proto = *proto;
      if (Status s = parsePortValue(p, pf, &spec); !s.ok()) {
        return s.error();
      }
      out.push_back(std::move(spec));
    }
  }
  return out;
}

// ICMP type names CNP `icmps` accepts besides numbers, per family (Cilium's names; the numbers are IANA's ICMP and
// ICMPv6 type registries).
std::optional<uint8_t> icmpTypeByName(const std::string& name, bool v6) {
  static const std::map<std::string, uint8_t> kV4 = {
      {"EchoReply", 0},   {"DestinationUnreachable", 3}, {"Redirect", 5},          {"Echo", 8},
      {"EchoRequest", 8}, {"RouterAdvertisement", 9},    {"RouterSelection", 10},  {"TimeExceeded", 11},
      {"ParameterProblem", 12}, {"Timestamp", 13},       {"TimestampReply", 14},   {"Photuris", 40},
      {"ExtendedEchoRequest", 42}, {"ExtendedEchoReply", 43}};
  static const std::map<std::string, uint8_t> kV6 = {
      {"DestinationUnreachable", 1},
      {"PacketTooBig", 2},
      {"TimeExceeded", 3},
      {"ParameterProblem", 4},
      {"EchoRequest", 128},
      {"EchoReply", 129},
      {"MulticastListenerQuery", 130},
      {"MulticastListenerReport", 131},
      {"MulticastListenerDone", 132},
      {"RouterSolicitation", 133},
      {"RouterAdvertisement", 134},
      {"NeighborSolicitation", 135},
      {"NeighborAdvertisement", 136},
      {"RedirectMessage", 137},
      {"RouterRenumbering", 138},
      {"ICMPNodeInformationQuery", 139},
      {"ICMPNodeInformationResponse", 140},
      {"InverseNeighborDiscoverySolicitation", 141},
      {"InverseNeighborDiscoveryAdvertisement", 142},
      {"HomeAgentAddressDiscoveryRequest", 144},
      {"HomeAgentAddressDiscoveryReply", 145},
      {"MobilePrefixSolicitation", 146},
      {"MobilePrefixAdvertisement", 147},
      {"DuplicateAddressRequestCodeSuffix", 157},
      {"DuplicateAddressConfirmationCodeSuffix", 158},
      {"ExtendedEchoRequest", 160},
      {"ExtendedEchoReply", 161}};
  const auto& table = v6 ? kV6 : kV4;
  auto it = table.find(name);
  return it == table.end() ? std::nullopt : std::optional<uint8_t>(it->second);
}

// CNP `icmps: [{fields: [{type: 8, family: IPv4}]}]`: each field is one ICMP (or ICMPv6) type, a port of that
// protocol in the policy map, as Cilium compiles it. `type` is 0-255 or a name of the family; family defaults to
// IPv4.
Result<std::vector<PortSpec>> cnpIcmps(const json& rule, const std::string& field) {
  auto list = listField(rule, "icmps", field);
  if (!list) {
    return list.error();
  }
  std::vector<PortSpec> out;
  for (size_t i = 0; i < (*list)->size(); ++i) {
    std::string f = fmt::format("{}.icmps[{}]", field, i);
    const auto& item = (**list)[i];
    if (!item.is_object()) {
      return invalid(f, "must be an object");
    }
    if (Status s = checkFields(item, f, {"fields"}); !s.ok()) {
      return s.error();
    }
    auto fields = listField(item, "fields", f);
    if (!fields) {
      return fields.error();
    }
    if ((*fields)->empty()) {
      return invalid(f + ".fields", "must list at least one ICMP type");
    }
    for (size_t k = 0; k < (*fields)->size(); ++k) {
      std::string ff = fmt::format("{}.fields[{}]", f, k);
      const auto& fl = (**fields)[k];
      if (!fl.is_object()) {
        return invalid(ff, "must be an object");
      }
      if (Status s = checkFields(fl, ff, {"type", "family"}); !s.ok()) {
        return s.error();
      }
      bool v6 = false;
      if (fl.contains("family") && !fl["family"].is_null()) {
        if (fl["family"] == "IPv6") {
          v6 = true;
        } else if (fl["family"] != "IPv4") {
          return invalid(ff + ".family", "must be IPv4 or IPv6");
        }
      }
      if (!fl.contains("type") || fl["type"].is_null()) {
        return invalid(ff + ".type", "required");
      }
      const auto& t = fl["type"];
      PortSpec spec;
      spec.proto = v6 ? kProtoIcmpv6 : kProtoIcmp;
      std::string text = t.is_string() ? t.get<std::string>() : "";
      if (t.is_number_integer() || (!text.empty() && std::all_of(text.begin(), text.end(), ::isdigit))) {
        int64_t n = t.is_number_integer() ? t.get<int64_t>() : (text.size() > 3 ? 256 : std::stoi(text));
        if (n < 0 || n > 255) {
          return invalid(ff + ".type", "must be 0-255 or an ICMP type name");
        }
        spec.port = static_cast<uint16_t>(n);
      } else if (auto byName = icmpTypeByName(text, v6); byName) {
        spec.port = *byName;
      } else if (t.is_string()) {
        return invalid(ff + ".type", fmt::format("{:?} is not an {} ICMP type name", text, v6 ? "IPv6" : "IPv4"));
      } else {
        return invalid(ff + ".type", "must be a number or a name");
      }
      out.push_back(spec);
    }
  }
  return out;
}

Result<Rule> cnpRule(const json& j, const std::string& field, Direction dir, bool deny, const std::string& ns,
                     std::set<Ipv4Prefix>* cidrs) {
  if (!j.is_object()) {
    return invalid(field, "must be an object");
  }
  const bool in = dir == Direction::kIngress;
  const std::string pre = in ? "from" : "to";
  std::set<std::string> known = {pre + "Endpoints", pre + "CIDR",   pre + "CIDRSet",
                                  pre + "Entities",  "toPorts", "icmps"};
  std::set<std::string> unsupported = {pre + "Requires", pre + "Groups", pre + "Nodes", "authentication"};
  if (!in) {
    unsupported.insert({"toServices", "toFQDNs"});
  }
  if (Status s = checkFields(j, field, known, unsupported); !s.ok()) {
    return s.error();
  }
  Rule r;
  r.direction = dir;
  r.deny = deny;
  bool has_l3 = false;
  auto eps = listField(j, pre + "Endpoints", field);
  if (!eps) {
    return eps.error();
  }
  for (size_t i = 0; i < (*eps)->size(); ++i) {
    auto sel = Selector::parse((**eps)[i], fmt::format("{}.{}Endpoints[{}]", field, pre, i));
    if (!sel) {
      return sel.error();
    }
    r.peers.selectors.push_back(namespaced(*sel, ns));
    has_l3 = true;
  }
  auto cidr = listField(j, pre + "CIDR", field);
  if (!cidr) {
    return cidr.error();
  }
  for (size_t i = 0; i < (*cidr)->size(); ++i) {
    std::string f = fmt::format("{}.{}CIDR[{}]", field, pre, i);
    if (!(**cidr)[i].is_string()) {
      return invalid(f, "must be a string");
    }
    auto p = ipBlockPeer((**cidr)[i], json(), f, cidrs);
    if (!p) {
      return p.error();
    }
    r.peers.selectors.push_back(p->selectors[0]);
    has_l3 = true;
  }
  auto cset = listField(j, pre + "CIDRSet", field);
  if (!cset) {
    return cset.error();
  }
  for (size_t i = 0; i < (*cset)->size(); ++i) {
    std::string f = fmt::format("{}.{}CIDRSet[{}]", field, pre, i);
    const auto& c = (**cset)[i];
    if (!c.is_object()) {
      return invalid(f, "must be an object");
    }
    if (Status s = checkFields(c, f, {"cidr", "except"}, {"cidrGroupRef", "cidrGroupSelector"}); !s.ok()) {
      return s.error();
    }
    if (!c.contains("cidr") || !c["cidr"].is_string()) {
      return invalid(f + ".cidr", "required");
    }
    auto p = ipBlockPeer(c["cidr"], c.value("except", json()), f, cidrs);
    if (!p) {
      return p.error();
    }
    r.peers.selectors.push_back(p->selectors[0]);
    has_l3 = true;
  }
  auto ents = listField(j, pre + "Entities", field);
  if (!ents) {
    return ents.error();
  }
  if (!(*ents)->empty()) {
    auto p = entitiesPeer(**ents, field + "." + pre + "Entities");
    if (!p) {
      return p.error();
    }
    r.peers.all = r.peers.all || p->all;
    for (auto& s : p->selectors) {
      r.peers.selectors.push_back(std::move(s));
    }
    has_l3 = true;
  }
  auto ports = cnpPorts(j, field);
  if (!ports) {
    return ports.error();
  }
  r.ports = std::move(*ports);
  auto icmps = cnpIcmps(j, field);
  if (!icmps) {
    return icmps.error();
  }
  if (!icmps->empty() && !r.ports.empty()) {
    // As Cilium's validation: one rule is either L4 ports or ICMP types.
    return invalid(field + ".icmps", "cannot be combined with toPorts in one rule (use a separate rule)");
  }
  r.ports.insert(r.ports.end(), icmps->begin(), icmps->end());
  if (!has_l3 && !r.ports.empty()) {
    r.peers.all = true;  // an L4-only rule applies to every peer
  }
  return r;
}

// A CNP applies in its own namespace only. As Cilium does, a match on the namespace label in its endpointSelector is
// not ANDed with that (which would select nothing for another namespace, leaving the subject open) but dropped and
// replaced by the policy's namespace, with a warning when it named something else.
Selector ownNamespace(const Selector& subject, const std::string& ns, const std::string& field,
                      std::vector<std::string>* warnings) {
  std::vector<Requirement> kept;
  bool other = false;
  for (const auto& r : subject.requirements()) {
    if (r.key != kPodNamespaceKey) {
      kept.push_back(r);
    } else if (r.op != Op::kIn || r.values != std::vector<std::string>{ns}) {
      other = true;
    }
  }
  if (other) {
    warnings->push_back(fmt::format("{}: the match on k8s:{} is ignored: a CiliumNetworkPolicy always applies in its "
                                    "own namespace {:?}",
                                    field, kPodNamespaceKey, ns));
  }
  kept.push_back(nsIs(ns));
  return Selector(std::move(kept));
}

Status cnpSpec(const json& j, const std::string& field, const std::string& ns, const std::string& origin,
               Policy* out) {
  if (!j.is_object()) {
    return invalid(field, "must be an object");
  }
  if (Status s = checkFields(j, field,
                             {"endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny",
                              "labels", "description", "enableDefaultDeny"});
      !s.ok()) {
    return s;
  }
  bool has_ep = j.contains("endpointSelector") && !j["endpointSelector"].is_null();
  bool has_node = j.contains("nodeSelector") && !j["nodeSelector"].is_null();
  if (has_ep == has_node) {
    return invalid(field, "exactly one of endpointSelector and nodeSelector is required");
  }
  if (has_node && !ns.empty()) {
    return invalid(field + ".nodeSelector", "only CiliumClusterwideNetworkPolicy may select nodes");
  }
  Spec spec;
  spec.selects_nodes = has_node;
  auto subject = Selector::parse(has_ep ? j["endpointSelector"] : j["nodeSelector"],
                                 field + (has_ep ? ".endpointSelector" : ".nodeSelector"));
  if (!subject) {
    return subject.error();
  }
  spec.subject = *subject;
  if (!ns.empty()) {
    spec.subject = ownNamespace(spec.subject, ns, field + ".endpointSelector", &out->warnings);
  }
  if (j.contains("enableDefaultDeny") && !j["enableDefaultDeny"].is_null()) {
    const auto& d = j["enableDefaultDeny"];
    if (!d.is_object()) {
      return invalid(field + ".enableDefaultDeny", "must be an object");
    }
    if (Status s = checkFields(d, field + ".enableDefaultDeny", {"ingress", "egress"}); !s.ok()) {
      return s;
    }
    for (const char* k : {"ingress", "egress"}) {
      if (d.contains(k) && !d[k].is_boolean()) {
        return invalid(fmt::format("{}.enableDefaultDeny.{}", field, k), "must be true or false");
      }
    }
    spec.default_deny_ingress = d.value("ingress", true);
    spec.default_deny_egress = d.value("egress", true);
  }
  struct Section {
    const char* key;
    Direction dir;
    bool deny;
  };
  for (Section sec : {Section{"ingress", Direction::kIngress, false}, Section{"ingressDeny", Direction::kIngress, true},
                      Section{"egress", Direction::kEgress, false}, Section{"egressDeny", Direction::kEgress, true}}) {
    auto list = listField(j, sec.key, field);
    if (!list) {
      return list.error();
    }
    for (size_t i = 0; i < (*list)->size(); ++i) {
      std::string f = fmt::format("{}.{}[{}]", field, sec.key, i);
      auto rule = cnpRule((**list)[i], f, sec.dir, sec.deny, ns, &out->cidrs);
      if (!rule) {
        return rule.error();
      }
      rule->origin = fmt::format("{} {}[{}]", origin, sec.key, i);
      rule->id = ruleId(rule->origin);
      (sec.dir == Direction::kIngress ? spec.ingress : spec.egress) = true;
      spec.rules.push_back(std::move(*rule));
    }
  }
  out->specs.push_back(std::move(spec));
  return Status::Ok();
}

Status metadata(const json& obj, bool namespaced_kind, Policy* p) {
  if (!obj.is_object() || !obj.contains("metadata") || !obj["metadata"].is_object()) {
    return invalid("metadata", "required");
  }
  const auto& md = obj["metadata"];
  if (!md.contains("name") || !md["name"].is_string() || md["name"].get<std::string>().empty()) {
    return invalid("metadata.name", "required");
  }
  p->name = md["name"];
  if (namespaced_kind) {
    p->ns = md.contains("namespace") && md["namespace"].is_string() ? md["namespace"].get<std::string>() : "default";
  }
  return Status::Ok();
}

}  // namespace

const char* toString(Direction d) { return d == Direction::kIngress ? "ingress" : "egress"; }

const char* protoName(uint8_t proto) {
  switch (proto) {
    case kProtoTcp: return "TCP";
    case kProtoUdp: return "UDP";
    case kProtoSctp: return "SCTP";
    case kProtoIcmp: return "ICMP";
    case kProtoIcmpv6: return "ICMPv6";
    case kProtoAny: return "ANY";
    default: return "?";
  }
}

const char* toString(Kind k) {
  switch (k) {
    case Kind::kNetworkPolicy: return "NetworkPolicy";
    case Kind::kCiliumNetworkPolicy: return "CiliumNetworkPolicy";
    case Kind::kCiliumClusterwideNetworkPolicy: return "CiliumClusterwideNetworkPolicy";
  }
  return "?";
}

std::string Policy::key() const {
  return ns.empty() ? fmt::format("{} {}", toString(kind), name) : fmt::format("{} {}/{}", toString(kind), ns, name);
}

std::string cidrLabelKey(const Ipv4Prefix& prefix) { return prefix.toString(); }

std::vector<std::string> reservedIdentityLabels(uint32_t id) {
  switch (id) {
    case 1: return {"reserved:host"};
    case 2: return {"cidr:0.0.0.0/0", "reserved:world"};  // world is everything outside the cluster
    case 3: return {"reserved:unmanaged"};
    case 4: return {"reserved:health"};
    case 5: return {"reserved:init"};
    case 6: return {"reserved:remote-node"};
    case 7: return {"reserved:kube-apiserver"};
    case 8: return {"reserved:ingress"};
    default: return {};
  }
}

std::vector<std::string> cidrIdentityLabels(const Ipv4Prefix& prefix, const std::set<Ipv4Prefix>& all_cidrs) {
  std::vector<std::string> out = {"cidr:0.0.0.0/0", "reserved:world"};
  for (const auto& c : all_cidrs) {
    if (c.contains(prefix) && c.length() > 0) {
      out.push_back("cidr:" + cidrLabelKey(c));
    }
  }
  return out;
}

Result<Policy> parseNetworkPolicy(const json& obj) {
  Policy p;
  p.kind = Kind::kNetworkPolicy;
  if (Status s = metadata(obj, true, &p); !s.ok()) {
    return s.error();
  }
  if (!obj.contains("spec") || !obj["spec"].is_object()) {
    return invalid("spec", "required");
  }
  const auto& spec = obj["spec"];
  if (Status s = checkFields(spec, "spec", {"podSelector", "policyTypes", "ingress", "egress"}); !s.ok()) {
    return s.error();
  }
  if (!spec.contains("podSelector")) {
    return invalid("spec.podSelector", "required (use {} to select every pod in the namespace)");
  }
  Spec out;
  auto subject = Selector::parse(spec["podSelector"], "spec.podSelector");
  if (!subject) {
    return subject.error();
  }
  std::vector<Requirement> reqs = subject->requirements();
  for (auto& r : reqs) {
    if (r.source == "any") {
      r.source = "k8s";
    }
  }
  reqs.push_back(nsIs(p.ns));
  out.subject = Selector(std::move(reqs));
  auto ingress = listField(spec, "ingress", "spec");
  auto egress = listField(spec, "egress", "spec");
  if (!ingress) {
    return ingress.error();
  }
  if (!egress) {
    return egress.error();
  }
  // policyTypes defaults: Ingress always, Egress when egress rules are present.
  if (spec.contains("policyTypes") && !spec["policyTypes"].is_null()) {
    if (!spec["policyTypes"].is_array()) {
      return invalid("spec.policyTypes", "must be a list");
    }
    for (size_t i = 0; i < spec["policyTypes"].size(); ++i) {
      const auto& t = spec["policyTypes"][i];
      if (t == "Ingress") {
        out.ingress = true;
      } else if (t == "Egress") {
        out.egress = true;
      } else {
        return invalid(fmt::format("spec.policyTypes[{}]", i), "must be Ingress or Egress");
      }
    }
  } else {
    out.ingress = true;
    out.egress = !(*egress)->empty();
  }
  for (Direction dir : {Direction::kIngress, Direction::kEgress}) {
    const bool in = dir == Direction::kIngress;
    const json& list = in ? **ingress : **egress;
    const std::string peer_key = in ? "from" : "to";
    for (size_t i = 0; i < list.size(); ++i) {
      std::string f = fmt::format("spec.{}[{}]", toString(dir), i);
      const auto& rj = list[i];
      if (!rj.is_object()) {
        return invalid(f, "must be an object");
      }
      if (Status s = checkFields(rj, f, {peer_key, "ports"}); !s.ok()) {
        return s.error();
      }
      Rule r;
      r.direction = dir;
      r.origin = fmt::format("{} {}[{}]", p.key(), toString(dir), i);
      r.id = ruleId(r.origin);
      auto peers = listField(rj, peer_key, f);
      if (!peers) {
        return peers.error();
      }
      if ((*peers)->empty()) {
        r.peers.all = true;  // no from/to: every source or destination
      }
      for (size_t k = 0; k < (*peers)->size(); ++k) {
        auto peer = npPeer((**peers)[k], fmt::format("{}.{}[{}]", f, peer_key, k), p.ns, &p.cidrs);
        if (!peer) {
          return peer.error();
        }
        for (auto& s : peer->selectors) {
          r.peers.selectors.push_back(std::move(s));
        }
      }
      auto ports = npPorts(rj, f);
      if (!ports) {
        return ports.error();
      }
      r.ports = std::move(*ports);
      // Rules of a direction the policy types leave out are ignored, as by the API server's consumers.
      if ((in && out.ingress) || (!in && out.egress)) {
        out.rules.push_back(std::move(r));
      }
    }
  }
  p.specs.push_back(std::move(out));
  return p;
}

Result<Policy> parseCiliumPolicy(const json& obj, bool clusterwide) {
  Policy p;
  p.kind = clusterwide ? Kind::kCiliumClusterwideNetworkPolicy : Kind::kCiliumNetworkPolicy;
  if (Status s = metadata(obj, !clusterwide, &p); !s.ok()) {
    return s.error();
  }
  if (Status s = checkFields(obj, "", {"apiVersion", "kind", "metadata", "spec", "specs", "status"}); !s.ok()) {
    return s.error();
  }
  bool has_spec = obj.contains("spec") && !obj["spec"].is_null();
  bool has_specs = obj.contains("specs") && !obj["specs"].is_null();
  if (!has_spec && !has_specs) {
    return invalid("spec", "one of spec or specs is required");
  }
  if (has_spec) {
    if (Status s = cnpSpec(obj["spec"], "spec", p.ns, p.key() + " spec", &p); !s.ok()) {
      return s.error();
    }
  }
  if (has_specs) {
    if (!obj["specs"].is_array() || obj["specs"].empty()) {
      return invalid("specs", "must be a non-empty list");
    }
    for (size_t i = 0; i < obj["specs"].size(); ++i) {
      std::string f = fmt::format("specs[{}]", i);
      if (Status s = cnpSpec(obj["specs"][i], f, p.ns, p.key() + " " + f, &p); !s.ok()) {
        return s.error();
      }
    }
  }
  return p;
}

Result<Policy> parsePolicy(const json& obj) {
  std::string kind = obj.is_object() ? obj.value("kind", "") : "";
  std::string api = obj.is_object() ? obj.value("apiVersion", "") : "";
  if (kind == "NetworkPolicy" && api == "networking.k8s.io/v1") {
    return parseNetworkPolicy(obj);
  }
  if (api == "cilium.io/v2" && (kind == "CiliumNetworkPolicy" || kind == "CiliumClusterwideNetworkPolicy")) {
    return parseCiliumPolicy(obj, kind == "CiliumClusterwideNetworkPolicy");
  }
  return invalid("kind", fmt::format("{}/{} is not a policy kind", api, kind));
}

}  // namespace plexus::policy
