#include <algorithm>
#include <random>

#include <catch2/catch.hpp>

#include "plexus/common/manifest.h"
#include "plexus/policy/compiler.h"
#include "plexus/policy/policy.h"

using namespace plexus;
using namespace plexus::policy;

namespace {

Policy mustParse(const std::string& yaml) {
  auto objs = parseManifests(yaml);
  REQUIRE(objs.ok());
  REQUIRE(objs->size() == 1);
  auto p = parsePolicy((*objs)[0]);
  INFO((p.ok() ? std::string() : p.error().message));
  REQUIRE(p.ok());
  return *p;
}

std::string parseError(const std::string& yaml) {
  auto objs = parseManifests(yaml);
  REQUIRE(objs.ok());
  auto p = parsePolicy((*objs)[0]);
  REQUIRE_FALSE(p.ok());
  return p.error().message;
}

std::vector<std::string> pod(const std::string& ns, std::vector<std::string> labels,
                             std::vector<std::string> ns_labels = {}) {
  std::vector<std::string> out = {"k8s:io.kubernetes.pod.namespace=" + ns,
                                  "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=" + ns};
  for (auto& l : labels) {
    out.push_back("k8s:" + l);
  }
  for (auto& l : ns_labels) {
    out.push_back("k8s:io.cilium.k8s.namespace.labels." + l);
  }
  return out;
}

// A small universe: pods a/b in x, a in y (namespace labelled ns=y), reserved identities, and CIDR identities.
struct World {
  SelectorCache cache;
  std::map<uint32_t, std::vector<std::string>> ids;
  World(const std::set<Ipv4Prefix>& cidrs = {}) {
    ids[256] = pod("x", {"pod=a"});
    ids[257] = pod("x", {"pod=b"});
    ids[258] = pod("y", {"pod=a"}, {"ns=y"});
    for (uint32_t r = 1; r <= 8; ++r) {
      ids[r] = reservedIdentityLabels(r);
    }
    uint32_t next = 1u << 24;  // the local (CIDR) identity scope; policy/ is independent of the ABI headers
    for (const auto& c : cidrs) {
      cidr_ids[c] = next;
      ids[next++] = cidrIdentityLabels(c, cidrs);
    }
    cache.syncIdentities(ids);
  }
  // The CIDR identity allocated for prefix c (addresses inside c but in no narrower policy prefix get it).
  uint32_t cidrId(const std::string& c) { return cidr_ids.at(*Ipv4Prefix::parse(c)); }
  std::map<Ipv4Prefix, uint32_t> cidr_ids;
  EndpointPolicy compileFor(uint32_t id, const std::vector<Policy>& policies,
                            std::multimap<std::string, std::pair<uint16_t, uint8_t>> named = {},
                            EnforcementMode mode = EnforcementMode::kDefault) {
    EndpointInfo ep{id, parseLabels(ids.at(id)), named};
    std::vector<const Policy*> ptrs;
    for (const auto& p : policies) {
      ptrs.push_back(&p);
    }
    return compile(
        ep, ptrs, cache,
        [](uint32_t, const std::string& n) {
          return n == "http" ? std::vector<std::pair<uint16_t, uint8_t>>{{8080, kProtoTcp}}
                             : std::vector<std::pair<uint16_t, uint8_t>>{};
        },
        mode);
  }
};

bool allows(const EndpointPolicy& p, uint32_t peer, Direction d, uint8_t proto, uint16_t port) {
  return evaluate(p.entries, peer, d, proto, port).allowed;
}

}  // namespace

