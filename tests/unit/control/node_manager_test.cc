#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "fakes.h"
#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/identity_manager.h"
#include "plexus/agent/ipcache_manager.h"
#include "plexus/agent/node_manager.h"
#include "plexus/agent/resource_state.h"

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;

namespace {

nlohmann::json nodeJson(const std::string& name, const std::string& cidr, const std::string& address) {
  return {{"apiVersion", "v1"},
          {"kind", "Node"},
          {"metadata", {{"name", name}}},
          {"spec", {{"podCIDR", cidr}}},
          {"status", {{"addresses", {{{"type", "InternalIP"}, {"address", address}}}}}}};
}
nlohmann::json namespaceJson() {
  return {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "default"}}}};
}
// node / pod_ip empty: left out of the manifest.
nlohmann::json podJson(const std::string& name, const std::string& app, const std::string& node,
                       const std::string& pod_ip) {
  nlohmann::json spec = {{"containers", {{{"name", "c"}, {"image", "nginx"}}}}};
  if (!node.empty()) {
    spec["nodeName"] = node;
  }
  nlohmann::json pod = {{"apiVersion", "v1"},
                        {"kind", "Pod"},
                        {"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", app}}}}},
                        {"spec", spec}};
  if (!pod_ip.empty()) {
    pod["status"] = {{"podIP", pod_ip}};
  }
  return pod;
}

// This node is n1 (10.0.1.0/24 via 192.168.1.11); the others n2 and n3.
struct World {
  FakeIpcacheMap ipcache_map;
  FakeAgentStore store;
  FakeNodeRoutes routes;
  ResourceState resources{store};
  IdentityManager identities{store, nullptr};
  IpcacheManager ipcache{ipcache_map};
  FlowDirectory flows;
  std::unique_ptr<NodeManager> nodes;

  explicit World(node::RoutingMode mode, bool auto_routes = true, std::set<ResourceKind> sync_kinds = {}) {
    REQUIRE(identities.restore().ok());
    nodes = std::make_unique<NodeManager>(NodeManagerConfig{"n1", mode, auto_routes, std::move(sync_kinds)},
                                          ipcache, identities, resources, &routes, &flows);
  }

  // Applies through the resource state and hands the changes to the node manager; returns how many it took.
  int apply(const std::vector<nlohmann::json>& objects) {
    std::vector<ResourceEvent> changed;
    for (const auto& o : resources.apply(objects, &changed)) {
      REQUIRE(o.action != ApplyAction::kRejected);
    }
    return track(changed);
  }
  int remove(const std::vector<nlohmann::json>& objects) {
    std::vector<ResourceEvent> changed;
    resources.remove(objects, &changed);
    REQUIRE(changed.size() == objects.size());
    return track(changed);
  }
  int track(const std::vector<ResourceEvent>& events) {
    int n = 0;
    for (const auto& e : events) {
      n += nodes->track(e) ? 1 : 0;
    }
    return n;
  }
  void sync() {
    REQUIRE(nodes->sync().ok());
    CHECK_FALSE(nodes->pending());
  }
  void threeNodes() {
    apply({nodeJson("n1", "10.0.1.0/24", "192.168.1.11"), nodeJson("n2", "10.0.2.0/24", "192.168.1.12"),
           nodeJson("n3", "10.0.3.0/24", "192.168.1.13")});
  }
  std::optional<IpcacheEntry> entry(const char* p) const { return ipcacheEntry(ipcache_map, prefix(p)); }
  bool named(const char* address) const {
    PeerInfo info;
    return flows.lookupEndpoint(ip(address), &info);
  }
};

}  // namespace

