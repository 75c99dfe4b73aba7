// cluster-pool IPAM across nodes: Node objects without spec.podCIDRs plus each node's PlexusNode claim. The claims
// arrive as ResourcesChanged events (as the PlexusNode informer posts them) and move routes, ipcache node entries
// and tunnel endpoints together; a Node's own spec.podCIDRs win over a claim.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "fakes.h"
#include "plexus/agent/controller.h"
#include "plexus/agent/node_manager.h"

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;

namespace {

// A Node as the kubelet reports it in a cluster-pool cluster: addresses, no spec.podCIDR(s).
nlohmann::json nodeJson(const std::string& name, const std::string& address, const std::string& cidr = "") {
  nlohmann::json spec = nlohmann::json::object();
  if (!cidr.empty()) {
    spec["podCIDRs"] = {cidr};
  }
  return {{"apiVersion", "v1"},
          {"kind", "Node"},
          {"metadata", {{"name", name}}},
          {"spec", spec},
          {"status", {{"addresses", {{{"type", "InternalIP"}, {"address", address}}}}}}};
}
nlohmann::json claimJson(const std::string& name, const std::vector<std::string>& cidrs) {
  return {{"apiVersion", "plexus.io/v1alpha1"},
          {"kind", "PlexusNode"},
          {"metadata", {{"name", name}}},
          {"spec", {{"ipam", {{"podCIDRs", cidrs}}}}}};
}
ResourceEvent upsert(ResourceKind kind, nlohmann::json o) {
  std::string name = o["metadata"]["name"];
  return ResourceEvent{ResourceEventType::kUpsert, ResourceKey{kind, "", name}, std::move(o)};
}
ResourceEvent remove(ResourceKind kind, nlohmann::json o) {
  std::string name = o["metadata"]["name"];
  return ResourceEvent{ResourceEventType::kDelete, ResourceKey{kind, "", name}, std::move(o)};
}

// One agent (node n1, Kubernetes mode) with its node manager wired into the controller, as the daemon does.
struct Agent {
  FakePodNetwork net;
  FakeEndpointMap endpoints_map;
  FakeIpcacheMap ipcache_map;
  FakePolicyMap policy_map;
  FakeAgentStore store;
  FakeClusterApi api;
  FakeHostAddresses host;
  FakeNodeRoutes routes;
  ResourceState resources{store};
  IdentityManager identities{store, &api};
  IpcacheManager ipcache{ipcache_map};
  PolicyManager policies{policy_map, ipcache, [this] { return identities.all(); },
                         [this](const EndpointRecord& r) { return resources.namedPorts(r.pod_namespace, r.pod_name); }};
  Ipam ipam{prefix("10.0.1.0/24"), ip("10.0.1.1")};
  EndpointManager endpoints{EndpointManagerDeps{net, endpoints_map, ipcache, policies, store}, ipam,
                            EndpointManagerConfig{1500}, [] { return int64_t{1700000000}; }};
  FlowDirectory flows;
  NodeManager nodes;
  Controller controller;

  explicit Agent(node::RoutingMode mode)
      : nodes(NodeManagerConfig{"n1", mode, mode == node::RoutingMode::kNative, {}}, ipcache, identities, resources,
              &routes, &flows),
        controller(ControllerParts{resources, identities, ipcache, endpoints, policies, nullptr, flows, &api, &host,
                                   &nodes},
                   "n1") {
    std::vector<std::string> problems;
    REQUIRE(controller.start(&problems).ok());
    CHECK(problems.empty());
  }
  // What an informer batch does: one event into the reconcile thread's handler.
  void post(std::vector<ResourceEvent> events) { controller.handle(ResourcesChanged{std::move(events)}); }
  std::optional<IpcacheEntry> entry(const char* p) const { return ipcacheEntry(ipcache_map, prefix(p)); }
  std::vector<Ipv4Prefix> cidrsOf(const std::string& name) const {
    for (const auto& n : nodes.nodes()) {
      if (n.name == name) {
        return n.pod_cidrs;
      }
    }
    return {};
  }
};

}  // namespace