TEST_CASE("selectors: matchLabels, expressions, sources", "[unit][policy]") {
  auto labels = parseLabels({"k8s:app=web", "k8s:tier=front", "reserved:host"});
  auto sel = [](const std::string& yaml) {
    auto j = parseManifests(yaml);
    REQUIRE(j.ok());
    auto s = Selector::parse((*j)[0], "sel");
    REQUIRE(s.ok());
    return *s;
  };
  CHECK(sel("matchLabels: {app: web}").matches(labels));
  CHECK(sel("matchLabels: {k8s:app: web}").matches(labels));
  CHECK(sel("matchLabels: {any:app: web}").matches(labels));
  CHECK_FALSE(sel("matchLabels: {reserved:app: web}").matches(labels));
  CHECK_FALSE(sel("matchLabels: {app: db}").matches(labels));
  CHECK(sel("matchLabels: {reserved:host: ''}").matches(labels));
  CHECK(sel("matchExpressions: [{key: app, operator: In, values: [db, web]}]").matches(labels));
  CHECK_FALSE(sel("matchExpressions: [{key: app, operator: NotIn, values: [web]}]").matches(labels));
  CHECK(sel("matchExpressions: [{key: zone, operator: NotIn, values: [a]}]").matches(labels));  // absent key
  CHECK(sel("matchExpressions: [{key: tier, operator: Exists}]").matches(labels));
  CHECK(sel("matchExpressions: [{key: zone, operator: DoesNotExist}]").matches(labels));
  CHECK_FALSE(sel("matchExpressions: [{key: tier, operator: DoesNotExist}]").matches(labels));
  CHECK(sel("{}").matches(labels));
  // Canonical text does not depend on order.
  CHECK(sel("matchLabels: {a: '1', b: '2'}") == sel("matchExpressions: [{key: b, operator: In, values: ['2']}]\n"
                                                     "matchLabels: {a: '1'}"));
  auto bad = parseManifests("matchExpressions: [{key: app, operator: Near, values: [x]}]");
  REQUIRE(bad.ok());
  auto r = Selector::parse((*bad)[0], "spec.podSelector");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "spec.podSelector.matchExpressions[0].operator: \"Near\" is not In, NotIn, Exists or DoesNotExist");
}

TEST_CASE("port ranges become the fewest aligned prefixes", "[unit][policy]") {
  using P = std::vector<std::pair<uint16_t, uint8_t>>;
  CHECK(portPrefixes(80, 80) == P{{80, 16}});
  CHECK(portPrefixes(80, 95) == P{{80, 12}});
  CHECK(portPrefixes(80, 81) == P{{80, 15}});
  CHECK(portPrefixes(79, 81) == P{{79, 16}, {80, 15}});
  CHECK(portPrefixes(1, 65535).size() == 16);
  CHECK(portPrefixes(0, 65535) == P{{0, 0}});
  // Any range needs at most 2*16 prefixes: the per-packet cost stays two lookups whatever the rules.
  CHECK(portPrefixes(1, 65534).size() <= 32);
}

