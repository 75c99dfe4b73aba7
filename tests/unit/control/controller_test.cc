#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>

#include "fakes.h"
#include "plexus/agent/controller.h"

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;

namespace {
// What outlives an agent: the kernel, the state directory, the cluster.
struct Fakes {
  FakePodNetwork net;
  FakeEndpointMap endpoints_map;
  FakeIpcacheMap ipcache_map;
  FakePolicyMap policy_map;
  FakeServiceMaps service_maps;
  FakeAgentStore store;
  FakeClusterApi api;
  FakeHostAddresses host;
};

// One agent's managers over the fakes, wired as the daemon wires them.
struct Agent {
  Fakes& f;
  ResourceState resources;
  IdentityManager identities;
  IpcacheManager ipcache;
  PolicyManager policies;
  Ipam ipam{prefix("10.0.0.0/24"), ip("10.0.0.1")};
  EndpointManager endpoints;
  FlowDirectory flows;
  ServiceManager service_manager;
  ServiceSync services;
  Controller controller;

  Agent(Fakes& fakes, bool cluster)
      : f(fakes),
        resources(f.store),
        identities(f.store, cluster ? &f.api : nullptr),
        ipcache(f.ipcache_map),
        policies(f.policy_map, ipcache, [this] { return identities.all(); },
                 [this](const EndpointRecord& r) { return resources.namedPorts(r.pod_namespace, r.pod_name); }),
        endpoints(EndpointManagerDeps{f.net, f.endpoints_map, ipcache, policies, f.store}, ipam,
                  EndpointManagerConfig{1500}, [] { return int64_t{1700000000}; }),
        service_manager(f.service_maps, lb::PlannerConfig{}, &flows),
        services(service_manager, resources),
        controller(ControllerParts{resources, identities, ipcache, endpoints, policies, &services, flows,
                                   cluster ? &f.api : nullptr, &f.host, nullptr}) {}
};

nlohmann::json namespaceJson() {
  return {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "default"}}}};
}
nlohmann::json podJson(const std::string& name, const std::string& app) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", app}}}}},
          {"spec", {{"containers", {{{"name", "c"}, {"image", "nginx"}}}}}}};
}
ResourceEvent namespaceUpsert() {
  return ResourceEvent{ResourceEventType::kUpsert, ResourceKey{ResourceKind::kNamespace, "", "default"},
                       namespaceJson()};
}
ResourceEvent podUpsert(const std::string& name, const std::string& app) {
  return ResourceEvent{ResourceEventType::kUpsert, ResourceKey{ResourceKind::kPod, "default", name},
                       podJson(name, app)};
}
AddRequest request(const std::string& container, const std::string& pod) {
  AddRequest r;
  r.container_id = container;
  r.netns = "/var/run/netns/" + container;
  r.ifname = "eth0";
  r.pod_namespace = "default";
  r.pod_name = pod;
  return r;
}
nlohmann::json allowWeb() {
  return nlohmann::json::parse(R"({"apiVersion":"cilium.io/v2","kind":"CiliumNetworkPolicy",
    "metadata":{"name":"allow-web","namespace":"default"},
    "spec":{"endpointSelector":{"matchLabels":{"app":"web"}},
      "ingress":[{"fromEndpoints":[{"matchLabels":{"app":"client"}}],"toPorts":[{"ports":[{"port":"80","protocol":"TCP"}]}]}]}})");
}
bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }
}  // namespace

TEST_CASE("controller standalone: a known pod's endpoint gets its labels' identity", "[unit][controller]") {
  Fakes f;
  Agent a(f, false);
  std::vector<std::string> problems;
  REQUIRE(a.controller.start(&problems).ok());
  auto out = a.controller.apply({namespaceJson(), podJson("web", "web")});
  REQUIRE(out.size() == 2);
  CHECK(out[1].action == ApplyAction::kCreated);

  auto rec = a.controller.addEndpoint(request("c1", "web"));
  REQUIRE(rec.ok());
  CHECK(rec->identity >= identity::kFirstClusterIdentity);
  CHECK(has(rec->labels, "k8s:app=web"));
  CHECK(endpointEntry(f.endpoints_map, rec->ip)->identity == rec->identity);
  CHECK(ipcacheEntry(f.ipcache_map, Ipv4Prefix(rec->ip, 32)) == IpcacheEntry{rec->identity, {}});
  PeerInfo info;
  REQUIRE(a.flows.lookupEndpoint(rec->ip, &info));
  CHECK(info.pod_name == "web");
  CHECK(info.endpoint_id == rec->id);
  CHECK(has(info.labels, "k8s:app=web"));
  // A second ADD for the live container and interface is refused (CNI SPEC.md) and changes nothing.
  auto again = a.controller.addEndpoint(request("c1", "web"));
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == plexus::ErrorCode::kAlreadyExists);
  CHECK(again.error().message.find("c1") != std::string::npos);
  CHECK(a.endpoints.list().size() == 1);
  CHECK(a.endpoints.list().front().id == rec->id);
  CHECK(endpointEntry(f.endpoints_map, rec->ip)->identity == rec->identity);
  CHECK_FALSE(a.controller.pending());

  // Deleting releases the identity (the last local user).
  REQUIRE(a.controller.deleteEndpoint("c1", "eth0").ok());
  CHECK_FALSE(a.identities.local().find(identity::Labels(rec->labels.begin(), rec->labels.end())));
  CHECK_FALSE(a.flows.lookupEndpoint(rec->ip, &info));
}