TEST_CASE("nodes, native with auto-direct-node-routes: routes via each other node's address, node entries",
          "[unit][node-manager]") {
  World w(node::RoutingMode::kNative, true);
  w.threeNodes();
  w.sync();

  // n2 and n3, not self.
  REQUIRE(w.routes.calls.size() == 2);
  CHECK(w.routes.count("replace") == 2);
  REQUIRE(w.routes.routes.size() == 2);
  CHECK(w.routes.routes.at(prefix("10.0.2.0/24")) == std::make_pair(ip("192.168.1.12"), false));
  CHECK(w.routes.routes.at(prefix("10.0.3.0/24")) == std::make_pair(ip("192.168.1.13"), false));
  CHECK_FALSE(w.routes.routes.count(prefix("10.0.1.0/24")));

  for (auto [node_ip, cidr] : {std::pair{"192.168.1.12", "10.0.2.0/24"}, {"192.168.1.13", "10.0.3.0/24"}}) {
    INFO(cidr);
    std::string address = std::string(node_ip) + "/32";
    auto node = w.entry(address.c_str());
    REQUIRE(node);
    CHECK(node->identity == identity::kRemoteNode);
    CHECK(node->identity == 6u);
    CHECK(node->tunnel_endpoint == Ipv4{});
    CHECK(w.ipcache.winner(prefix(address.c_str())) == IpcacheSource::kNode);
    auto pods = w.entry(cidr);
    REQUIRE(pods);
    CHECK(pods->identity == 0u);
    CHECK(pods->tunnel_endpoint == ip(node_ip));
    CHECK(w.ipcache.winner(prefix(cidr)) == IpcacheSource::kNode);
  }
  // Self is no remote node.
  CHECK_FALSE(w.entry("192.168.1.11/32"));
  CHECK_FALSE(w.entry("10.0.1.0/24"));
  CHECK(w.nodes->nodes().size() == 3);
}

TEST_CASE("nodes, native without auto routes: no routes, ipcache entries still written", "[unit][node-manager]") {
  World w(node::RoutingMode::kNative, false);
  w.threeNodes();
  w.sync();
  CHECK(w.routes.calls.empty());
  REQUIRE(w.entry("192.168.1.12/32"));
  CHECK(w.entry("192.168.1.12/32")->identity == identity::kRemoteNode);
  REQUIRE(w.entry("10.0.3.0/24"));
  CHECK(w.entry("10.0.3.0/24")->tunnel_endpoint == ip("192.168.1.13"));
}

TEST_CASE("nodes, tunnel mode: routes into the tunnel", "[unit][node-manager]") {
  World w(node::RoutingMode::kTunnel, false);
  w.threeNodes();
  w.sync();
  REQUIRE(w.routes.calls.size() == 2);
  for (const auto& c : w.routes.calls) {
    CHECK(c.op == "replace");
    CHECK(c.tunnel);
  }
  CHECK(w.routes.routes.count(prefix("10.0.2.0/24")));
  CHECK(w.routes.routes.count(prefix("10.0.3.0/24")));
  CHECK(w.entry("10.0.2.0/24")->tunnel_endpoint == ip("192.168.1.12"));
}

TEST_CASE("nodes: an address change replaces the route, a CIDR change removes the old one and adds the new",
          "[unit][node-manager]") {
  World w(node::RoutingMode::kNative, true);
  w.threeNodes();
  w.sync();
  w.routes.calls.clear();

  REQUIRE(w.apply({nodeJson("n2", "10.0.2.0/24", "192.168.1.22")}) == 1);
  CHECK(w.nodes->pending());
  w.sync();
  REQUIRE(w.routes.calls.size() == 1);
  CHECK(w.routes.calls[0].op == "replace");
  CHECK(w.routes.calls[0].dst == prefix("10.0.2.0/24"));
  CHECK(w.routes.calls[0].via == ip("192.168.1.22"));
  CHECK(w.routes.routes.at(prefix("10.0.2.0/24")).first == ip("192.168.1.22"));
  // The node entries follow the address.
  CHECK_FALSE(w.entry("192.168.1.12/32"));
  REQUIRE(w.entry("192.168.1.22/32"));
  CHECK(w.entry("10.0.2.0/24")->tunnel_endpoint == ip("192.168.1.22"));

  w.routes.calls.clear();
  REQUIRE(w.apply({nodeJson("n3", "10.0.33.0/24", "192.168.1.13")}) == 1);
  w.sync();
  REQUIRE(w.routes.calls.size() == 2);
  CHECK(w.routes.count("remove") == 1);
  CHECK(w.routes.count("replace") == 1);
  CHECK_FALSE(w.routes.routes.count(prefix("10.0.3.0/24")));
  CHECK(w.routes.routes.at(prefix("10.0.33.0/24")) == std::make_pair(ip("192.168.1.13"), false));
  CHECK_FALSE(w.entry("10.0.3.0/24"));
  REQUIRE(w.entry("10.0.33.0/24"));
  CHECK(w.entry("10.0.33.0/24")->tunnel_endpoint == ip("192.168.1.13"));
}

