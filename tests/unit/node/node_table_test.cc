#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <string>

#include "plexus/node/node_table.h"

using namespace plexus;
using namespace plexus::node;

namespace {
Node makeNode(const std::string& name, std::vector<const char*> ips, std::vector<const char*> cidrs) {
  Node n;
  n.name = name;
  for (const char* ip : ips) {
    n.internal_ips.push_back(*Ipv4::parse(ip));
  }
  for (const char* c : cidrs) {
    n.pod_cidrs.push_back(*Ipv4Prefix::parse(c));
  }
  return n;
}
}  // namespace

TEST_CASE("NodeTable reports adds, changes and deletes, and nothing for no-ops", "[unit][node_table]") {
  NodeTable t("n1");
  CHECK(t.self() == "n1");
  CHECK_FALSE(t.selfNode().has_value());

  auto a = makeNode("n2", {"192.168.1.12"}, {"10.0.2.0/24"});
  auto add = t.upsert(a);
  REQUIRE(add.has_value());
  CHECK(add->isAdd());
  CHECK(add->after == a);
  CHECK_FALSE(add->before.has_value());

  SECTION("an equal upsert changes nothing") {
    CHECK_FALSE(t.upsert(a).has_value());
    CHECK(t.size() == 1);
  }
  SECTION("a changed address is an update with both sides") {
    auto b = makeNode("n2", {"192.168.1.22"}, {"10.0.2.0/24"});
    auto ch = t.upsert(b);
    REQUIRE(ch.has_value());
    CHECK(ch->isUpdate());
    CHECK(ch->before == a);
    CHECK(ch->after == b);
    CHECK(t.get("n2") == b);
  }
  SECTION("a changed pod CIDR is an update") {
    auto b = makeNode("n2", {"192.168.1.12"}, {"10.0.2.0/24", "10.0.12.0/24"});
    auto ch = t.upsert(b);
    REQUIRE(ch.has_value());
    CHECK(ch->isUpdate());
    CHECK(ch->after->pod_cidrs.size() == 2);
  }
  SECTION("a delete returns the last state; deleting again changes nothing") {
    auto del = t.remove("n2");
    REQUIRE(del.has_value());
    CHECK(del->isDelete());
    CHECK(del->before == a);
    CHECK_FALSE(t.get("n2").has_value());
    CHECK_FALSE(t.remove("n2").has_value());
    CHECK(t.size() == 0);
  }
}

TEST_CASE("NodeTable lists by name and keeps self out of others()", "[unit][node_table]") {
  NodeTable t("n2");
  (void)t.upsert(makeNode("n3", {"192.168.1.13"}, {"10.0.3.0/24"}));
  (void)t.upsert(makeNode("n1", {"192.168.1.11"}, {"10.0.1.0/24"}));
  (void)t.upsert(makeNode("n2", {"192.168.1.12"}, {"10.0.2.0/24"}));
  std::vector<std::string> names;
  for (const auto& n : t.list()) {
    names.push_back(n.name);
  }
  CHECK(names == std::vector<std::string>{"n1", "n2", "n3"});
  names.clear();
  for (const auto& n : t.others()) {
    names.push_back(n.name);
  }
  CHECK(names == std::vector<std::string>{"n1", "n3"});
  REQUIRE(t.selfNode().has_value());
  CHECK(t.selfNode()->name == "n2");
}

// Property: replaying the returned changes onto a plain map reproduces the table, and a change is reported
// exactly when the stored value differs.
TEST_CASE("NodeTable changes replay to the same state", "[unit][node_table]") {
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    NodeTable t("self");
    std::map<std::string, Node> mirror;
    for (int step = 0; step < 200; ++step) {
      std::string name = "n" + std::to_string(rng() % 6);
      if (rng() % 4 == 0) {
        bool known = mirror.count(name) != 0;
        auto ch = t.remove(name);
        CHECK(ch.has_value() == known);
        if (ch) {
          CHECK(ch->before == mirror.at(name));
          mirror.erase(name);
        }
        continue;
      }
      Node n;
      n.name = name;
      n.internal_ips = {Ipv4(0xC0A80100u + rng() % 3)};
      n.pod_cidrs = {Ipv4Prefix(Ipv4(0x0A000000u + (rng() % 3) * 256), 24)};
      auto it = mirror.find(name);
      bool differs = it == mirror.end() || !(it->second == n);
      auto ch = t.upsert(n);
      CHECK(ch.has_value() == differs);
      if (ch) {
        CHECK(ch->after == n);
        CHECK(ch->before.has_value() == (it != mirror.end()));
        mirror[name] = n;
      }
    }
    std::vector<Node> expected;
    for (const auto& [name, n] : mirror) {
      expected.push_back(n);
    }
    CHECK(t.list() == expected);
  }
}
