// The pure half of pinned-map migration: converters, the table of layout changes, and what a carry keeps.
#include <netinet/in.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <set>

#include "plexus/datapath/map_convert.h"

using namespace plexus::datapath;

namespace {

template <typename T>
std::vector<uint8_t> bytes(const T& v) {
  std::vector<uint8_t> out(sizeof(T));
  std::memcpy(out.data(), &v, sizeof(T));
  return out;
}

template <typename T>
T from(const std::vector<uint8_t>& b) {
  T v{};
  REQUIRE(b.size() == sizeof(T));
  std::memcpy(&v, b.data(), sizeof(T));
  return v;
}

plexus_ct4_key ctKey(uint32_t i, uint8_t dir) {
  plexus_ct4_key k{};
  k.saddr = htonl(0x0af40000 + i);
  k.daddr = htonl(0x0af40100 + i);
  k.sport = htons(static_cast<uint16_t>(40000 + i));
  k.dport = htons(80);
  k.proto = IPPROTO_TCP;
  k.dir = dir;
  return k;
}

RawEntry rawV1(const plexus_ct4_key& k, const plexus_ct4_value_v1& v) { return RawEntry{bytes(k), bytes(v)}; }

const MapMigration& ctRow() {
  for (const MapMigration& m : mapMigrations()) {
    if (m.from == "plexus_ct4_v1") {
      return m;
    }
  }
  FAIL("no migration row for plexus_ct4_v1");
  return mapMigrations().front();
}

}  // namespace

TEST_CASE("a conntrack v1 entry becomes the same v2 entry with no moved port", "[unit][migration]") {
  // Property over random entries of every direction: each v1 field lands unchanged, nat_port and the padding are 0.
  std::mt19937_64 rng(13);
  for (int i = 0; i < 1000; ++i) {
    auto dir = static_cast<uint8_t>(PLEXUS_CT_SERVICE + i % 5);
    plexus_ct4_key k = ctKey(static_cast<uint32_t>(rng()), dir);
    plexus_ct4_value_v1 v{};
    v.last_seen_ns = rng();
    v.backend_id = static_cast<uint32_t>(rng());
    v.rev_nat_index = static_cast<uint16_t>(rng());
    v.tx_flags = static_cast<uint8_t>(rng());
    v.rx_flags = static_cast<uint8_t>(rng());
    auto c = convertCt4V1(k, v);
    REQUIRE(c.skipped == nullptr);
    CHECK(std::memcmp(&c.key, &k, sizeof(k)) == 0);
    CHECK(c.value.last_seen_ns == v.last_seen_ns);
    CHECK(c.value.backend_id == v.backend_id);
    CHECK(c.value.rev_nat_index == v.rev_nat_index);
    CHECK(c.value.tx_flags == v.tx_flags);
    CHECK(c.value.rx_flags == v.rx_flags);
    CHECK(c.value.nat_port == 0);
    CHECK(c.value.flags == 0);  // nothing known of a translation: replies look their reverse entries up
    CHECK(c.value.verdict_epoch == 0);  // no verdict cached: the first packet after the upgrade is judged
  }
}

TEST_CASE("conntrack v1 keys no lookup could match are not carried over, with the reason", "[unit][migration]") {
  plexus_ct4_value_v1 v{};
  plexus_ct4_key padded = ctKey(1, PLEXUS_CT_EGRESS);
  padded.pad[1] = 1;
  CHECK(convertCt4V1(padded, v).skipped != nullptr);
  for (uint8_t dir : {uint8_t{0}, uint8_t{PLEXUS_CT_REVERSE_NODEPORT + 1}, uint8_t{255}}) {
    auto c = convertCt4V1(ctKey(1, dir), v);
    REQUIRE(c.skipped != nullptr);
    CHECK(std::string(c.skipped).find("direction") != std::string::npos);
  }
}

