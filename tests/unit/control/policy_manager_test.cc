#include <catch2/catch.hpp>

#include "fakes.h"
#include "plexus/agent/policy_manager.h"
#include "plexus/common/manifest.h"
#include "plexus/identity/identity.h"

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;
using policy::Direction;

namespace {
constexpr uint8_t kTcp = 6;

nlohmann::json manifest(const std::string& yaml) {
  auto objs = parseManifests(yaml);
  REQUIRE(objs.ok());
  REQUIRE(objs->size() == 1);
  return (*objs)[0];
}

// CNP: pods app=web accept TCP/80 (any protocol, CNP style) from pods app=client.
nlohmann::json allowWeb() {
  return manifest(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow-web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
)");
}

nlohmann::json egressCidr() {
  return manifest(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-net, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDR: [203.0.113.0/24]
)");
}

std::vector<std::string> podLabels(const std::string& app) {
  return {"k8s:app=" + app, "k8s:io.cilium.k8s.policy.cluster=default",
          "k8s:io.cilium.k8s.policy.serviceaccount=default", "k8s:io.kubernetes.pod.namespace=default"};
}

EndpointRecord endpoint(uint16_t id, uint32_t identity, const std::string& app, const char* address) {
  EndpointRecord r;
  r.id = id;
  r.container_id = "c" + std::to_string(id);
  r.ifname = "eth0";
  r.pod_namespace = "default";
  r.pod_name = app + std::to_string(id);
  r.ip = ip(address);
  r.identity = identity;
  r.labels = app.empty() ? std::vector<std::string>{} : podLabels(app);
  return r;
}

PolicyEntries encoded(const std::vector<policy::Entry>& entries) {
  PolicyEntries out;
  for (const auto& e : entries) {
    out.push_back(encodePolicyEntry(e));
  }
  return out;
}

bool sameTrie(const PolicyEntries& a, const PolicyEntries& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (!sameBytes(a[i].first, b[i].first) || !sameBytes(a[i].second, b[i].second)) {
      return false;
    }
  }
  return true;
}

struct World {
  FakePolicyMap map;
  FakeIpcacheMap ipcache_map;
  IpcacheManager ipcache{ipcache_map};
  std::map<uint32_t, std::vector<std::string>> ids{{300, podLabels("web")}, {301, podLabels("client")}};
  PolicyManager pm{map, ipcache, [this] { return ids; }, [](const EndpointRecord&) { return std::multimap<std::string, std::pair<uint16_t, uint8_t>>{}; }};
  EndpointRecord web = endpoint(1, 300, "web", "10.0.0.10");
  EndpointRecord client = endpoint(2, 301, "client", "10.0.0.11");
  std::vector<EndpointRecord> all() const { return {web, client}; }

  bool allows(uint16_t id, uint32_t peer, Direction dir, uint16_t port) {
    auto view = pm.endpointPolicy(id);
    REQUIRE(view);
    return policy::evaluate(view->compiled.entries, peer, dir, kTcp, port).allowed;
  }
  void apply(const nlohmann::json& object) {
    REQUIRE(pm.validate(object).ok());
    pm.upsert(object);
  }
};
}  // namespace

TEST_CASE("policy: install() writes the map before recording the endpoint", "[unit][policy-manager]") {
  World w;
  w.apply(allowWeb());
  w.map.fail_next_sets = 1;
  Status s = w.pm.install(w.web, {});
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == ErrorCode::kResourceExhausted);
  CHECK_FALSE(w.pm.endpointPolicy(1));
  CHECK(w.map.tries.empty());

  REQUIRE(w.pm.install(w.web, {}).ok());
  auto view = w.pm.endpointPolicy(1);
  REQUIRE(view);
  CHECK(view->error.empty());
  CHECK(view->compiled.ingress_enforced);
  REQUIRE(w.map.tries.count(1));
  CHECK(sameTrie(w.map.tries.at(1), encoded(view->compiled.entries)));

  w.pm.forget(1);
  CHECK_FALSE(w.pm.endpointPolicy(1));
  CHECK(w.map.tries.empty());
}