TEST_CASE("NetworkPolicy: documented examples and the policyTypes defaults", "[unit][policy]") {
  // The Kubernetes documentation's test-network-policy, trimmed to what our namespaces hold.
  auto p = mustParse(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: test-network-policy, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
    - namespaceSelector: {matchLabels: {ns: y}}
    - podSelector: {matchLabels: {pod: b}}
    ports: [{protocol: TCP, port: 6379}]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
    ports: [{protocol: TCP, port: 5978}]
)");
  CHECK(p.key() == "NetworkPolicy x/test-network-policy");
  REQUIRE(p.specs.size() == 1);
  CHECK(p.specs[0].ingress);
  CHECK(p.specs[0].egress);
  CHECK(p.cidrs.size() == 3);
  World w(p.cidrs);
  auto ep = w.compileFor(256, {p});
  CHECK(ep.ingress_enforced);
  CHECK(ep.egress_enforced);
  CHECK(allows(ep, 257, Direction::kIngress, kProtoTcp, 6379));   // pod b, same namespace
  CHECK(allows(ep, 258, Direction::kIngress, kProtoTcp, 6379));   // namespace ns=y
  CHECK_FALSE(allows(ep, 258, Direction::kIngress, kProtoTcp, 6380));
  CHECK_FALSE(allows(ep, 258, Direction::kIngress, kProtoUdp, 6379));
  CHECK(allows(ep, w.cidrId("172.17.0.0/16"), Direction::kIngress, kProtoTcp, 6379));
  CHECK_FALSE(allows(ep, w.cidrId("172.17.1.0/24"), Direction::kIngress, kProtoTcp, 6379));  // except
  CHECK_FALSE(allows(ep, 2, Direction::kIngress, kProtoTcp, 6379));                          // world
  CHECK(allows(ep, w.cidrId("10.0.0.0/24"), Direction::kEgress, kProtoTcp, 5978));
  CHECK_FALSE(allows(ep, 257, Direction::kEgress, kProtoTcp, 5978));
  // Pod b is not selected: no policy, no enforcement.
  auto b = w.compileFor(257, {p});
  CHECK_FALSE(b.ingress_enforced);
  CHECK(allows(b, 2, Direction::kIngress, kProtoUdp, 53));

  // policyTypes omitted: Ingress always, Egress only with egress rules.
  auto deny_in = mustParse(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: x}
spec: {podSelector: {}}
)");
  auto d = w.compileFor(256, {deny_in});
  CHECK(d.ingress_enforced);
  CHECK_FALSE(d.egress_enforced);
  CHECK_FALSE(allows(d, 257, Direction::kIngress, kProtoTcp, 80));
  CHECK(allows(d, 257, Direction::kEgress, kProtoTcp, 80));
  // An empty rule allows everything; an omitted protocol means TCP.
  auto tcp_only = mustParse(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p80, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}]}]
)");
  auto t = w.compileFor(256, {tcp_only});
  CHECK(allows(t, 2, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(allows(t, 2, Direction::kIngress, kProtoUdp, 80));
}

TEST_CASE("NetworkPolicy peers: podSelector and namespaceSelector AND in one peer, OR in two", "[unit][policy]") {
  World w;
  auto and_policy = mustParse(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]
)");
  auto or_policy = mustParse(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: or, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]
)");
  auto a = w.compileFor(256, {and_policy});
  CHECK_FALSE(allows(a, 258, Direction::kIngress, kProtoTcp, 80));  // y/a: namespace matches, pod does not
  CHECK_FALSE(allows(a, 257, Direction::kIngress, kProtoTcp, 80));  // x/b: pod matches, namespace does not
  auto o = w.compileFor(256, {or_policy});
  CHECK(allows(o, 258, Direction::kIngress, kProtoTcp, 80));
  CHECK(allows(o, 257, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(allows(o, 1, Direction::kIngress, kProtoTcp, 80));  // host is not a pod
}

TEST_CASE("named ports resolve on the destination; endPort ranges", "[unit][policy]") {
  World w;
  auto p = mustParse(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  ingress: [{ports: [{port: serve-80, protocol: TCP}, {port: 32000, endPort: 32768}]}]
  egress: [{ports: [{port: http}]}]
)");
  auto ep = w.compileFor(256, {p}, {{"serve-80", {80, kProtoTcp}}});
  CHECK(allows(ep, 257, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(allows(ep, 257, Direction::kIngress, kProtoTcp, 81));
  CHECK(allows(ep, 257, Direction::kIngress, kProtoTcp, 32000));
  CHECK(allows(ep, 257, Direction::kIngress, kProtoTcp, 32768));
  CHECK_FALSE(allows(ep, 257, Direction::kIngress, kProtoTcp, 32769));
  CHECK_FALSE(allows(ep, 257, Direction::kIngress, kProtoTcp, 31999));
  CHECK(allows(ep, 257, Direction::kEgress, kProtoTcp, 8080));  // "http" on the destination
  CHECK_FALSE(allows(ep, 257, Direction::kEgress, kProtoTcp, 80));
}

TEST_CASE("CiliumNetworkPolicy: documented examples, entities, namespaces, ANY", "[unit][policy]") {
  World w;
  // Cilium's l3-rule example shape, with toPorts and an omitted protocol.
  auto p = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l3-rule, namespace: x}
spec:
  endpointSelector: {matchLabels: {pod: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {pod: b}}]
    toPorts: [{ports: [{port: "80"}]}]
  - fromEntities: [host]
  egress:
  - toEntities: [world]
)");
  auto ep = w.compileFor(256, {p});
  CHECK(allows(ep, 257, Direction::kIngress, kProtoTcp, 80));
  CHECK(allows(ep, 257, Direction::kIngress, kProtoUdp, 80));  // CNP: no protocol is any protocol
  CHECK_FALSE(allows(ep, 257, Direction::kIngress, kProtoTcp, 81));
  CHECK(allows(ep, 1, Direction::kIngress, kProtoUdp, 9));       // entity host, every port
  CHECK_FALSE(allows(ep, 258, Direction::kIngress, kProtoTcp, 80));  // y/a: fromEndpoints is namespaced
  CHECK(allows(ep, 2, Direction::kEgress, kProtoTcp, 443));
  CHECK_FALSE(allows(ep, 257, Direction::kEgress, kProtoTcp, 443));
  // Not selected: y/a has the same pod label but another namespace.
  CHECK_FALSE(w.compileFor(258, {p}).ingress_enforced);

  // Cross-namespace by naming the namespace label; CCNP's `{}` means every pod, not world.
  auto cross = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ccnp}
spec:
  endpointSelector: {matchLabels: {pod: a}}
  ingress: [{fromEndpoints: [{}]}]
)");
  auto c = w.compileFor(258, {cross});
  CHECK(c.ingress_enforced);
  CHECK(allows(c, 256, Direction::kIngress, kProtoTcp, 80));
  CHECK(allows(c, 257, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(allows(c, 2, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(allows(c, 1, Direction::kIngress, kProtoTcp, 80));
  auto ccnp_all = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: all}
specs:
- endpointSelector: {}
  ingress: [{fromEntities: [all]}]
- endpointSelector: {}
  egress: [{toEntities: [cluster]}]
)");
  auto all = w.compileFor(256, {ccnp_all});
  CHECK(allows(all, 2, Direction::kIngress, kProtoUdp, 53));
  CHECK(allows(all, 258, Direction::kEgress, kProtoUdp, 53));
  CHECK(allows(all, 1, Direction::kEgress, kProtoUdp, 53));
  CHECK_FALSE(allows(all, 2, Direction::kEgress, kProtoUdp, 53));
}

TEST_CASE("precedence: deny beats allow in every overlap; default deny per direction", "[unit][policy]") {
  World w;
  struct Case {
    const char* name;
    const char* rules;  // under spec:
    uint32_t peer;
    uint8_t proto;
    uint16_t port;
    bool allowed;
    bool explicit_deny;
  };
  const Case cases[] = {
      {"allow only", "ingress: [{fromEndpoints: [{matchLabels: {pod: b}}]}]", 257, kProtoTcp, 80, true, false},
      {"not allowed peer", "ingress: [{fromEndpoints: [{matchLabels: {pod: b}}]}]", 2, kProtoTcp, 80, false, false},
      {"deny same peer all ports over allow port",
       "ingress: [{fromEndpoints: [{matchLabels: {pod: b}}], toPorts: [{ports: [{port: '80', protocol: TCP}]}]}]\n"
       "  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}]}]",
       257, kProtoTcp, 80, false, true},
      {"deny port range over allow single port",
       "ingress: [{fromEndpoints: [{matchLabels: {pod: b}}], toPorts: [{ports: [{port: '85', protocol: TCP}]}]}]\n"
       "  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}], toPorts: [{ports: [{port: '80', endPort: 95}]}]}]",
       257, kProtoTcp, 85, false, true},
      {"deny single port inside allowed range: other ports pass",
       "ingress: [{fromEndpoints: [{matchLabels: {pod: b}}], toPorts: [{ports: [{port: '80', endPort: 95}]}]}]\n"
       "  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}], toPorts: [{ports: [{port: '85'}]}]}]",
       257, kProtoTcp, 86, true, false},
      {"deny single port inside allowed range",
       "ingress: [{fromEndpoints: [{matchLabels: {pod: b}}], toPorts: [{ports: [{port: '80', endPort: 95}]}]}]\n"
       "  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}], toPorts: [{ports: [{port: '85'}]}]}]",
       257, kProtoTcp, 85, false, true},
      {"deny from all entities over allow from peer",
       "ingress: [{fromEndpoints: [{matchLabels: {pod: b}}]}]\n  ingressDeny: [{fromEntities: [all]}]", 257,
       kProtoUdp, 53, false, true},
      {"deny peer over allow from all",
       "ingress: [{fromEntities: [all]}]\n  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}]}]", 257,
       kProtoTcp, 80, false, true},
      {"deny peer leaves others allowed",
       "ingress: [{fromEntities: [all]}]\n  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}]}]", 258,
       kProtoTcp, 80, true, false},
      {"deny-only policy: default deny still applies",
       "ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}]}]", 258, kProtoTcp, 80, false, false},
      {"deny-only with enableDefaultDeny false",
       "enableDefaultDeny: {ingress: false}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}]}]", 258,
       kProtoTcp, 80, true, false},
      {"deny with enableDefaultDeny false still denies",
       "enableDefaultDeny: {ingress: false}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}]}]", 257,
       kProtoTcp, 80, false, true},
      {"deny udp only: tcp allowed",
       "ingress: [{fromEntities: [all]}]\n  ingressDeny: [{fromEntities: [all], toPorts: [{ports: [{port: '53', "
       "protocol: UDP}]}]}]",
       2, kProtoTcp, 53, true, false},
      {"deny udp only: udp denied",
       "ingress: [{fromEntities: [all]}]\n  ingressDeny: [{fromEntities: [all], toPorts: [{ports: [{port: '53', "
       "protocol: UDP}]}]}]",
       2, kProtoUdp, 53, false, true},
      {"empty rule: default deny, allows nothing", "ingress: [{}]", 257, kProtoTcp, 80, false, false},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto p = mustParse(std::string("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: t, "
                                   "namespace: x}\nspec:\n  endpointSelector: {}\n  ") +
                       c.rules);
    auto ep = w.compileFor(256, {p});
    auto v = evaluate(ep.entries, c.peer, Direction::kIngress, c.proto, c.port);
    CHECK(v.allowed == c.allowed);
    CHECK(v.explicit_deny == c.explicit_deny);
  }
}

TEST_CASE("compiled state does not depend on rule or policy order", "[unit][policy]") {
  World w;
  std::vector<std::string> rules = {
      "ingress: [{fromEndpoints: [{matchLabels: {pod: b}}], toPorts: [{ports: [{port: '80', endPort: 90}]}]}]",
      "ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}], toPorts: [{ports: [{port: '85', protocol: TCP}]}]}]",
      "ingress: [{fromEntities: [world], toPorts: [{ports: [{port: '443', protocol: TCP}]}]}]",
      "ingress: [{fromEndpoints: [{matchLabels: {pod: b}}]}]",
      "egress: [{toEntities: [cluster]}]",
      "egressDeny: [{toEntities: [host], toPorts: [{ports: [{port: '22'}]}]}]",
  };
  std::vector<Policy> policies;
  for (size_t i = 0; i < rules.size(); ++i) {
    policies.push_back(mustParse("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p" +
                                 std::to_string(i) + ", namespace: x}\nspec:\n  endpointSelector: {}\n  " + rules[i]));
  }
  auto reference = w.compileFor(256, policies);
  CHECK_FALSE(reference.entries.empty());
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    std::shuffle(policies.begin(), policies.end(), rng);
    CHECK(w.compileFor(256, policies) == reference);
  }
  // Rules inside one spec, shuffled too.
  Policy merged = policies[0];
  merged.specs.clear();
  Spec spec;
  for (const auto& p : policies) {
    for (const auto& s : p.specs) {
      spec.subject = s.subject;
      spec.ingress = spec.ingress || s.ingress;
      spec.egress = spec.egress || s.egress;
      spec.rules.insert(spec.rules.end(), s.rules.begin(), s.rules.end());
    }
  }
  merged.specs.push_back(spec);
  auto one = w.compileFor(256, {merged});
  for (int round = 0; round < 20; ++round) {
    std::shuffle(merged.specs[0].rules.begin(), merged.specs[0].rules.end(), rng);
    auto again = w.compileFor(256, {merged});
    CHECK(again.entries == one.entries);
  }
  CHECK(one.entries == reference.entries);
}

