#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <set>
#include <string>

#include "plexus/identity.h"
#include "plexus/node/node_table.h"
#include "plexus/node/routes.h"

using namespace plexus;
using namespace plexus::node;

namespace {
Ipv4 ip(const char* s) { return *Ipv4::parse(s); }
Ipv4Prefix cidr(const char* s) { return *Ipv4Prefix::parse(s); }

Node makeNode(const std::string& name, std::vector<const char*> ips, std::vector<const char*> cidrs) {
  Node n;
  n.name = name;
  for (const char* a : ips) {
    n.internal_ips.push_back(ip(a));
  }
  for (const char* c : cidrs) {
    n.pod_cidrs.push_back(cidr(c));
  }
  return n;
}

RouteSpec route(const char* dst, const char* via) { return {cidr(dst), ip(via)}; }
TunnelEntry tunnel(const char* dst, const char* endpoint) { return {cidr(dst), ip(endpoint)}; }

// The table as an agent would keep it, and the installed sets an adapter would have applied.
struct Cluster {
  NodeTable table{"n1"};
  std::vector<RouteSpec> routes;
  std::vector<TunnelEntry> tunnels;

  // Recomputes both plans, checks they reach the desired state, and "installs" them.
  std::pair<RoutePlan, TunnelPlan> sync() {
    auto want_routes = desiredRoutes(table.list(), table.self());
    auto want_tunnels = desiredTunnelEntries(table.list(), table.self());
    auto rp = diffRoutes(routes, want_routes);
    auto tp = diffTunnelEntries(tunnels, want_tunnels);
    routes = applyRoutePlan(routes, rp);
    tunnels = applyTunnelPlan(tunnels, tp);
    CHECK(routes == want_routes);
    CHECK(tunnels == want_tunnels);
    return {rp, tp};
  }
};
}  // namespace

TEST_CASE("Route and tunnel plans follow nodes joining, moving and leaving", "[unit][routes]") {
  Cluster c;
  (void)c.table.upsert(makeNode("n1", {"192.168.1.11"}, {"10.0.1.0/24"}));  // self
  auto [rp0, tp0] = c.sync();
  CHECK(rp0.empty());  // self is never routed
  CHECK(tp0.empty());

  (void)c.table.upsert(makeNode("n2", {"192.168.1.12"}, {"10.0.2.0/24"}));
  auto [rp1, tp1] = c.sync();
  CHECK(rp1.add == std::vector<RouteSpec>{route("10.0.2.0/24", "192.168.1.12")});
  CHECK(rp1.remove.empty());
  CHECK(tp1.add == std::vector<TunnelEntry>{tunnel("10.0.2.0/24", "192.168.1.12")});
  CHECK(tp1.remove.empty());

  SECTION("a changed address removes the old route and adds the new one; the tunnel entry is overwritten") {
    (void)c.table.upsert(makeNode("n2", {"192.168.1.22"}, {"10.0.2.0/24"}));
    auto [rp, tp] = c.sync();
    CHECK(rp.add == std::vector<RouteSpec>{route("10.0.2.0/24", "192.168.1.22")});
    CHECK(rp.remove == std::vector<RouteSpec>{route("10.0.2.0/24", "192.168.1.12")});
    CHECK(tp.add == std::vector<TunnelEntry>{tunnel("10.0.2.0/24", "192.168.1.22")});
    CHECK(tp.remove.empty());
  }
  SECTION("a changed pod CIDR swaps the route and the tunnel entry") {
    (void)c.table.upsert(makeNode("n2", {"192.168.1.12"}, {"10.0.22.0/24"}));
    auto [rp, tp] = c.sync();
    CHECK(rp.add == std::vector<RouteSpec>{route("10.0.22.0/24", "192.168.1.12")});
    CHECK(rp.remove == std::vector<RouteSpec>{route("10.0.2.0/24", "192.168.1.12")});
    CHECK(tp.add == std::vector<TunnelEntry>{tunnel("10.0.22.0/24", "192.168.1.12")});
    CHECK(tp.remove == std::vector<TunnelEntry>{tunnel("10.0.2.0/24", "192.168.1.12")});
  }
  SECTION("a deleted node takes its route and tunnel entry with it") {
    (void)c.table.remove("n2");
    auto [rp, tp] = c.sync();
    CHECK(rp.add.empty());
    CHECK(rp.remove == std::vector<RouteSpec>{route("10.0.2.0/24", "192.168.1.12")});
    CHECK(tp.remove == std::vector<TunnelEntry>{tunnel("10.0.2.0/24", "192.168.1.12")});
    CHECK(c.routes.empty());
  }
  SECTION("a node losing its InternalIP becomes unreachable: its route goes") {
    (void)c.table.upsert(makeNode("n2", {}, {"10.0.2.0/24"}));
    auto [rp, tp] = c.sync();
    CHECK(rp.remove.size() == 1);
    CHECK(tp.remove.size() == 1);
  }
  SECTION("an unchanged cluster gives empty plans") {
    auto [rp, tp] = c.sync();
    CHECK(rp.empty());
    CHECK(tp.empty());
  }
}