TEST_CASE("policy: a CNP changes the entries of the endpoints it selects, and only those",
          "[unit][policy-manager]") {
  World w;
  REQUIRE(w.pm.regenerate(w.all()).ok());
  // No policy: both open both ways.
  CHECK(w.allows(1, 2, Direction::kIngress, 22));
  CHECK(w.allows(2, 2, Direction::kIngress, 22));
  PolicyEntries client_before = w.map.tries.at(2);
  PolicyEntries web_before = w.map.tries.at(1);
  int sets = w.map.sets;

  w.apply(allowWeb());
  REQUIRE(w.pm.regenerate(w.all()).ok());
  CHECK(w.map.sets == sets + 1);  // the unselected client is not rewritten
  CHECK(sameTrie(w.map.tries.at(2), client_before));
  CHECK_FALSE(sameTrie(w.map.tries.at(1), web_before));
  CHECK(sameTrie(w.map.tries.at(1), encoded(w.pm.endpointPolicy(1)->compiled.entries)));

  CHECK(w.allows(1, 301, Direction::kIngress, 80));
  CHECK_FALSE(w.allows(1, 301, Direction::kIngress, 81));
  CHECK_FALSE(w.allows(1, 300, Direction::kIngress, 80));
  CHECK_FALSE(w.allows(1, 2, Direction::kIngress, 80));
  CHECK(w.allows(1, 2, Direction::kEgress, 443));  // egress not selected
  CHECK(w.allows(2, 2, Direction::kIngress, 22));
  auto statuses = w.pm.policies();
  REQUIRE(statuses.size() == 1);
  CHECK(statuses[0].key == "CiliumNetworkPolicy default/allow-web");
  CHECK(statuses[0].endpoints == std::vector<uint16_t>{1});

  // Removing it opens the endpoint again.
  w.pm.remove("CiliumNetworkPolicy", "default", "allow-web");
  REQUIRE(w.pm.regenerate(w.all()).ok());
  CHECK(w.allows(1, 2, Direction::kIngress, 22));
  CHECK(sameTrie(w.map.tries.at(1), web_before));
}

TEST_CASE("policy: a failed regenerate keeps the old trie, shows the error, and the next one retries",
          "[unit][policy-manager]") {
  World w;
  REQUIRE(w.pm.regenerate(w.all()).ok());
  PolicyEntries web_before = w.map.tries.at(1);

  w.apply(allowWeb());
  w.map.fail_next_sets = 1;
  Status s = w.pm.regenerate(w.all());
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find("endpoint 1") != std::string::npos);
  CHECK(w.pm.pending());
  CHECK(sameTrie(w.map.tries.at(1), web_before));
  auto view = w.pm.endpointPolicy(1);
  REQUIRE(view);
  CHECK_FALSE(view->error.empty());
  CHECK_FALSE(view->compiled.ingress_enforced);  // the view is what the map holds: the old state
  CHECK(w.pm.endpointPolicy(2)->error.empty());

  REQUIRE(w.pm.regenerate(w.all()).ok());
  CHECK_FALSE(w.pm.pending());
  view = w.pm.endpointPolicy(1);
  CHECK(view->error.empty());
  CHECK(view->compiled.ingress_enforced);
  CHECK(sameTrie(w.map.tries.at(1), encoded(view->compiled.entries)));
}

TEST_CASE("policy: a new endpoint whose first trie fails is pending and retried", "[unit][policy-manager]") {
  World w;
  w.map.fail_next_sets = 1;
  CHECK_FALSE(w.pm.regenerate({w.web}).ok());
  CHECK(w.pm.pending());
  CHECK_FALSE(w.map.tries.count(1));
  REQUIRE(w.pm.regenerate({w.web}).ok());
  CHECK_FALSE(w.pm.pending());
  CHECK(w.map.tries.count(1));
  // An endpoint that is gone is forgotten by regenerate().
  REQUIRE(w.pm.regenerate({}).ok());
  CHECK_FALSE(w.pm.endpointPolicy(1));
}