TEST_CASE("selector cache follows identities incrementally", "[unit][policy]") {
  SelectorCache cache;
  Selector web({Requirement{"k8s", "app", Op::kIn, {"web"}}});
  CHECK(cache.select(web).empty());
  cache.upsertIdentity(300, parseLabels({"k8s:app=web"}));
  CHECK(cache.select(web) == std::set<uint32_t>{300});
  cache.upsertIdentity(300, parseLabels({"k8s:app=db"}));  // labels changed
  CHECK(cache.select(web).empty());
  cache.syncIdentities({{301, {"k8s:app=web"}}, {302, {"k8s:app=web"}}});
  CHECK(cache.select(web) == std::set<uint32_t>{301, 302});
  cache.removeIdentity(301);
  CHECK(cache.select(web) == std::set<uint32_t>{302});
  CHECK(cache.selectorCount() == 1);
}

TEST_CASE("diff lists upserts and removals", "[unit][policy]") {
  Entry a{.identity = 256, .proto = kProtoTcp, .port = 80, .port_bits = 16, .rule_id = 1};
  Entry b{.identity = 257, .proto = kProtoTcp, .port = 80, .port_bits = 16, .rule_id = 1};
  Entry b_deny = b;
  b_deny.deny = true;
  Entry c{.identity = 258};
  auto d = diff({a, b}, {b_deny, c});
  CHECK(d.removals == std::vector<Entry>{a});
  CHECK(d.upserts == std::vector<Entry>{b_deny, c});
  CHECK(diff({a, b}, {a, b}).empty());
}