TEST_CASE("cluster-pool: PlexusNode claims give CIDR-less Nodes their routes and tunnel entries",
          "[unit][node-manager][cluster-pool]") {
  Agent a(node::RoutingMode::kNative);
  a.post({upsert(ResourceKind::kNode, nodeJson("n1", "192.168.1.11")),
          upsert(ResourceKind::kNode, nodeJson("n2", "192.168.1.12")),
          upsert(ResourceKind::kNode, nodeJson("n3", "192.168.1.13"))});
  // Nodes without CIDRs: their addresses are remote-node, but there is nothing to route yet.
  CHECK(a.routes.routes.empty());
  REQUIRE(a.entry("192.168.1.12/32"));
  CHECK(a.entry("192.168.1.12/32")->identity == identity::kRemoteNode);
  CHECK_FALSE(a.entry("10.0.2.0/24"));

  a.post({upsert(ResourceKind::kPlexusNode, claimJson("n1", {"10.0.1.0/24"})),
          upsert(ResourceKind::kPlexusNode, claimJson("n2", {"10.0.2.0/24"})),
          upsert(ResourceKind::kPlexusNode, claimJson("n3", {"10.0.3.0/24"}))});
  CHECK_FALSE(a.controller.pending());
  REQUIRE(a.routes.routes.size() == 2);
  CHECK(a.routes.routes.at(prefix("10.0.2.0/24")) == std::make_pair(ip("192.168.1.12"), false));
  CHECK(a.routes.routes.at(prefix("10.0.3.0/24")) == std::make_pair(ip("192.168.1.13"), false));
  CHECK_FALSE(a.routes.routes.count(prefix("10.0.1.0/24")));  // this node's own
  REQUIRE(a.entry("10.0.2.0/24"));
  CHECK(a.entry("10.0.2.0/24")->identity == 0u);
  CHECK(a.entry("10.0.2.0/24")->tunnel_endpoint == ip("192.168.1.12"));
  CHECK(a.entry("10.0.3.0/24")->tunnel_endpoint == ip("192.168.1.13"));
  CHECK_FALSE(a.entry("10.0.1.0/24"));
  CHECK(a.cidrsOf("n1") == std::vector<Ipv4Prefix>{prefix("10.0.1.0/24")});  // node list shows self's claim
  CHECK(a.nodes.cidrsClaimed("n2"));

  SECTION("a changed claim moves the route and the tunnel entry in one step") {
    a.routes.calls.clear();
    a.post({upsert(ResourceKind::kPlexusNode, claimJson("n2", {"10.0.22.0/24"}))});
    CHECK(a.routes.count("remove") == 1);
    CHECK(a.routes.count("replace") == 1);
    CHECK_FALSE(a.routes.routes.count(prefix("10.0.2.0/24")));
    CHECK(a.routes.routes.at(prefix("10.0.22.0/24")) == std::make_pair(ip("192.168.1.12"), false));
    CHECK_FALSE(a.entry("10.0.2.0/24"));
    REQUIRE(a.entry("10.0.22.0/24"));
    CHECK(a.entry("10.0.22.0/24")->tunnel_endpoint == ip("192.168.1.12"));
  }
  SECTION("a deleted claim takes the route and the tunnel entry; the node and its address stay") {
    a.post({remove(ResourceKind::kPlexusNode, claimJson("n3", {"10.0.3.0/24"}))});
    CHECK_FALSE(a.routes.routes.count(prefix("10.0.3.0/24")));
    CHECK_FALSE(a.entry("10.0.3.0/24"));
    REQUIRE(a.entry("192.168.1.13/32"));
    CHECK(a.cidrsOf("n3").empty());
    CHECK(a.nodes.nodes().size() == 3);
    CHECK(a.routes.routes.count(prefix("10.0.2.0/24")));  // the others untouched
  }
  SECTION("a Node's own spec.podCIDRs win over its claim") {
    a.post({upsert(ResourceKind::kNode, nodeJson("n2", "192.168.1.12", "10.0.42.0/24"))});
    CHECK_FALSE(a.routes.routes.count(prefix("10.0.2.0/24")));
    CHECK(a.routes.routes.at(prefix("10.0.42.0/24")) == std::make_pair(ip("192.168.1.12"), false));
    CHECK_FALSE(a.entry("10.0.2.0/24"));
    CHECK_FALSE(a.nodes.cidrsClaimed("n2"));
    // A later claim change of that node changes nothing.
    a.routes.calls.clear();
    a.post({upsert(ResourceKind::kPlexusNode, claimJson("n2", {"10.0.99.0/24"}))});
    CHECK(a.routes.calls.empty());
    CHECK_FALSE(a.entry("10.0.99.0/24"));
  }
  SECTION("a deleted Node takes its claimed CIDR's route and entries; it comes back with its claim") {
    a.post({remove(ResourceKind::kNode, nodeJson("n2", "192.168.1.12"))});
    CHECK_FALSE(a.routes.routes.count(prefix("10.0.2.0/24")));
    CHECK_FALSE(a.entry("10.0.2.0/24"));
    CHECK_FALSE(a.entry("192.168.1.12/32"));
    a.post({upsert(ResourceKind::kNode, nodeJson("n2", "192.168.1.12"))});
    CHECK(a.routes.routes.at(prefix("10.0.2.0/24")) == std::make_pair(ip("192.168.1.12"), false));
    CHECK(a.entry("10.0.2.0/24")->tunnel_endpoint == ip("192.168.1.12"));
  }
  SECTION("a claim race: of two nodes claiming one block the smaller name keeps it, in routes and ipcache alike") {
    a.post({upsert(ResourceKind::kPlexusNode, claimJson("n3", {"10.0.2.0/24"}))});
    CHECK(a.routes.routes.at(prefix("10.0.2.0/24")) == std::make_pair(ip("192.168.1.12"), false));
    CHECK(a.entry("10.0.2.0/24")->tunnel_endpoint == ip("192.168.1.12"));
    CHECK_FALSE(a.routes.routes.count(prefix("10.0.3.0/24")));
    // n3 settles on the next block: its route and entry follow.
    a.post({upsert(ResourceKind::kPlexusNode, claimJson("n3", {"10.0.4.0/24"}))});
    CHECK(a.routes.routes.at(prefix("10.0.4.0/24")) == std::make_pair(ip("192.168.1.13"), false));
    CHECK(a.entry("10.0.4.0/24")->tunnel_endpoint == ip("192.168.1.13"));
    CHECK(a.entry("10.0.2.0/24")->tunnel_endpoint == ip("192.168.1.12"));
  }
  SECTION("another node's claim on this node's block is never routed away") {
    a.post({upsert(ResourceKind::kPlexusNode, claimJson("n3", {"10.0.1.0/24"}))});
    CHECK_FALSE(a.routes.routes.count(prefix("10.0.1.0/24")));
    CHECK_FALSE(a.entry("10.0.1.0/24"));
  }
  SECTION("a malformed claim from the watch is skipped; the node keeps its last good one") {
    a.post({upsert(ResourceKind::kPlexusNode, claimJson("n2", {"ten/8"}))});
    CHECK(a.routes.routes.count(prefix("10.0.2.0/24")));
    CHECK(a.entry("10.0.2.0/24")->tunnel_endpoint == ip("192.168.1.12"));
  }
}

TEST_CASE("cluster-pool, tunnel mode: the claimed CIDR routes into the tunnel", "[unit][node-manager][cluster-pool]") {
  Agent a(node::RoutingMode::kTunnel);
  // The claim before its Node: nothing until the Node object says the node exists and where it is.
  a.post({upsert(ResourceKind::kPlexusNode, claimJson("n2", {"10.0.2.0/24"}))});
  CHECK(a.routes.routes.empty());
  CHECK_FALSE(a.entry("10.0.2.0/24"));
  a.post({upsert(ResourceKind::kNode, nodeJson("n2", "192.168.1.12"))});
  REQUIRE(a.routes.routes.count(prefix("10.0.2.0/24")));
  CHECK(a.routes.routes.at(prefix("10.0.2.0/24")).second);  // dev plexus_vxlan
  CHECK(a.entry("10.0.2.0/24")->tunnel_endpoint == ip("192.168.1.12"));
}
