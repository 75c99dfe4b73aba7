#pragma once
// Packet fuzzing (packet_fuzz_test.cc): the seeded world, the policies, and the userspace model of the tc
// programs' documented rules that each verdict is compared with. Pure: no BPF calls.
#include <linux/icmp.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "lxc_fixture.h"
#include "plexus/common/manifest.h"
#include "plexus/policy/compiler.h"
#include "plexus/policy/policy.h"

namespace plexus::testing::fuzz {

// ---------------------------------------------------------------------------------------------------------------
// The seeded world.
inline const Ipv4 kPodC = *Ipv4::parse("10.244.0.7");  // a chained endpoint (another plugin's veth)
constexpr uint32_t kPodCIfindex = 4343;
inline const Ipv4 kRemotePod = *Ipv4::parse("10.244.1.7");
inline const Ipv4 kRemoteCidrAddr = *Ipv4::parse("10.244.1.99");
inline const Ipv4 kRemoteNode = *Ipv4::parse("192.0.2.20");
inline const Ipv4 kNodeIp = *Ipv4::parse("192.0.2.10");
inline const Ipv4 kWorld = *Ipv4::parse("8.8.8.8");
inline const Ipv4 kCidrAddr = *Ipv4::parse("203.0.113.9");
inline const Ipv4 kVipTcp = *Ipv4::parse("10.96.0.10");     // TCP 80 -> pod B:8080, remote pod:8080
inline const Ipv4 kVipUdp = *Ipv4::parse("10.96.0.11");     // UDP 53 -> pod B:53
inline const Ipv4 kVipEmpty = *Ipv4::parse("10.96.0.12");   // TCP and UDP 443, no backends
constexpr uint32_t kRemotePodIdentity = 4242;
constexpr uint32_t kCidrIdentity = PLEXUS_IDENTITY_LOCAL_FLAG | 1;
constexpr uint32_t kIdA = PLEXUS_IDENTITY_CLUSTER_MIN + 1;  // Fixture: 256 + endpoint id
constexpr uint32_t kIdB = PLEXUS_IDENTITY_CLUSTER_MIN + 2;
constexpr uint32_t kIdC = PLEXUS_IDENTITY_CLUSTER_MIN + 3;
constexpr uint16_t kVxlanPort = 8472;
constexpr uint32_t kCtMapSize = 1024;

struct Frontend {
  Ipv4 vip;
  uint16_t port;
  uint8_t proto;
  std::vector<std::pair<Ipv4, uint16_t>> backends;
  uint16_t rev_nat;
};

inline const std::vector<Frontend>& frontends() {
  static const std::vector<Frontend> f = {
      {kVipTcp, 80, IPPROTO_TCP, {{kPodB, 8080}, {kRemotePod, 8080}}, 1},
      {kVipUdp, 53, IPPROTO_UDP, {{kPodB, 53}}, 2},
      {kVipEmpty, 443, IPPROTO_TCP, {}, 3},
      {kVipEmpty, 443, IPPROTO_UDP, {}, 4},
      {kNodeIp, 30080, IPPROTO_TCP, {{kPodB, 8080}, {kRemotePod, 8080}}, 5},
  };
  return f;
}

// The policies, as a user would write them; compiled by the policy library for each endpoint.
constexpr const char* kPolicies = R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}, {port: '80', endPort: 95, protocol: TCP}]}]
  - fromEntities: [cluster]
    toPorts: [{ports: [{port: '53', protocol: UDP}]}]
  - fromEntities: [host, remote-node]
  - fromEndpoints: [{matchLabels: {app: client}}]
    icmps: [{fields: [{type: 8}]}]
  - fromCIDR: [203.0.113.0/24]
    toPorts: [{ports: [{port: '443', protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: '81', protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}, {port: '80', endPort: 1023, protocol: TCP}, {port: '53', protocol: UDP}]}]
  - toEntities: [world]
    toPorts: [{ports: [{port: '443', protocol: TCP}]}]
  - toEntities: [cluster]
    icmps: [{fields: [{type: 8}, {type: 0}]}]
  - toCIDR: [203.0.113.0/24]
  egressDeny:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: '22', protocol: TCP}]}]
  ingress:
  - fromEndpoints: [{matchLabels: {app: server}}]
  - fromEntities: [host]
    toPorts: [{ports: [{port: '9000', endPort: 9100, protocol: TCP}]}]
)";

