#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include "fakes.h"
#include "plexus/agent/resource_state.h"
#include "plexus/agent/service_manager.h"
#include "plexus/agent/service_sync.h"

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;

namespace {
nlohmann::json serviceJson() {
  return nlohmann::json::parse(R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
    "spec":{"type":"ClusterIP","clusterIP":"10.96.0.10","ports":[{"name":"http","port":80,"targetPort":8080}]}})");
}
nlohmann::json sliceJson(const std::vector<std::string>& addresses) {
  auto j = nlohmann::json::parse(R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
    "metadata":{"name":"web-abc","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},
    "addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],"endpoints":[]})");
  for (const auto& a : addresses) {
    j["endpoints"].push_back({{"addresses", {a}}});
  }
  return j;
}
// A selector Service (app=web) and a Pod it selects, with the address in its status.
nlohmann::json selectorServiceJson() {
  auto j = serviceJson();
  j["spec"]["selector"] = {{"app", "web"}};
  return j;
}
nlohmann::json podJson(const std::string& name, const std::string& address) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", "web"}}}}},
          {"spec", {{"nodeName", "n1"}, {"containers", {{{"name", "c"}, {"image", "i"}}}}}},
          {"status", {{"podIP", address}}}};
}
ResourceEvent upsert(ResourceKind kind, const std::string& name, nlohmann::json object) {
  return ResourceEvent{ResourceEventType::kUpsert, ResourceKey{kind, "default", name}, std::move(object)};
}

lb::PlannerConfig config() {
  lb::PlannerConfig c;
  c.node_name = "n1";
  c.node_ips = {ip("192.168.1.10")};
  c.maglev = false;
  return c;
}

plexus_lb4_backend backend(const char* address, uint16_t port) {
  plexus_lb4_backend b{};
  b.address = ip(address).networkOrder();
  b.port = htons(port);
  b.proto = 6;
  return b;
}

// The backend ids the maps hold for an address and port.
std::vector<uint32_t> idsOf(const lb::MapState& st, const char* address, uint16_t port) {
  std::vector<uint32_t> out;
  auto want = backend(address, port);
  for (const auto& [id, b] : st.backends) {
    if (b.address == want.address && b.port == want.port) {
      out.push_back(id);
    }
  }
  return out;
}

const plexus_lb4_service* master(const lb::MapState& st, const char* address, uint16_t port) {
  for (const auto& [k, v] : st.services) {
    if (k.address == ip(address).networkOrder() && k.dport == htons(port) && k.backend_slot == 0) {
      return &v;
    }
  }
  return nullptr;
}

struct Services {
  FakeAgentStore store;
  ResourceState resources{store};
  FlowDirectory flows;
  ServiceManager manager;
  ServiceSync sync;
  explicit Services(FakeServiceMaps& maps, ServiceSync::Endpoints endpoints = ServiceSync::Endpoints::kDeriveFromPods)
      : manager(maps, config(), &flows), sync(manager, resources, nullptr, endpoints) {}
  bool track(const ResourceEvent& e) { return trackThroughStore(resources, sync, e); }
};
}  // namespace

TEST_CASE("services: a Service and its EndpointSlice become a frontend and a backend", "[unit][services]") {
  FakeServiceMaps maps;
  Services s(maps);
  CHECK(s.track(upsert(ResourceKind::kService, "web", serviceJson())));
  CHECK(s.track(upsert(ResourceKind::kEndpointSlice, "web-abc", sliceJson({"10.0.0.21"}))));
  // Nothing is programmed before the endpoints are restored.
  REQUIRE(s.sync.sync({}).ok());
  CHECK(maps.applies == 0);
  CHECK_FALSE(s.sync.pending());
  s.sync.endpointsRestored();
  CHECK(s.sync.pending());
  REQUIRE(s.sync.sync({}).ok());
  CHECK_FALSE(s.sync.pending());
  CHECK(idsOf(maps.state, "10.0.0.21", 8080).size() == 1);
  const auto* m = master(maps.state, "10.96.0.10", 80);
  REQUIRE(m);
  CHECK(m->count == 1);
  CHECK(maps.state.revnat.count(m->rev_nat_index));
  CHECK(s.flows.lookupService(ip("10.96.0.10"), 80, 6) == "default/web");

  // An incremental change: the slice gains a backend.
  REQUIRE(s.track(upsert(ResourceKind::kEndpointSlice, "web-abc", sliceJson({"10.0.0.21", "10.0.0.22"}))));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(master(maps.state, "10.96.0.10", 80)->count == 2);
  CHECK(idsOf(maps.state, "10.0.0.22", 8080).size() == 1);
  CHECK(s.sync.manager().lastIncremental().count == 1);
}

