#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>

#include "plexus/lb/maglev.h"

using namespace plexus::lb;

namespace {
std::vector<MaglevBackend> backends(int n, uint16_t weight = 100) {
  std::vector<MaglevBackend> out;
  for (int i = 0; i < n; ++i) {
    out.push_back({maglevBackendKey("10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1), 80, "TCP"),
                   static_cast<uint32_t>(i + 1), weight});
  }
  return out;
}

std::vector<uint32_t> table(const std::vector<MaglevBackend>& b, uint32_t m = 251) {
  auto seed = parseMaglevSeed(kDefaultMaglevSeed);
  REQUIRE(seed.ok());
  auto r = buildMaglevTable(b, m, *seed);
  REQUIRE(std::holds_alternative<std::vector<uint32_t>>(r));
  return std::get<std::vector<uint32_t>>(r);
}

std::string hex(std::pair<uint64_t, uint64_t> h) {
  char buf[40];
  // The reference implementation's digest bytes are h1 then h2, little-endian.
  uint8_t bytes[16];
  std::memcpy(bytes, &h.first, 8);
  std::memcpy(bytes + 8, &h.second, 8);
  for (int i = 0; i < 16; ++i) {
    std::snprintf(buf + 2 * i, 3, "%02x", bytes[i]);
  }
  return buf;
}
}  // namespace

TEST_CASE("MurmurHash3 x64-128 matches published digests", "[unit][maglev]") {
  CHECK(murmur3x64_128("", 0, 0) == std::make_pair<uint64_t, uint64_t>(0, 0));
  const char* fox = "The quick brown fox jumps over the lazy dog";
  CHECK(hex(murmur3x64_128(fox, std::strlen(fox), 0)) == "6c1b07bc7bbc4be347939ac4a93c437a");
  // The same digest as the (h1, h2) numbers test suites print.
  auto hello = murmur3x64_128("hello", 5, 0);
  CHECK(hello.first == 0xcbd8a7b341bd9b02ULL);
  CHECK(hello.second == 0x5b1e906a48ae1d19ULL);
}

TEST_CASE("the population step reproduces the paper's Table 1", "[unit][maglev]") {
  // NSDI 2016, Table 1: M = 7; B0 (offset 3, skip 4), B1 (0, 2), B2 (3, 1).
  auto owners = maglevPopulate({{3, 4}, {0, 2}, {3, 1}}, {1, 1, 1}, 7);
  CHECK(owners == std::vector<uint32_t>{1, 0, 1, 0, 2, 2, 0});
  // After B1 is removed (B2 is index 1 here), worked by hand from the §3.4 pseudocode with the same
  // permutations: B0 takes 3, B2 4, B0 0, B2 5, B0 1, B2 6, B0 2.
  auto after = maglevPopulate({{3, 4}, {3, 1}}, {1, 1}, 7);
  CHECK(after == std::vector<uint32_t>{0, 0, 0, 0, 1, 1, 1});
}

TEST_CASE("every slot is filled and equal weights share slots within one", "[unit][maglev]") {
  for (int n : {1, 2, 3, 7, 10, 100}) {
    auto t = table(backends(n), 16381);
    std::map<uint32_t, int> count;
    for (uint32_t id : t) {
      REQUIRE(id >= 1);
      REQUIRE(id <= static_cast<uint32_t>(n));
      count[id]++;
    }
    CHECK(count.size() == static_cast<size_t>(n));
    for (const auto& [id, c] : count) {
      CHECK(c >= 16381 / n);
      CHECK(c <= (16381 + n - 1) / n);
    }
  }
}

TEST_CASE("input order does not matter", "[unit][maglev]") {
  auto b = backends(20);
  auto ref = table(b, 1021);
  std::mt19937 rng(7);
  for (int i = 0; i < 5; ++i) {
    std::shuffle(b.begin(), b.end(), rng);
    CHECK(table(b, 1021) == ref);
  }
}

TEST_CASE("removing a backend moves its slots and few others", "[unit][maglev]") {
  auto b = backends(10);
  auto before = table(b, 16381);
  auto removed_id = b[3].id;
  b.erase(b.begin() + 3);
  auto after = table(b, 16381);
  int moved_others = 0;
  for (size_t j = 0; j < before.size(); ++j) {
    CHECK(after[j] != removed_id);
    if (before[j] != removed_id && after[j] != before[j]) {
      ++moved_others;
    }
  }
  // Maglev's minimal disruption: only a small share of the surviving backends' slots change owner.
  CHECK(moved_others < static_cast<int>(before.size()) / 20);
}

TEST_CASE("weights change the share; weight 0 and no backends are explicit", "[unit][maglev]") {
  auto b = backends(2);
  b[0].weight = 300;
  b[1].weight = 100;
  auto t = table(b, 16381);
  auto heavy = std::count(t.begin(), t.end(), b[0].id);
  CHECK(heavy > 16381 * 70 / 100);
  CHECK(heavy < 16381 * 80 / 100);
  auto seed = parseMaglevSeed(kDefaultMaglevSeed);
  CHECK(std::holds_alternative<NoBackends>(buildMaglevTable({}, 251, *seed)));
  auto zero = backends(1, 0);
  CHECK(std::holds_alternative<NoBackends>(buildMaglevTable(zero, 251, *seed)));
}

TEST_CASE("seeds and table sizes are validated like Cilium's flags", "[unit][maglev]") {
  auto s = parseMaglevSeed(kDefaultMaglevSeed);
  REQUIRE(s.ok());
  CHECK(s->murmur == 0x24b7ef82u);  // "JLfv" "gnHc" decode to 24 b7 ef 82 ...
  CHECK_FALSE(parseMaglevSeed("short").ok());
  CHECK_FALSE(parseMaglevSeed("!!!!!!!!!!!!!!!!").ok());
  CHECK(isAllowedMaglevTableSize(16381));
  CHECK(isAllowedMaglevTableSize(251));
  CHECK_FALSE(isAllowedMaglevTableSize(16383));
  CHECK(maglevBackendKey("10.0.0.1", 80, "TCP") == "[10.0.0.1:80/TCP,State:active]");
}

TEST_CASE("agrees with the share Cilium's own Maglev gives two backends (M=1021, default seed)", "[unit][maglev]") {
  // Cilium's load-balancer reconciler test dumps its Maglev table for backends 10.1.0.1:80 (id 1) and
  // 10.1.0.2:80 (id 2), M = 1021, the default seed: "INNER=[1(511), 2(510)]". A fact from Cilium's output, which
  // our table must reproduce.
  auto seed = parseMaglevSeed(kDefaultMaglevSeed);
  REQUIRE(seed.ok());
  auto t = buildMaglevTable({{maglevBackendKey("10.1.0.1", 80, "TCP"), 1, 100},
                             {maglevBackendKey("10.1.0.2", 80, "TCP"), 2, 100}},
                            1021, *seed);
  auto* table = std::get_if<std::vector<uint32_t>>(&t);
  REQUIRE(table);
  CHECK(std::count(table->begin(), table->end(), 1u) == 511);
  CHECK(std::count(table->begin(), table->end(), 2u) == 510);
}

namespace {
// Cilium's Maglev tests name backends by their address built from an integer i: 0.0.0.i, port i, TCP.
MaglevBackend numbered(uint32_t i, uint16_t weight, uint32_t id) {
  return {maglevBackendKey("0.0.0." + std::to_string(i), static_cast<uint16_t>(i), "TCP"), id, weight};
}

// Run-length form of a table, "id(run),id(run),...", the way Cilium's reproducibility test writes its expectation.
std::string runs(const std::vector<uint32_t>& t) {
  std::string out;
  for (size_t i = 0; i < t.size();) {
    size_t j = i;
    while (j < t.size() && t[j] == t[i]) {
      ++j;
    }
    out += (out.empty() ? "" : ",") + std::to_string(t[i]) + "(" + std::to_string(j - i) + ")";
    i = j;
  }
  return out;
}

std::vector<size_t> counts(const std::vector<uint32_t>& t, std::vector<uint32_t> ids) {
  std::vector<size_t> out;
  for (uint32_t id : ids) {
    out.push_back(static_cast<size_t>(std::count(t.begin(), t.end(), id)));
  }
  return out;
}
}  // namespace

TEST_CASE("reproduces Cilium's weighted table slot by slot (M=251, default seed)", "[unit][maglev]") {
  // The expectation of Cilium's pkg/maglev reproducibility test: backends 0.0.0.{1,3,4,5} on ports 1,3,4,5/TCP with
  // weights 2, 13, 111, 10 and ids 0..3. Facts from Cilium's expected output; the implementation is ours.
  auto t = table({numbered(1, 2, 0), numbered(3, 13, 1), numbered(4, 111, 2), numbered(5, 10, 3)}, 251);
  CHECK(runs(t) ==
        "2(5),3(1),2(3),1(1),2(2),0(1),2(1),3(1),2(1),3(1),2(1),1(1),2(7),1(1),2(14),3(1),2(1),1(2),2(12),3(1),2(3),"
        "1(1),2(4),3(1),2(8),3(1),2(2),1(1),2(16),1(2),2(3),3(1),2(11),1(2),2(4),3(1),2(3),1(1),2(4),3(1),2(1),0(1),"
        "1(1),2(8),1(1),2(7),1(1),2(4),3(1),2(1),3(1),2(9),1(2),2(5),1(1),2(7),3(1),2(1),3(1),1(1),2(8),1(1),2(4),"
        "0(1),2(1),1(1),2(5),3(1),2(3),1(1),2(4),3(1),2(3),1(1),2(12),0(1),3(1),2(3),3(1),2(4),3(1),2(2),1(1),2(7)");
  // Input order does not matter: the same table from the reversed list.
  CHECK(table({numbered(5, 10, 3), numbered(4, 111, 2), numbered(3, 13, 1), numbered(1, 2, 0)}, 251) == t);
}

TEST_CASE("matches Cilium's per-backend shares for weighted and equal backends (M=1021)", "[unit][maglev]") {
  // Cilium's weighted-removal test: the same four backends with ids 1..4 at M = 1021 give 16 / 98 / 832 / 75.
  auto w = table({numbered(1, 2, 1), numbered(3, 13, 2), numbered(4, 111, 3), numbered(5, 10, 4)}, 1021);
  CHECK(counts(w, {1, 2, 3, 4}) == std::vector<size_t>{16, 98, 832, 75});
  // Cilium's EndpointSlice weight script test: two endpoints at weight 70 and two at 30 on port 8081/TCP.
  auto s = table({{maglevBackendKey("10.244.0.112", 8081, "TCP"), 1, 70},
                  {maglevBackendKey("10.244.0.113", 8081, "TCP"), 2, 70},
                  {maglevBackendKey("10.244.0.122", 8081, "TCP"), 3, 30},
                  {maglevBackendKey("10.244.0.123", 8081, "TCP"), 4, 30}},
                 1021);
  CHECK(counts(s, {1, 2, 3, 4}) == std::vector<size_t>{358, 357, 153, 153});
  // ... and after the first two go to weight 0 (maintenance): the remaining two split 511 / 510.
  auto m = table({{maglevBackendKey("10.244.0.112", 8081, "TCP"), 1, 0},
                  {maglevBackendKey("10.244.0.113", 8081, "TCP"), 2, 0},
                  {maglevBackendKey("10.244.0.122", 8081, "TCP"), 3, 30},
                  {maglevBackendKey("10.244.0.123", 8081, "TCP"), 4, 30}},
                 1021);
  CHECK(counts(m, {3, 4}) == std::vector<size_t>{511, 510});
  // Cilium's NodePort Maglev script test: 10.244.1.1-4:80/TCP, ids 1..4.
  std::vector<MaglevBackend> four;
  for (uint32_t i = 1; i <= 4; ++i) {
    four.push_back({maglevBackendKey("10.244.1." + std::to_string(i), 80, "TCP"), i, 100});
  }
  CHECK(counts(table(four, 1021), {1, 2, 3, 4}) == std::vector<size_t>{256, 255, 255, 255});
}