TEST_CASE("policy: toCIDR identities go to the ipcache as policy-CIDR statements and leave with the policy",
          "[unit][policy-manager]") {
  World w;
  auto net = prefix("203.0.113.0/24");
  w.apply(egressCidr());
  REQUIRE(w.pm.regenerate(w.all()).ok());
  CHECK(w.ipcache.winner(net) == IpcacheSource::kPolicyCidr);
  auto entry = ipcacheEntry(w.ipcache_map, net);
  REQUIRE(entry);
  CHECK(entry->identity >= identity::kFirstLocalIdentity);
  // The endpoint may reach that identity, and not the world.
  CHECK(w.allows(1, entry->identity, Direction::kEgress, 443));
  CHECK_FALSE(w.allows(1, 2, Direction::kEgress, 443));

  // A local endpoint's statement for an address inside does not disturb the CIDR entry.
  REQUIRE(w.ipcache.upsert(prefix("203.0.113.9/32"), IpcacheSource::kLocalEndpoint, IpcacheEntry{300, {}}).ok());

  w.pm.remove("CiliumNetworkPolicy", "default", "to-net");
  REQUIRE(w.pm.regenerate(w.all()).ok());
  CHECK_FALSE(w.ipcache.winner(net));
  CHECK_FALSE(ipcacheEntry(w.ipcache_map, net));
  CHECK(ipcacheEntry(w.ipcache_map, prefix("203.0.113.9/32")));
  CHECK(w.allows(1, 2, Direction::kEgress, 443));
}

TEST_CASE("policy: an endpoint with the init identity stays open unless a policy selects reserved:init",
          "[unit][policy-manager]") {
  World w;
  auto init = endpoint(3, kIdentityInit, "", "10.0.0.12");
  init.pod_name = "pending";
  w.apply(allowWeb());
  // Even with pod labels in the record, the init identity is judged by its reserved labels only.
  auto init_labeled = init;
  init_labeled.id = 4;
  init_labeled.labels = podLabels("web");
  REQUIRE(w.pm.regenerate({w.web, w.client, init, init_labeled}).ok());
  for (uint16_t id : {3, 4}) {
    auto view = w.pm.endpointPolicy(id);
    REQUIRE(view);
    CHECK_FALSE(view->compiled.ingress_enforced);
    CHECK_FALSE(view->compiled.egress_enforced);
    CHECK(w.allows(id, 2, Direction::kIngress, 80));
    CHECK(w.allows(id, 2, Direction::kEgress, 80));
  }
  // The control: a clusterwide policy that does select reserved:init closes it.
  w.apply(manifest(R"(
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: init}
spec:
  endpointSelector: {matchLabels: {"reserved:init": ""}}
  ingress: [{fromEntities: [host]}]
)"));
  REQUIRE(w.pm.regenerate({w.web, w.client, init}).ok());
  CHECK(w.pm.endpointPolicy(3)->compiled.ingress_enforced);
  CHECK_FALSE(w.allows(3, 2, Direction::kIngress, 80));
  CHECK(w.allows(3, 1, Direction::kIngress, 80));
  CHECK_FALSE(w.pm.endpointPolicy(1)->compiled.selected_by.size() > 1);
}

TEST_CASE("policy: an invalid update is refused and the previous version stays enforced",
          "[unit][policy-manager]") {
  World w;
  w.apply(allowWeb());
  REQUIRE(w.pm.regenerate(w.all()).ok());
  auto bad = allowWeb();
  bad["spec"]["ingress"][0]["toPorts"][0]["ports"][0]["port"] = "99999";
  Status verdict = w.pm.validate(bad);
  CHECK_FALSE(verdict.ok());
  CHECK(w.pm.invalidCount() == 0);  // validate() is pure: the store reports the verdict when the object commits
  w.pm.validated({ResourceKind::kCiliumNetworkPolicy, "default", bad["metadata"]["name"]}, verdict);
  REQUIRE(w.pm.regenerate(w.all()).ok());
  CHECK(w.allows(1, 301, Direction::kIngress, 80));
  auto statuses = w.pm.policies();
  REQUIRE(statuses.size() == 1);
  CHECK(statuses[0].valid);
  CHECK_FALSE(statuses[0].reason.empty());
  CHECK(w.pm.invalidCount() == 1);
}

