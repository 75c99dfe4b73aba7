// PlexusNode claims (cluster-pool IPAM) in the node model: parsing, and how NodeTable merges a claim with the
// Node object (the Node's own spec.podCIDRs win; a claim alone is no node).
#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "plexus/node/node_table.h"
#include "plexus/node/routes.h"

using namespace plexus;
using namespace plexus::node;
using nlohmann::json;

namespace {
Ipv4Prefix cidr(const char* s) { return *Ipv4Prefix::parse(s); }

json plexusNode(const std::string& name, json cidrs) {
  return {{"apiVersion", "plexus.io/v1alpha1"},
          {"kind", "PlexusNode"},
          {"metadata", {{"name", name}, {"resourceVersion", "7"}}},
          {"spec", {{"ipam", {{"podCIDRs", std::move(cidrs)}}}}},
          {"status", {{"ipam", {{"allocated", 3}}}}}};
}

Node makeNode(const std::string& name, const char* address, std::vector<const char*> cidrs) {
  Node n;
  n.name = name;
  n.internal_ips.push_back(*Ipv4::parse(address));
  for (const char* c : cidrs) {
    n.pod_cidrs.push_back(cidr(c));
  }
  return n;
}

PodCidrClaim claim(const std::string& name, std::vector<const char*> cidrs) {
  PodCidrClaim c{name, {}};
  for (const char* s : cidrs) {
    c.pod_cidrs.push_back(cidr(s));
  }
  return c;
}

std::string errorOf(const json& j) {
  auto r = parsePlexusNode(j);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ErrorCode::kInvalidArgument);
  return r.error().message;
}
}  // namespace

