#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <string>

#include "plexus/node/devices.h"

using namespace plexus;
using namespace plexus::node;

namespace {
Ipv4 ip(const char* s) { return *Ipv4::parse(s); }
Ipv4Prefix cidr(const char* s) { return *Ipv4Prefix::parse(s); }

LinkInfo link(const std::string& name, int ifindex, std::vector<const char*> addrs, const std::string& kind = "",
              bool up = true) {
  LinkInfo l;
  l.name = name;
  l.ifindex = ifindex;
  l.up = up;
  l.kind = kind;
  for (const char* a : addrs) {
    l.addresses.push_back(cidr(a));
  }
  return l;
}

// A typical node: lo, a physical uplink with the default route, a second NIC on the node network, a docker
// bridge, pod veths, Plexus' own devices, a down NIC and a NIC with only a link-local address.
std::vector<LinkInfo> sampleLinks() {
  auto lo = link("lo", 1, {"127.0.0.1/8"});
  lo.loopback = true;
  return {
      lo,
      link("eth0", 2, {"203.0.113.10/24"}),
      link("eth1", 3, {"192.168.1.11/24"}),
      link("docker0", 4, {"172.17.0.1/16"}, "bridge"),
      link("lxc1a2b3c", 5, {"169.254.0.1/32"}, "veth"),
      link("plexus_host", 6, {"10.0.1.1/32"}, "veth"),
      link("plexus_vxlan", 7, {}, "vxlan"),
      link("eth2", 8, {"192.168.2.11/24"}, "", false),
      link("eth3", 9, {"169.254.10.1/16"}),
      link("eth4", 10, {"198.51.100.3/24"}),
  };
}

std::vector<RouteInfo> sampleRoutes() {
  return {
      {cidr("0.0.0.0/0"), 2, ip("203.0.113.1")},
      {cidr("203.0.113.0/24"), 2, std::nullopt},
      {cidr("192.168.1.0/24"), 3, std::nullopt},
      {cidr("172.17.0.0/16"), 4, std::nullopt},
      {cidr("10.0.1.5/32"), 5, std::nullopt},
      {cidr("192.168.2.0/24"), 8, std::nullopt},
      {cidr("169.254.0.0/16"), 9, std::nullopt},
      {cidr("0.0.0.0/0"), 9, std::nullopt},  // a link-local-only NIC with a (bogus) default route
      {cidr("198.51.100.0/24"), 10, std::nullopt},
  };
}

std::string reasonFor(const std::vector<DeviceDecision>& ds, const std::string& name) {
  auto it = std::find_if(ds.begin(), ds.end(), [&](const DeviceDecision& d) { return d.name == name; });
  REQUIRE(it != ds.end());
  return it->reason;
}
}  // namespace

TEST_CASE("Device detection picks the default-route device and the device toward other nodes", "[unit][devices]") {
  auto links = sampleLinks();
  auto routes = sampleRoutes();
  SECTION("no other nodes: only the default-route device") {
    CHECK(detectDevices(links, routes, {}) == std::vector<std::string>{"eth0"});
  }
  SECTION("another node on 192.168.1.0/24 adds eth1") {
    CHECK(detectDevices(links, routes, {ip("192.168.1.12")}) == std::vector<std::string>{"eth0", "eth1"});
  }
  SECTION("a node reached only by the default route adds nothing") {
    CHECK(detectDevices(links, routes, {ip("100.64.0.1")}) == std::vector<std::string>{"eth0"});
  }
  SECTION("a node behind a down link does not select it") {
    CHECK(detectDevices(links, routes, {ip("192.168.2.12")}) == std::vector<std::string>{"eth0"});
  }
  SECTION("the most specific route decides, not any covering route") {
    routes.push_back({cidr("192.168.0.0/16"), 10, std::nullopt});
    CHECK(detectDevices(links, routes, {ip("192.168.1.12")}) == std::vector<std::string>{"eth0", "eth1"});
    CHECK(detectDevices(links, routes, {ip("192.168.7.12")}) == std::vector<std::string>{"eth0", "eth4"});
  }
}

