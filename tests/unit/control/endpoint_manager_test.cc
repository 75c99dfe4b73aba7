#include <catch2/catch.hpp>

#include <algorithm>

#include "fakes.h"
#include "plexus/agent/endpoint_manager.h"
#include "plexus/agent/policy_manager.h"

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;

namespace {
struct Node {
  FakePodNetwork net;
  FakeEndpointMap map;
  FakeIpcacheMap ipcache_map;
  FakePolicyMap policy_map;
  FakeAgentStore store;
  IpcacheManager ipcache{ipcache_map};
  PolicyManager policy{policy_map, ipcache, [] { return std::map<uint32_t, std::vector<std::string>>{}; },
                       [](const EndpointRecord&) { return std::multimap<std::string, std::pair<uint16_t, uint8_t>>{}; }};
  Ipam ipam{prefix("10.0.0.0/24"), ip("10.0.0.1")};
  EndpointManager em{EndpointManagerDeps{net, map, ipcache, policy, store}, ipam, EndpointManagerConfig{1450},
                     [] { return int64_t{1700000000}; }};

  static AddRequest request(const std::string& container, const std::string& pod) {
    AddRequest r;
    r.container_id = container;
    r.netns = "/var/run/netns/" + container;
    r.ifname = "eth0";
    r.pod_namespace = "default";
    r.pod_name = pod;
    r.pod_uid = "uid-" + pod;
    return r;
  }
  size_t podEntries() const {
    return std::count_if(map.data.begin(), map.data.end(),
                         [&](const auto& kv) { return kv.first.ip != ipam.gateway().networkOrder(); });
  }
};

EndpointRecord storedRecord(uint16_t id, const std::string& container, const char* address,
                            const std::string& veth) {
  EndpointRecord r;
  r.id = id;
  r.container_id = container;
  r.ifname = "eth0";
  r.netns = "/var/run/netns/" + container;
  r.pod_namespace = "default";
  r.pod_name = "pod-" + container;
  r.ip = ip(address);
  r.host_ifname = veth;
  r.host_ifindex = 7;  // the previous run's ifindex
  r.identity = 300 + id;
  r.labels = {"k8s:app=p" + std::to_string(id)};
  return r;
}
}  // namespace

TEST_CASE("endpoints: add() installs the policy before the endpoints entry, then the ipcache statement",
          "[unit][endpoint-manager]") {
  Node n;
  std::vector<std::string> problems;
  REQUIRE(n.em.start(&problems).ok());
  CHECK(problems.empty());
  CHECK(n.net.prepared_gateway == ip("10.0.0.1"));
  CHECK(ipcacheEntry(n.ipcache_map, prefix("10.0.0.1/32")) == IpcacheEntry{kIdentityHost, {}});

  std::vector<bool> policy_present_at_write;
  n.map.on_update = [&](const plexus_endpoint_key&, const plexus_endpoint_value& v) {
    policy_present_at_write.push_back(n.policy_map.tries.count(v.ep_id) > 0);
  };
  auto rec = n.em.add(Node::request("c1", "web"), 300, {"k8s:app=web"});
  REQUIRE(rec.ok());
  CHECK(policy_present_at_write == std::vector<bool>{true});
  CHECK(rec->identity == 300);
  CHECK(n.ipam.addressOf("c1/eth0") == rec->ip);
  CHECK(n.net.created == std::vector<std::string>{rec->host_ifname});
  CHECK(n.net.specs.at(0).mtu == 1450);
  CHECK(n.net.specs.at(0).gateway == ip("10.0.0.1"));

  auto entry = endpointEntry(n.map, rec->ip);
  REQUIRE(entry);
  CHECK(entry->identity == 300);
  CHECK(entry->ep_id == rec->id);
  CHECK(entry->ifindex == static_cast<uint32_t>(rec->host_ifindex));
  CHECK(ipcacheEntry(n.ipcache_map, Ipv4Prefix(rec->ip, 32)) == IpcacheEntry{300, {}});
  CHECK(n.ipcache.winner(Ipv4Prefix(rec->ip, 32)) == IpcacheSource::kLocalEndpoint);
  REQUIRE(n.store.endpoints.count(rec->id));
  CHECK(n.store.endpoints.at(rec->id).identity == 300);
  REQUIRE(n.store.ipam);
  CHECK(n.store.ipam->allocations.count(rec->ip));
  CHECK(n.em.live("c1/eth0"));
  CHECK(n.em.check("c1", "eth0").ok());
  CHECK(n.em.check("c9", "eth0").error().code == ErrorCode::kNotFound);
}