TEST_CASE("Desired routes: every CIDR via the first InternalIP, self and address-less nodes excluded",
          "[unit][routes]") {
  std::vector<Node> nodes = {
      makeNode("n3", {"192.168.1.13", "10.9.0.13"}, {"10.0.3.0/24", "10.1.3.0/24"}),
      makeNode("n1", {"192.168.1.11"}, {"10.0.1.0/24"}),
      makeNode("n4", {}, {"10.0.4.0/24"}),
      makeNode("n2", {"192.168.1.12"}, {}),
  };
  CHECK(desiredRoutes(nodes, "n1") == std::vector<RouteSpec>{route("10.0.3.0/24", "192.168.1.13"),
                                                            route("10.1.3.0/24", "192.168.1.13")});
  CHECK(desiredTunnelEntries(nodes, "n1") == std::vector<TunnelEntry>{tunnel("10.0.3.0/24", "192.168.1.13"),
                                                                     tunnel("10.1.3.0/24", "192.168.1.13")});
  // Viewed from n3, n1 is remote and n3's own CIDRs are not.
  CHECK(desiredRoutes(nodes, "n3") == std::vector<RouteSpec>{route("10.0.1.0/24", "192.168.1.11")});
  CHECK(toString(route("10.0.1.0/24", "192.168.1.11")) == "10.0.1.0/24 via 192.168.1.11");
  CHECK(toString(tunnel("10.0.1.0/24", "192.168.1.11")) == "10.0.1.0/24 -> 192.168.1.11");
}

TEST_CASE("A pod CIDR claimed twice goes to self, else to the smaller name, and the conflict is reported",
          "[unit][routes]") {
  std::vector<Node> nodes = {
      makeNode("n1", {"192.168.1.11"}, {"10.0.1.0/24"}),
      makeNode("old-n5", {"192.168.1.15"}, {"10.0.5.0/24"}),
      makeNode("n5", {"192.168.1.25"}, {"10.0.5.0/24", "10.0.1.0/24"}),
  };
  CHECK(desiredRoutes(nodes, "n1") == std::vector<RouteSpec>{route("10.0.5.0/24", "192.168.1.25")});
  CHECK(podCidrConflicts(nodes, "n1") ==
        std::vector<CidrConflict>{{cidr("10.0.1.0/24"), "n1", "n5"}, {cidr("10.0.5.0/24"), "n5", "old-n5"}});
  std::vector<Node> reversed(nodes.rbegin(), nodes.rend());
  CHECK(desiredRoutes(reversed, "n1") == desiredRoutes(nodes, "n1"));
  CHECK(podCidrConflicts(reversed, "n1") == podCidrConflicts(nodes, "n1"));
}

TEST_CASE("Remote nodes contribute remote-node /32s and endpoint-carrying pod CIDRs to the ipcache",
          "[unit][routes]") {
  auto n = makeNode("n2", {"192.168.1.12", "10.9.0.12"}, {"10.0.2.0/24"});
  auto entries = nodeIpcacheEntries(n);
  std::vector<IpcacheContribution> expected = {
      {cidr("10.0.2.0/24"), PLEXUS_IDENTITY_UNKNOWN, ip("192.168.1.12")},
      {cidr("10.9.0.12/32"), PLEXUS_IDENTITY_REMOTE_NODE, std::nullopt},
      {cidr("192.168.1.12/32"), PLEXUS_IDENTITY_REMOTE_NODE, std::nullopt},
  };
  CHECK(entries == expected);
  CHECK(PLEXUS_IDENTITY_REMOTE_NODE == 6);
  CHECK(nodeIpcacheEntries(makeNode("n4", {}, {"10.0.4.0/24"})).empty());
}