TEST_CASE("services: a failed apply is retried by a full sync", "[unit][services]") {
  FakeServiceMaps maps;
  Services s(maps);
  s.sync.endpointsRestored();
  REQUIRE(s.sync.sync({}).ok());  // nothing yet
  s.track(upsert(ResourceKind::kService, "web", serviceJson()));
  s.track(upsert(ResourceKind::kEndpointSlice, "web-abc", sliceJson({"10.0.0.21"})));
  maps.fail_next_applies = 1;
  Status st = s.sync.sync({});
  REQUIRE_FALSE(st.ok());
  CHECK(s.manager.needsFullSync());
  CHECK(s.sync.pending());
  CHECK(maps.state.services.empty());

  uint64_t fulls = s.manager.lastFull().count;
  REQUIRE(s.sync.sync({}).ok());
  CHECK(s.manager.lastFull().count == fulls + 1);
  CHECK_FALSE(s.manager.needsFullSync());
  CHECK_FALSE(s.sync.pending());
  REQUIRE(master(maps.state, "10.96.0.10", 80));
  CHECK(master(maps.state, "10.96.0.10", 80)->count == 1);
  CHECK(idsOf(maps.state, "10.0.0.21", 8080).size() == 1);
  // The maps hold exactly what the manager believes is installed.
  CHECK(maps.state.backends.size() == s.manager.counts().backends);
  CHECK(s.manager.counts().frontends == 1);
}

TEST_CASE("services: restore() keeps the ids a previous run installed and drops what is gone",
          "[unit][services]") {
  FakeServiceMaps maps;
  {
    Services first(maps);
    first.sync.endpointsRestored();
    first.sync.track(upsert(ResourceKind::kService, "web", serviceJson()));
    // Enough backends that the one that stays does not get id 1 again by chance.
    first.sync.track(upsert(ResourceKind::kEndpointSlice, "web-abc",
                            sliceJson({"10.0.0.31", "10.0.0.32", "10.0.0.33", "10.0.0.21"})));
    REQUIRE(first.sync.sync({}).ok());
  }
  auto before = idsOf(maps.state, "10.0.0.21", 8080);
  REQUIRE(before.size() == 1);
  REQUIRE(before[0] != 1);
  uint16_t revnat = master(maps.state, "10.96.0.10", 80)->rev_nat_index;

  // A new agent: only 10.0.0.21 remains.
  Services second(maps);
  REQUIRE(second.manager.restore().ok());
  CHECK(second.manager.needsFullSync());
  second.sync.track(upsert(ResourceKind::kService, "web", serviceJson()));
  second.sync.track(upsert(ResourceKind::kEndpointSlice, "web-abc", sliceJson({"10.0.0.21"})));
  second.sync.endpointsRestored();
  REQUIRE(second.sync.sync({}).ok());
  CHECK(idsOf(maps.state, "10.0.0.21", 8080) == before);
  CHECK(master(maps.state, "10.96.0.10", 80)->rev_nat_index == revnat);
  CHECK(master(maps.state, "10.96.0.10", 80)->count == 1);
  CHECK(maps.state.backends.size() == 1);
  CHECK(idsOf(maps.state, "10.0.0.31", 8080).empty());

  // A failed read is reported.
  FakeServiceMaps broken;
  broken.fail_reads = true;
  Services third(broken);
  CHECK_FALSE(third.manager.restore().ok());
}

TEST_CASE("services: deleting the Service removes its entries", "[unit][services]") {
  FakeServiceMaps maps;
  Services s(maps);
  s.sync.endpointsRestored();
  s.track(upsert(ResourceKind::kService, "web", serviceJson()));
  s.track(upsert(ResourceKind::kEndpointSlice, "web-abc", sliceJson({"10.0.0.21"})));
  REQUIRE(s.sync.sync({}).ok());
  REQUIRE_FALSE(maps.state.services.empty());
  s.track(ResourceEvent{ResourceEventType::kDelete, ResourceKey{ResourceKind::kService, "default", "web"},
                             serviceJson()});
  s.track(ResourceEvent{ResourceEventType::kDelete,
                             ResourceKey{ResourceKind::kEndpointSlice, "default", "web-abc"}, sliceJson({})});
  REQUIRE(s.sync.sync({}).ok());
  CHECK(maps.state.services.empty());
  CHECK(maps.state.backends.empty());
  CHECK(maps.state.revnat.empty());
  CHECK(s.flows.lookupService(ip("10.96.0.10"), 80, 6).empty());
}