TEST_CASE("endpoints: a failed pod network setup rolls everything back", "[unit][endpoint-manager]") {
  Node n;
  n.net.fail_next_creates = 1;
  auto rec = n.em.add(Node::request("c1", "web"), 300, {"k8s:app=web"});
  REQUIRE_FALSE(rec.ok());
  CHECK_FALSE(n.ipam.addressOf("c1/eth0"));
  REQUIRE(n.store.ipam);
  CHECK(n.store.ipam->allocations.empty());  // the freed address was persisted
  CHECK(n.map.data.empty());
  CHECK(n.ipcache_map.data.empty());
  CHECK(n.policy_map.tries.empty());
  CHECK(n.store.endpoints.empty());
  CHECK(n.em.list().empty());
}

TEST_CASE("endpoints: a failed endpoints map write rolls back veth, policy, ipcache and address",
          "[unit][endpoint-manager]") {
  Node n;
  n.map.fail_next_updates = 1;
  n.map.fail_code = ErrorCode::kResourceExhausted;
  auto rec = n.em.add(Node::request("c1", "web"), 300, {"k8s:app=web"});
  REQUIRE_FALSE(rec.ok());
  CHECK(rec.error().code == ErrorCode::kResourceExhausted);
  REQUIRE(n.net.created.size() == 1);
  CHECK(n.net.removed == n.net.created);
  CHECK(n.net.veths.empty());
  CHECK(n.policy_map.tries.empty());
  CHECK_FALSE(n.policy.endpointPolicy(1));
  CHECK(n.ipcache_map.data.empty());
  CHECK(n.ipcache.size() == 0);
  CHECK_FALSE(n.ipam.addressOf("c1/eth0"));
  CHECK(n.store.endpoints.empty());
  CHECK(n.em.list().empty());

  // The next attempt succeeds from a clean slate.
  REQUIRE(n.em.add(Node::request("c1", "web"), 300, {"k8s:app=web"}).ok());
  CHECK(n.podEntries() == 1);
}

TEST_CASE("endpoints: a failed ipcache write rolls back the ADD, leaving no statement behind",
          "[unit][endpoint-manager]") {
  Node n;
  n.ipcache_map.fail_next_updates = 1;
  auto rec = n.em.add(Node::request("c1", "web"), 300, {"k8s:app=web"});
  REQUIRE_FALSE(rec.ok());
  CHECK(n.map.data.empty());
  CHECK(n.ipcache.size() == 0);
  CHECK_FALSE(n.ipcache.pending());
  CHECK(n.ipcache_map.data.empty());
  CHECK(n.policy_map.tries.empty());
  CHECK(n.net.veths.empty());
  CHECK_FALSE(n.ipam.addressOf("c1/eth0"));
}

TEST_CASE("endpoints: a failed record write rolls back the ADD", "[unit][endpoint-manager]") {
  Node n;
  auto first = n.em.add(Node::request("c0", "other"), 300, {});
  REQUIRE(first.ok());
  // The IPAM write succeeds; the record write, which follows the endpoints map write, fails.
  n.map.on_update = [&](const plexus_endpoint_key&, const plexus_endpoint_value&) { n.store.fail_next_writes = 1; };
  auto rec = n.em.add(Node::request("c1", "web"), 301, {});
  REQUIRE_FALSE(rec.ok());
  n.map.on_update = nullptr;
  CHECK(n.podEntries() == 1);
  CHECK(n.store.endpoints.size() == 1);
  CHECK_FALSE(n.ipam.addressOf("c1/eth0"));
  CHECK(n.em.list().size() == 1);
  CHECK(n.policy_map.tries.size() == 1);
  CHECK(n.ipcache_map.data.size() == 1);
}