TEST_CASE("nodes: a deleted node takes its route, its entries and its pods' entries and names with it",
          "[unit][node-manager]") {
  World w(node::RoutingMode::kNative, true);
  w.threeNodes();
  w.apply({namespaceJson(), podJson("r2", "web", "n2", "10.0.2.5"), podJson("r3", "web", "n3", "10.0.3.5")});
  w.sync();
  REQUIRE(w.entry("10.0.2.5/32"));
  REQUIRE(w.named("10.0.2.5"));
  w.routes.calls.clear();

  REQUIRE(w.remove({nodeJson("n2", "10.0.2.0/24", "192.168.1.12")}) == 1);
  w.sync();
  REQUIRE(w.routes.calls.size() == 1);
  CHECK(w.routes.calls[0].op == "remove");
  CHECK(w.routes.calls[0].dst == prefix("10.0.2.0/24"));
  CHECK_FALSE(w.routes.routes.count(prefix("10.0.2.0/24")));
  CHECK_FALSE(w.entry("192.168.1.12/32"));
  CHECK_FALSE(w.entry("10.0.2.0/24"));
  CHECK_FALSE(w.entry("10.0.2.5/32"));
  CHECK_FALSE(w.ipcache.winner(prefix("10.0.2.5/32")));
  CHECK_FALSE(w.named("10.0.2.5"));
  // The other node and its pod stay.
  CHECK(w.routes.routes.count(prefix("10.0.3.0/24")));
  REQUIRE(w.entry("10.0.3.5/32"));
  CHECK(w.named("10.0.3.5"));
  CHECK(w.nodes->nodes().size() == 2);

  // The node back: its pod (still known) gets its entry and name again.
  REQUIRE(w.apply({nodeJson("n2", "10.0.2.0/24", "192.168.1.12")}) == 1);
  w.sync();
  REQUIRE(w.entry("10.0.2.5/32"));
  CHECK(w.entry("10.0.2.5/32")->tunnel_endpoint == ip("192.168.1.12"));
  CHECK(w.named("10.0.2.5"));
}