TEST_CASE("policy: explain judges a peer on another node by the identity the lookup gives, and names its node",
          "[unit][policy-manager]") {
  World w;
  w.apply(allowWeb());
  REQUIRE(w.pm.regenerate({w.web}).ok());  // the client is not on this node
  ExplainPeerLookup remote = [](const std::string& text) -> std::optional<ExplainPeer> {
    if (text == "default/client" || text == "10.1.0.5") {
      return ExplainPeer{"default/client", "node-b", 301};
    }
    return std::nullopt;
  };
  for (const std::string from : {"default/client", "10.1.0.5"}) {
    INFO("from " << from);
    auto r = w.pm.explain({w.web}, from, "default/web1", kTcp, 80, remote);
    REQUIRE(r.ok());
    CHECK(r->allowed);
    REQUIRE(r->lines.size() == 2);
    CHECK(r->lines[0].find("on node node-b, enforced there") != std::string::npos);
    CHECK(r->lines[1].find("from default/client (identity 301): ALLOWED by") != std::string::npos);
    auto denied = w.pm.explain({w.web}, from, "default/web1", kTcp, 81, remote);
    REQUIRE(denied.ok());
    CHECK_FALSE(denied->allowed);
  }
  // Without the lookup the same address is an outside one (world) and denied.
  auto world = w.pm.explain({w.web}, "10.1.0.5", "default/web1", kTcp, 80);
  REQUIRE(world.ok());
  CHECK_FALSE(world->allowed);
  CHECK_FALSE(w.pm.explain({w.web}, "default/nobody", "default/web1", kTcp, 80, remote).ok());
}

TEST_CASE("policy: while the ipcache cannot hold a policy's CIDR identities, endpoints keep their previous policy "
          "and new endpoints are refused", "[unit][policy-manager]") {
  World w;
  REQUIRE(w.pm.regenerate(w.all()).ok());
  PolicyEntries web_before = w.map.tries.at(1);
  // The ipcache is full: the policy's CIDR identity cannot be installed. Installing the policy anyway would judge
  // 203.0.113.0/24 as world (past a CIDR deny or an except): the endpoint it selects keeps its previous trie.
  w.ipcache_map.capacity = 0;
  w.apply(egressCidr());
  Status s = w.pm.regenerate(w.all());
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == ErrorCode::kResourceExhausted);
  CHECK(sameTrie(w.map.tries.at(1), web_before));
  auto view = w.pm.endpointPolicy(1);
  REQUIRE(view);
  CHECK(view->error.find("CIDR identities") != std::string::npos);
  CHECK(view->error.find("previous policy stays enforced") != std::string::npos);
  CHECK(w.pm.endpointPolicy(2)->error.empty());  // its policy uses no CIDR identity
  CHECK(w.pm.pending());

  // A new endpoint the policy selects gets no trie (no map: the datapath drops everything) and its ADD fails.
  EndpointRecord web2 = endpoint(3, 300, "web", "10.0.0.12");
  Status add = w.pm.install(web2, w.all());
  REQUIRE_FALSE(add.ok());
  CHECK(add.error().code == ErrorCode::kResourceExhausted);
  CHECK_FALSE(w.map.tries.count(3));

  // Room in the ipcache: the retry installs the CIDR identity, then the policy.
  w.ipcache_map.capacity.reset();
  REQUIRE(w.ipcache.reconcile().ok());
  REQUIRE(w.pm.regenerate(w.all()).ok());
  CHECK_FALSE(w.pm.pending());
  CHECK(w.pm.endpointPolicy(1)->error.empty());
  CHECK(w.pm.endpointPolicy(1)->compiled.egress_enforced);
  REQUIRE(w.pm.install(web2, w.all()).ok());
}

TEST_CASE("policy: largestPolicy() is the entry count of the fullest installed trie", "[unit][policy-manager]") {
  World w;
  REQUIRE(w.pm.regenerate(w.all()).ok());
  size_t open = w.pm.largestPolicy();
  CHECK(open == w.map.tries.at(1).size());
  w.apply(allowWeb());
  REQUIRE(w.pm.regenerate(w.all()).ok());
  CHECK(w.pm.largestPolicy() == std::max(w.map.tries.at(1).size(), w.map.tries.at(2).size()));
  CHECK(w.pm.largestPolicy() > 0);
}