TEST_CASE("services: a plan a full map stops half-way leaks nothing: the next sync starts from what the maps hold",
          "[unit][services]") {
  FakeServiceMaps maps;
  maps.service_capacity = 3;
  Services s(maps);
  s.sync.endpointsRestored();
  REQUIRE(s.sync.sync({}).ok());
  // Two services of two entries each (a master and a slot): the second's master does not fit.
  auto svc = [](const std::string& name, const std::string& ip) {
    auto j = serviceJson();
    j["metadata"]["name"] = name;
    j["spec"]["clusterIP"] = ip;
    return j;
  };
  auto slice = [](const std::string& service) {
    auto j = sliceJson({"10.0.0.21"});
    j["metadata"]["name"] = service + "-abc";
    j["metadata"]["labels"]["kubernetes.io/service-name"] = service;
    return j;
  };
  for (const auto& [name, address] : {std::pair{"a", "10.96.0.10"}, std::pair{"b", "10.96.0.11"}}) {
    s.track(upsert(ResourceKind::kService, name, svc(name, address)));
    s.track(upsert(ResourceKind::kEndpointSlice, std::string(name) + "-abc", slice(name)));
  }
  Status st = s.sync.sync({});
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == ErrorCode::kResourceExhausted);
  CHECK(maps.state.services.size() == 3);  // what fitted stays in the maps (the next sync reads them back)

  // Service b goes away: its half-written entry is removed too, and a fits whole.
  s.track(ResourceEvent{ResourceEventType::kDelete, ResourceKey{ResourceKind::kService, "default", "b"}, {}});
  REQUIRE(s.sync.sync({}).ok());
  CHECK(maps.state.services.size() == 2);
  CHECK(master(maps.state, "10.96.0.10", 80));
  CHECK_FALSE(master(maps.state, "10.96.0.11", 80));
  for (const auto& [k, v] : maps.state.services) {
    CHECK(k.address == ip("10.96.0.10").networkOrder());
  }
}

TEST_CASE("services: a service's slices are found by owner, also when only the service changed or a slice moved",
          "[unit][services]") {
  FakeServiceMaps maps;
  Services s(maps);
  s.sync.endpointsRestored();
  auto sliceOf = [](const std::string& name, const std::string& service, const char* address) {
    auto j = sliceJson({address});
    j["metadata"]["name"] = name;
    j["metadata"]["labels"]["kubernetes.io/service-name"] = service;
    return j;
  };
  auto api = serviceJson();
  api["metadata"]["name"] = "api";
  api["spec"]["clusterIP"] = "10.96.0.11";
  s.track(upsert(ResourceKind::kService, "web", serviceJson()));
  s.track(upsert(ResourceKind::kService, "api", api));
  s.track(upsert(ResourceKind::kEndpointSlice, "web-b", sliceOf("web-b", "web", "10.0.0.22")));
  s.track(upsert(ResourceKind::kEndpointSlice, "web-a", sliceOf("web-a", "web", "10.0.0.21")));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(master(maps.state, "10.96.0.10", 80)->count == 2);
  CHECK(master(maps.state, "10.96.0.11", 80)->count == 0);
  // The service alone changes (a new port): its stored slices still give both backends.
  auto web = serviceJson();
  web["spec"]["ports"][0]["port"] = 81;
  REQUIRE(s.track(upsert(ResourceKind::kService, "web", web)));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(s.sync.manager().lastIncremental().count == 1);
  REQUIRE(master(maps.state, "10.96.0.10", 81));
  CHECK(master(maps.state, "10.96.0.10", 81)->count == 2);
  // A slice moves to the other service: both change.
  s.track(upsert(ResourceKind::kEndpointSlice, "web-b", sliceOf("web-b", "api", "10.0.0.22")));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(master(maps.state, "10.96.0.10", 81)->count == 1);
  CHECK(master(maps.state, "10.96.0.11", 80)->count == 1);
  // A slice deleted: its service loses its backend.
  s.track(ResourceEvent{ResourceEventType::kDelete, ResourceKey{ResourceKind::kEndpointSlice, "default", "web-a"},
                        sliceOf("web-a", "web", "10.0.0.21")});
  REQUIRE(s.sync.sync({}).ok());
  CHECK(master(maps.state, "10.96.0.10", 81)->count == 0);
  CHECK(master(maps.state, "10.96.0.11", 80)->count == 1);
}