TEST_CASE("remote pods: ipcache entry with their identity and node, flow names; others ignored",
          "[unit][node-manager]") {
  World w(node::RoutingMode::kTunnel, false);
  w.threeNodes();
  w.apply({namespaceJson()});
  REQUIRE(w.apply({podJson("r2", "web", "n2", "10.0.2.5")}) == 1);
  w.sync();

  auto labels = w.resources.podIdentityLabels("default", "r2");
  REQUIRE_FALSE(labels.empty());
  auto id = w.identities.local().find(labels);
  REQUIRE(id);
  CHECK(*id >= identity::kFirstClusterIdentity);
  CHECK(*id <= identity::kLastClusterIdentity);
  // Hashed: another node's standalone manager gives the same labels the same number.
  FakeAgentStore other_store;
  IdentityManager other(other_store, nullptr);
  CHECK(other.acquire(labels) == *id);

  auto e = w.entry("10.0.2.5/32");
  REQUIRE(e);
  CHECK(e->identity == *id);
  CHECK(e->tunnel_endpoint == ip("192.168.1.12"));
  CHECK(w.ipcache.winner(prefix("10.0.2.5/32")) == IpcacheSource::kRemoteEndpoint);
  PeerInfo info;
  REQUIRE(w.flows.lookupEndpoint(ip("10.0.2.5"), &info));
  CHECK(info.pod_namespace == "default");
  CHECK(info.pod_name == "r2");
  CHECK(std::vector<std::string>(labels.begin(), labels.end()) == info.labels);

  SECTION("pods on this node, without a node or without an address are ignored") {
    size_t before = w.identities.local().size();
    CHECK(w.apply({podJson("local", "db", "n1", "10.0.1.5")}) == 0);
    CHECK(w.apply({podJson("nonode", "db", "", "10.0.9.5")}) == 0);
    CHECK(w.apply({podJson("noip", "db", "n3", "")}) == 0);
    w.sync();
    CHECK_FALSE(w.entry("10.0.1.5/32"));
    CHECK_FALSE(w.entry("10.0.9.5/32"));
    CHECK_FALSE(w.named("10.0.1.5"));
    CHECK_FALSE(w.named("10.0.9.5"));
    CHECK(w.identities.local().size() == before);
    CHECK_FALSE(w.nodes->isRemotePod(podJson("local", "db", "n1", "10.0.1.5")));
    CHECK_FALSE(w.nodes->isRemotePod(podJson("nonode", "db", "", "10.0.9.5")));
    CHECK(w.nodes->isRemotePod(podJson("noip", "db", "n3", "")));
  }
  SECTION("deleting the pod releases its identity and removes its entry and name") {
    size_t before = w.identities.local().size();
    REQUIRE(w.remove({podJson("r2", "web", "n2", "10.0.2.5")}) == 1);
    w.sync();
    CHECK(w.identities.local().size() == before - 1);
    CHECK_FALSE(w.identities.local().find(labels));
    CHECK_FALSE(w.entry("10.0.2.5/32"));
    CHECK_FALSE(w.named("10.0.2.5"));
  }
  SECTION("a label change moves it to another identity and releases the old one") {
    REQUIRE(w.apply({podJson("r2", "api", "n2", "10.0.2.5")}) == 1);
    w.sync();
    auto new_labels = w.resources.podIdentityLabels("default", "r2");
    REQUIRE(new_labels != labels);
    auto new_id = w.identities.local().find(new_labels);
    REQUIRE(new_id);
    CHECK(*new_id != *id);
    CHECK_FALSE(w.identities.local().find(labels));
    REQUIRE(w.entry("10.0.2.5/32"));
    CHECK(w.entry("10.0.2.5/32")->identity == *new_id);
    CHECK(w.entry("10.0.2.5/32")->tunnel_endpoint == ip("192.168.1.12"));
  }
  SECTION("two remote pods with equal labels share one identity, one reference each") {
    REQUIRE(w.apply({podJson("r3", "web", "n3", "10.0.3.5")}) == 1);
    w.sync();
    REQUIRE(w.entry("10.0.3.5/32"));
    CHECK(w.entry("10.0.3.5/32")->identity == *id);
    CHECK(w.entry("10.0.3.5/32")->tunnel_endpoint == ip("192.168.1.13"));
    CHECK(w.identities.local().refcount(*id) == 2);
    w.remove({podJson("r2", "web", "n2", "10.0.2.5")});
    w.sync();
    CHECK(w.identities.local().find(labels) == id);  // r3 still holds it
    CHECK(w.entry("10.0.3.5/32"));
  }
}