TEST_CASE("the table has one row per retired layout, and the conntrack row converts raw bytes", "[unit][migration]") {
  std::set<std::string> old_pins;
  for (const MapMigration& m : mapMigrations()) {
    CHECK(m.from != m.to);
    CHECK(old_pins.insert(m.from).second);  // one converter per old pin
    CHECK(m.convert);
  }
  const MapMigration& row = ctRow();
  CHECK(row.to == "plexus_ct4_v2");
  CHECK(row.from_key_size == 16);
  CHECK(row.from_value_size == 16);

  plexus_ct4_key k = ctKey(7, PLEXUS_CT_REVERSE);
  plexus_ct4_value_v1 v{};
  v.last_seen_ns = 123456789;
  v.backend_id = 0;
  v.rev_nat_index = 9;
  v.rx_flags = PLEXUS_TCP_SYN | PLEXUS_TCP_ACK;
  RawEntry out;
  REQUIRE(row.convert(rawV1(k, v), &out) == nullptr);
  auto nk = from<plexus_ct4_key>(out.key);
  auto nv = from<plexus_ct4_value>(out.value);
  CHECK(std::memcmp(&nk, &k, sizeof(k)) == 0);
  CHECK(nv.last_seen_ns == 123456789);
  CHECK(nv.rev_nat_index == 9);
  CHECK(nv.rx_flags == (PLEXUS_TCP_SYN | PLEXUS_TCP_ACK));
  CHECK(nv.nat_port == 0);

  // Bytes of another layout are never reinterpreted: a v2-sized value is refused.
  RawEntry v2_sized{bytes(k), std::vector<uint8_t>(sizeof(plexus_ct4_value))};
  CHECK(row.convert(v2_sized, &out) != nullptr);
}

TEST_CASE("a recreated map's entries are copied as they are", "[unit][migration]") {
  RawEntry in{{1, 2, 3}, {4, 5, 6, 7}};
  RawEntry out;
  REQUIRE(copyEntry(in, &out) == nullptr);
  CHECK(out.key == in.key);
  CHECK(out.value == in.value);
}

TEST_CASE("a carry keeps what fits in order and counts what it skips and drops", "[unit][migration]") {
  std::vector<RawEntry> old;
  for (uint32_t i = 0; i < 10; ++i) {
    // Every third entry has an unknown direction.
    old.push_back(rawV1(ctKey(i, i % 3 == 0 ? 0 : PLEXUS_CT_INGRESS), plexus_ct4_value_v1{}));
  }
  SECTION("room for all") {
    CarryPlan plan = planCarry(old, ctRow().convert, 100);
    CHECK(plan.report.read == 10);
    CHECK(plan.entries.size() == 6);
    CHECK(plan.report.dropped == 0);
    REQUIRE(plan.report.lost.size() == 1);
    CHECK(plan.report.lost.begin()->second == 4);
    CHECK_FALSE(plan.report.lossless());
    // In the old map's order.
    CHECK(from<plexus_ct4_key>(plan.entries.front().key).saddr == ctKey(1, 0).saddr);
    CHECK(from<plexus_ct4_key>(plan.entries.back().key).saddr == ctKey(8, 0).saddr);
  }
  SECTION("room for some") {
    CarryPlan plan = planCarry(old, ctRow().convert, 4);
    CHECK(plan.entries.size() == 4);
    CHECK(plan.report.dropped == 2);
    CHECK(plan.report.lost.begin()->second == 4);
  }
  SECTION("no room") {
    CarryPlan plan = planCarry(old, copyEntry, 0);
    CHECK(plan.entries.empty());
    CHECK(plan.report.dropped == 10);
    CHECK(plan.report.lost.empty());
  }
  SECTION("a lossless carry") {
    CarryPlan plan = planCarry(old, copyEntry, 10);
    CHECK(plan.entries.size() == 10);
    CHECK(plan.report.lossless());
  }
}

TEST_CASE("the log line of a carry says what was carried, dropped and lost, and why", "[unit][migration]") {
  CarryReport r;
  r.from = "plexus_ct4_v1";
  r.to = "plexus_ct4_v2";
  r.read = 14;
  r.carried = 11;
  r.dropped = 2;
  r.to_max_entries = 1024;
  r.lost["its direction is unknown"] = 1;
  std::string s = r.summary();
  CHECK(s.find("plexus_ct4_v1 -> plexus_ct4_v2: 11 of 14 entries carried over") != std::string::npos);
  CHECK(s.find("2 dropped (the new map holds 1024 entries)") != std::string::npos);
  CHECK(s.find("1 not carried over: its direction is unknown") != std::string::npos);

  CarryReport resized;
  resized.from = resized.to = "plexus_ct4_v2";
  resized.from_max_entries = 2048;
  resized.to_max_entries = 1024;
  resized.read = resized.carried = 5;
  CHECK(resized.summary() == "plexus_ct4_v2 (recreated, 2048 -> 1024 entries): 5 of 5 entries carried over");
  CHECK(resized.lossless());
}