TEST_CASE("controller cluster mode: ADD wires with init, the pod and the identity arrive as events",
          "[unit][controller]") {
  Fakes f;
  Agent a(f, true);
  std::vector<std::string> problems;
  REQUIRE(a.controller.start(&problems).ok());

  auto rec = a.controller.addEndpoint(request("c1", "web"));
  REQUIRE(rec.ok());
  CHECK(rec->identity == kIdentityInit);
  CHECK(f.api.fetched == std::vector<std::string>{"default/web"});
  CHECK(endpointEntry(f.endpoints_map, rec->ip)->identity == kIdentityInit);

  a.controller.handle(ResourcesChanged{{podUpsert("web", "web")}});
  // The pod's namespace is not known yet: its labels are part of the identity, so nothing is allocated until it is.
  CHECK(f.api.allocations.empty());
  CHECK(a.endpoints.get(rec->id)->identity == kIdentityInit);
  a.controller.handle(ResourcesChanged{{namespaceUpsert()}});
  REQUIRE(f.api.allocations.size() == 1);
  auto labels = a.resources.podIdentityLabels("default", "web");
  CHECK(f.api.allocations[0] == labels);
  CHECK(a.endpoints.get(rec->id)->identity == kIdentityInit);
  CHECK(f.api.fetched.size() == 1);

  // A policy selects app=web: the init endpoint is not selected yet.
  REQUIRE(a.controller.apply({allowWeb()}).at(0).action == ApplyAction::kCreated);
  CHECK_FALSE(a.policies.endpointPolicy(rec->id)->compiled.ingress_enforced);
  int policy_sets = f.policy_map.sets;
  a.controller.handle(IdentityAllocated{labels, 300});
  CHECK(a.endpoints.get(rec->id)->identity == 300);
  CHECK(endpointEntry(f.endpoints_map, rec->ip)->identity == 300);
  CHECK(ipcacheEntry(f.ipcache_map, Ipv4Prefix(rec->ip, 32)) == IpcacheEntry{300, {}});
  CHECK(f.policy_map.sets > policy_sets);  // regenerated for its new identity
  CHECK(a.policies.endpointPolicy(rec->id)->compiled.ingress_enforced);
  CHECK(f.api.releases.empty());
  CHECK(f.store.endpoints.at(rec->id).identity == 300);

  // A second pod with the same labels shares the identity without asking.
  a.controller.handle(ResourcesChanged{{podUpsert("web2", "web")}});
  auto second = a.controller.addEndpoint(request("c2", "web2"));
  REQUIRE(second.ok());
  CHECK(second->identity == 300);
  CHECK(f.api.allocations.size() == 1);

  // The identity goes back to the cluster only when its last user goes.
  REQUIRE(a.controller.deleteEndpoint("c1", "eth0").ok());
  CHECK(f.api.releases.empty());
  REQUIRE(a.controller.deleteEndpoint("c2", "eth0").ok());
  CHECK(f.api.releases == std::vector<uint32_t>{300});
}

TEST_CASE("controller: an answer nobody waits for any more is released", "[unit][controller]") {
  Fakes f;
  Agent a(f, true);
  std::vector<std::string> problems;
  REQUIRE(a.controller.start(&problems).ok());
  a.controller.handle(ResourcesChanged{{namespaceUpsert(), podUpsert("web", "web")}});
  auto rec = a.controller.addEndpoint(request("c1", "web"));
  REQUIRE(rec.ok());
  REQUIRE(f.api.allocations.size() == 1);
  REQUIRE(a.controller.deleteEndpoint("c1", "eth0").ok());
  a.controller.handle(IdentityAllocated{a.resources.podIdentityLabels("default", "web"), 301});
  CHECK(f.api.releases == std::vector<uint32_t>{301});
}

