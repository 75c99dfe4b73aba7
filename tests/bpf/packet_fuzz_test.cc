// [bpf][fuzz] packet fuzzing of the six tc programs through BPF_PROG_TEST_RUN: a seeded, deterministic generator
// of well-formed and mutated frames (truncated headers, bad IHL and version, IP options, fragments, bad TCP data
// offsets, ICMP errors quoting arbitrary inner headers, VXLAN packets with garbage inside, foreign ethertypes) runs
// against the real programs with seeded maps (endpoints, ipcache, services with and without backends, policy
// compiled from CNPs by the policy library). Checked for every packet and program:
//   - test_run succeeds and the program returns TC_ACT_OK, TC_ACT_SHOT or TC_ACT_REDIRECT, nothing else;
//   - the program's verdict is the one a userspace model of the datapath's documented rules predicts (see
//     expect*() below): parse failures as docs/datapath.md says per program, anti-spoofing, service translation
//     (the backend read back from the output must be one of the service's), and the policy verdict as
//     policy::evaluate() gives it on the compiled entries, for egress and for the destination's ingress. Conntrack
//     is emptied before every packet, so each one is a new flow and the model needs no conntrack;
//   - every drop is counted: per batch, the metrics map's drop-reason counters grew by exactly the number of
//     TC_ACT_SHOT results plus the refusals (no backend: a RST or ICMP unreachable sent back, counted as a drop of
//     NO_SERVICE_BACKEND), per reason as the model predicted, and as many DROPPED flow events were emitted.
// Then conversations (see converse()): a packet, an ICMP error quoting it and its reply, through a program pair with
// the conntrack state the packet left, so replies, related errors and NodePort reverse NAT are fuzzed too.
// What test_run cannot do: give a packet a tunnel key (the __sk_buff context has no tunnel fields, and
// bpf_skb_get_tunnel_key fails on a test skb), so plexus_from_overlay only reaches its "no tunnel metadata" drop
// here; its parse and policy path after the key is local_ingress(), which to-container and from-netdev (host
// routing) share and which is fuzzed through them. docs/fuzzing.md records the numbers.
//
// PLEXUS_FUZZ_SEED (decimal) and PLEXUS_FUZZ_PACKETS override the seed and the packets per program; a failure
// prints the seed, the program, the packet index and the packet in hex.
#include <linux/icmp.h>
#include <unistd.h>

#include <array>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>

#include "lxc_fixture.h"
#include "plexus/agent/map_encoding.h"
#include "plexus/common/manifest.h"
#include "plexus/datapath/host_datapath.h"
#include "plexus/policy/compiler.h"
#include "plexus/policy/policy.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Deterministic randomness: splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
// OOPSLA 2014), fully specified, so a seed gives the same packets with any standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint32_t below(uint32_t n) { return static_cast<uint32_t>(next() % n); }
  bool chance(uint32_t percent) { return below(100) < percent; }
  uint8_t byte() { return static_cast<uint8_t>(next()); }
  template <typename T>
  const T& pick(const std::vector<T>& v) { return v[below(static_cast<uint32_t>(v.size()))]; }

 private:
  uint64_t s_;
};

uint64_t envOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// ---------------------------------------------------------------------------------------------------------------
// The seeded world.
const Ipv4 kPodC = *Ipv4::parse("10.244.0.7");  // a chained endpoint (another plugin's veth)
constexpr uint32_t kPodCIfindex = 4343;
const Ipv4 kRemotePod = *Ipv4::parse("10.244.1.7");
const Ipv4 kRemoteCidrAddr = *Ipv4::parse("10.244.1.99");
const Ipv4 kRemoteNode = *Ipv4::parse("192.0.2.20");
const Ipv4 kNodeIp = *Ipv4::parse("192.0.2.10");
const Ipv4 kWorld = *Ipv4::parse("8.8.8.8");
const Ipv4 kCidrAddr = *Ipv4::parse("203.0.113.9");
const Ipv4 kVipTcp = *Ipv4::parse("10.96.0.10");     // TCP 80 -> pod B:8080, remote pod:8080
const Ipv4 kVipUdp = *Ipv4::parse("10.96.0.11");     // UDP 53 -> pod B:53
const Ipv4 kVipEmpty = *Ipv4::parse("10.96.0.12");   // TCP and UDP 443, no backends
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