TEST_CASE("nodes: a route write that fails stays pending and the next sync installs it", "[unit][node-manager]") {
  World w(node::RoutingMode::kNative, true);
  w.routes.fail_next_replaces = 1;
  w.apply({nodeJson("n2", "10.0.2.0/24", "192.168.1.12")});
  CHECK_FALSE(w.nodes->sync().ok());
  CHECK(w.nodes->pending());
  CHECK(w.routes.routes.empty());

  REQUIRE(w.nodes->sync().ok());
  CHECK_FALSE(w.nodes->pending());
  CHECK(w.routes.routes.at(prefix("10.0.2.0/24")) == std::make_pair(ip("192.168.1.12"), false));
  REQUIRE(w.entry("10.0.2.0/24"));

  // Nothing changed since: no more writes.
  size_t calls = w.routes.calls.size();
  REQUIRE(w.nodes->sync().ok());
  CHECK(w.routes.calls.size() == calls);
}

TEST_CASE("nodes: the same Node applied twice writes its route once", "[unit][node-manager]") {
  World w(node::RoutingMode::kNative, true);
  auto n2 = nodeJson("n2", "10.0.2.0/24", "192.168.1.12");
  std::vector<ResourceEvent> changed;
  w.resources.apply({n2}, &changed);
  REQUIRE(changed.size() == 1);
  REQUIRE(w.track(changed) == 1);
  w.sync();
  CHECK(w.routes.count("replace") == 1);

  // Through the resource state (unchanged: no event) and as a repeated watch event (no change in the table).
  CHECK(w.apply({n2}) == 0);
  CHECK(w.track(changed) == 0);
  CHECK_FALSE(w.nodes->pending());
  w.sync();
  CHECK(w.routes.count("replace") == 1);
  CHECK(w.routes.calls.size() == 1);
}

TEST_CASE("nodes: routes an earlier run left are adopted; those no node wants go once the node table is complete",
          "[unit][node-manager]") {
  const Ipv4 none{};
  SECTION("standalone: the restored state is complete at once") {
    World w(node::RoutingMode::kNative);
    w.routes.routes[prefix("10.0.2.0/24")] = {ip("192.168.1.12"), false};  // n2, still a node
    w.routes.routes[prefix("10.0.9.0/24")] = {ip("192.168.1.19"), false};  // n9, deleted meanwhile
    REQUIRE(w.nodes->restore().ok());
    w.threeNodes();
    w.sync();
    CHECK(w.routes.routes.count(prefix("10.0.2.0/24")));
    CHECK(w.routes.routes.count(prefix("10.0.3.0/24")));
    CHECK_FALSE(w.routes.routes.count(prefix("10.0.9.0/24")));
    CHECK(w.routes.count("remove") == 1);
  }
  SECTION("kubernetes: nothing goes before the Node listing is complete; a failed removal is retried") {
    World w(node::RoutingMode::kTunnel, false, {ResourceKind::kNode});
    w.routes.routes[prefix("10.0.9.0/24")] = {none, true};
    REQUIRE(w.nodes->restore().ok());
    CHECK(w.nodes->pending());
    w.threeNodes();
    w.sync();
    CHECK(w.routes.routes.count(prefix("10.0.9.0/24")));  // the listing may still bring n9
    CHECK(w.routes.count("remove") == 0);
    CHECK_FALSE(w.nodes->track(ResourceEvent{ResourceEventType::kSynced, {ResourceKind::kPod, "", ""}, nullptr}));
    w.routes.fail_next_removes = 1;
    CHECK(w.nodes->track(ResourceEvent{ResourceEventType::kSynced, {ResourceKind::kNode, "", ""}, nullptr}));
    CHECK_FALSE(w.nodes->sync().ok());
    CHECK(w.nodes->pending());
    CHECK(w.routes.routes.count(prefix("10.0.9.0/24")));
    w.sync();
    CHECK_FALSE(w.routes.routes.count(prefix("10.0.9.0/24")));
    CHECK(w.routes.routes.count(prefix("10.0.2.0/24")));
  }
  SECTION("native without direct routes: every route of an earlier run goes") {
    World w(node::RoutingMode::kNative, false);
    w.routes.routes[prefix("10.0.2.0/24")] = {ip("192.168.1.12"), false};
    REQUIRE(w.nodes->restore().ok());
    w.threeNodes();
    w.sync();
    CHECK(w.routes.routes.empty());
  }
}