namespace {
template <typename T>
std::vector<T> sortedSet(const std::vector<T>& v) {
  std::set<T> s(v.begin(), v.end());
  return {s.begin(), s.end()};
}
}  // namespace

// Property: for random installed/desired sets, applying diff(installed, desired) to installed gives desired,
// the plan is minimal (nothing added that was installed, nothing removed that is desired), sorted, and
// diffing desired against itself is empty.
TEST_CASE("Route diffs applied to the installed set give the desired set", "[unit][routes]") {
  std::mt19937 rng(42);
  auto randomRoutes = [&]() {
    std::vector<RouteSpec> v(rng() % 12);
    for (auto& r : v) {
      r = {Ipv4Prefix(Ipv4(0x0A000000u + (rng() % 8) * 256), 24), Ipv4(0xC0A80100u + rng() % 3)};
    }
    return v;
  };
  for (int i = 0; i < 500; ++i) {
    auto installed = randomRoutes();
    auto desired = randomRoutes();
    auto plan = diffRoutes(installed, desired);
    CHECK(applyRoutePlan(installed, plan) == sortedSet(desired));
    CHECK(std::is_sorted(plan.add.begin(), plan.add.end()));
    CHECK(std::is_sorted(plan.remove.begin(), plan.remove.end()));
    for (const auto& r : plan.add) {
      CHECK(std::find(installed.begin(), installed.end(), r) == installed.end());
    }
    for (const auto& r : plan.remove) {
      CHECK(std::find(desired.begin(), desired.end(), r) == desired.end());
    }
    CHECK(diffRoutes(desired, desired).empty());
  }
}

// Property: the same for tunnel entries, where add and remove never share a key, so the plan applies in any
// order; desired sets come from desiredTunnelEntries (one endpoint per CIDR).
TEST_CASE("Tunnel diffs applied in any order give the desired entries", "[unit][routes]") {
  std::mt19937 rng(1234);
  auto randomNodes = [&]() {
    std::vector<Node> nodes;
    int count = static_cast<int>(rng() % 6);
    for (int k = 0; k < count; ++k) {
      Node n;
      n.name = "n" + std::to_string(k);
      if (rng() % 5 != 0) {
        n.internal_ips = {Ipv4(0xC0A80100u + rng() % 4)};
      }
      for (unsigned c = rng() % 3; c > 0; --c) {
        n.pod_cidrs.push_back(Ipv4Prefix(Ipv4(0x0A000000u + (rng() % 8) * 256), 24));
      }
      nodes.push_back(n);
    }
    return nodes;
  };
  for (int i = 0; i < 500; ++i) {
    auto installed = desiredTunnelEntries(randomNodes(), "n0");
    auto nodes = randomNodes();
    auto desired = desiredTunnelEntries(nodes, "n0");
    auto plan = diffTunnelEntries(installed, desired);
    CHECK(applyTunnelPlan(installed, plan) == desired);
    // Adds first, then removes: the same result because the keys are disjoint.
    TunnelPlan adds_only{plan.add, {}};
    TunnelPlan removes_only{{}, plan.remove};
    CHECK(applyTunnelPlan(applyTunnelPlan(installed, adds_only), removes_only) == desired);
    std::set<Ipv4Prefix> removed;
    for (const auto& e : plan.remove) {
      removed.insert(e.pod_cidr);
    }
    for (const auto& e : plan.add) {
      CHECK(removed.count(e.pod_cidr) == 0);
    }
    // Input order does not matter.
    auto shuffled = nodes;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    CHECK(desiredTunnelEntries(shuffled, "n0") == desired);
    CHECK(desiredRoutes(shuffled, "n0") == desiredRoutes(nodes, "n0"));
  }
}