const std::vector<Frontend>& frontends() {
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

std::vector<std::string> podLabels(const std::string& app) {
  return {"k8s:io.kubernetes.pod.namespace=default",
          "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default", "k8s:app=" + app};
}

// Compiled entries per endpoint id (1 A client, 2 B server, 3 C unselected).
std::map<uint16_t, std::vector<policy::Entry>> compilePolicies() {
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

  uint16_t policyPort() const {
    if (proto != IPPROTO_ICMP) {
      return dport;
    }
    return has_icmp ? icmp_type : PLEXUS_POLICY_ICMP_NO_TYPE;
  }
};

uint16_t be16(const std::vector<uint8_t>& p, size_t off) { return static_cast<uint16_t>(p[off] << 8 | p[off + 1]); }
uint32_t be32(const std::vector<uint8_t>& p, size_t off) {
  return static_cast<uint32_t>(p[off]) << 24 | static_cast<uint32_t>(p[off + 1]) << 16 |
         static_cast<uint32_t>(p[off + 2]) << 8 | p[off + 3];
}

// flow4_parse_quoted(): 1 when the quote names a trackable packet; *src its source.
bool parseQuoted(const std::vector<uint8_t>& p, size_t off, uint32_t* src) {
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

Parsed parse(const std::vector<uint8_t>& p) {
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

Expect drop(uint8_t reason, std::string why) { return {Act::kShot, reason, std::move(why)}; }
Expect pass(Act a, std::string why) { return {a, 0, std::move(why)}; }

const Frontend* frontendOf(const Parsed& p) {
  for (const auto& f : frontends()) {
    if (f.vip.hostOrder() == p.daddr && f.port == p.dport && f.proto == p.proto) {
      return &f;
    }
  }
  return nullptr;
}

// lib/reject.h for a frontend without backends.
Expect refusal(const std::vector<uint8_t>& pkt, const Parsed& p) {
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
std::optional<Expect> translate(const std::vector<uint8_t>& pkt, const std::vector<uint8_t>& out, const Parsed& p,
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

std::string policyWhy(const char* what, uint32_t peer, const Parsed& p, uint16_t port) {
  return std::string(what) + " peer " + std::to_string(peer) + " proto " + std::to_string(p.proto) + " port " +
         std::to_string(port);
}

Expect deliverFromContainer(const World& w, const Parsed& p, const Parsed& judged, const ModelEndpoint& src_ep,
                            uint32_t daddr, uint16_t port);

// plexus_from_container on pod A's veth (ifindex 1); lxc programs in tunnel mode.
Expect expectFromContainer(const World& w, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>& out,
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
  e.admitted = !p.related;  // an ICMP error opens no entry
  return e;
}

// from-container after the egress policy admitted the packet.
Expect deliverFromContainer(const World& w, const Parsed& p, const Parsed& judged, const ModelEndpoint& src_ep,
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
  // An endpoint's packet to itself: egress admitted it and opened an EGRESS entry; ingress then finds that entry as
  // the reply of its own tuple when the tuple is its own reverse (equal ports, or none), and passes it unjudged.
  bool self_reply = dst == src && !judged.related && judged.sport == judged.dport;
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
Expect expectToContainer(const World& w, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>&, std::string*) {
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
Expect expectFromNetdev(const World& w, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>& out,
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
Expect expectToNetdev(const World&, const std::vector<uint8_t>&, const std::vector<uint8_t>&, std::string*) {
  return pass(Act::kPass, "no NodePort flow");
}

// plexus_from_overlay: test_run packets carry no tunnel key.
Expect expectFromOverlay(const World&, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>&, std::string*) {
  Parsed p = parse(pkt);
  if (p.ethertype != ETH_P_IP) {
    return pass(Act::kPass, "not IPv4");
  }
  return drop(PLEXUS_REASON_INVALID_PACKET, "no tunnel metadata");
}

// plexus_to_overlay: the host stack routed the packet into the device, without a key.
Expect expectToOverlay(const World& w, const std::vector<uint8_t>& pkt, const std::vector<uint8_t>&, std::string*) {
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

// ---------------------------------------------------------------------------------------------------------------
// The generator.
struct Generated {
  std::vector<uint8_t> bytes;
  bool mutated = false;
};

struct Pools {
  std::vector<Ipv4> src;
  std::vector<Ipv4> dst;
};

const std::vector<Ipv4>& allAddresses() {
  static const std::vector<Ipv4> a = {kPodA,      kPodB,     kPodC,    kGateway, kRemotePod, kRemoteCidrAddr,
                                      kRemoteNode, kNodeIp,  kWorld,   kCidrAddr, kVipTcp,   kVipUdp,
                                      kVipEmpty,  *Ipv4::parse("10.244.0.99")};
  return a;
}

const std::vector<uint16_t> kPorts = {80, 81, 88, 8080, 53, 22, 443, 30080, 9000, 9050, 1000, 2047, 8472, 0, 65535};

class Generator {
 public:
  Generator(uint64_t seed, Pools pools) : rng_(seed), pools_(std::move(pools)) {}

  Ipv4 address(const std::vector<Ipv4>& preferred) {
    if (rng_.chance(3)) {
      return Ipv4(static_cast<uint32_t>(rng_.next()));
    }
    return rng_.chance(70) ? rng_.pick(preferred) : rng_.pick(allAddresses());
  }
  uint16_t port() { return rng_.chance(80) ? rng_.pick(kPorts) : static_cast<uint16_t>(rng_.next()); }

  // An L4 payload for protocol proto.
  std::vector<uint8_t> l4(uint8_t proto, Ipv4 src, Ipv4 dst, int depth) {
    std::vector<uint8_t> b;
    if (proto == IPPROTO_TCP) {
      b.resize(20);
      put16(b, 0, port());
      put16(b, 2, port());
      put32(b, 4, static_cast<uint32_t>(rng_.next()));
      put32(b, 8, static_cast<uint32_t>(rng_.next()));
      b[12] = 5 << 4;
      static const std::vector<uint8_t> flags = {0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01, 0x00, 0xff};
      b[13] = rng_.chance(90) ? rng_.pick(flags) : rng_.byte();
      put16(b, 14, 0xffff);
      if (rng_.chance(20)) {  // TCP options (MSS, NOP, window scale), with a matching data offset
        b.insert(b.end(), {2, 4, 0x05, 0xb4, 1, 3, 3, 7});
        b[12] = 7 << 4;
      }
    } else if (proto == IPPROTO_UDP) {
      b.resize(8);
      put16(b, 0, port());
      put16(b, 2, rng_.chance(10) ? kVxlanPort : port());
      if (be16(b, 2) == kVxlanPort || rng_.chance(5)) {
        put16(b, 2, kVxlanPort);
        // VXLAN (RFC 7348): flags with the I bit, the VNI, then an inner frame: a packet of our own or garbage.
        std::vector<uint8_t> vx = {0x08, 0, 0, 0, rng_.byte(), rng_.byte(), rng_.byte(), 0};
        if (depth < 1 && rng_.chance(60)) {
          auto inner = packet(depth + 1).bytes;
          vx.insert(vx.end(), inner.begin(), inner.end());
        } else {
          garbage(vx, rng_.below(64));
        }
        b.insert(b.end(), vx.begin(), vx.end());
      } else {
        garbage(b, rng_.below(24));
      }
      put16(b, 4, static_cast<uint16_t>(b.size()));
      put16(b, 6, rng_.chance(30) ? 0 : 0xbeef);  // zero: "no checksum"
    } else if (proto == IPPROTO_ICMP) {
      static const std::vector<uint8_t> types = {8, 0, 3, 11, 12, 5, 13, 14};
      uint8_t type = rng_.chance(90) ? rng_.pick(types) : rng_.byte();
      b = {type, rng_.byte(), 0, 0, 0, 0, 0, 0};
      uint16_t id = rng_.chance(10) ? 0 : static_cast<uint16_t>(rng_.next());
      put16(b, 4, id);
      if (type == 3 || type == 11 || type == 12) {
        // The quoted packet: usually one of ours (its source our destination, so it may be related), sometimes
        // arbitrary bytes, a short quote, or an inner header with a bad IHL or a fragment offset.
        std::vector<uint8_t> quoted;
        if (depth < 1 && rng_.chance(70)) {
          Ipv4 qsrc = rng_.chance(70) ? dst : address(pools_.dst);
          auto inner = ipv4Frame(rng_.pick(std::vector<uint8_t>{IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, 47}), qsrc,
                                 rng_.chance(70) ? src : address(pools_.src), depth + 1);
          quoted.assign(inner.begin() + 14, inner.end());
          if (rng_.chance(20)) {
            quoted[0] = static_cast<uint8_t>(0x40 | rng_.below(16));
          }
          if (rng_.chance(10)) {
            put16(quoted, 6, static_cast<uint16_t>(rng_.next()));
          }
          quoted.resize(std::min(quoted.size(), size_t{20} + (rng_.chance(80) ? 8 : rng_.below(12))));
        } else {
          garbage(quoted, rng_.below(48));
        }
        b.insert(b.end(), quoted.begin(), quoted.end());
      } else {
        garbage(b, rng_.below(32));
      }
    } else {
      garbage(b, rng_.below(40));
    }
    return b;
  }

  // A well-formed IPv4 frame (options and fragments included: they are well-formed).
  std::vector<uint8_t> ipv4Frame(uint8_t proto, Ipv4 src, Ipv4 dst, int depth) {
    auto payload = l4(proto, src, dst, depth);
    size_t opt = rng_.chance(10) ? 4 * (1 + rng_.below(10)) : 0;
    std::vector<uint8_t> f(14 + 20 + opt, 0);
    for (int i = 0; i < 12; ++i) {
      f[i] = rng_.byte();
    }
    put16(f, 12, ETH_P_IP);
    f[14] = static_cast<uint8_t>(0x40 | (5 + opt / 4));
    put16(f, 16, static_cast<uint16_t>(20 + opt + payload.size()));
    put16(f, 18, static_cast<uint16_t>(rng_.next()));
    if (rng_.chance(8)) {  // a fragment: MF on a first fragment, or a later one with an offset
      put16(f, 20, rng_.chance(50) ? 0x2000 : static_cast<uint16_t>(1 + rng_.below(0x1fff)) | (rng_.chance(50) ? 0x2000 : 0));
    } else if (rng_.chance(50)) {
      put16(f, 20, 0x4000);  // DF
    }
    f[22] = rng_.chance(5) ? static_cast<uint8_t>(rng_.below(2)) : static_cast<uint8_t>(2 + rng_.below(254));
    f[23] = proto;
    put32(f, 26, src.hostOrder());
    put32(f, 30, dst.hostOrder());
    for (size_t i = 0; i < opt; ++i) {  // NOPs, a record-route-like option, EOL, or noise
      f[34 + i] = rng_.chance(50) ? 1 : rng_.chance(50) ? 0 : rng_.byte();
    }
    uint16_t sum = ipChecksum(f.data() + 14, 20 + opt);
    std::memcpy(&f[24], &sum, 2);
    f.insert(f.end(), payload.begin(), payload.end());
    return f;
  }

  Generated packet(int depth = 0) {
    Generated g;
    uint32_t kind = rng_.below(100);
    if (kind < 4) {  // ARP, sometimes short or garbage
      auto a = arpRequest(Mac{}, address(pools_.src), address(pools_.dst));
      if (rng_.chance(30)) {
        a.resize(14 + rng_.below(40));
      }
      if (rng_.chance(20)) {
        a[14 + 7 < a.size() ? 14 + 7 : 13] = rng_.byte();
      }
      g.bytes = a;
      return g;
    }
    if (kind < 7) {  // another ethertype: IPv6, VLAN, an 802.3 length, anything
      g.bytes.resize(14 + rng_.below(80));
      for (auto& b : g.bytes) {
        b = rng_.byte();
      }
      static const std::vector<uint16_t> types = {0x86dd, 0x8100, 0x88cc, 0x0040};
      put16(g.bytes, 12, rng_.chance(70) ? rng_.pick(types) : static_cast<uint16_t>(rng_.next()));
      g.mutated = true;
      return g;
    }
    static const std::vector<uint8_t> protos = {IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDP,
                                                IPPROTO_ICMP, IPPROTO_ICMP, 47, 132, 0};
    uint8_t proto = rng_.chance(95) ? rng_.pick(protos) : rng_.byte();
    g.bytes = ipv4Frame(proto, address(pools_.src), address(pools_.dst), depth);
    if (depth == 0 && rng_.chance(45)) {
      mutate(g.bytes);
      g.mutated = true;
    }
    return g;
  }

  void mutate(std::vector<uint8_t>& f) {
    uint32_t n = 1 + rng_.below(3);
    for (uint32_t i = 0; i < n; ++i) {
      switch (rng_.below(9)) {
        case 0:  // truncated anywhere after the Ethernet header
          f.resize(14 + rng_.below(static_cast<uint32_t>(f.size() - 14 + 1)));
          break;
        case 1:  // a bad IHL (below 5, or past the end)
          if (f.size() > 14) {
            f[14] = static_cast<uint8_t>((f[14] & 0xf0) | rng_.below(16));
          }
          break;
        case 2:  // another IP version
          if (f.size() > 14) {
            f[14] = static_cast<uint8_t>((rng_.below(16) << 4) | (f[14] & 0x0f));
          }
          break;
        case 3:  // a bad TCP data offset or any byte of the first L4 bytes
          if (f.size() > 34 + 12) {
            size_t off = 14 + (f[14] & 0xf) * 4u + 12;
            if (off < f.size()) {
              f[off] = static_cast<uint8_t>(rng_.below(16) << 4);
            }
          }
          break;
        case 4:  // fragment bits
          if (f.size() >= 22) {
            put16(f, 20, static_cast<uint16_t>(rng_.next()));
          }
          break;
        case 5:  // total length that lies
          if (f.size() >= 18) {
            put16(f, 16, static_cast<uint16_t>(rng_.next()));
          }
          break;
        case 6:  // a random byte anywhere
          f[rng_.below(static_cast<uint32_t>(f.size()))] = rng_.byte();
          break;
        case 7:  // trailing garbage
          garbage(f, 1 + rng_.below(64));
          break;
        default:  // a random byte in the IP or L4 header
          if (f.size() > 14) {
            f[14 + rng_.below(static_cast<uint32_t>(std::min<size_t>(f.size() - 14, 48)))] = rng_.byte();
          }
          break;
      }
    }
  }

  Rng& rng() { return rng_; }

 private:
  void garbage(std::vector<uint8_t>& b, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
      b.push_back(rng_.byte());
    }
  }
  static void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
    b[off] = static_cast<uint8_t>(v >> 8);
    b[off + 1] = static_cast<uint8_t>(v);
  }
  static void put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
    put16(b, off, static_cast<uint16_t>(v >> 16));
    put16(b, off + 2, static_cast<uint16_t>(v));
  }

  Rng rng_;
  Pools pools_;
};

std::string hex(const std::vector<uint8_t>& b) {
  std::string s;
  char buf[4];
  for (uint8_t c : b) {
    std::snprintf(buf, sizeof(buf), "%02x", c);
    s += buf;
  }
  return s;
}

bool isDropReason(uint8_t reason) {
  switch (reason) {
#define PLEXUS_FUZZ_DROP_(name, value, hubble, desc) \
  case value:                                        \
    return std::string_view(hubble) != "FORWARDED";
    PLEXUS_REASONS(PLEXUS_FUZZ_DROP_)
#undef PLEXUS_FUZZ_DROP_
    default:
      return true;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The harness: all six programs on one private bpffs, sharing their pinned maps.
struct FuzzFixture : Fixture {
  std::unique_ptr<datapath::HostDatapath> host;
  std::unique_ptr<datapath::OverlayDatapath> overlay;
  World world;

  static datapath::LxcConfig lxcConfig() {
    datapath::LxcConfig cfg;
    cfg.routing_mode = datapath::RoutingMode::kTunnel;
    cfg.tunnel_ifindex = 1;  // test_run does not check a redirect's target
    // A small conntrack map: it is emptied before every packet, and finding the first key of a hash map walks its
    // buckets (with the default size that walk was 80% of the run).
    cfg.ct_map_size = kCtMapSize;
    return cfg;
  }

  FuzzFixture() : Fixture(lxcConfig()) {
    datapath::LxcConfig hc;
    hc.bpf_root = bpffs.path() + "/plexus";
    hc.host_routing = true;
    hc.ct_map_size = kCtMapSize;
    auto h = datapath::HostDatapath::load(hc);
    INFO((h.ok() ? std::string() : h.error().message));
    REQUIRE(h.ok());
    host = std::move(h.value());
    datapath::LxcConfig oc = lxcConfig();
    oc.bpf_root = bpffs.path() + "/plexus";
    auto o = datapath::OverlayDatapath::load(oc);
    INFO((o.ok() ? std::string() : o.error().message));
    REQUIRE(o.ok());
    overlay = std::move(o.value());

    addEndpoint(kPodC, kPodCIfindex, 3, Mac{}, Mac{}, PLEXUS_EP_F_CHAINED);
    world.endpoints[kPodA.hostOrder()] = {kPodAIfindex, kIdA, 1, 0};
    world.endpoints[kPodB.hostOrder()] = {kPodBIfindex, kIdB, 2, 0};
    world.endpoints[kPodC.hostOrder()] = {kPodCIfindex, kIdC, 3, PLEXUS_EP_F_CHAINED};
    world.endpoints[kGateway.hostOrder()] = {0, PLEXUS_IDENTITY_HOST, 0, PLEXUS_EP_F_HOST};

    // The ipcache as the agent writes it on a two-node cluster, plus a policy CIDR.
    ipcache(kPodA.toString() + "/32", kIdA, Ipv4{});
    ipcache(kPodB.toString() + "/32", kIdB, Ipv4{});
    ipcache(kPodC.toString() + "/32", kIdC, Ipv4{});
    ipcache(kGateway.toString() + "/32", PLEXUS_IDENTITY_HOST, Ipv4{});
    ipcache(kNodeIp.toString() + "/32", PLEXUS_IDENTITY_HOST, Ipv4{});
    ipcache(kRemotePod.toString() + "/32", kRemotePodIdentity, kRemoteNode);
    ipcache("10.244.1.0/24", PLEXUS_IDENTITY_UNKNOWN, kRemoteNode);
    ipcache(kRemoteNode.toString() + "/32", PLEXUS_IDENTITY_REMOTE_NODE, Ipv4{});
    ipcache("203.0.113.0/24", kCidrIdentity, Ipv4{});

    // Services: every frontend keyed in the external scope (the default lookup), as the planner writes them.
    auto& lb = dp->lb();
    uint32_t next_backend = 1;
    for (const auto& fe : frontends()) {
      plexus_lb4_key key{};
      key.address = fe.vip.networkOrder();
      key.dport = htons(fe.port);
      key.proto = fe.proto;
      key.scope = PLEXUS_LB_SCOPE_EXTERNAL;
      for (size_t i = 0; i < fe.backends.size(); ++i) {
        plexus_lb4_backend b{};
        b.address = fe.backends[i].first.networkOrder();
        b.port = htons(fe.backends[i].second);
        b.proto = fe.proto;
        b.state = PLEXUS_BACKEND_ACTIVE;
        REQUIRE(lb.backends.update(next_backend, b).ok());
        plexus_lb4_service slot{};
        slot.backend_id = next_backend++;
        slot.rev_nat_index = fe.rev_nat;
        key.backend_slot = static_cast<uint16_t>(i + 1);
        REQUIRE(lb.services.update(key, slot).ok());
      }
      plexus_lb4_service master{};
      master.count = static_cast<uint16_t>(fe.backends.size());
      master.rev_nat_index = fe.rev_nat;
      master.flags = fe.vip == kNodeIp ? PLEXUS_SVC_F_NODEPORT : PLEXUS_SVC_F_CLUSTERIP;
      key.backend_slot = 0;
      REQUIRE(lb.services.update(key, master).ok());
      plexus_lb4_reverse_nat rn{};
      rn.address = fe.vip.networkOrder();
      rn.port = htons(fe.port);
      REQUIRE(lb.revnat.update(fe.rev_nat, rn).ok());
    }

    // Policy: CNPs compiled by the policy library, encoded by the agent's encoder, installed per endpoint.
    world.policy = compilePolicies();
    for (const auto& [ep, entries] : world.policy) {
      datapath::PolicyEntries encoded;
      for (const auto& e : entries) {
        encoded.push_back(agent::encodePolicyEntry(e));
      }
      REQUIRE(dp->policy().set(ep, encoded).ok());
    }
  }

  void ipcache(const std::string& prefix, uint32_t identity, Ipv4 tunnel_endpoint) {
    auto p = *Ipv4Prefix::parse(prefix);
    plexus_ipcache_key k{};
    k.prefixlen = static_cast<uint32_t>(p.length());
    k.ip = p.network().networkOrder();
    plexus_ipcache_value v{};
    v.identity = identity;
    v.tunnel_endpoint = tunnel_endpoint.networkOrder();
    REQUIRE(dp->ipcache().update(k, v).ok());
    world.ipcache.push_back({p, identity, tunnel_endpoint});
  }

  // Empties conntrack, so the next packet is a new flow (bounded: the map holds what the last packets created).
  void clearConntrack() {
    int fd = dp->lb().ct.fd();
    plexus_ct4_key key{};
    for (int i = 0; i < 1 << 20 && bpf_map_get_next_key(fd, nullptr, &key) == 0; ++i) {
      bpf_map_delete_elem(fd, &key);
    }
  }

  std::map<uint8_t, uint64_t> dropCounters() {
    auto entries = dp->metrics().entries();
    REQUIRE(entries.ok());
    std::map<uint8_t, uint64_t> out;
    for (const auto& [k, per_cpu] : *entries) {
      if (!isDropReason(k.reason)) {
        continue;
      }
      for (const auto& v : per_cpu) {
        out[k.reason] += v.packets;
      }
    }
    return out;
  }

  uint64_t droppedEvents() {
    uint64_t n = 0;
    for (const auto& e : drainEvents(dp->eventsFd())) {
      n += e.verdict == PLEXUS_VERDICT_DROPPED;
    }
    return n;
  }
};

// A program's fd opened by its kernel id, closed with the owner.
struct OwnedFd {
  int fd = -1;
  OwnedFd(const std::vector<datapath::ProgramHandle>& progs, const std::string& name) {
    for (const auto& p : progs) {
      if (p.name == name) {
        fd = bpf_prog_get_fd_by_id(p.id);
      }
    }
  }
  ~OwnedFd() {
    if (fd >= 0) {
      close(fd);
    }
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
};

using ExpectFn = Expect (*)(const World&, const std::vector<uint8_t>&, const std::vector<uint8_t>&, std::string*);

struct Program {
  const char* name;
  int fd;
  ExpectFn expect;
  Pools pools;
};

// A refusal: the packet turned into a RST or ICMP port unreachable from a frontend without backends.
bool isRefusal(const std::vector<uint8_t>& out) {
  if (out.size() < 14 + 20 + 8 || be16(out, 12) != ETH_P_IP || be32(out, 14 + 12) != kVipEmpty.hostOrder()) {
    return false;
  }
  uint8_t proto = out[14 + 9];
  return (proto == IPPROTO_TCP && out.size() >= 14 + 40 && (out[14 + 20 + 13] & PLEXUS_TCP_RST)) ||
         (proto == IPPROTO_ICMP && out[14 + 20] == 3 && out[14 + 21] == 3);
}

struct Stats {
  uint64_t packets = 0, unrunnable = 0, mutated = 0, ok = 0, shot = 0, redirect = 0, refused = 0, judged = 0, judged_forwarded = 0,
           policy_drops = 0;
  std::map<uint8_t, uint64_t> drops;
};

const char* actName(Act a) {
  switch (a) {
    case Act::kPass: return "TC_ACT_OK";
    case Act::kShot: return "TC_ACT_SHOT";
    case Act::kRedirect: return "TC_ACT_REDIRECT";
    case Act::kRefuse: return "refusal (TC_ACT_REDIRECT)";
    case Act::kNotShot: return "not TC_ACT_SHOT";
  }
  return "?";
}

bool matches(Act want, int retval) {
  switch (want) {
    case Act::kPass: return retval == TC_ACT_OK;
    case Act::kShot: return retval == TC_ACT_SHOT;
    case Act::kRedirect:
    case Act::kRefuse: return retval == TC_ACT_REDIRECT;
    case Act::kNotShot: return retval == TC_ACT_OK || retval == TC_ACT_REDIRECT;
  }
  return false;
}

constexpr uint64_t kBatch = 1000;

// BPF_PROG_TEST_RUN refuses (EINVAL) an IPv4 or IPv6 frame too short for its L3 header (the kernel's test_run
// checks the length for the protocol before running the program); a device would hand such a frame to tc, and the
// programs treat it as a truncated header, which the hand-written tests cover. Only these may fail to run.
bool kernelRefuses(const std::vector<uint8_t>& f) {
  uint16_t type = be16(f, 12);
  return (type == ETH_P_IP && f.size() < 14 + 20) || (type == ETH_P_IPV6 && f.size() < 14 + 40);
}

// Runs `count` generated packets through one program, conntrack emptied before each. Returns the stats; fails the
// test (with seed, index and packet) on the first disagreement.
Stats fuzzProgram(FuzzFixture& f, const Program& prog, uint64_t seed, uint64_t count) {
  Stats st;
  Generator gen(seed, prog.pools);
  f.clearConntrack();
  f.droppedEvents();
  auto before = f.dropCounters();
  std::map<uint8_t, uint64_t> predicted;
  uint64_t shot_or_refused = 0;
  uint64_t in_batch = 0;
  // Every drop of the batch counted under its reason, and reported as a DROPPED flow event.
  auto checkBatch = [&](uint64_t last) {
    auto after = f.dropCounters();
    std::map<uint8_t, uint64_t> grew;
    uint64_t total = 0;
    for (const auto& [reason, n] : after) {
      uint64_t d = n - (before.count(reason) ? before.at(reason) : 0);
      if (d) {
        grew[reason] = d;
        total += d;
      }
    }
    uint64_t events = f.droppedEvents();
    INFO("seed " << seed << ", program " << prog.name << ", the " << in_batch << " packets up to " << last);
    REQUIRE(total == shot_or_refused);
    REQUIRE(grew == predicted);
    REQUIRE(events == shot_or_refused);
    for (const auto& [reason, n] : grew) {
      st.drops[reason] += n;
    }
    before = after;
    predicted.clear();
    shot_or_refused = 0;
    in_batch = 0;
  };
  // `count` packets that ran; the few frames test_run refuses come on top (bounded: at most twice as many tries).
  uint64_t i = 0;
  for (; st.packets < count && i < 2 * count; ++i) {
    Generated g = gen.packet();
    f.clearConntrack();
    Fixture::Run r;
    r.out.resize(g.bytes.size() + 256);
    __sk_buff ctx{};
    ctx.ifindex = kPodAIfindex;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = g.bytes.data(), .data_out = r.out.data(),
                .data_size_in = static_cast<uint32_t>(g.bytes.size()),
                .data_size_out = static_cast<uint32_t>(r.out.size()), .ctx_in = &ctx, .ctx_size_in = sizeof(ctx),
                .repeat = 1);
    int err = bpf_prog_test_run_opts(prog.fd, &opts);
    if (err == -EINVAL && kernelRefuses(g.bytes)) {
      st.unrunnable++;  // a frame test_run cannot carry: see kernelRefuses()
      continue;
    }
    r.retval = static_cast<int>(opts.retval);
    r.out.resize(std::min<size_t>(opts.data_size_out, r.out.size()));
    std::string problem;
    uint64_t evaluations = f.world.evaluations;
    Expect want = err == 0 ? prog.expect(f.world, g.bytes, r.out, &problem) : Expect{};
    bool known_ret = r.retval == TC_ACT_OK || r.retval == TC_ACT_SHOT || r.retval == TC_ACT_REDIRECT;
    if (err != 0 || !known_ret || !matches(want.act, r.retval) || !problem.empty() ||
        (want.act == Act::kRefuse && !isRefusal(r.out))) {
      INFO("seed " << seed << " (PLEXUS_FUZZ_SEED), program " << prog.name << ", packet " << i
                   << (g.mutated ? " (mutated)" : " (well-formed)") << ": " << hex(g.bytes));
      INFO("test_run " << err << ", returned " << r.retval << ", model: " << actName(want.act) << " ("
                       << want.why << ")" << (problem.empty() ? "" : "; " + problem));
      FAIL("the program and the model disagree");
    }
    st.packets++;
    st.mutated += g.mutated;
    st.ok += r.retval == TC_ACT_OK;
    st.redirect += r.retval == TC_ACT_REDIRECT && want.act != Act::kRefuse;
    st.shot += r.retval == TC_ACT_SHOT;
    st.refused += want.act == Act::kRefuse;
    bool judged = f.world.evaluations > evaluations;
    st.judged += judged;
    st.judged_forwarded += judged && r.retval != TC_ACT_SHOT;
    st.policy_drops += want.reason == PLEXUS_REASON_POLICY_DENIED || want.reason == PLEXUS_REASON_POLICY_DENY;
    if (want.act == Act::kShot || want.act == Act::kRefuse) {
      predicted[want.reason]++;
      shot_or_refused++;
    }
    if (++in_batch == kBatch) {
      checkBatch(i);
    }
  }
  if (in_batch) {
    checkBatch(i - 1);
  }
  return st;
}

// ---------------------------------------------------------------------------------------------------------------
// Conversations: conntrack is emptied before each, then a generated packet P runs through the first program (judged
// by the fresh model, exactly), and its reply R and an ICMP error E quoting it (both from P's destination, P as the
// first program emitted it) through the second, with whatever conntrack P left. Checked: return codes, the drop
// accounting, and for pod A (from-container then to-container) that a reply or related error of a flow egress
// admitted passes, while those of a flow it did not admit are judged as new flows, exactly as the model says; for a
// NodePort flow (from-netdev then to-netdev) that the reply leaves with the frontend as its source.

// R: addresses (and ports) swapped, echo request and reply exchanged, TCP flags SYN-ACK. Empty without an IPv4 header.
std::vector<uint8_t> replyOf(const std::vector<uint8_t>& out) {
  Parsed p = parse(out);
  if (!p.ipv4) {
    return {};
  }
  std::vector<uint8_t> r = out;
  for (int i = 0; i < 4; ++i) {
    std::swap(r[14 + 12 + i], r[14 + 16 + i]);
  }
  r[14 + 8] = 64;
  if (p.has_ports) {
    std::swap(r[p.l4], r[p.l4 + 2]);
    std::swap(r[p.l4 + 1], r[p.l4 + 3]);
    if (p.proto == IPPROTO_TCP) {
      r[p.l4 + 13] = 0x12;
    }
  } else if (p.has_icmp && (p.icmp_type == 8 || p.icmp_type == 0)) {
    r[p.l4] = p.icmp_type == 8 ? 0 : 8;  // the identifier moves from one port slot to the other: the reverse tuple
  }
  return r;
}

struct Conversation {
  const char* name;
  int first_fd;
  ExpectFn first;
  int second_fd;
  ExpectFn second;
  Pools pools;
  bool pod_a;  // from-container then to-container
};

Fixture::Run runOne(int fd, const std::vector<uint8_t>& pkt, int* err) {
  Fixture::Run r;
  r.out.resize(pkt.size() + 256);
  __sk_buff ctx{};
  ctx.ifindex = kPodAIfindex;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data(), .data_out = r.out.data(),
              .data_size_in = static_cast<uint32_t>(pkt.size()), .data_size_out = static_cast<uint32_t>(r.out.size()),
              .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = 1);
  *err = bpf_prog_test_run_opts(fd, &opts);
  r.retval = static_cast<int>(opts.retval);
  r.out.resize(std::min<size_t>(opts.data_size_out, r.out.size()));
  return r;
}

struct ConversationStats {
  uint64_t ran = 0;
  uint64_t replies_admitted = 0;  // replies and related errors of an admitted flow, checked to pass
  uint64_t judged_new = 0;        // replies and errors of a flow nothing admitted, checked against the model
  uint64_t nodeport_replies = 0;  // NodePort replies checked to leave from the frontend
};

ConversationStats converse(FuzzFixture& f, const Conversation& c, uint64_t seed, uint64_t count) {
  ConversationStats cs;
  Generator gen(seed, c.pools);
  f.droppedEvents();
  auto before = f.dropCounters();
  uint64_t drops = 0;
  uint64_t& ran = cs.ran;
  auto sum = [](const std::map<uint8_t, uint64_t>& m) {
    uint64_t t = 0;
    for (const auto& [r, n] : m) {
      t += n;
    }
    return t;
  };
  for (uint64_t i = 0; i < count; ++i) {
    f.clearConntrack();
    Generated first = gen.packet();
    int err = 0;
    auto p = runOne(c.first_fd, first.bytes, &err);
    if (err == -EINVAL && kernelRefuses(first.bytes)) {
      continue;
    }
    std::string problem;
    Expect want = err == 0 ? c.first(f.world, first.bytes, p.out, &problem) : Expect{};
    std::ostringstream where;
    where << "seed " << seed << " (PLEXUS_FUZZ_SEED), conversation " << c.name << " " << i << ", P " << hex(first.bytes);
    INFO(where.str());
    INFO("P: test_run " << err << ", returned " << p.retval << ", model " << actName(want.act) << " (" << want.why
                        << ") " << problem);
    REQUIRE((err == 0 && matches(want.act, p.retval) && problem.empty()));
    ran++;
    drops += want.act == Act::kShot || want.act == Act::kRefuse;
    auto reply = replyOf(p.out);
    if (reply.empty()) {
      continue;
    }
    bool reply_mutated = gen.rng().chance(20);
    if (reply_mutated) {
      gen.mutate(reply);
    }
    Parsed rp = parse(reply);
    // E first: an ICMP error opens no entry, so R then sees only what P left; R, when admitted as a new flow, would
    // open one that E's quote matches.
    std::vector<std::vector<uint8_t>> seconds;
    if (rp.ipv4 && p.out.size() > 14 + 20) {  // E: unreachable from P's destination back to P's source, quoting P
      PacketSpec s{Mac{}, Mac{}, Ipv4(rp.saddr), Ipv4(rp.daddr)};
      seconds.push_back(icmpError(s, 3, 1, p.out));
    }
    seconds.push_back(reply);
    for (size_t k = 0; k < seconds.size(); ++k) {
      const auto& pkt = seconds[k];
      if (kernelRefuses(pkt)) {
        continue;
      }
      auto r = runOne(c.second_fd, pkt, &err);
      std::string problem2;
      Expect fresh = c.second(f.world, pkt, r.out, &problem2);
      bool is_reply = k + 1 == seconds.size();
      INFO((is_reply ? "R " : "E ") << hex(pkt) << ": test_run " << err << ", returned " << r.retval
                                  << "; as a new flow the model says " << actName(fresh.act) << " (" << fresh.why
                                  << "); P admitted by egress: " << want.admitted);
      REQUIRE(err == 0);
      REQUIRE((r.retval == TC_ACT_OK || r.retval == TC_ACT_SHOT || r.retval == TC_ACT_REDIRECT));
      ran++;
      drops += r.retval == TC_ACT_SHOT;
      bool well_formed = !is_reply || !reply_mutated;
      if (c.pod_a && well_formed) {
        if (want.admitted && (is_reply || parse(pkt).related)) {
          CHECK(r.retval != TC_ACT_SHOT);  // a reply, or an error about the admitted flow
          cs.replies_admitted++;
        } else if (!want.admitted && !(is_reply && first.mutated)) {
          CHECK(matches(fresh.act, r.retval));  // nothing admitted it: judged as a new flow
          cs.judged_new++;
        }
      }
      if (!c.pod_a && is_reply && well_formed && p.retval != TC_ACT_SHOT && want.act != Act::kRefuse) {
        Parsed in = parse(first.bytes);
        const Frontend* fe = in.has_ports && !in.l4_truncated ? frontendOf(in) : nullptr;
        if (fe && !fe->backends.empty() && r.out.size() >= rp.l4 + 4) {
          CHECK(Ipv4(be32(r.out, 14 + 12)) == fe->vip);  // the NodePort reply leaves from the frontend
          CHECK(be16(r.out, rp.l4) == fe->port);
          cs.nodeport_replies++;
        }
      }
    }
    if ((i + 1) % kBatch == 0 || i + 1 == count) {
      auto after = f.dropCounters();
      INFO("seed " << seed << ", conversation " << c.name << ", batch up to " << i);
      REQUIRE(sum(after) - sum(before) == drops);
      REQUIRE(f.droppedEvents() == drops);
      before = after;
      drops = 0;
    }
  }
  return cs;
}

std::string reasonName(uint8_t r) {
  switch (r) {
#define PLEXUS_FUZZ_NAME_(name, value, hubble, desc) \
  case value:                                        \
    return #name;
    PLEXUS_REASONS(PLEXUS_FUZZ_NAME_)
#undef PLEXUS_FUZZ_NAME_
    default:
      return std::to_string(r);
  }
}

void report(const char* name, const Stats& st) {
  std::ostringstream o;
  o << "packet-fuzz " << name << ": " << st.packets << " packets (" << st.mutated << " mutated; "
    << st.unrunnable << " more refused by test_run), OK " << st.ok
    << ", SHOT " << st.shot << ", REDIRECT " << st.redirect << ", refused " << st.refused << "; judged by policy "
    << st.judged << " (forwarded " << st.judged_forwarded << ", policy drops " << st.policy_drops << "); drops:";
  for (const auto& [r, n] : st.drops) {
    o << " " << reasonName(r) << "=" << n;
  }
  std::printf("%s\n", o.str().c_str());
}

}  // namespace

TEST_CASE("packet fuzzing: every tc program against the model, every drop counted", "[bpf][fuzz]") {
  FuzzFixture f;
  const uint64_t seed = envOr("PLEXUS_FUZZ_SEED", 20261206);
  const uint64_t count = envOr("PLEXUS_FUZZ_PACKETS", 100000);
  std::vector<Ipv4> pods = {kPodA, kPodB};
  std::vector<Ipv4> vips = {kVipTcp, kVipUdp, kVipEmpty, kNodeIp, kPodB, kPodA, kRemotePod, kWorld, kGateway,
                            kCidrAddr, kPodC};
  std::vector<Ipv4> outside = {kWorld, kRemotePod, kRemoteNode, kCidrAddr, kRemoteCidrAddr, kPodA, kGateway};
  // HostDatapath exposes only from-netdev's fd (the agent attaches both itself): take to-netdev's by its id.
  OwnedFd toNetdev(f.host->programs(), "plexus_to_netdev");
  std::vector<Program> programs = {
      {"plexus_from_container", f.dp->fromContainerFd(), expectFromContainer, {{kPodA}, vips}},
      {"plexus_to_container", f.dp->toContainerFd(), expectToContainer, {outside, {kPodA, kPodB, kGateway}}},
      {"plexus_from_netdev", f.host->fromNetdevFd(), expectFromNetdev, {outside, vips}},
      {"plexus_to_netdev", toNetdev.fd, expectToNetdev, {pods, outside}},
      {"plexus_from_overlay", f.overlay->fromOverlayFd(), expectFromOverlay, {outside, pods}},
      {"plexus_to_overlay", f.overlay->toOverlayFd(), expectToOverlay, {{kNodeIp, kPodA, kPodB}, outside}},
  };
  REQUIRE(toNetdev.fd >= 0);
  uint64_t offset = 0;
  const char* only = std::getenv("PLEXUS_FUZZ_PROGRAM");  // one program by name, to reproduce a failure
  for (const auto& prog : programs) {
    if (only && *only && std::string(only) != prog.name) {
      offset++;
      continue;
    }
    Stats st = fuzzProgram(f, prog, seed + offset++, count);
    report(prog.name, st);
    CHECK(st.packets == count);
    CHECK(st.unrunnable < count / 10);
  }
  std::vector<Conversation> conversations = {
      {"from-container/to-container", f.dp->fromContainerFd(), expectFromContainer, f.dp->toContainerFd(),
       expectToContainer, {{kPodA}, vips}, true},
      {"from-netdev/to-netdev", f.host->fromNetdevFd(), expectFromNetdev, toNetdev.fd, expectToNetdev,
       {outside, {kNodeIp, kNodeIp, kVipTcp, kPodB}}, false},
  };
  const uint64_t talks = count / 5;
  for (const auto& c : conversations) {
    if (only && *only) {
      break;
    }
    ConversationStats cs = converse(f, c, seed + offset++, talks);
    std::printf("packet-fuzz conversations %s: %" PRIu64 " conversations, %" PRIu64 " packets; replies and related "
                "errors of admitted flows %" PRIu64 ", of flows nothing admitted (judged as new) %" PRIu64
                ", NodePort replies from the frontend %" PRIu64 "\n",
                c.name, talks, cs.ran, cs.replies_admitted, cs.judged_new, cs.nodeport_replies);
    CHECK(cs.ran > talks);
    CHECK(cs.replies_admitted + cs.judged_new + cs.nodeport_replies > 0);
  }
}
