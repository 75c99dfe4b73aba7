#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "plexus/identity/identity.h"

using namespace plexus::identity;

namespace {

// The number a label set hashes to: what it gets from an allocator that holds nothing else.
uint32_t natural(const Labels& labels) {
  Allocator a;
  a.setHashed(true);
  return a.acquire(labels);
}

uint32_t nextId(uint32_t id) { return id == kLastClusterIdentity ? kFirstClusterIdentity : id + 1; }

Labels app(const std::string& name) { return {"k8s:app=" + name, "k8s:io.kubernetes.pod.namespace=default"}; }

// Two label sets that hash to the same number (brute force; a few hundred tries by the birthday bound).
std::pair<Labels, Labels> collidingPair() {
  std::map<uint32_t, Labels> seen;
  for (int i = 0; i < 200000; ++i) {
    Labels l = app("c" + std::to_string(i));
    auto [it, fresh] = seen.emplace(natural(l), l);
    if (!fresh) {
      return {it->second, l};
    }
  }
  FAIL("no collision found");
  return {};
}

}  // namespace

TEST_CASE("hashed allocator property: ids depend on the labels only, not on the order they were met",
          "[unit][identity][hashed][property]") {
  std::mt19937 rng(20240611);  // fixed: the test is reproducible
  std::uniform_int_distribution<int> count(1, 4), key(0, 9), value(0, 30);
  std::vector<Labels> sets;
  std::set<std::string> canon;
  std::set<uint32_t> naturals;
  while (sets.size() < 200) {
    Labels l;
    int n = count(rng);
    for (int i = 0; i < n; ++i) {
      l.insert("k8s:key" + std::to_string(key(rng)) + "=v" + std::to_string(value(rng)));
    }
    // Distinct sets with distinct hashes (collisions are order-dependent by design: the next test covers them).
    if (!canon.insert(canonical(l)).second || !naturals.insert(natural(l)).second) {
      continue;
    }
    sets.push_back(l);
  }

  Allocator reference;
  reference.setHashed(true);
  std::map<std::string, uint32_t> want;
  for (const auto& l : sets) {
    want[canonical(l)] = reference.acquire(l);
  }
  for (int round = 0; round < 5; ++round) {
    auto order = sets;
    std::shuffle(order.begin(), order.end(), rng);
    Allocator other;
    other.setHashed(true);
    for (const auto& l : order) {
      uint32_t id = other.acquire(l);
      INFO(canonical(l));
      CHECK(id == want.at(canonical(l)));
      CHECK(id == natural(l));
      CHECK(id >= kFirstClusterIdentity);
      CHECK(id <= kLastClusterIdentity);
      CHECK(id == 256u + (id - 256u) % 65280u);  // the cluster range is 256..65535
    }
    CHECK(other.all().size() == sets.size());
  }
  // Label order inside a set does not matter either: a set is canonical.
  Labels ab = {"k8s:a=1", "k8s:b=2"};
  Labels ba;
  ba.insert("k8s:b=2");
  ba.insert("k8s:a=1");
  CHECK(natural(ab) == natural(ba));
  CHECK(natural(app("web")) != natural(app("db")));
}

TEST_CASE("hashed allocator: a collision takes the next free id, deterministically", "[unit][identity][hashed]") {
  auto [x, y] = collidingPair();
  REQUIRE(canonical(x) != canonical(y));
  uint32_t h = natural(x);
  REQUIRE(natural(y) == h);

  for (int run = 0; run < 2; ++run) {  // the same sequence, twice: the same numbers
    Allocator a;
    a.setHashed(true);
    CHECK(a.acquire(x) == h);
    CHECK(a.acquire(y) == nextId(h));
    CHECK(a.find(x) == h);
    CHECK(a.find(y) == nextId(h));
  }
  // Met the other way round, the first comer takes the hashed number.
  Allocator b;
  b.setHashed(true);
  CHECK(b.acquire(y) == h);
  CHECK(b.acquire(x) == nextId(h));

  SECTION("the next number taken too: it moves on past it") {
    // A set whose own number is h+1.
    std::optional<Labels> z;
    for (int i = 0; i < 5000000 && !z; ++i) {
      Labels l = app("z" + std::to_string(i));
      if (natural(l) == nextId(h)) {
        z = l;
      }
    }
    REQUIRE(z);
    Allocator c;
    c.setHashed(true);
    CHECK(c.acquire(x) == h);
    CHECK(c.acquire(*z) == nextId(h));
    CHECK(c.acquire(y) == nextId(nextId(h)));
  }
  SECTION("a released colliding id comes back to its labels when nothing else took it") {
    Allocator c;
    c.setHashed(true);
    REQUIRE(c.acquire(x) == h);
    REQUIRE(c.acquire(y) == nextId(h));
    CHECK(c.release(h));
    CHECK_FALSE(c.find(x));
    CHECK(c.find(y) == nextId(h));  // y keeps its number
    CHECK(c.acquire(x) == h);
  }
}

TEST_CASE("hashed allocator: release then re-acquire gives the same id", "[unit][identity][hashed]") {
  Allocator a;
  a.setHashed(true);
  uint32_t web = a.acquire(app("web"));
  uint32_t db = a.acquire(app("db"));
  CHECK(a.acquire(app("web")) == web);  // second reference
  CHECK_FALSE(a.release(web));
  CHECK(a.release(web));
  CHECK_FALSE(a.find(app("web")));
  CHECK(a.size() == 1);
  CHECK(a.acquire(app("web")) == web);
  CHECK(a.find(app("db")) == db);
}

TEST_CASE("allocator without hashing: sequential ids from 256, freed ones not reused at once",
          "[unit][identity][hashed]") {
  Allocator a;
  uint32_t first = a.acquire(app("web"));
  CHECK(first == kFirstClusterIdentity);
  CHECK(first == 256u);
  CHECK(a.acquire(app("db")) == 257u);
  CHECK(a.acquire(app("web")) == 256u);
  a.release(256);
  CHECK(a.release(256));
  CHECK(a.acquire(app("api")) == 258u);
  // The hashed allocator would not start at 256 for these labels (else this test could not tell them apart).
  CHECK(natural(app("web")) != 256u);
}