TEST_CASE("controller: a failed ipcache write fails the ADD cleanly; a pending one is fixed by tick()",
          "[unit][controller]") {
  Fakes f;
  Agent a(f, true);
  std::vector<std::string> problems;
  REQUIRE(a.controller.start(&problems).ok());
  a.controller.handle(ResourcesChanged{{namespaceUpsert(), podUpsert("web", "web")}});

  // During the ADD: rolled back, nothing pending, nothing left.
  f.ipcache_map.fail_next_updates = 1;
  auto failed = a.controller.addEndpoint(request("c1", "web"));
  REQUIRE_FALSE(failed.ok());
  CHECK(a.endpoints.list().empty());
  CHECK_FALSE(a.controller.pending());
  CHECK(f.net.veths.empty());
  CHECK(f.endpoints_map.data.size() == 1);  // the gateway only

  auto rec = a.controller.addEndpoint(request("c1", "web"));
  REQUIRE(rec.ok());
  CHECK(rec->identity == kIdentityInit);

  // During the identity change: the statement stays pending until tick().
  f.ipcache_map.fail_next_updates = 1;
  a.controller.handle(IdentityAllocated{a.resources.podIdentityLabels("default", "web"), 300});
  CHECK(endpointEntry(f.endpoints_map, rec->ip)->identity == 300);
  CHECK(ipcacheEntry(f.ipcache_map, Ipv4Prefix(rec->ip, 32)) == IpcacheEntry{kIdentityInit, {}});
  CHECK(a.controller.pending());
  a.controller.tick();
  CHECK_FALSE(a.controller.pending());
  CHECK(ipcacheEntry(f.ipcache_map, Ipv4Prefix(rec->ip, 32)) == IpcacheEntry{300, {}});

  // Host addresses: a failed write (and the same tick's retry) is retried by the next tick.
  f.host.addresses = {ip("192.168.1.10")};
  f.ipcache_map.fail_next_updates = 2;
  a.controller.tick();
  CHECK(a.controller.pending());
  CHECK_FALSE(ipcacheEntry(f.ipcache_map, prefix("192.168.1.10/32")));
  a.controller.tick();
  CHECK_FALSE(a.controller.pending());
  CHECK(ipcacheEntry(f.ipcache_map, prefix("192.168.1.10/32")) == IpcacheEntry{kIdentityHost, {}});

  // A failed policy write is retried by tick() too.
  f.policy_map.fail_next_sets = 1;
  a.controller.apply({allowWeb()});
  CHECK(a.controller.pending());
  CHECK_FALSE(a.policies.endpointPolicy(rec->id)->error.empty());
  CHECK_FALSE(a.policies.endpointPolicy(rec->id)->compiled.ingress_enforced);
  a.controller.tick();
  CHECK_FALSE(a.controller.pending());
  CHECK(a.policies.endpointPolicy(rec->id)->compiled.ingress_enforced);
}