TEST_CASE("invalid policies are refused with the field that is wrong", "[unit][policy]") {
  CHECK(parseError(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 90, endPort: 80}]}]
)") == "spec.ingress[0].ports[0].endPort: must be within 1-65535 and >= port");
  CHECK(parseError(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]
)") == "spec.ingress[0].from[0].ipBlock.except[0]: must be inside 10.0.0.0/8");
  CHECK(parseError(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{protocol: ICMP}]}]
)") == "spec.ingress[0].ports[0].protocol: \"ICMP\" is not TCP, UDP or SCTP");
  CHECK(parseError(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec: {podSelector: {}, ingres: []}
)") == "spec.ingres: unknown field");
  CHECK(parseError(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l7, namespace: x}
spec:
  endpointSelector: {}
  ingress: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{method: GET}]}}]}]
)") == "spec.ingress[0].toPorts[0].rules: not supported by this build (refused rather than ignored)");
  CHECK(parseError(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: e, namespace: x}
spec:
  endpointSelector: {}
  egress: [{toEntities: [everything]}]
)") == "spec.egress[0].toEntities[0]: unknown entity \"everything\"");
  CHECK(parseError(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: e, namespace: x}
spec:
  egress: [{toEntities: [world]}]
)") == "spec: exactly one of endpointSelector and nodeSelector is required");
  CHECK(parseError(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: e, namespace: x}
spec:
  endpointSelector: {}
  egress: [{toFQDNs: [{matchName: example.com}]}]
)") == "spec.egress[0].toFQDNs: not supported by this build (refused rather than ignored)");
  CHECK(parseError(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: e, namespace: x}
spec:
  endpointSelector: {}
  ingress: [{fromCIDR: [not-a-cidr]}]
)") == "spec.ingress[0].fromCIDR[0]: \"not-a-cidr\" is not an IPv4 CIDR");
}

