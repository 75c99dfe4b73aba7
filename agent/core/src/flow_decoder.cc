#include "plexus/agent/flow_decoder.h"

#include <arpa/inet.h>

#include <fmt/format.h>

namespace plexus::agent {

void FlowDirectory::upsertEndpoint(Ipv4 ip, PeerInfo info) {
  Endpoint ep{std::make_shared<const FlowPod>(
                  FlowPod{std::move(info.pod_namespace), std::move(info.pod_name), std::move(info.labels)}),
              info.endpoint_id, std::move(info.host_ifname), info.host_ifindex};
  std::unique_lock lock(mu_);
  endpoints_[ip.hostOrder()] = std::move(ep);  // flows seen before keep the pod as it was
}

void FlowDirectory::removeEndpoint(Ipv4 ip) {
  std::unique_lock lock(mu_);
  endpoints_.erase(ip.hostOrder());
}

const FlowDirectory::Endpoint* FlowDirectory::find(Ipv4 ip) const {
  auto it = endpoints_.find(ip.hostOrder());
  return it == endpoints_.end() ? nullptr : &it->second;
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
  const Endpoint* ep = find(ip);
  if (!ep) {
    return false;
  }
  *out = PeerInfo{ep->pod->pod_namespace, ep->pod->pod_name, ep->pod->labels, ep->endpoint_id, ep->host_ifname,
                  ep->host_ifindex};
  return true;
}

const std::string* FlowDirectory::findService(const FrontendAddress& f) const {
  auto it = services_.find(packFrontend(f));
  return it == services_.end() ? nullptr : &it->second;
}

std::string FlowDirectory::lookupService(Ipv4 ip, uint16_t port, uint8_t proto) const {
  std::shared_lock lock(mu_);
  const std::string* name = findService({ip, port, proto});
  return name ? *name : std::string();
}

void FlowDirectory::setPolicyRules(const std::string& policy_key, const FlowPolicy& policy,
                                   const std::vector<RuleRef>& rules) {
  std::unique_lock lock(mu_);
  for (uint32_t id : policy_rules_[policy_key]) {
    rules_.erase(id);
  }
  policy_rules_.erase(policy_key);
  for (const auto& r : rules) {
    FlowPolicy p = policy;
    p.ingress = r.ingress;
    p.match_type = r.match_type;
    rules_[r.id] = std::make_shared<const FlowPolicy>(std::move(p));
    policy_rules_[policy_key].push_back(r.id);
  }
}

std::shared_ptr<const FlowPolicy> FlowDirectory::findRule(uint32_t rule_id) const {
  auto it = rules_.find(rule_id);
  return it == rules_.end() ? nullptr : it->second;
}

std::shared_ptr<const FlowPolicy> FlowDirectory::lookupRule(uint32_t rule_id) const {
  std::shared_lock lock(mu_);
  return findRule(rule_id);
}

void FlowDirectory::enrich(const plexus_flow_event& e, FlowRecord* f) const {
  std::shared_lock lock(mu_);
  const Endpoint* observer = nullptr;
  for (FlowPeer* p : {&f->source, &f->destination}) {
    if (const Endpoint* ep = find(p->ip)) {
      p->pod = ep->pod;
      p->endpoint_id = ep->endpoint_id;
      if (!observer && e.endpoint_id != 0 && ep->endpoint_id == e.endpoint_id) {
        observer = ep;
      }
    }
  }
  // The device of the observing endpoint (Hubble's Flow.interface); a host device's events carry no ifindex.
  if (observer) {
    f->interface_name = observer->host_ifname;
    f->interface_index = observer->host_ifindex;
  }
  if (e.rule_id != 0) {
    f->policy = findRule(e.rule_id);
  }
  if (e.orig_daddr != 0) {
    if (const std::string* name = findService({Ipv4::fromNetwork(e.orig_daddr), ntohs(e.orig_dport), e.proto})) {
      f->service = *name;
    }
  }
}

FlowRecord decodeFlow(const plexus_flow_event& e, int64_t mono_to_real_ns, const FlowDirectory& dir) {
  FlowRecord f;
  f.time_unix_nano = static_cast<int64_t>(e.timestamp_ns) + mono_to_real_ns;
  f.verdict = e.verdict;
  f.reason = e.reason;
  f.direction = e.direction;
  f.protocol = e.proto;
  f.tcp_flags = e.tcp_flags;
  f.is_reply = e.is_reply != 0;
  f.source.ip = Ipv4::fromNetwork(e.saddr);
  f.source.port = ntohs(e.sport);
  f.source.identity = e.src_identity;
  f.destination.ip = Ipv4::fromNetwork(e.daddr);
  f.destination.port = ntohs(e.dport);
  f.destination.identity = e.dst_identity;
  f.observed_endpoint = e.endpoint_id;
  f.length = e.len;
  f.has_icmp = (e.flags & PLEXUS_EVENT_F_ICMP) != 0;
  f.icmp_type = f.has_icmp ? e.icmp_type : 0;
  f.icmp_code = f.has_icmp ? e.icmp_code : 0;
  f.rule_id = e.rule_id;
  if (e.orig_daddr != 0) {
    f.service_frontend = fmt::format("{}:{}", Ipv4::fromNetwork(e.orig_daddr).toString(), ntohs(e.orig_dport));
  }
  dir.enrich(e, &f);
  return f;
}

}  // namespace plexus::agent
