#include <catch2/catch.hpp>

#include <set>

#include "plexus/agent/ipam.h"

using plexus::Ipv4;
using plexus::Ipv4Prefix;
using plexus::agent::Ipam;

namespace {
Ipv4 ip(const char* text) { return *Ipv4::parse(text); }
Ipam smallPool() { return Ipam(*Ipv4Prefix::parse("10.9.0.0/29"), ip("10.9.0.1")); }
}  // namespace

TEST_CASE("IPAM reserves network, broadcast and gateway", "[unit][ipam]") {
  Ipam ipam = smallPool();
  // /29: 8 addresses minus network, broadcast and gateway.
  CHECK(ipam.capacity() == 5);
  std::set<Ipv4> handed;
  for (int i = 0; i < 5; ++i) {
    auto r = ipam.allocate("c" + std::to_string(i) + "/eth0", std::nullopt);
    REQUIRE(r.ok());
    CHECK(*r != ip("10.9.0.0"));
    CHECK(*r != ip("10.9.0.1"));
    CHECK(*r != ip("10.9.0.7"));
    CHECK(handed.insert(*r).second);
  }
  auto full = ipam.allocate("late/eth0", std::nullopt);
  REQUIRE_FALSE(full.ok());
  CHECK(full.error().code == plexus::ErrorCode::kResourceExhausted);
  CHECK(ipam.available() == 0);
}

TEST_CASE("IPAM ADD is idempotent per owner", "[unit][ipam]") {
  Ipam ipam = smallPool();
  auto a = ipam.allocate("c1/eth0", std::nullopt);
  auto b = ipam.allocate("c1/eth0", std::nullopt);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(*a == *b);
  CHECK(ipam.used() == 1);
}

TEST_CASE("IPAM honours a requested address and refuses conflicts", "[unit][ipam]") {
  Ipam ipam = smallPool();
  auto r = ipam.allocate("c1/eth0", ip("10.9.0.5"));
  REQUIRE(r.ok());
  CHECK(*r == ip("10.9.0.5"));
  auto taken = ipam.allocate("c2/eth0", ip("10.9.0.5"));
  REQUIRE_FALSE(taken.ok());
  CHECK(taken.error().code == plexus::ErrorCode::kAlreadyExists);
  CHECK_FALSE(ipam.allocate("c3/eth0", ip("10.8.0.5")).ok());   // outside the CIDR
  CHECK_FALSE(ipam.allocate("c3/eth0", ip("10.9.0.1")).ok());   // the gateway
  CHECK_FALSE(ipam.allocate("c3/eth0", ip("10.9.0.7")).ok());   // broadcast
  // Asking again for the owner's own address is fine.
  CHECK(ipam.allocate("c1/eth0", ip("10.9.0.5")).ok());
  CHECK(ipam.used() == 1);
}

TEST_CASE("IPAM next-fit does not reuse a released address at once", "[unit][ipam]") {
  Ipam ipam = smallPool();
  auto a = ipam.allocate("a/eth0", std::nullopt);
  REQUIRE(a.ok());
  CHECK(ipam.release("a/eth0") == 1);
  CHECK(ipam.release("a/eth0") == 0);  // release is idempotent
  auto b = ipam.allocate("b/eth0", std::nullopt);
  REQUIRE(b.ok());
  CHECK(*b != *a);
}

TEST_CASE("IPAM snapshot and restore never hand out an address twice", "[unit][ipam]") {
  Ipam first = smallPool();
  std::set<Ipv4> before;
  for (int i = 0; i < 3; ++i) {
    before.insert(*first.allocate("c" + std::to_string(i) + "/eth0", std::nullopt));
  }
  auto snap = first.snapshot();

  Ipam second = smallPool();
  CHECK(second.restore(snap).empty());
  CHECK(second.used() == 3);
  for (int i = 3; i < 5; ++i) {
    auto r = second.allocate("c" + std::to_string(i) + "/eth0", std::nullopt);
    REQUIRE(r.ok());
    CHECK(before.count(*r) == 0);
  }
  CHECK(second.addressOf("c1/eth0") == first.addressOf("c1/eth0"));
}

TEST_CASE("IPAM restore drops entries that are not assignable and says so", "[unit][ipam]") {
  plexus::agent::IpamSnapshot snap;
  snap.cidr = "10.9.0.0/29";
  snap.allocations[ip("10.9.0.3")] = "ok/eth0";
  snap.allocations[ip("10.1.0.3")] = "outside/eth0";
  snap.allocations[ip("10.9.0.1")] = "gateway/eth0";
  Ipam ipam = smallPool();
  auto problems = ipam.restore(snap);
  CHECK(problems.size() == 2);
  CHECK(ipam.used() == 1);
  CHECK(ipam.addressOf("ok/eth0") == ip("10.9.0.3"));
}
