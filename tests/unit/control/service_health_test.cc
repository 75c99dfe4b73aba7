// ServiceSync publishes the node's healthCheckNodePort listeners (lb::HealthCheck per service) after each successful
// programming: opened for ETP=Local LoadBalancers, with the count of this node's ready endpoints (from applied slices
// or derived from pods with spec.nodeName), closed when the service goes; and loadBalancerSourceRanges reach the maps.
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <cstring>

#include "fakes.h"
#include "plexus/agent/resource_state.h"
#include "plexus/agent/service_manager.h"
#include "plexus/agent/service_sync.h"

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;

namespace {
struct RecordingListeners final : HealthCheckListeners {
  void publish(std::map<std::string, lb::HealthCheck> checks) override {
    published.push_back(std::move(checks));
  }
  std::vector<std::map<std::string, lb::HealthCheck>> published;
};

nlohmann::json lbService(bool selector = false) {
  auto j = nlohmann::json::parse(R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
    "spec":{"type":"LoadBalancer","clusterIP":"10.96.0.10","externalTrafficPolicy":"Local","healthCheckNodePort":31555,
            "loadBalancerSourceRanges":["198.51.100.0/24","oops"],
            "ports":[{"name":"http","port":80,"targetPort":8080,"nodePort":30080}]},
    "status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"}]}}})");
  if (selector) {
    j["spec"]["selector"] = {{"app", "web"}};
  }
  return j;
}

nlohmann::json slice(const std::vector<std::pair<std::string, std::string>>& endpoints) {
  auto j = nlohmann::json::parse(R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
    "metadata":{"name":"web-abc","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},
    "addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],"endpoints":[]})");
  for (const auto& [address, node] : endpoints) {
    j["endpoints"].push_back({{"addresses", {address}}, {"nodeName", node}});
  }
  return j;
}

nlohmann::json pod(const std::string& name, const std::string& ip, const std::string& node) {
  return {{"apiVersion", "v1"}, {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", "web"}}}}},
          {"spec", {{"nodeName", node}, {"containers", nlohmann::json::array()}}},
          {"status", {{"podIP", ip}}}};
}

ResourceEvent event(ResourceEventType type, ResourceKind kind, const std::string& name, nlohmann::json object) {
  return ResourceEvent{type, ResourceKey{kind, "default", name}, std::move(object)};
}

lb::PlannerConfig config() {
  lb::PlannerConfig c;
  c.node_name = "n1";
  c.node_ips = {ip("192.168.1.10")};
  c.maglev = false;
  return c;
}

struct Services {
  FakeAgentStore store;
  ResourceState resources{store};
  FlowDirectory flows;
  RecordingListeners listeners;
  ServiceManager manager;
  ServiceSync sync{manager, resources, &listeners};
  explicit Services(FakeServiceMaps& maps) : manager(maps, config(), &flows) { sync.endpointsRestored(); }
  bool track(const ResourceEvent& e) { return trackThroughStore(resources, sync, e); }
};
}  // namespace

TEST_CASE("services: healthCheckNodePort is published with this node's ready endpoints, and withdrawn",
          "[unit][services][health-check]") {
  FakeServiceMaps maps;
  Services s(maps);
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kService, "web", lbService())));
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kEndpointSlice, "web-abc",
                             slice({{"10.0.0.21", "n1"}, {"10.0.0.22", "n2"}}))));
  REQUIRE(s.sync.sync({}).ok());
  REQUIRE(s.listeners.published.size() == 1);
  auto hc = s.listeners.published.back().at("default/web");
  CHECK(hc.port == 31555);
  CHECK(hc.local_endpoints == 1);  // 10.0.0.22 runs on n2

  // Nothing of the health check changed: nothing is published again.
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kEndpointSlice, "web-abc",
                             slice({{"10.0.0.21", "n1"}, {"10.0.0.23", "n2"}}))));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(s.listeners.published.size() == 1);

  // The local endpoint moves away: 0, published.
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kEndpointSlice, "web-abc",
                             slice({{"10.0.0.23", "n2"}}))));
  REQUIRE(s.sync.sync({}).ok());
  REQUIRE(s.listeners.published.size() == 2);
  CHECK(s.listeners.published.back().at("default/web").local_endpoints == 0);

  // Deleted: the listener goes.
  REQUIRE(s.track(event(ResourceEventType::kDelete, ResourceKind::kService, "web", nullptr)));
  REQUIRE(s.sync.sync({}).ok());
  REQUIRE(s.listeners.published.size() == 3);
  CHECK(s.listeners.published.back().empty());
  CHECK(s.sync.healthChecks().empty());
}