TEST_CASE("controller: apply() journals each change and a new agent restores from snapshot and journal",
          "[unit][controller]") {
  Fakes f;
  {
    Agent a(f, false);
    std::vector<std::string> problems;
    REQUIRE(a.controller.start(&problems).ok());
    a.controller.apply({namespaceJson(), podJson("web", "web")});
    CHECK(f.store.journal_appends == 1);
    auto entries = f.store.journalEntries();
    REQUIRE(entries.size() == 2);
    CHECK(entries[0]["op"] == "upsert");
    CHECK(entries[1]["object"]["metadata"]["name"] == "web");
    a.controller.apply({podJson("db", "db")});
    CHECK(f.store.journalEntries().size() == 3);
    a.controller.apply({podJson("db", "db")});  // unchanged: nothing journaled
    CHECK(f.store.journalEntries().size() == 3);
    a.controller.remove({podJson("db", "db")});
    CHECK(f.store.journalEntries().size() == 4);
    CHECK(f.store.journalEntries().back()["op"] == "delete");
    CHECK_FALSE(f.store.unsynced);  // apply() and remove() return with the journal durable
    // In two steps (a request's pipeline): the groups' commits journal without waiting for the disk, and one
    // flush makes them durable before the request is answered.
    std::vector<PreparedObject> group;
    group.push_back(a.controller.prepare(podJson("cache", "cache"), false));
    a.controller.commit(std::move(group), false);
    CHECK(f.store.journalEntries().size() == 5);
    CHECK(f.store.unsynced);
    a.controller.flush();
    CHECK_FALSE(f.store.unsynced);
  }
  SECTION("replayed") {
    Agent b(f, false);
    std::vector<std::string> problems;
    REQUIRE(b.controller.start(&problems).ok());
    CHECK(b.resources.pod("default", "web"));
    CHECK_FALSE(b.resources.pod("default", "db"));
    CHECK(b.resources.podIdentityLabels("default", "web").count("k8s:app=web"));
  }
  SECTION("over a snapshot, with a cut last line ignored") {
    f.store.snapshot = nlohmann::json{{"resourceVersion", 1}, {"items", {namespaceJson()}}};
    f.store.journal = nlohmann::json{{"op", "upsert"}, {"object", podJson("api", "api")}}.dump() + "\n" +
                      R"({"op":"upsert","object":{"apiVer)";
    Agent b(f, false);
    std::vector<std::string> problems;
    REQUIRE(b.controller.start(&problems).ok());
    CHECK(b.resources.pod("default", "api"));
    CHECK(b.resources.store().size() == 2);
  }
  SECTION("a bad middle line fails start()") {
    f.store.journal = "not json\n" + nlohmann::json{{"op", "upsert"}, {"object", podJson("api", "api")}}.dump() + "\n";
    Agent b(f, false);
    std::vector<std::string> problems;
    Status s = b.controller.start(&problems);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message.find("entry 1: not JSON") != std::string::npos);
  }
  SECTION("members of the wrong type fail start() with the object's error, never an exception") {
    // Found by fuzz_journal: a number where the journal keeps strings threw type_error out of restore().
    auto bad_kind = podJson("api", "api");
    bad_kind["kind"] = 5;
    auto bad_version = podJson("db", "db");
    bad_version["metadata"]["resourceVersion"] = 7;
    f.store.journal = nlohmann::json{{"op", 1}, {"key", 2}}.dump() + "\n" +
                      nlohmann::json{{"op", "upsert"}, {"object", bad_version}}.dump() + "\n" +
                      nlohmann::json{{"op", "upsert"}, {"object", bad_kind}}.dump() + "\n";
    Agent b(f, false);
    std::vector<std::string> problems;
    Status s = b.controller.start(&problems);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message.find("resource snapshot") != std::string::npos);
  }
}

TEST_CASE("controller: problems() names what a retry waits for, once per area, and forgets it once it is fixed",
          "[unit][controller]") {
  Fakes f;
  Agent a(f, false);
  std::vector<std::string> problems;
  REQUIRE(a.controller.start(&problems).ok());
  CHECK(a.controller.problems().empty());

  // A service whose maps refuse it (a full map): the area and the maps' message, retried by every tick.
  f.service_maps.fail_next_applies = 1000;
  a.controller.apply({nlohmann::json::parse(R"({"apiVersion":"v1","kind":"Service",
    "metadata":{"name":"web","namespace":"default"},
    "spec":{"type":"ClusterIP","clusterIP":"10.96.0.10","ports":[{"port":80}]}})")});
  auto now = a.controller.problems();
  REQUIRE(now.size() == 1);
  CHECK(now[0].rfind("services: ", 0) == 0);
  CHECK(now[0].find("apply refused") != std::string::npos);
  a.controller.tick();
  CHECK(a.controller.problems().size() == 1);

  // A policy the map refuses adds its area.
  a.controller.apply({namespaceJson(), podJson("web", "web")});
  REQUIRE(a.controller.addEndpoint(request("c1", "web")).ok());
  f.policy_map.fail_next_sets = 1;
  a.controller.apply({allowWeb()});
  now = a.controller.problems();
  REQUIRE(now.size() == 2);
  CHECK(now[0].rfind("policy: ", 0) == 0);
  CHECK(now[0].find("previous policy stays enforced") != std::string::npos);

  a.controller.tick();  // the policy retry succeeds; the services still fail
  REQUIRE(a.controller.problems().size() == 1);
  CHECK(a.controller.problems()[0].rfind("services: ", 0) == 0);
  f.service_maps.fail_next_applies = 0;
  a.controller.tick();
  CHECK(a.controller.problems().empty());
  CHECK_FALSE(a.controller.pending());
}