TEST_CASE("endpoints: del() of an unknown attachment succeeds and cleans leftovers; del() of a known one "
          "removes everything",
          "[unit][endpoint-manager]") {
  Node n;
  auto leaked = n.ipam.allocate("ghost/eth0", std::nullopt);
  REQUIRE(leaked.ok());
  auto gone = n.em.del("ghost", "eth0");
  REQUIRE(gone.ok());
  CHECK_FALSE(gone->has_value());
  CHECK_FALSE(n.ipam.addressOf("ghost/eth0"));
  CHECK(n.net.removed == std::vector<std::string>{hostIfname("ghost", "eth0")});

  auto rec = n.em.add(Node::request("c1", "web"), 300, {});
  REQUIRE(rec.ok());
  auto removed = n.em.del("c1", "eth0");
  REQUIRE(removed.ok());
  REQUIRE(removed->has_value());
  CHECK((*removed)->id == rec->id);
  CHECK(n.map.data.empty());
  CHECK(n.ipcache_map.data.empty());
  CHECK(n.policy_map.tries.empty());
  CHECK(n.store.endpoints.empty());
  CHECK(n.net.veths.empty());
  CHECK_FALSE(n.ipam.addressOf("c1/eth0"));
  // Twice is fine.
  CHECK(n.em.del("c1", "eth0").ok());
}

TEST_CASE("endpoints: gc() removes endpoints and allocations of owners no longer valid",
          "[unit][endpoint-manager]") {
  Node n;
  auto a = n.em.add(Node::request("c1", "a"), 300, {});
  auto b = n.em.add(Node::request("c2", "b"), 301, {});
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(n.ipam.allocate("leak/eth0", std::nullopt).ok());
  uint32_t released = 0;
  auto removed = n.em.gc({"c1/eth0"}, &released);
  REQUIRE(removed.size() == 1);
  CHECK(removed[0].id == b->id);
  CHECK(released == 2);
  CHECK(n.em.list().size() == 1);
  CHECK(n.ipam.addressOf("c1/eth0"));
  CHECK_FALSE(n.ipam.addressOf("c2/eth0"));
  CHECK_FALSE(n.ipam.addressOf("leak/eth0"));
  CHECK_FALSE(endpointEntry(n.map, b->ip));
  CHECK(endpointEntry(n.map, a->ip));
  CHECK_FALSE(ipcacheEntry(n.ipcache_map, Ipv4Prefix(b->ip, 32)));
  CHECK(n.store.endpoints.size() == 1);
  CHECK_FALSE(n.store.ipam->allocations.count(b->ip));
}

TEST_CASE("endpoints: start() re-adopts live endpoints, cleans up vanished ones and stale map entries",
          "[unit][endpoint-manager]") {
  Node n;
  auto r1 = storedRecord(1, "c1", "10.0.0.10", "lxcA");
  auto r2 = storedRecord(2, "c2", "10.0.0.11", "lxcB");
  auto r3 = storedRecord(3, "c3", "10.0.0.12", "lxcC");
  for (const auto& r : {r1, r2, r3}) {
    n.store.endpoints[r.id] = r;
  }
  IpamSnapshot snap;
  snap.cidr = "10.0.0.0/24";
  snap.allocations = {{r1.ip, r1.owner()}, {r2.ip, r2.owner()}, {r3.ip, r3.owner()}};
  snap.last = r3.ip;
  CHECK(n.ipam.restore(snap).empty());
  n.net.veths = {"lxcA", "lxcB"};
  // The previous run's entries, one of them stale (a crash mid-DEL), one with an old ifindex.
  REQUIRE(n.map.update(encodeEndpointKey(r1.ip), encodeEndpointValue(r1)).ok());
  EndpointRecord stale = storedRecord(9, "c9", "10.0.0.99", "lxcZ");
  REQUIRE(n.map.update(encodeEndpointKey(stale.ip), encodeEndpointValue(stale)).ok());

  std::vector<std::string> problems;
  REQUIRE(n.em.start(&problems).ok());
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("lxcC") != std::string::npos);

  auto list = n.em.list();
  REQUIRE(list.size() == 2);
  CHECK(list[0].id == 1);
  CHECK(list[1].id == 2);
  CHECK(list[0].identity == 301);  // the identity the record holds
  std::sort(n.net.attached.begin(), n.net.attached.end());
  CHECK(n.net.attached == std::vector<std::string>{"lxcA", "lxcB"});
  // Entries rewritten with the new ifindex.
  for (const auto& rec : list) {
    auto e = endpointEntry(n.map, rec.ip);
    REQUIRE(e);
    CHECK(e->ifindex == static_cast<uint32_t>(rec.host_ifindex));
    CHECK(rec.host_ifindex != 7);
    CHECK(e->identity == rec.identity);
    CHECK(ipcacheEntry(n.ipcache_map, Ipv4Prefix(rec.ip, 32)) == IpcacheEntry{rec.identity, {}});
    CHECK(n.policy_map.tries.count(rec.id));
  }
  CHECK_FALSE(endpointEntry(n.map, stale.ip));
  CHECK_FALSE(endpointEntry(n.map, r3.ip));
  CHECK(endpointEntry(n.map, ip("10.0.0.1")));  // the gateway
  CHECK(n.map.data.size() == 3);
  // The vanished endpoint: record removed, address released (and persisted).
  CHECK_FALSE(n.store.endpoints.count(3));
  CHECK(n.store.endpoints.size() == 2);
  CHECK_FALSE(n.ipam.addressOf("c3/eth0"));
  REQUIRE(n.store.ipam);
  CHECK_FALSE(n.store.ipam->allocations.count(r3.ip));
  CHECK(n.store.ipam->allocations.count(r1.ip));
  // A new endpoint gets a free id, not one of the adopted ones.
  auto rec = n.em.add(Node::request("c4", "new"), 300, {});
  REQUIRE(rec.ok());
  CHECK(rec->id == 3);
  CHECK(rec->ip != r1.ip);
  CHECK(rec->ip != r2.ip);
}