TEST_CASE("Device detection explains every exclusion", "[unit][devices]") {
  auto ds = explainDevices(sampleLinks(), sampleRoutes(), {ip("192.168.1.12")});
  REQUIRE(ds.size() == sampleLinks().size());
  CHECK(std::is_sorted(ds.begin(), ds.end(),
                       [](const DeviceDecision& a, const DeviceDecision& b) { return a.name < b.name; }));
  CHECK(reasonFor(ds, "eth0") == "carries the default route");
  CHECK(reasonFor(ds, "eth1") == "route 192.168.1.0/24 reaches node 192.168.1.12");
  CHECK(reasonFor(ds, "lo") == "loopback");
  CHECK(reasonFor(ds, "docker0") == "kind bridge is excluded");
  CHECK(reasonFor(ds, "lxc1a2b3c") == "Plexus device (name starts with \"lxc\")");
  CHECK(reasonFor(ds, "plexus_host") == "Plexus device (name starts with \"plexus_\")");
  CHECK(reasonFor(ds, "plexus_vxlan") == "Plexus device (name starts with \"plexus_\")");
  CHECK(reasonFor(ds, "eth2") == "down");
  CHECK(reasonFor(ds, "eth3") == "no global unicast IPv4 address");
  CHECK(reasonFor(ds, "eth4") == "carries neither the default route nor the route to another node");
  for (const auto& d : ds) {
    CHECK(d.selected == (d.name == "eth0" || d.name == "eth1"));
  }
}

TEST_CASE("Tunnel kinds are excluded even under foreign names; a plain veth uplink (kind, netns) is kept",
          "[unit][devices]") {
  std::vector<LinkInfo> links = {
      link("vx0", 2, {"10.8.0.1/24"}, "vxlan"),
      link("gnv0", 3, {"10.9.0.1/24"}, "geneve"),
      link("eth0", 4, {"172.18.0.3/16"}, "veth"),  // kind's node uplink is a veth
  };
  std::vector<RouteInfo> routes = {
      {cidr("0.0.0.0/0"), 2, std::nullopt},
      {cidr("0.0.0.0/0"), 3, std::nullopt},
      {cidr("172.18.0.0/16"), 4, std::nullopt},
  };
  CHECK(detectDevices(links, routes, {}).empty());
  CHECK(detectDevices(links, routes, {ip("172.18.0.4")}) == std::vector<std::string>{"eth0"});
}

TEST_CASE("Global unicast excludes the special ranges", "[unit][devices]") {
  CHECK(isGlobalUnicast(ip("10.0.0.1")));
  CHECK(isGlobalUnicast(ip("192.168.1.1")));
  CHECK(isGlobalUnicast(ip("100.64.0.1")));
  CHECK_FALSE(isGlobalUnicast(ip("0.0.0.0")));
  CHECK_FALSE(isGlobalUnicast(ip("127.0.0.1")));
  CHECK_FALSE(isGlobalUnicast(ip("169.254.169.254")));
  CHECK_FALSE(isGlobalUnicast(ip("224.0.0.1")));
  CHECK_FALSE(isGlobalUnicast(ip("255.255.255.255")));
}

// Property: the result does not depend on the order links and routes are listed in (netlink dumps give no
// order guarantee).
TEST_CASE("Device detection is independent of input order", "[unit][devices]") {
  std::mt19937 rng(99);
  auto links = sampleLinks();
  auto routes = sampleRoutes();
  std::vector<Ipv4> others = {ip("192.168.1.12"), ip("198.51.100.9")};
  auto expected = explainDevices(links, routes, others);
  REQUIRE(detectDevices(links, routes, others) == std::vector<std::string>{"eth0", "eth1", "eth4"});
  for (int i = 0; i < 50; ++i) {
    std::shuffle(links.begin(), links.end(), rng);
    std::shuffle(routes.begin(), routes.end(), rng);
    std::shuffle(others.begin(), others.end(), rng);
    auto got = explainDevices(links, routes, others);
    REQUIRE(got.size() == expected.size());
    for (size_t k = 0; k < got.size(); ++k) {
      CHECK(got[k].name == expected[k].name);
      CHECK(got[k].selected == expected[k].selected);
    }
    CHECK(detectDevices(links, routes, others) == std::vector<std::string>{"eth0", "eth1", "eth4"});
  }
}