TEST_CASE("CNP icmps: types as numbers or names, ingress and egress, deny forms, compiled into the port slot",
          "[unit][policy][icmp]") {
  World w;
  auto p = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ping, namespace: x}
spec:
  endpointSelector: {matchLabels: {pod: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {pod: b}}]
    icmps: [{fields: [{type: 8, family: IPv4}]}]
  - icmps: [{fields: [{type: EchoReply}, {type: "13"}]}]
  egress:
  - toEndpoints: [{matchLabels: {pod: b}}]
    icmps: [{fields: [{type: EchoRequest}]}]
)");
  const auto& rules = p.specs.at(0).rules;
  REQUIRE(rules.size() == 3);
  REQUIRE(rules[0].ports.size() == 1);
  CHECK(rules[0].ports[0].proto == kProtoIcmp);
  CHECK(rules[0].ports[0].port == 8);
  CHECK(rules[1].peers.all);  // ICMP-only, like toPorts-only: every peer
  auto ep = w.compileFor(256, {p});
  CHECK(ep.ingress_enforced);
  CHECK(ep.egress_enforced);
  // The entry: protocol ICMP, the type as one exact port.
  Entry echo{.identity = 257, .direction = Direction::kIngress, .proto = kProtoIcmp, .port = 8, .port_bits = 16};
  CHECK(std::any_of(ep.entries.begin(), ep.entries.end(), [&](const Entry& e) { return e.key() == echo.key(); }));
  CHECK(allows(ep, 257, Direction::kIngress, kProtoIcmp, 8));
  CHECK_FALSE(allows(ep, 258, Direction::kIngress, kProtoIcmp, 8));  // y/a is not pod=b in x
  CHECK_FALSE(allows(ep, 257, Direction::kIngress, kProtoIcmp, 3));
  CHECK_FALSE(allows(ep, 257, Direction::kIngress, kProtoTcp, 8));  // a type is no TCP port
  CHECK_FALSE(allows(ep, 257, Direction::kIngress, kProtoTcp, 80));
  // Type 0 is echo reply only, not every type.
  CHECK(allows(ep, 2, Direction::kIngress, kProtoIcmp, 0));
  CHECK(allows(ep, 2, Direction::kIngress, kProtoIcmp, 13));
  CHECK_FALSE(allows(ep, 2, Direction::kIngress, kProtoIcmp, 8));
  CHECK(allows(ep, 257, Direction::kEgress, kProtoIcmp, 8));
  CHECK_FALSE(allows(ep, 257, Direction::kEgress, kProtoIcmp, 13));
  CHECK_FALSE(allows(ep, 257, Direction::kEgress, kProtoUdp, 53));
  CHECK(describe(echo) == "ingress 257 ICMP/type 8 allow");

  // Deny forms beat an L3 allow, for that type only.
  auto deny = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-ping, namespace: x}