TEST_CASE("policy: flow decoding learns each rule's policy and direction, and forgets them with the policy",
          "[unit][policy-manager]") {
  World w;
  FlowDirectory flows;
  w.pm.reportRulesTo(&flows);
  w.apply(allowWeb());
  REQUIRE(w.pm.regenerate(w.all()).ok());
  auto view = w.pm.endpointPolicy(1);
  REQUIRE(view);
  uint32_t rule = 0;
  for (const auto& e : view->compiled.entries) {
    if (e.rule_id != 0) {
      rule = e.rule_id;
    }
  }
  REQUIRE(rule != 0);
  auto p = flows.lookupRule(rule);
  REQUIRE(p);
  CHECK(*p == FlowPolicy{"CiliumNetworkPolicy", "default", "allow-web", true, 2});  // from client, to port 80: L3-L4
  w.pm.remove("CiliumNetworkPolicy", "default", "allow-web");
  CHECK_FALSE(flows.lookupRule(rule));
}

TEST_CASE("policy: each rule's match type is what it constrains: peer, protocol, port", "[unit][policy-manager]") {
  World w;
  FlowDirectory flows;
  w.pm.reportRulesTo(&flows);
  auto cnp = manifest(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: kinds, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
  - toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "0", protocol: UDP}]}]
  - fromEntities: [all]
  egressDeny:
  - toEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
)");
  w.apply(cnp);
  auto parsed = policy::parsePolicy(cnp);
  REQUIRE(parsed.ok());
  std::vector<uint8_t> types;
  for (const auto& spec : parsed->specs) {
    for (const auto& r : spec.rules) {
      auto p = flows.lookupRule(r.id);
      REQUIRE(p);
      CHECK(p->ingress == (r.direction == Direction::kIngress));
      types.push_back(p->match_type);
    }
  }
  // L3-only, L4-only, L3-proto, all; the egress deny L3-L4.
  CHECK(types == std::vector<uint8_t>{1, 3, 5, 4, 2});
}

TEST_CASE("policy: changes and endpoint regenerations are reported as agent events, a failure once",
          "[unit][policy-manager][hubble]") {
  World w;
  NotificationLog log;
  w.pm.setNotifications(&log);
  REQUIRE(w.pm.regenerate(w.all()).ok());
  auto events = log.select(0, false, 0, 0);
  REQUIRE(events.size() == 2);  // both endpoints' first tries
  CHECK(events[0].type == NotificationType::kEndpointRegenerateSuccess);
  CHECK(events[0].labels == podLabels("web"));

  w.apply(allowWeb());
  events = log.select(1, false, 0, 0);
  CHECK(events[0].type == NotificationType::kPolicyUpdated);
  CHECK(events[0].rule_count == 1);
  uint64_t revision = events[0].revision;

  // web's new trie fails twice: one failure event (with the error), then the success of the retry.
  w.map.fail_next_sets = 2;
  uint64_t before = log.sequence();
  REQUIRE_FALSE(w.pm.regenerate(w.all()).ok());
  REQUIRE_FALSE(w.pm.regenerate(w.all()).ok());
  REQUIRE(w.pm.regenerate(w.all()).ok());
  events = log.select(0, false, 0, 0);
  REQUIRE(log.sequence() == before + 2);
  const auto& failed = events[events.size() - 2];
  CHECK(failed.type == NotificationType::kEndpointRegenerateFailure);
  CHECK(failed.id == 1);
  CHECK(failed.error.find("previous policy stays enforced") != std::string::npos);
  CHECK(events.back().type == NotificationType::kEndpointRegenerateSuccess);
  CHECK(events.back().id == 1);

  w.pm.remove("CiliumNetworkPolicy", "default", "allow-web");
  events = log.select(1, false, 0, 0);
  CHECK(events[0].type == NotificationType::kPolicyDeleted);
  CHECK(events[0].revision > revision);
  CHECK(events[0].labels == std::vector<std::string>{"k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
                                                     "k8s:io.cilium.k8s.policy.name=allow-web",
                                                     "k8s:io.cilium.k8s.policy.namespace=default"});
  w.pm.remove("CiliumNetworkPolicy", "default", "allow-web");  // not there any more: nothing to report
  CHECK(log.select(1, false, 0, 0)[0].type == NotificationType::kPolicyDeleted);
  CHECK(log.sequence() == before + 3);
}