inline std::vector<std::string> podLabels(const std::string& app) {
  return {"k8s:io.kubernetes.pod.namespace=default",
          "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default", "k8s:app=" + app};
}

// Compiled entries per endpoint id (1 A client, 2 B server, 3 C unselected).
inline std::map<uint16_t, std::vector<policy::Entry>> compilePolicies() {
  std::map<uint32_t, std::vector<std::string>> ids;
  for (uint32_t r = 1; r <= PLEXUS_IDENTITY_RESERVED_MAX; ++r) {
    ids[r] = policy::reservedIdentityLabels(r);
  }
  ids[kIdA] = podLabels("client");
  ids[kIdB] = podLabels("server");
  ids[kIdC] = podLabels("other");
  ids[kRemotePodIdentity] = podLabels("server");
  auto cidr = *Ipv4Prefix::parse("203.0.113.0/24");
  ids[kCidrIdentity] = policy::cidrIdentityLabels(cidr, {cidr});
  policy::SelectorCache cache;
  cache.syncIdentities(ids);
  auto objs = parseManifests(kPolicies);
  REQUIRE(objs.ok());
  std::vector<policy::Policy> policies;
  for (const auto& o : *objs) {
    auto p = policy::parsePolicy(o);
    INFO((p.ok() ? std::string() : p.error().message));
    REQUIRE(p.ok());
    policies.push_back(*p);
  }
  std::vector<const policy::Policy*> ptrs;
  for (const auto& p : policies) {
    ptrs.push_back(&p);
  }
  std::map<uint16_t, std::vector<policy::Entry>> out;
  for (auto [ep, id] : {std::pair<uint16_t, uint32_t>{1, kIdA}, {2, kIdB}, {3, kIdC}}) {
    std::vector<policy::Label> labels;
    for (const auto& l : ids.at(id)) {
      labels.push_back(policy::parseLabel(l));
    }
    policy::EndpointInfo info{id, labels, {}};
    out[ep] = policy::compile(info, ptrs, cache, [](uint32_t, const std::string&) {
                return std::vector<std::pair<uint16_t, uint8_t>>{};
              }).entries;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The model's view of the maps.
struct ModelEndpoint {
  uint32_t ifindex;
  uint32_t identity;
  uint16_t ep_id;
  uint16_t flags;
};

struct IpcacheEntry {
  Ipv4Prefix prefix;
  uint32_t identity;
  Ipv4 tunnel_endpoint;
};

struct World {
  std::map<uint32_t, ModelEndpoint> endpoints;  // by address, host order
  std::vector<IpcacheEntry> ipcache;
  std::map<uint16_t, std::vector<policy::Entry>> policy;
  mutable uint64_t evaluations = 0;  // policy verdicts the model took (stats)

  const ModelEndpoint* endpoint(uint32_t addr) const {
    auto it = endpoints.find(addr);
    return it == endpoints.end() ? nullptr : &it->second;
  }
  const IpcacheEntry* ipcacheLookup(uint32_t addr) const {
    const IpcacheEntry* best = nullptr;
    for (const auto& e : ipcache) {
      if (e.prefix.contains(Ipv4(addr)) && (!best || e.prefix.length() > best->prefix.length())) {
        best = &e;
      }
    }
    return best;
  }
  // identity_of(): a local endpoint's, else the ipcache's longest prefix, else world.
  uint32_t identityOf(uint32_t addr) const {
    if (const auto* ep = endpoint(addr)) {
      return ep->identity;
    }
    const auto* e = ipcacheLookup(addr);
    return e ? e->identity : PLEXUS_IDENTITY_WORLD;
  }
  // 0 allowed, else the drop reason, per policy::evaluate on the endpoint's compiled entries.
  uint8_t verdict(uint16_t ep_id, uint32_t peer, policy::Direction dir, uint8_t proto, uint16_t port) const {
    auto it = policy.find(ep_id);
    if (it == policy.end()) {
      return PLEXUS_REASON_POLICY_DENIED;
    }
    evaluations++;
    auto v = policy::evaluate(it->second, peer, dir, proto, port);
    if (v.explicit_deny) {
      return PLEXUS_REASON_POLICY_DENY;
    }
    return v.allowed ? 0 : PLEXUS_REASON_POLICY_DENIED;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// The packet as the programs' parsers (lib/parse.h) read it. Bounds are the frame's length: test_run's skb is
// linear, so data_end and skb->len are the frame's end.
struct Parsed {
  uint16_t ethertype = 0;
  bool ipv4 = false;  // ipv4_hdr(): 20 bytes, version 4, ihl >= 5
  uint8_t ihl = 0;
  uint8_t proto = 0;
  uint8_t ttl = 0;
  uint32_t saddr = 0;  // host order
  uint32_t daddr = 0;
  size_t l4 = 0;
  bool l4_truncated = false;  // flow4_parse() fails: INVALID_PACKET
  bool has_ports = false;
  uint16_t sport = 0;  // host order; ICMP echo: the identifier (reply: sport, request: dport)
  uint16_t dport = 0;
  uint8_t tcp_flags = 0;
  bool has_icmp = false;
  uint8_t icmp_type = 0;
  bool related = false;  // an ICMP error whose quote parsed and names this packet's destination as its source

  // flow4_icmp_error(): an error message, which opens no conntrack entry whether its quote parsed or not.
  bool icmpError() const { return has_icmp && (icmp_type == 3 || icmp_type == 11 || icmp_type == 12); }
  uint16_t policyPort() const {
    if (proto != IPPROTO_ICMP) {
      return dport;
    }
    return has_icmp ? icmp_type : PLEXUS_POLICY_ICMP_NO_TYPE;
  }
};

inline uint16_t be16(const std::vector<uint8_t>& p, size_t off) { return static_cast<uint16_t>(p[off] << 8 | p[off + 1]); }
inline uint32_t be32(const std::vector<uint8_t>& p, size_t off) {
  return static_cast<uint32_t>(p[off]) << 24 | static_cast<uint32_t>(p[off + 1]) << 16 |
         static_cast<uint32_t>(p[off + 2]) << 8 | p[off + 3];
}

// flow4_parse_quoted(): 1 when the quote names a trackable packet; *src its source.
inline bool parseQuoted(const std::vector<uint8_t>& p, size_t off, uint32_t* src) {
  if (off + 20 > p.size()) {
    return false;
  }
  uint8_t vihl = p[off];
  if ((vihl >> 4) != 4 || (vihl & 0xf) < 5 || (be16(p, off + 6) & 0x1fff)) {
    return false;
  }
  *src = be32(p, off + 12);
  uint8_t proto = p[off + 9];
  size_t l4 = off + (vihl & 0xf) * 4u;
  if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
    return l4 + 4 <= p.size();
  }
  if (proto == IPPROTO_ICMP) {
    return l4 + 8 <= p.size() && (p[l4] == 8 || p[l4] == 0);
  }
  return true;
}

inline Parsed parse(const std::vector<uint8_t>& p) {
  Parsed r;
  r.ethertype = be16(p, 12);
  if (r.ethertype != ETH_P_IP || p.size() < 14 + 20) {
    return r;
  }
  uint8_t vihl = p[14];
  r.ihl = vihl & 0xf;
  if ((vihl >> 4) != 4 || r.ihl < 5) {
    return r;
  }
  r.ipv4 = true;
  r.ttl = p[14 + 8];
  r.proto = p[14 + 9];
  r.saddr = be32(p, 14 + 12);
  r.daddr = be32(p, 14 + 16);
  r.l4 = 14 + r.ihl * 4u;
  if (be16(p, 14 + 6) & 0x1fff) {
    return r;  // a later fragment: no L4 header
  }
  if (r.proto == IPPROTO_ICMP) {
    if (r.l4 + 8 > p.size()) {
      r.l4_truncated = true;
      return r;
    }
    r.has_icmp = true;
    r.icmp_type = p[r.l4];
    if (r.icmp_type == 8) {
      r.dport = be16(p, r.l4 + 4);
    } else if (r.icmp_type == 0) {
      r.sport = be16(p, r.l4 + 4);
    } else if (r.icmp_type == 3 || r.icmp_type == 11 || r.icmp_type == 12) {
      uint32_t src = 0;
      r.related = parseQuoted(p, r.l4 + 8, &src) && src == r.daddr;
    }
    return r;
  }
  if (r.proto != IPPROTO_TCP && r.proto != IPPROTO_UDP) {
    return r;
  }
  if (r.l4 + 4 > p.size() || (r.proto == IPPROTO_TCP && r.l4 + 14 > p.size())) {
    r.l4_truncated = true;
    return r;
  }
  r.sport = be16(p, r.l4);
  r.dport = be16(p, r.l4 + 2);
  if (r.proto == IPPROTO_TCP) {
    r.tcp_flags = p[r.l4 + 13];
  }
  r.has_ports = true;
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// Expected outcomes.
enum class Act { kPass, kShot, kRedirect, kRefuse, kNotShot };

struct Expect {
  Act act = Act::kPass;
  uint8_t reason = 0;  // kShot, kRefuse: the reason counted
  std::string why;     // the model's path, for failure messages
  bool admitted = false;  // from-container: egress policy admitted a new flow (opened its EGRESS conntrack entry)
};

inline Expect drop(uint8_t reason, std::string why) { return {Act::kShot, reason, std::move(why)}; }
inline Expect pass(Act a, std::string why) { return {a, 0, std::move(why)}; }

inline const Frontend* frontendOf(const Parsed& p) {
  for (const auto& f : frontends()) {
    if (f.vip.hostOrder() == p.daddr && f.port == p.dport && f.proto == p.proto) {
      return &f;
    }
  }
  return nullptr;
}

// lib/reject.h for a frontend without backends.
inline Expect refusal(const std::vector<uint8_t>& pkt, const Parsed& p) {
  if (p.proto == IPPROTO_TCP) {
    if (p.l4 + 20 > pkt.size()) {
      return drop(PLEXUS_REASON_INVALID_PACKET, "refusal: TCP header shorter than 20 bytes");
    }
    if (p.tcp_flags & PLEXUS_TCP_RST) {
      return drop(PLEXUS_REASON_NO_SERVICE_BACKEND, "refusal: a reset is not answered");
    }
    return {Act::kRefuse, PLEXUS_REASON_NO_SERVICE_BACKEND, "refused with a RST"};
  }
  if (pkt.size() < 14 + 28) {
    return drop(PLEXUS_REASON_INVALID_PACKET, "refusal: less than 28 bytes to quote");
  }
  if (p.ihl != 5) {
    return drop(PLEXUS_REASON_NO_SERVICE_BACKEND, "refusal: IP options are not quoted");
  }
  return {Act::kRefuse, PLEXUS_REASON_NO_SERVICE_BACKEND, "refused with ICMP port unreachable"};
}

// Service translation of a packet to a frontend with backends. The backend is random (or Maglev): read it back from
// the output, and check it is one of the frontend's. Returns nothing when translated (out_* set), or the outcome.
inline std::optional<Expect> translate(const std::vector<uint8_t>& pkt, const std::vector<uint8_t>& out, const Parsed& p,
                                const Frontend& fe, uint32_t* daddr, uint16_t* dport, std::string* problem) {
  size_t csum = p.l4 + (p.proto == IPPROTO_TCP ? 16 : 6);
  if (p.proto == IPPROTO_UDP && csum + 2 > pkt.size()) {
    return drop(PLEXUS_REASON_INVALID_PACKET, "NAT: UDP checksum not in the packet");
  }
  if (p.proto == IPPROTO_TCP && csum + 2 > pkt.size()) {
    return drop(PLEXUS_REASON_NAT_FAILED, "NAT: TCP checksum not in the packet");
  }
  if (out.size() < p.l4 + 4) {
    *problem = "translated output shorter than the input";
    return std::nullopt;
  }
  *daddr = be32(out, 14 + 16);
  *dport = be16(out, p.l4 + 2);
  bool known = false;
  for (const auto& [addr, port] : fe.backends) {
    known |= addr.hostOrder() == *daddr && port == *dport;
  }
  if (!known) {
    *problem = "translated to " + Ipv4(*daddr).toString() + ":" + std::to_string(*dport) + ", not a backend of " +
               fe.vip.toString() + ":" + std::to_string(fe.port);
  }
  return std::nullopt;
}

inline std::string policyWhy(const char* what, uint32_t peer, const Parsed& p, uint16_t port) {
  return std::string(what) + " peer " + std::to_string(peer) + " proto " + std::to_string(p.proto) + " port " +
         std::to_string(port);
}

inline Expect deliverFromContainer(const World& w, const Parsed& p, const Parsed& judged, const ModelEndpoint& src_ep,
                            uint32_t daddr, uint16_t port);

// plexus_from_container on pod A's veth (ifindex 1); lxc programs in tunnel mode.
inline Expect expectFromContainer(const World& w, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>& out,
                           std::string* problem) {
  Parsed p = parse(pkt);
  if (p.ethertype == ETH_P_ARP) {
    return pkt.size() < 14 + 28 ? drop(PLEXUS_REASON_INVALID_PACKET, "short ARP") : pass(Act::kNotShot, "ARP");
  }
  if (p.ethertype != ETH_P_IP) {
    return drop(PLEXUS_REASON_UNSUPPORTED_L3, "not IPv4");
  }
  if (!p.ipv4) {
    return drop(PLEXUS_REASON_INVALID_PACKET, "no IPv4 header");
  }
  const auto* src = w.endpoint(p.saddr);
  if (!src || src->ifindex != kPodAIfindex) {
    return drop(PLEXUS_REASON_INVALID_SOURCE_IP, "spoofed source");
  }
  if (p.l4_truncated) {
    return drop(PLEXUS_REASON_INVALID_PACKET, "truncated L4");
  }
  uint32_t daddr = p.daddr;
  uint16_t dport = p.dport;
  if (p.has_ports) {
    if (const auto* fe = frontendOf(p)) {
      if (fe->backends.empty()) {
        return refusal(pkt, p);
      }
      if (auto e = translate(pkt, out, p, *fe, &daddr, &dport, problem)) {
        return *e;
      }
    }
  }
  Parsed judged = p;
  judged.daddr = daddr;
  judged.dport = dport;
  uint16_t port = judged.policyPort();
  uint32_t peer = w.identityOf(daddr);
  if (uint8_t r = w.verdict(src->ep_id, peer, policy::Direction::kEgress, p.proto, port)) {
    return drop(r, policyWhy("egress", peer, p, port));
  }
  Expect e = deliverFromContainer(w, p, judged, *src, daddr, port);
  e.admitted = !p.icmpError();  // an ICMP error opens no entry
  return e;
}

// from-container after the egress policy admitted the packet.
inline Expect deliverFromContainer(const World& w, const Parsed& p, const Parsed& judged, const ModelEndpoint& src_ep,
                            uint32_t daddr, uint16_t port) {
  const ModelEndpoint* src = &src_ep;
  const auto* dst = w.endpoint(daddr);
  if (!dst) {
    const auto* e = w.ipcacheLookup(daddr);
    return e && e->tunnel_endpoint.hostOrder() ? pass(Act::kRedirect, "into the tunnel")
                                               : pass(Act::kPass, "to the stack");
  }
  if (dst->flags & (PLEXUS_EP_F_HOST | PLEXUS_EP_F_CHAINED)) {
    return pass(Act::kPass, "host or chained destination: the stack");
  }
  // An endpoint's packet to itself: egress admitted it and opened an EGRESS entry (an ICMP error opens none); ingress
  // then finds that entry as the reply of its own tuple when the tuple is its own reverse (equal ports, or none), and
  // passes it unjudged.
  bool self_reply = dst == src && !judged.icmpError() && judged.sport == judged.dport;
  if (!self_reply) {
    if (uint8_t r = w.verdict(dst->ep_id, src->identity, policy::Direction::kIngress, p.proto, port)) {
      return drop(r, policyWhy("ingress of the local destination", src->identity, p, port));
    }
  }
  if (p.ttl <= 1) {
    return drop(PLEXUS_REASON_TTL_EXCEEDED, "TTL");
  }
  return pass(Act::kRedirect, "redirect_peer");
}

// plexus_to_container on pod A's veth: the stack delivers to A.
inline Expect expectToContainer(const World& w, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>&, std::string*) {
  Parsed p = parse(pkt);
  if (p.ethertype == ETH_P_ARP) {
    return pass(Act::kPass, "ARP");
  }
  if (p.ethertype != ETH_P_IP) {
    return drop(PLEXUS_REASON_UNSUPPORTED_L3, "not IPv4");
  }
  if (!p.ipv4) {
    return drop(PLEXUS_REASON_INVALID_PACKET, "no IPv4 header");
  }
  const auto* dst = w.endpoint(p.daddr);
  if (!dst || (dst->flags & PLEXUS_EP_F_HOST) || dst->ifindex != kPodAIfindex) {
    return pass(Act::kPass, "not for this veth's endpoint");
  }
  if (p.l4_truncated) {
    return drop(PLEXUS_REASON_INVALID_PACKET, "truncated L4");
  }
  uint32_t peer = w.identityOf(p.saddr);
  if (uint8_t r = w.verdict(dst->ep_id, peer, policy::Direction::kIngress, p.proto, p.policyPort())) {
    return drop(r, policyWhy("ingress", peer, p, p.policyPort()));
  }
  return pass(Act::kPass, "delivered");
}

// plexus_from_netdev with BPF host routing.
inline Expect expectFromNetdev(const World& w, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>& out,
                        std::string* problem) {
  Parsed p = parse(pkt);
  if (p.ethertype != ETH_P_IP || !p.ipv4) {
    return pass(Act::kPass, "not IPv4: the stack's");
  }
  uint32_t daddr = p.daddr;
  uint16_t dport = p.dport;
  if (!p.l4_truncated && p.has_ports) {
    if (const auto* fe = frontendOf(p)) {
      if (fe->backends.empty()) {
        return refusal(pkt, p);
      }
      if (auto e = translate(pkt, out, p, *fe, &daddr, &dport, problem)) {
        return *e;
      }
    }
  }
  const auto* dst = w.endpoint(daddr);
  if (!dst || (dst->flags & (PLEXUS_EP_F_HOST | PLEXUS_EP_F_CHAINED))) {
    return pass(Act::kPass, "not a local pod: the stack");
  }
  if (p.l4_truncated) {
    return drop(PLEXUS_REASON_INVALID_PACKET, "truncated L4 for a local pod");
  }
  Parsed judged = p;
  judged.dport = dport;
  uint32_t peer = w.identityOf(p.saddr);
  if (uint8_t r = w.verdict(dst->ep_id, peer, policy::Direction::kIngress, p.proto, judged.policyPort())) {
    return drop(r, policyWhy("ingress", peer, p, judged.policyPort()));
  }
  if (p.ttl <= 1) {
    return drop(PLEXUS_REASON_TTL_EXCEEDED, "TTL");
  }
  return pass(Act::kRedirect, "redirect_peer");
}

// plexus_to_netdev: reverse NAT of NodePort replies only; conntrack is empty, so nothing happens.
inline Expect expectToNetdev(const World&, const std::vector<uint8_t>&, const std::vector<uint8_t>&, std::string*) {
  return pass(Act::kPass, "no NodePort flow");
}

// plexus_from_overlay: test_run packets carry no tunnel key.
inline Expect expectFromOverlay(const World&, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>&, std::string*) {
  Parsed p = parse(pkt);
  if (p.ethertype != ETH_P_IP) {
    return pass(Act::kPass, "not IPv4");
  }
  return drop(PLEXUS_REASON_INVALID_PACKET, "no tunnel metadata");
}

// plexus_to_overlay: the host stack routed the packet into the device, without a key.
inline Expect expectToOverlay(const World& w, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>&, std::string*) {
  Parsed p = parse(pkt);
  if (p.ethertype != ETH_P_IP) {
    return pass(Act::kPass, "not IPv4");
  }
  if (!p.ipv4 || p.l4_truncated) {
    return drop(PLEXUS_REASON_INVALID_PACKET, "no IPv4 header or truncated L4");
  }
  const auto* e = w.ipcacheLookup(p.daddr);
  if (!e || !e->tunnel_endpoint.hostOrder()) {
    return drop(PLEXUS_REASON_NO_TUNNEL_ENDPOINT, "no tunnel endpoint");
  }
  return pass(Act::kPass, "keyed");
}

}  // namespace plexus::testing::fuzz