spec:
  endpointSelector: {}
  ingress: [{fromEntities: [all]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}], icmps: [{fields: [{type: 8}]}]}]
  egress: [{toEntities: [all]}]
  egressDeny: [{icmps: [{fields: [{type: TimeExceeded}]}]}]
)");
  auto d = w.compileFor(256, {deny});
  auto v = evaluate(d.entries, 257, Direction::kIngress, kProtoIcmp, 8);
  CHECK_FALSE(v.allowed);
  CHECK(v.explicit_deny);
  CHECK(allows(d, 258, Direction::kIngress, kProtoIcmp, 8));
  CHECK(allows(d, 257, Direction::kIngress, kProtoIcmp, 0));
  CHECK(allows(d, 257, Direction::kIngress, kProtoTcp, 80));
  CHECK(evaluate(d.entries, 2, Direction::kEgress, kProtoIcmp, 11).explicit_deny);
  CHECK(allows(d, 2, Direction::kEgress, kProtoIcmp, 8));

  // IPv6 types are accepted, and match nothing on this IPv4 datapath: the rule only makes ingress default-deny.
  auto v6 = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: v6, namespace: x}
spec:
  endpointSelector: {}
  ingress: [{icmps: [{fields: [{type: EchoRequest, family: IPv6}, {type: 129, family: IPv6}]}]}]
)");
  CHECK(v6.specs[0].rules[0].ports[0].proto == kProtoIcmpv6);
  CHECK(v6.specs[0].rules[0].ports[0].port == 128);
  auto e6 = w.compileFor(256, {v6});
  CHECK(e6.ingress_enforced);
  CHECK_FALSE(allows(e6, 2, Direction::kIngress, kProtoIcmp, 128));
  CHECK_FALSE(allows(e6, 2, Direction::kIngress, kProtoIcmp, 8));
  for (const auto& e : e6.entries) {
    CHECK(e.direction == Direction::kEgress);  // only the allow-all of the unselected direction
  }
}

TEST_CASE("CNP icmps: invalid forms are refused with the field", "[unit][policy][icmp]") {
  auto cnp = [](const std::string& rule) {
    return "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: e, namespace: x}\nspec:\n"
           "  endpointSelector: {}\n  ingress:\n  - " +
           rule + "\n";
  };
  CHECK(parseError(cnp("icmps: [{fields: [{type: 256}]}]")) ==
        "spec.ingress[0].icmps[0].fields[0].type: must be 0-255 or an ICMP type name");
  CHECK(parseError(cnp("icmps: [{fields: [{type: Ping}]}]")) ==
        "spec.ingress[0].icmps[0].fields[0].type: \"Ping\" is not an IPv4 ICMP type name");
  CHECK(parseError(cnp("icmps: [{fields: [{type: PacketTooBig}]}]")) ==
        "spec.ingress[0].icmps[0].fields[0].type: \"PacketTooBig\" is not an IPv4 ICMP type name");
  CHECK(parseError(cnp("icmps: [{fields: [{type: 8, family: IPv5}]}]")) ==
        "spec.ingress[0].icmps[0].fields[0].family: must be IPv4 or IPv6");
  CHECK(parseError(cnp("icmps: [{fields: [{family: IPv4}]}]")) == "spec.ingress[0].icmps[0].fields[0].type: required");
  CHECK(parseError(cnp("icmps: [{fields: [{type: 8, code: 0}]}]")) ==
        "spec.ingress[0].icmps[0].fields[0].code: unknown field");
  CHECK(parseError(cnp("icmps: [{fields: []}]")) == "spec.ingress[0].icmps[0].fields: must list at least one ICMP type");
  CHECK(parseError(cnp("{icmps: [{fields: [{type: 8}]}], toPorts: [{ports: [{port: '80'}]}]}")) ==
        "spec.ingress[0].icmps: cannot be combined with toPorts in one rule (use a separate rule)");
}