TEST_CASE("services: endpoints derived from pods count as local by spec.nodeName", "[unit][services][health-check]") {
  FakeServiceMaps maps;
  Services s(maps);
  for (const auto& [name, address, node] : {std::tuple{"a", "10.0.0.31", "n1"}, std::tuple{"b", "10.0.0.32", "n2"},
                                           std::tuple{"c", "10.0.0.33", "n1"}}) {
    s.track(event(ResourceEventType::kUpsert, ResourceKind::kPod, name, pod(name, address, node)));
  }
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kService, "web", lbService(true))));
  REQUIRE(s.sync.sync({}).ok());
  REQUIRE_FALSE(s.listeners.published.empty());
  CHECK(s.listeners.published.back().at("default/web").local_endpoints == 2);
  // The ETP=Local LoadBalancer frontend has the same two backends (not the one on n2).
  bool found = false;
  for (const auto& [k, v] : maps.state.services) {
    if (k.address == ip("203.0.113.7").networkOrder() && k.backend_slot == 0 && k.scope == PLEXUS_LB_SCOPE_EXTERNAL) {
      found = true;
      CHECK(v.count == 2);
      CHECK(v.flags & PLEXUS_SVC_F_ETP_LOCAL);
      CHECK(v.flags & PLEXUS_SVC_F_SOURCE_RANGE);
    }
  }
  CHECK(found);
}

TEST_CASE("services: source ranges reach the maps; a full range map fails the sync, which is retried in full",
          "[unit][services][source-range]") {
  FakeServiceMaps maps;
  maps.source_range_capacity = 0;
  Services s(maps);
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kService, "web", lbService())));
  Status first = s.sync.sync({});
  REQUIRE_FALSE(first.ok());
  CHECK(first.error().code == ErrorCode::kResourceExhausted);
  CHECK(s.sync.pending());
  CHECK(s.listeners.published.empty());  // published only once programmed

  maps.source_range_capacity.reset();
  REQUIRE(s.sync.sync({}).ok());
  REQUIRE(maps.state.source_ranges.size() == 1);  // "oops" admits nobody
  const auto& k = *maps.state.source_ranges.begin();
  CHECK(k.prefixlen == 32 + 24);
  CHECK(k.address == ip("198.51.100.0").networkOrder());
  CHECK(s.listeners.published.size() == 1);
}

TEST_CASE("services: a selector service follows its pods' events (added, relabelled, deleted, other namespaces)",
          "[unit][services]") {
  FakeServiceMaps maps;
  Services s(maps);
  auto backends = [&] {
    std::set<std::string> out;
    for (const auto& [id, b] : maps.state.backends) {
      char text[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &b.address, text, sizeof(text));
      out.insert(text);
    }
    return out;
  };
  s.track(event(ResourceEventType::kUpsert, ResourceKind::kPod, "a", pod("a", "10.0.0.31", "n1")));
  s.track(event(ResourceEventType::kUpsert, ResourceKind::kPod, "b", pod("b", "10.0.0.32", "n1")));
  auto elsewhere = pod("x", "10.0.0.39", "n1");
  elsewhere["metadata"]["namespace"] = "other";
  s.track(ResourceEvent{ResourceEventType::kUpsert, ResourceKey{ResourceKind::kPod, "other", "x"}, elsewhere});
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kService, "web", lbService(true))));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(backends() == std::set<std::string>{"10.0.0.31", "10.0.0.32"});

  auto relabelled = pod("a", "10.0.0.31", "n1");
  relabelled["metadata"]["labels"]["app"] = "db";
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kPod, "a", relabelled)));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(backends() == std::set<std::string>{"10.0.0.32"});

  REQUIRE(s.track(event(ResourceEventType::kDelete, ResourceKind::kPod, "b", nullptr)));
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kPod, "c", pod("c", "10.0.0.33", "n2"))));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(backends() == std::set<std::string>{"10.0.0.33"});

  // Every label of the selector must match, whichever of them is the least common among the pods.
  auto tiered = pod("d", "10.0.0.34", "n1");
  tiered["metadata"]["labels"]["tier"] = "front";
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kPod, "d", tiered)));
  auto narrow = lbService(true);
  narrow["spec"]["selector"]["tier"] = "front";
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kService, "web", narrow)));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(backends() == std::set<std::string>{"10.0.0.34"});
  narrow["spec"]["selector"]["tier"] = "back";  // no pod carries it
  REQUIRE(s.track(event(ResourceEventType::kUpsert, ResourceKind::kService, "web", narrow)));
  REQUIRE(s.sync.sync({}).ok());
  CHECK(backends().empty());
}
