#include "plexus/agent/policy_manager.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/map_encoding.h"
#include "plexus/common/resource.h"
#include "plexus/identity/identity.h"

namespace plexus::agent {

namespace {
PolicyEntries encode(const std::vector<policy::Entry>& entries) {
  PolicyEntries out;
  out.reserve(entries.size());
  for (const auto& e : entries) {
    out.push_back(encodePolicyEntry(e));
  }
  return out;
}

// Cilium's policy match types: which of peer (L3), protocol and port the rule constrains.
uint8_t matchType(const policy::Rule& r) {
  bool l3 = !r.peers.all;
  if (r.ports.empty()) {
    return l3 ? 1 : 4;  // L3-only; all
  }
  bool ports = std::any_of(r.ports.begin(), r.ports.end(), [](const auto& p) { return p.port != 0 || !p.name.empty(); });
  if (ports) {
    return l3 ? 2 : 3;  // L3-L4; L4-only
  }
  return l3 ? 5 : 6;  // L3-proto; proto-only
}
}  // namespace

PolicyManager::PolicyManager(PolicyMap& map, IpcacheManager& ipcache, IdentitySource identities,
                             NamedPortsOf named_ports, policy::EnforcementMode mode)
    : map_(map),
      ipcache_(ipcache),
      identity_source_(std::move(identities)),
      named_ports_(std::move(named_ports)),
      mode_(mode) {}

std::string PolicyManager::keyOf(const std::string& kind, const std::string& ns, const std::string& name) {
  return ns.empty() ? fmt::format("{} {}", kind, name) : fmt::format("{} {}/{}", kind, ns, name);
}

Status PolicyManager::validate(const nlohmann::json& object) const { return policy::parsePolicy(object).status(); }

void PolicyManager::validated(const ResourceKey& key, const Status& verdict) {
  std::string k = keyOf(toString(key.kind), key.namespace_name, key.name);
  if (verdict.ok()) {
    invalid_.erase(k);
  } else {
    invalid_[k] = verdict.error().message;
  }
}

void PolicyManager::upsert(const nlohmann::json& object) {
  auto p = policy::parsePolicy(object);
  if (!p.ok()) {
    return;  // validate() refused it before it was stored
  }
  for (const auto& w : p->warnings) {
    spdlog::warn("policy {}: {}", p->key(), w);
  }
  std::vector<FlowDirectory::RuleRef> rules;
  for (const auto& spec : p->specs) {
    for (const auto& r : spec.rules) {
      rule_origins_[r.id] = r.origin;
      rules.push_back({r.id, r.direction == policy::Direction::kIngress, matchType(r)});
    }
  }
  if (flows_) {
    flows_->setPolicyRules(p->key(), FlowPolicy{policy::toString(p->kind), p->ns, p->name}, rules);
  }
  notify(NotificationType::kPolicyUpdated, policy::toString(p->kind), p->ns, p->name,
         static_cast<int64_t>(p->specs.size()));
  policies_[p->key()] = std::move(*p);
}

void PolicyManager::remove(const std::string& kind, const std::string& ns, const std::string& name) {
  std::string key = keyOf(kind, ns, name);
  auto it = policies_.find(key);
  if (it != policies_.end()) {
    notify(NotificationType::kPolicyDeleted, kind, ns, name, static_cast<int64_t>(it->second.specs.size()));
    policies_.erase(it);
  }
  invalid_.erase(key);
  if (flows_) {
    flows_->setPolicyRules(key, {}, {});
  }
}

void PolicyManager::notify(NotificationType type, const std::string& kind, const std::string& ns,
                           const std::string& name, int64_t rules) {
  ++revision_;
  if (!notices_) {
    return;
  }
  // The labels Cilium derives for a policy's rules.
  AgentNotification n{.type = type,
                      .labels = {"k8s:io.cilium.k8s.policy.derived-from=" + kind,
                                 "k8s:io.cilium.k8s.policy.name=" + name},
                      .revision = revision_,
                      .rule_count = rules};
  if (!ns.empty()) {
    n.labels.push_back("k8s:io.cilium.k8s.policy.namespace=" + ns);
  }
  notices_->add(std::move(n));
}

std::string PolicyManager::ruleOrigin(uint32_t rule_id) const {
  auto it = rule_origins_.find(rule_id);
  return it == rule_origins_.end() ? "" : it->second;
}

void PolicyManager::syncCidrIdentities() {
  std::set<Ipv4Prefix> wanted;
  for (const auto& [key, p] : policies_) {
    for (const auto& c : p.cidrs) {
      if (c.length() > 0) {  // 0.0.0.0/0 is the world identity itself
        wanted.insert(c);
      }
    }
  }
  bool changed = false;
  for (auto it = cidr_ids_.begin(); it != cidr_ids_.end();) {
    changed = changed || !wanted.count(it->first);
    it = wanted.count(it->first) ? std::next(it) : cidr_ids_.erase(it);
  }
  for (const auto& c : wanted) {
    if (!cidr_ids_.count(c)) {
      cidr_ids_[c] = next_cidr_id_++;
      changed = true;
    }
  }
  if (!changed) {
    return;
  }
  // Until the ipcache holds a prefix it stays world, which no CIDR allow selects: closed, not open. A failed
  // write is retried by the ipcache owner.
  std::map<Ipv4Prefix, IpcacheEntry> entries;
  for (const auto& [c, id] : cidr_ids_) {
    entries[c] = IpcacheEntry{id, Ipv4{}};
  }
  if (Status s = ipcache_.replace(IpcacheSource::kPolicyCidr, entries); !s.ok()) {
    spdlog::error("policy: CIDR identities: {} (will retry)", s.error().message);
  }
}

void PolicyManager::syncIdentities() {
  syncCidrIdentities();
  auto all = identity_source_();
  for (uint32_t r = PLEXUS_IDENTITY_HOST; r <= PLEXUS_IDENTITY_RESERVED_MAX; ++r) {
    all[r] = policy::reservedIdentityLabels(r);
  }
  std::set<Ipv4Prefix> prefixes;
  for (const auto& [c, id] : cidr_ids_) {
    prefixes.insert(c);
  }
  for (const auto& [c, id] : cidr_ids_) {
    all[id] = policy::cidrIdentityLabels(c, prefixes);
  }
  cache_.syncIdentities(all);
}

policy::EndpointPolicy PolicyManager::compileFor(const EndpointRecord& rec,
                                                const std::vector<EndpointRecord>& eps) {
  policy::EndpointInfo info;
  info.identity = rec.identity;
  info.labels = policy::parseLabels(rec.identity < ::plexus::identity::kFirstClusterIdentity
                                        ? policy::reservedIdentityLabels(rec.identity)
                                        : rec.labels);
  info.named_ports = named_ports_(rec);
  std::vector<const policy::Policy*> ptrs;
  for (const auto& [key, p] : policies_) {
    ptrs.push_back(&p);
  }
  auto resolver = [&](uint32_t id, const std::string& name) {
    std::vector<std::pair<uint16_t, uint8_t>> out;
    for (const auto& e : eps) {
      if (id != policy::kWildcardIdentity && e.identity != id) {
        continue;
      }
      auto ports = named_ports_(e);
      auto [b, end] = ports.equal_range(name);
      for (auto it = b; it != end; ++it) {
        out.push_back(it->second);
      }
    }
    return out;
  };
  return policy::compile(info, ptrs, cache_, resolver, mode_);
}

std::optional<std::string> PolicyManager::cidrHole(const policy::EndpointPolicy& compiled) const {
  auto failure = ipcache_.failure(IpcacheSource::kPolicyCidr);
  if (!failure) {
    return std::nullopt;
  }
  bool uses = std::any_of(compiled.entries.begin(), compiled.entries.end(),
                          [](const policy::Entry& e) { return e.identity >= identity::kFirstLocalIdentity; });
  if (!uses) {
    return std::nullopt;
  }
  return "the ipcache cannot hold the CIDR identities it uses: " + *failure;
}

Status PolicyManager::install(const EndpointRecord& rec, const std::vector<EndpointRecord>& endpoints) {
  syncIdentities();
  auto compiled = compileFor(rec, endpoints);
  if (auto hole = cidrHole(compiled)) {
    Error e{ErrorCode::kResourceExhausted, fmt::format("policy for endpoint {}: {}", rec.id, *hole)};
    notifyRegenerated(rec, e.message);
    return e;
  }
  if (Status s = map_.set(rec.id, encode(compiled.entries)); !s.ok()) {
    Error e = s.error().wrap(fmt::format("policy map for endpoint {}", rec.id));
    notifyRegenerated(rec, e.message);
    return e;
  }
  installed_[rec.id] = EndpointPolicyView{std::move(compiled), ""};
  notifyRegenerated(rec, "");
  return Status::Ok();
}

void PolicyManager::notifyRegenerated(const EndpointRecord& rec, const std::string& error) {
  if (notices_) {
    notices_->add({.type = error.empty() ? NotificationType::kEndpointRegenerateSuccess
                                         : NotificationType::kEndpointRegenerateFailure,
                   .labels = rec.labels, .id = rec.id, .error = error});
  }
}

void PolicyManager::forget(uint16_t id) {
  if (Status s = map_.clear(id); !s.ok() && s.error().code != ErrorCode::kNotFound) {
    spdlog::warn("policy: endpoint {}: release its map: {}", id, s.error().message);
  }
  installed_.erase(id);
}

bool PolicyManager::pending() const {
  return std::any_of(installed_.begin(), installed_.end(), [](const auto& kv) { return !kv.second.error.empty(); });
}

size_t PolicyManager::largestPolicy() const {
  size_t most = 0;
  for (const auto& [id, view] : installed_) {
    most = std::max(most, view.compiled.entries.size());
  }
  return most;
}

Status PolicyManager::regenerate(const std::vector<EndpointRecord>& endpoints) {
  syncIdentities();
  Status first = Status::Ok();
  std::set<uint16_t> live;
  for (const auto& rec : endpoints) {
    live.insert(rec.id);
    auto compiled = compileFor(rec, endpoints);
    auto it = installed_.find(rec.id);
    if (it != installed_.end() && it->second.compiled == compiled && it->second.error.empty()) {
      continue;
    }
    auto d = policy::diff(it == installed_.end() ? std::vector<policy::Entry>{} : it->second.compiled.entries,
                          compiled.entries);
    // Installing a policy whose CIDR identities are not all in the ipcache could let an address through as a
    // shorter prefix or as world (past an except or a CIDR deny): the endpoint keeps its previous trie instead.
    auto hole = cidrHole(compiled);
    Status s = hole ? makeError(ErrorCode::kResourceExhausted, *hole) : map_.set(rec.id, encode(compiled.entries));
    if (!s.ok()) {
      // The old trie stays in place: the endpoint keeps its last complete state, and the next regenerate retries.
      std::string why = s.error().message + "; the previous policy stays enforced";
      if (it == installed_.end() || it->second.error != why) {  // once per failure, not per retry
        spdlog::error("policy: endpoint {} ({}/{}): {}", rec.id, rec.pod_namespace, rec.pod_name, why);
        notifyRegenerated(rec, why);
      }
      installed_[rec.id].error = why;  // a new endpoint without a trie drops everything meanwhile
      if (first.ok()) {
        first = Error{s.error().code, fmt::format("policy for endpoint {}: {}", rec.id, why)};
      }
      continue;
    }
    spdlog::info("policy: endpoint {} ({}/{}): {} entries (+{} -{}), ingress {}, egress {}", rec.id,
                 rec.pod_namespace, rec.pod_name, compiled.entries.size(), d.upserts.size(), d.removals.size(),
                 compiled.ingress_enforced ? "enforced" : "open", compiled.egress_enforced ? "enforced" : "open");
    installed_[rec.id] = EndpointPolicyView{std::move(compiled), ""};
    notifyRegenerated(rec, "");
  }
  for (auto it = installed_.begin(); it != installed_.end();) {
    it = live.count(it->first) ? std::next(it) : installed_.erase(it);
  }
  return first;
}

std::vector<PolicyStatus> PolicyManager::policies() const {
  std::vector<PolicyStatus> out;
  for (const auto& [key, p] : policies_) {
    PolicyStatus st{key, true, "", 0, {}};
    for (const auto& spec : p.specs) {
      st.rules += spec.rules.size();
    }
    for (const auto& [id, view] : installed_) {
      const auto& by = view.compiled.selected_by;
      if (std::find(by.begin(), by.end(), key) != by.end()) {
        st.endpoints.push_back(id);
      }
    }
    if (invalid_.count(key)) {
      st.reason = "update refused, previous version enforced: " + invalid_.at(key);
    }
    out.push_back(std::move(st));
  }
  for (const auto& [key, reason] : invalid_) {
    if (!policies_.count(key)) {
      out.push_back(PolicyStatus{key, false, reason, 0, {}});
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  return out;
}

std::optional<EndpointPolicyView> PolicyManager::endpointPolicy(uint16_t id) const {
  auto it = installed_.find(id);
  if (it == installed_.end()) {
    return std::nullopt;
  }
  return it->second;
}

Result<ExplainResult> PolicyManager::explain(const std::vector<EndpointRecord>& endpoints, const std::string& from,
                                             const std::string& to, uint8_t proto, uint16_t port,
                                             const ExplainPeerLookup& remote) {
  struct Side {
    std::optional<EndpointRecord> ep;
    uint32_t identity = 0;
    std::string name;
    std::string node;  // a peer on another node: the node that enforces its side
  };
  auto side = [&](const std::string& text) -> Result<Side> {
    Side s;
    s.name = text;
    if (text == "world") {
      s.identity = ::plexus::identity::kWorld;
      return s;
    }
    if (text == "host") {
      s.identity = ::plexus::identity::kHost;
      return s;
    }
    s.ep = findEndpoint(endpoints, text);
    if (s.ep) {
      s.identity = s.ep->identity;
      return s;
    }
    if (auto peer = remote ? remote(text) : std::nullopt) {
      s.identity = peer->identity;
      s.name = peer->name;
      s.node = peer->node;
      return s;
    }
    auto ip = Ipv4::parse(text);
    if (!ip) {
      return makeError(ErrorCode::kNotFound,
                       fmt::format("{:?} is neither an endpoint (namespace/pod, id, IP) nor an address", text));
    }
    s.identity = ::plexus::identity::kWorld;  // outside the cluster: the narrowest policy CIDR, else world
    int best = -1;
    for (const auto& [c, id] : cidr_ids_) {
      if (c.contains(*ip) && c.length() > best) {
        best = c.length();
        s.identity = id;
      }
    }
    return s;
  };
  auto src = side(from);
  if (!src.ok()) {
    return src.error().wrap("--from");
  }
  auto dst = side(to);
  if (!dst.ok()) {
    return dst.error().wrap("--to");
  }
  syncIdentities();
  ExplainResult out;
  out.allowed = true;
  auto judge = [&](const Side& self, const Side& peer, policy::Direction dir) {
    const char* where = dir == policy::Direction::kEgress ? "egress" : "ingress";
    if (!self.ep) {
      out.lines.push_back(self.node.empty()
                              ? fmt::format("{} at {}: not a local endpoint, not enforced on this node", where,
                                            self.name)
                              : fmt::format("{} at {} (identity {}): on node {}, enforced there (ask its agent)", where,
                                            self.name, self.identity, self.node));
      return;
    }
    auto view = endpointPolicy(self.ep->id);
    auto compiled = view ? view->compiled : compileFor(*self.ep, endpoints);
    auto v = policy::evaluate(compiled.entries, peer.identity, dir, proto, port);
    std::string head = fmt::format("{} at {} (identity {}) {} {} (identity {})", where, self.name, self.ep->identity,
                                   dir == policy::Direction::kEgress ? "to" : "from", peer.name, peer.identity);
    if (v.allowed) {
      if (v.deciding && v.deciding->rule_id == 0) {
        out.lines.push_back(fmt::format("{}: ALLOWED: no policy selects {} for {}", head, self.name, where));
      } else {
        out.lines.push_back(fmt::format("{}: ALLOWED by {}", head, ruleOrigin(v.deciding->rule_id)));
      }
      return;
    }
    out.allowed = false;
    if (v.explicit_deny) {
      out.lines.push_back(fmt::format("{}: DENIED by {}", head, ruleOrigin(v.deciding->rule_id)));
    } else {
      out.lines.push_back(fmt::format("{}: DENIED: no rule allows it (default deny from {})", head,
                                      fmt::join(compiled.selected_by, ", ")));
    }
  };
  judge(*src, *dst, policy::Direction::kEgress);
  judge(*dst, *src, policy::Direction::kIngress);
  return out;
}

}  // namespace plexus::agent
