#include "plexus/agent/flow_decoder.h"

#include <arpa/inet.h>

#include <fmt/format.h>

namespace plexus::agent {

void FlowDirectory::upsertEndpoint(Ipv4 ip, PeerInfo info) {
  std::unique_lock lock(mu_);
  endpoints_[ip] = std::move(info);
}

void FlowDirectory::removeEndpoint(Ipv4 ip) {
  std::unique_lock lock(mu_);
  endpoints_.erase(ip);
}

namespace {
uint64_t packFrontend(const FrontendAddress& f) { return packEndpoint(f.ip, f.port, f.proto); }
}  // namespace

void FlowDirectory::setServices(const ServiceNames& frontends) {
  std::unordered_map<uint64_t, std::string> next;
  next.reserve(frontends.size());
  for (const auto& [f, name] : frontends) {
    next[packFrontend(f)] = name;
  }
  std::unique_lock lock(mu_);
  services_ = std::move(next);
}

void FlowDirectory::updateServices(const std::vector<FrontendAddress>& removed, const ServiceNames& added) {
  std::unique_lock lock(mu_);
  for (const auto& f : removed) {
    services_.erase(packFrontend(f));
  }
  for (const auto& [f, name] : added) {
    services_[packFrontend(f)] = name;
  }
}

bool FlowDirectory::lookupEndpoint(Ipv4 ip, PeerInfo* out) const {
  std::shared_lock lock(mu_);
  auto it = endpoints_.find(ip);
  if (it == endpoints_.end()) {
    return false;
  }
  *out = it->second;
  return true;
}

std::string FlowDirectory::lookupService(Ipv4 ip, uint16_t port, uint8_t proto) const {
  std::shared_lock lock(mu_);
  auto it = services_.find(packEndpoint(ip, port, proto));
  return it == services_.end() ? std::string() : it->second;
}

void FlowDirectory::setPolicyRules(const std::string& policy_key, const FlowPolicy& policy,
                                   const std::vector<RuleRef>& rules) {
  std::unique_lock lock(mu_);
  for (uint32_t id : policy_rules_[policy_key]) {
    rules_.erase(id);
  }
  policy_rules_.erase(policy_key);
  for (const auto& r : rules) {
    FlowPolicy& p = rules_[r.id] = policy;
    p.ingress = r.ingress;
    p.match_type = r.match_type;
    policy_rules_[policy_key].push_back(r.id);
  }
}

std::optional<FlowPolicy> FlowDirectory::lookupRule(uint32_t rule_id) const {
  std::shared_lock lock(mu_);
  auto it = rules_.find(rule_id);
  return it == rules_.end() ? std::nullopt : std::optional<FlowPolicy>(it->second);
}

namespace {
FlowPeer peer(const FlowDirectory& dir, uint32_t be_addr, uint16_t be_port, uint32_t identity) {
  FlowPeer p;
  p.ip = Ipv4::fromNetwork(be_addr);
  p.port = ntohs(be_port);
  p.identity = identity;
  PeerInfo info;
  if (dir.lookupEndpoint(p.ip, &info)) {
    p.pod_namespace = info.pod_namespace;
    p.pod_name = info.pod_name;
    p.labels = info.labels;
    p.endpoint_id = info.endpoint_id;
  }
  return p;
}
}  // namespace

FlowRecord decodeFlow(const plexus_flow_event& e, int64_t mono_to_real_ns, const FlowDirectory& dir) {
  FlowRecord f;
  f.time_unix_nano = static_cast<int64_t>(e.timestamp_ns) + mono_to_real_ns;
  f.verdict = e.verdict;
  f.reason = e.reason;
  f.direction = e.direction;
  f.protocol = e.proto;
  f.tcp_flags = e.tcp_flags;
  f.is_reply = e.is_reply != 0;
  f.source = peer(dir, e.saddr, e.sport, e.src_identity);
  f.destination = peer(dir, e.daddr, e.dport, e.dst_identity);
  f.observed_endpoint = e.endpoint_id;
  // The device of the observing endpoint (Hubble's Flow.interface); a host device's events carry no ifindex.
  if (e.endpoint_id != 0) {
    for (const FlowPeer* p : {&f.source, &f.destination}) {
      PeerInfo info;
      if (p->endpoint_id == e.endpoint_id && dir.lookupEndpoint(p->ip, &info)) {
        f.interface_name = info.host_ifname;
        f.interface_index = info.host_ifindex;
        break;
      }
    }
  }
  f.length = e.len;
  f.has_icmp = (e.flags & PLEXUS_EVENT_F_ICMP) != 0;
  f.icmp_type = f.has_icmp ? e.icmp_type : 0;
  f.icmp_code = f.has_icmp ? e.icmp_code : 0;
  f.rule_id = e.rule_id;
  if (e.rule_id != 0) {
    f.policy = dir.lookupRule(e.rule_id);
  }
  if (e.orig_daddr != 0) {
    Ipv4 fe = Ipv4::fromNetwork(e.orig_daddr);
    uint16_t port = ntohs(e.orig_dport);
    f.service_frontend = fmt::format("{}:{}", fe.toString(), port);
    f.service = dir.lookupService(fe, port, e.proto);
  }
  return f;
}

}  // namespace plexus::agent