TEST_CASE("CNP endpointSelector: a namespace match is replaced by the policy's namespace, with a warning",
          "[unit][policy]") {
  World w;
  auto other = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ns-label, namespace: x}
spec:
  endpointSelector: {matchLabels: {pod: a, k8s:io.kubernetes.pod.namespace: y}}
  ingress: [{fromEndpoints: [{matchLabels: {pod: b}}]}]
)");
  // Applies to x/a (its own namespace), not to y/a (the one it named), as in Cilium.
  auto xa = w.compileFor(256, {other});
  CHECK(xa.ingress_enforced);
  CHECK(allows(xa, 257, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(allows(xa, 2, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(w.compileFor(258, {other}).ingress_enforced);
  CHECK_FALSE(w.compileFor(257, {other}).ingress_enforced);  // x/b: the other labels still apply
  REQUIRE(other.warnings.size() == 1);
  CHECK(other.warnings[0] ==
        "spec.endpointSelector: the match on k8s:io.kubernetes.pod.namespace is ignored: a CiliumNetworkPolicy "
        "always applies in its own namespace \"x\"");

  // An expression on the namespace (any operator), and in a `specs` list: the same.
  auto expr = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ns-expr, namespace: x}
specs:
- endpointSelector:
    matchExpressions: [{key: k8s:io.kubernetes.pod.namespace, operator: NotIn, values: [x]}]
  ingress: [{}]
)");
  CHECK(w.compileFor(256, {expr}).ingress_enforced);
  CHECK(w.compileFor(257, {expr}).ingress_enforced);
  CHECK_FALSE(w.compileFor(258, {expr}).ingress_enforced);
  REQUIRE(expr.warnings.size() == 1);
  CHECK(expr.warnings[0].rfind("specs[0].endpointSelector: the match on", 0) == 0);

  // Naming its own namespace is what it means anyway: no warning.
  auto own = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ns-own, namespace: x}
spec:
  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: x}}
  ingress: [{}]
)");
  CHECK(own.warnings.empty());
  CHECK(w.compileFor(256, {own}).ingress_enforced);
  CHECK_FALSE(w.compileFor(258, {own}).ingress_enforced);

  // A CCNP's selector is not namespaced: there the label selects, as written.
  auto ccnp = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: in-y}
spec:
  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: y}}
  ingress: [{}]
)");
  CHECK(ccnp.warnings.empty());
  CHECK(w.compileFor(258, {ccnp}).ingress_enforced);
  CHECK_FALSE(w.compileFor(256, {ccnp}).ingress_enforced);
}

TEST_CASE("enforcement modes: default enforces a selected direction, always every direction, never none",
          "[unit][policy]") {
  World w;
  auto deny_b = mustParse(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-b, namespace: x}
spec:
  endpointSelector: {matchLabels: {pod: a}}
  ingress: [{fromEntities: [all]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: b}}]}]
)");
  CHECK(parseEnforcementMode("always") == EnforcementMode::kAlways);
  CHECK_FALSE(parseEnforcementMode("strict").has_value());
  // No policy selects x/b: default allows both ways, always allows nothing.
  auto open = w.compileFor(257, {deny_b});
  CHECK(allows(open, 258, Direction::kIngress, kProtoTcp, 80));
  CHECK(allows(open, 258, Direction::kEgress, kProtoTcp, 80));
  auto closed = w.compileFor(257, {deny_b}, {}, EnforcementMode::kAlways);
  CHECK_FALSE(allows(closed, 258, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(allows(closed, 258, Direction::kEgress, kProtoTcp, 80));
  // x/a is selected for ingress: always also closes its egress; its rules still apply.
  auto a_always = w.compileFor(256, {deny_b}, {}, EnforcementMode::kAlways);
  CHECK(allows(a_always, 258, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(allows(a_always, 257, Direction::kIngress, kProtoTcp, 80));
  CHECK_FALSE(allows(a_always, 258, Direction::kEgress, kProtoTcp, 80));
  CHECK(allows(w.compileFor(256, {deny_b}), 258, Direction::kEgress, kProtoTcp, 80));
  // never: the deny rule is not enforced either.
  auto a_never = w.compileFor(256, {deny_b}, {}, EnforcementMode::kNever);
  CHECK(allows(a_never, 257, Direction::kIngress, kProtoTcp, 80));
  CHECK(a_never.selected_by.empty());
}