TEST_CASE("parsePlexusNode reads the claim as the agent writes it", "[unit][node][plexusnode]") {
  auto c = parsePlexusNode(plexusNode("worker-1", {"10.0.3.0/24", "fd00::/64", "10.0.3.0/24", "10.0.9.0/24"}));
  REQUIRE(c.ok());
  CHECK(c->name == "worker-1");
  // IPv6 skipped, duplicates folded, order kept.
  CHECK(c->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.0.3.0/24"), cidr("10.0.9.0/24")});

  SECTION("no claim yet: no spec, no ipam, an empty or null list") {
    for (json o : {json{{"metadata", {{"name", "a"}}}}, json{{"metadata", {{"name", "a"}}}, {"spec", json::object()}},
                   plexusNode("a", json::array()), plexusNode("a", nullptr)}) {
      INFO(o.dump());
      auto r = parsePlexusNode(o);
      REQUIRE(r.ok());
      CHECK(r->pod_cidrs.empty());
    }
  }
}

TEST_CASE("parsePlexusNode names the malformed field", "[unit][node][plexusnode]") {
  CHECK(errorOf(json::array()) == "PlexusNode: object: must be an object");
  CHECK(errorOf(json{{"kind", "Node"}, {"metadata", {{"name", "a"}}}}) == "PlexusNode: kind: must be PlexusNode");
  CHECK(errorOf(json{{"apiVersion", "v1"}, {"metadata", {{"name", "a"}}}}) ==
        "PlexusNode: apiVersion: must be plexus.io/v1alpha1");
  CHECK(errorOf(json{{"spec", json::object()}}) == "PlexusNode: metadata: must be an object");
  CHECK(errorOf(json{{"metadata", {{"name", ""}}}}) == "PlexusNode: metadata.name: required");
  CHECK(errorOf(json{{"metadata", {{"name", "Big_Node"}}}}).find("metadata.name: not a DNS-1123 subdomain") !=
        std::string::npos);
  CHECK(errorOf(json{{"metadata", {{"name", "a"}}}, {"spec", 3}}) == "PlexusNode a: spec: must be an object");
  CHECK(errorOf(json{{"metadata", {{"name", "a"}}}, {"spec", {{"ipam", "x"}}}}) ==
        "PlexusNode a: spec.ipam: must be an object");
  CHECK(errorOf(plexusNode("a", "10.0.0.0/24")) == "PlexusNode a: spec.ipam.podCIDRs: must be a list");
  CHECK(errorOf(plexusNode("a", {"10.0.0.0/24", 5})) == "PlexusNode a: spec.ipam.podCIDRs[1]: must be a string");
  CHECK(errorOf(plexusNode("a", {"10.0.0.7"})) == "PlexusNode a: spec.ipam.podCIDRs[0]: not a CIDR: \"10.0.0.7\"");
}

TEST_CASE("parsePlexusNode never throws, whatever type a field has", "[unit][node][plexusnode]") {
  const std::vector<json> values = {nullptr, true, 1, -1, 1.5, "s", json::array(), json::array({1}), json::object()};
  const std::vector<std::vector<std::string>> paths = {
      {"kind"}, {"apiVersion"}, {"metadata"}, {"metadata", "name"}, {"spec"}, {"spec", "ipam"},
      {"spec", "ipam", "podCIDRs"}};
  for (const auto& path : paths) {
    for (const auto& v : values) {
      json o = plexusNode("a", {"10.0.0.0/24"});
      json* at = &o;
      for (size_t i = 0; i + 1 < path.size(); ++i) {
        at = &(*at)[path[i]];
      }
      (*at)[path.back()] = v;
      INFO(o.dump());
      CHECK_NOTHROW((void)parsePlexusNode(o));
    }
  }
}

TEST_CASE("NodeTable: a claim gives a Node without spec.podCIDRs its CIDRs", "[unit][node_table][plexusnode]") {
  NodeTable t("n1");
  auto bare = makeNode("n2", "192.168.1.12", {});

  SECTION("Node first, then its claim: one update with the claimed CIDRs") {
    REQUIRE(t.upsert(bare)->isAdd());
    auto ch = t.upsertClaim(claim("n2", {"10.0.2.0/24"}));
    REQUIRE(ch.has_value());
    CHECK(ch->isUpdate());
    CHECK(ch->before == bare);
    CHECK(ch->after->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.0.2.0/24")});
    CHECK(t.cidrsClaimed("n2"));
    CHECK_FALSE(t.upsertClaim(claim("n2", {"10.0.2.0/24"})).has_value());  // equal: nothing
  }
  SECTION("claim first: no node until the Node object comes, then the node carries the claim") {
    CHECK_FALSE(t.upsertClaim(claim("n2", {"10.0.2.0/24"})).has_value());
    CHECK(t.list().empty());
    CHECK_FALSE(t.get("n2").has_value());
    auto ch = t.upsert(bare);
    REQUIRE(ch.has_value());
    CHECK(ch->isAdd());
    CHECK(ch->after->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.0.2.0/24")});
    CHECK(ch->after->internal_ips == bare.internal_ips);
  }
  SECTION("a changed claim is an update of the node; a removed one leaves it without CIDRs") {
    (void)t.upsert(bare);
    (void)t.upsertClaim(claim("n2", {"10.0.2.0/24"}));
    auto moved = t.upsertClaim(claim("n2", {"10.0.12.0/24"}));
    REQUIRE(moved.has_value());
    CHECK(moved->before->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.0.2.0/24")});
    CHECK(moved->after->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.0.12.0/24")});
    auto gone = t.removeClaim("n2");
    REQUIRE(gone.has_value());
    CHECK(gone->isUpdate());
    CHECK(gone->after == bare);
    CHECK_FALSE(t.cidrsClaimed("n2"));
    CHECK_FALSE(t.removeClaim("n2").has_value());
  }
  SECTION("an emptied claim is no claim") {
    (void)t.upsert(bare);
    (void)t.upsertClaim(claim("n2", {"10.0.2.0/24"}));
    auto ch = t.upsertClaim(claim("n2", {}));
    REQUIRE(ch.has_value());
    CHECK(ch->after == bare);
  }
  SECTION("the Node object's own spec.podCIDRs win; the claim never shows") {
    auto own = makeNode("n2", "192.168.1.12", {"10.0.7.0/24"});
    (void)t.upsert(own);
    CHECK_FALSE(t.upsertClaim(claim("n2", {"10.0.2.0/24"})).has_value());
    CHECK(t.get("n2") == own);
    CHECK_FALSE(t.cidrsClaimed("n2"));
    CHECK_FALSE(t.removeClaim("n2").has_value());
    // The Node losing its CIDRs falls back to the claim (kept meanwhile), and the claim can come back.
    (void)t.upsertClaim(claim("n2", {"10.0.2.0/24"}));
    auto ch = t.upsert(bare);
    REQUIRE(ch.has_value());
    CHECK(ch->after->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.0.2.0/24")});
  }
  SECTION("a deleted Node is a delete whatever its claim; the claim stays for its return") {
    (void)t.upsert(bare);
    (void)t.upsertClaim(claim("n2", {"10.0.2.0/24"}));
    auto del = t.remove("n2");
    REQUIRE(del.has_value());
    CHECK(del->isDelete());
    CHECK(del->before->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.0.2.0/24")});
    CHECK(t.others().empty());
    auto back = t.upsert(bare);
    REQUIRE(back.has_value());
    CHECK(back->after->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.0.2.0/24")});
  }
}

TEST_CASE("NodeTable: claimed CIDRs feed the route and tunnel plans", "[unit][node_table][plexusnode]") {
  NodeTable t("n1");
  (void)t.upsert(makeNode("n1", "192.168.1.11", {}));
  (void)t.upsert(makeNode("n2", "192.168.1.12", {}));
  (void)t.upsert(makeNode("n3", "192.168.1.13", {}));
  (void)t.upsertClaim(claim("n1", {"10.0.1.0/24"}));
  (void)t.upsertClaim(claim("n2", {"10.0.2.0/24"}));
  CHECK(desiredRoutes(t.list(), "n1") == std::vector<RouteSpec>{{cidr("10.0.2.0/24"), *Ipv4::parse("192.168.1.12")}});
  // A claim race: n3 claims n2's block too (the lower name keeps it), and self's block (self keeps it).
  (void)t.upsertClaim(claim("n3", {"10.0.2.0/24", "10.0.1.0/24", "10.0.3.0/24"}));
  CHECK(desiredTunnelEntries(t.list(), "n1") ==
        std::vector<TunnelEntry>{{cidr("10.0.2.0/24"), *Ipv4::parse("192.168.1.12")},
                                 {cidr("10.0.3.0/24"), *Ipv4::parse("192.168.1.13")}});
  CHECK(podCidrConflicts(t.list(), "n1").size() == 2);
}

// Property: whatever the order of Node and claim events, the table equals the merge of the last Node object and
// the last claim per name, and a change is reported exactly when that merged node differs.
TEST_CASE("NodeTable with claims: the merged view follows any event order", "[unit][node_table][plexusnode]") {
  std::mt19937 rng(11);
  for (int round = 0; round < 20; ++round) {
    NodeTable t("self");
    std::map<std::string, Node> objects;
    std::map<std::string, std::vector<Ipv4Prefix>> claims;
    auto merged = [&](const std::string& name) -> std::optional<Node> {
      auto it = objects.find(name);
      if (it == objects.end()) {
        return std::nullopt;
      }
      Node n = it->second;
      if (n.pod_cidrs.empty() && claims.count(name)) {
        n.pod_cidrs = claims.at(name);
      }
      return n;
    };
    for (int step = 0; step < 300; ++step) {
      std::string name = "n" + std::to_string(rng() % 5);
      auto before = merged(name);
      std::optional<NodeChange> ch;
      switch (rng() % 4) {
        case 0: {
          Node n;
          n.name = name;
          n.internal_ips = {Ipv4(0xC0A80100u + rng() % 3)};
          if (rng() % 2) {
            n.pod_cidrs = {Ipv4Prefix(Ipv4(0x0A000000u + (rng() % 3) * 256), 24)};
          }
          objects[name] = n;
          ch = t.upsert(n);
          break;
        }
        case 1:
          objects.erase(name);
          ch = t.remove(name);
          break;
        case 2: {
          PodCidrClaim c{name, {}};
          if (rng() % 4) {
            c.pod_cidrs = {Ipv4Prefix(Ipv4(0x0A640000u + (rng() % 3) * 256), 24)};
          }
          if (c.pod_cidrs.empty()) {
            claims.erase(name);
          } else {
            claims[name] = c.pod_cidrs;
          }
          ch = t.upsertClaim(c);
          break;
        }
        default:
          claims.erase(name);
          ch = t.removeClaim(name);
          break;
      }
      auto after = merged(name);
      CHECK(ch.has_value() == (before != after));
      if (ch) {
        CHECK(ch->before == before);
        CHECK(ch->after == after);
      }
      CHECK(t.get(name) == after);
    }
    std::vector<Node> expected;
    for (const auto& [name, n] : objects) {
      expected.push_back(*merged(name));
    }
    CHECK(t.list() == expected);
  }
}