TEST_CASE("endpoints: updateIdentity() rewrites the endpoints entry, the ipcache and the record",
          "[unit][endpoint-manager]") {
  Node n;
  auto rec = n.em.add(Node::request("c1", "web"), kIdentityInit, {});
  REQUIRE(rec.ok());
  CHECK(endpointEntry(n.map, rec->ip)->identity == kIdentityInit);
  REQUIRE(n.em.updateIdentity(rec->id, 300, {"k8s:app=web"}).ok());
  CHECK(endpointEntry(n.map, rec->ip)->identity == 300);
  CHECK(ipcacheEntry(n.ipcache_map, Ipv4Prefix(rec->ip, 32)) == IpcacheEntry{300, {}});
  CHECK(n.store.endpoints.at(rec->id).identity == 300);
  CHECK(n.store.endpoints.at(rec->id).labels == std::vector<std::string>{"k8s:app=web"});
  CHECK(n.em.get(rec->id)->identity == 300);

  // A failed endpoints write changes nothing.
  n.map.fail_next_updates = 1;
  CHECK_FALSE(n.em.updateIdentity(rec->id, 301, {}).ok());
  CHECK(endpointEntry(n.map, rec->ip)->identity == 300);
  CHECK(n.em.get(rec->id)->identity == 300);
  CHECK(ipcacheEntry(n.ipcache_map, Ipv4Prefix(rec->ip, 32)) == IpcacheEntry{300, {}});

  // A failed ipcache write leaves a pending statement the ipcache owner retries.
  n.ipcache_map.fail_next_updates = 1;
  REQUIRE(n.em.updateIdentity(rec->id, 302, {}).ok());
  CHECK(endpointEntry(n.map, rec->ip)->identity == 302);
  CHECK(n.ipcache.pending());
  REQUIRE(n.ipcache.reconcile().ok());
  CHECK(ipcacheEntry(n.ipcache_map, Ipv4Prefix(rec->ip, 32)) == IpcacheEntry{302, {}});

  CHECK(n.em.updateIdentity(999, 300, {}).error().code == ErrorCode::kNotFound);
}

TEST_CASE("endpoints: a repeated ADD after the veth vanished replaces the stale endpoint",
          "[unit][endpoint-manager]") {
  Node n;
  auto first = n.em.add(Node::request("c1", "web"), 300, {});
  REQUIRE(first.ok());
  n.net.veths.clear();  // someone deleted the veth
  CHECK_FALSE(n.em.live("c1/eth0"));
  auto second = n.em.add(Node::request("c1", "web"), 300, {});
  REQUIRE(second.ok());
  CHECK(n.em.list().size() == 1);
  CHECK(n.podEntries() == 1);
  CHECK(endpointEntry(n.map, second->ip));
  CHECK(n.store.endpoints.size() == 1);
}