TEST_CASE("services: an incremental change reports each frontend as an agent event; a full sync reports none",
          "[unit][services][hubble]") {
  FakeServiceMaps maps;
  Services s(maps);
  NotificationLog log;
  s.manager.setNotifications(&log);
  s.sync.endpointsRestored();
  REQUIRE(s.sync.sync({}).ok());  // the start-up full sync
  CHECK(log.sequence() == 0);

  s.track(upsert(ResourceKind::kService, "web", serviceJson()));
  s.track(upsert(ResourceKind::kEndpointSlice, "web-abc", sliceJson({"10.0.0.21", "10.0.0.22"})));
  REQUIRE(s.sync.sync({}).ok());
  auto events = log.select(0, false, 0, 0);
  REQUIRE(events.size() == 1);
  const auto& up = events[0];
  CHECK(up.type == NotificationType::kServiceUpserted);
  CHECK(up.service_name == "web");
  CHECK(up.service_namespace == "default");
  CHECK(up.service_type == "ClusterIP");
  CHECK(up.frontend == NotificationAddress{"10.96.0.10", 80});
  CHECK(up.backends == std::vector<NotificationAddress>{{"10.0.0.21", 8080}, {"10.0.0.22", 8080}});
  CHECK(up.ext_traffic_policy == "Cluster");
  CHECK(up.id == master(maps.state, "10.96.0.10", 80)->rev_nat_index);

  s.track(ResourceEvent{ResourceEventType::kDelete, ResourceKey{ResourceKind::kService, "default", "web"}, {}});
  REQUIRE(s.sync.sync({}).ok());
  events = log.select(0, false, 0, 0);
  REQUIRE(events.size() == 2);
  CHECK(events[1].type == NotificationType::kServiceDeleted);
  CHECK(events[1].id == up.id);
}

TEST_CASE("services: a selector service derives its endpoints from pods in standalone mode only", "[unit][services]") {
  FakeServiceMaps maps;
  SECTION("standalone: the pods its selector matches, until slices come") {
    Services s(maps);
    s.sync.endpointsRestored();
    CHECK(s.track(upsert(ResourceKind::kService, "web", selectorServiceJson())));
    CHECK(s.track(upsert(ResourceKind::kPod, "web-1", podJson("web-1", "10.0.0.31"))));
    REQUIRE(s.sync.sync({}).ok());
    REQUIRE(master(maps.state, "10.96.0.10", 80));
    CHECK(master(maps.state, "10.96.0.10", 80)->count == 1);
    CHECK(idsOf(maps.state, "10.0.0.31", 8080).size() == 1);
    // A slice of the user's wins over the derived endpoints.
    CHECK(s.track(upsert(ResourceKind::kEndpointSlice, "web-abc", sliceJson({"10.0.0.21"}))));
    REQUIRE(s.sync.sync({}).ok());
    CHECK(master(maps.state, "10.96.0.10", 80)->count == 1);
    CHECK(idsOf(maps.state, "10.0.0.21", 8080).size() == 1);
    CHECK(idsOf(maps.state, "10.0.0.31", 8080).empty());
  }
  SECTION("Kubernetes: only the EndpointSlice controller's slices; a matching pod is no backend") {
    Services s(maps, ServiceSync::Endpoints::kSlicesOnly);
    s.sync.endpointsRestored();
    CHECK(s.track(upsert(ResourceKind::kService, "web", selectorServiceJson())));
    CHECK_FALSE(s.track(upsert(ResourceKind::kPod, "web-1", podJson("web-1", "10.0.0.31"))));
    REQUIRE(s.sync.sync({}).ok());
    REQUIRE(master(maps.state, "10.96.0.10", 80));
    CHECK(master(maps.state, "10.96.0.10", 80)->count == 0);
    CHECK(maps.state.backends.empty());
    CHECK(s.track(upsert(ResourceKind::kEndpointSlice, "web-abc", sliceJson({"10.0.0.21"}))));
    REQUIRE(s.sync.sync({}).ok());
    CHECK(master(maps.state, "10.96.0.10", 80)->count == 1);
    CHECK(idsOf(maps.state, "10.0.0.21", 8080).size() == 1);
    // The slice is listed again (a dropped watch): while it is away the service has no backend, never the pod.
    s.track(ResourceEvent{ResourceEventType::kDelete, ResourceKey{ResourceKind::kEndpointSlice, "default", "web-abc"},
                          nlohmann::json()});
    s.sync.podsChanged("default");
    REQUIRE(s.sync.sync({}).ok());
    CHECK(master(maps.state, "10.96.0.10", 80)->count == 0);
    CHECK(idsOf(maps.state, "10.0.0.31", 8080).empty());
  }
}
