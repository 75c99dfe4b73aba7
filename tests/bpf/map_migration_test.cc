// Pinned maps across layout and size changes: what an older agent left pinned is carried into this build's maps
// when the programs load, and the old pin is removed.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>

#include "lxc_fixture.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/reasons.h"
#include "testing.h"

using namespace plexus;
using namespace plexus::datapath;
using namespace plexus::testing;

namespace {

bool pinned(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

plexus_ct4_key ctKey(uint32_t i, uint8_t dir) {
  plexus_ct4_key k{};
  k.saddr = htonl(0x0af40000 + i);
  k.daddr = htonl(0x0af50000 + i);
  k.sport = htons(static_cast<uint16_t>(1024 + i % 60000));
  k.dport = htons(80);
  k.proto = IPPROTO_TCP;
  k.dir = dir;
  return k;
}

uint8_t dirOf(uint32_t i) { return static_cast<uint8_t>(PLEXUS_CT_SERVICE + i % 5); }

plexus_ct4_value ctValue(uint32_t i) {
  plexus_ct4_value v{};
  v.last_seen_ns = 1000000 + i;
  v.backend_id = i;
  v.rev_nat_index = static_cast<uint16_t>(i % 7);
  v.tx_flags = PLEXUS_TCP_SYN | PLEXUS_TCP_ACK;
  v.rx_flags = PLEXUS_TCP_ACK;
  v.nat_port = htons(static_cast<uint16_t>(32768 + i % 1000));
  return v;
}

// The report of the carry from `from`, if the load made one.
const CarryReport* reportFrom(const LxcDatapath& dp, const std::string& from) {
  for (const CarryReport& r : dp.carried()) {
    if (r.from == from) {
      return &r;
    }
  }
  return nullptr;
}

struct Root {
  TempDir tmp;
  BpffsMount bpffs{tmp.path() + "/bpffs"};
  std::string path = bpffs.path() + "/plexus";

  Root() { REQUIRE(ensureBpfRoot(path).ok()); }

  std::unique_ptr<LxcDatapath> load(uint32_t ct_map_size = PLEXUS_CT4_DEFAULT_MAX) {
    LxcConfig cfg;
    cfg.bpf_root = path;
    cfg.sizes.ct = ct_map_size;
    auto dp = LxcDatapath::load(cfg);
    INFO((dp.ok() ? std::string() : dp.error().message));
    REQUIRE(dp.ok());
    return std::move(dp.value());
  }

  uint32_t maxEntries(const std::string& name) const {
    UniqueFd fd(bpf_obj_get((path + "/" + name).c_str()));
    REQUIRE(fd.valid());
    auto info = mapInfo(fd.get());
    REQUIRE(info.ok());
    return info->max_entries;
  }
};

}  // namespace

TEST_CASE("a pinned plexus_ct4_v1 is carried into plexus_ct4_v2 at load, and its pin removed", "[bpf][migration]") {
  Root root;
  // The v1 map as the previous build created it: LRU_HASH, 16-byte key, 16-byte value (no nat_port).
  UniqueFd v1(bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "plexus_ct4_v1", sizeof(plexus_ct4_key),
                             sizeof(plexus_ct4_value_v1), 4096, nullptr));
  REQUIRE(v1.valid());
  constexpr uint32_t kFlows = 300;
  for (uint32_t i = 0; i < kFlows; ++i) {
    plexus_ct4_key k = ctKey(i, dirOf(i));
    plexus_ct4_value_v1 v{};
    v.last_seen_ns = 5000 + i;
    v.backend_id = 100 + i;
    v.rev_nat_index = static_cast<uint16_t>(i % 9);
    v.tx_flags = PLEXUS_TCP_SYN;
    v.rx_flags = static_cast<uint8_t>(i % 2 ? PLEXUS_TCP_ACK : 0);
    REQUIRE(bpf_map_update_elem(v1.get(), &k, &v, BPF_NOEXIST) == 0);
  }
  // One key no datapath lookup could match (a direction that does not exist): not carried over, and said so.
  plexus_ct4_key bogus = ctKey(kFlows, 0);
  plexus_ct4_value_v1 zero{};
  REQUIRE(bpf_map_update_elem(v1.get(), &bogus, &zero, BPF_NOEXIST) == 0);
  const std::string v1_pin = root.path + "/plexus_ct4_v1";
  REQUIRE(bpf_obj_pin(v1.get(), v1_pin.c_str()) == 0);
  v1.reset();

  auto dp = root.load();
  CHECK_FALSE(pinned(v1_pin));
  CHECK(pinned(root.path + "/plexus_ct4_v2"));
  const CarryReport* r = reportFrom(*dp, "plexus_ct4_v1");
  REQUIRE(r != nullptr);
  CHECK(r->to == "plexus_ct4_v2");
  CHECK(r->read == kFlows + 1);
  CHECK(r->carried == kFlows);
  CHECK(r->dropped == 0);
  REQUIRE(r->lost.size() == 1);
  CHECK(r->lost.begin()->second == 1);
  CHECK(r->summary().find("300 of 301 entries carried over") != std::string::npos);

  auto entries = dp->lb().ct.entries();
  REQUIRE(entries.ok());
  CHECK(entries->size() == kFlows);
  for (uint32_t i = 0; i < kFlows; ++i) {
    auto v = dp->lb().ct.lookup(ctKey(i, dirOf(i)));
    REQUIRE(v.ok());
    REQUIRE(v->has_value());
    CHECK((*v)->last_seen_ns == 5000 + i);
    CHECK((*v)->backend_id == 100 + i);
    CHECK((*v)->rev_nat_index == i % 9);
    CHECK((*v)->tx_flags == PLEXUS_TCP_SYN);
    CHECK((*v)->rx_flags == (i % 2 ? PLEXUS_TCP_ACK : 0));
    CHECK((*v)->nat_port == 0);
  }
  auto absent = dp->lb().ct.lookup(bogus);
  REQUIRE(absent.ok());
  CHECK_FALSE(absent->has_value());

  // The next start finds nothing more to carry.
  dp.reset();
  auto again = root.load();
  CHECK(again->carried().empty());
}

TEST_CASE("a conntrack map pinned with another size is recreated at the new size with the entries that fit",
          "[bpf][migration]") {
  Root root;
  constexpr uint32_t kFlows = 1500;
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> flow_of;  // (saddr, dir) -> i
  {
    auto dp = root.load(2048);
    std::vector<std::pair<plexus_ct4_key, plexus_ct4_value>> pairs;
    for (uint32_t i = 0; i < kFlows; ++i) {
      pairs.emplace_back(ctKey(i, dirOf(i)), ctValue(i));
      flow_of[{pairs.back().first.saddr, pairs.back().first.dir}] = i;
    }
    REQUIRE(dp->lb().ct.updateBatch(pairs).ok());
    REQUIRE(countKeys(dp->lb().ct.fd()) == kFlows);
  }
  // Today libbpf would refuse the pin ("parameter mismatch") and the agent would not start.
  auto dp = root.load(1024);
  CHECK(root.maxEntries("plexus_ct4_v2") == 1024);
  CHECK_FALSE(pinned(root.path + "/plexus_ct4_v2_old"));
  const CarryReport* r = reportFrom(*dp, "plexus_ct4_v2");
  REQUIRE(r != nullptr);
  CHECK(r->from_max_entries == 2048);
  CHECK(r->to_max_entries == 1024);
  CHECK(r->read == kFlows);
  CHECK(r->lost.empty());
  // As many as fit (an LRU map may evict a few of the last ones near its size), and the rest counted as dropped.
  CHECK(r->carried + r->dropped == kFlows);
  CHECK(r->carried <= 1024);
  CHECK(r->carried >= 1024 - 128);
  auto entries = dp->lb().ct.entries();
  REQUIRE(entries.ok());
  CHECK(entries->size() == r->carried);
  for (const auto& [k, v] : *entries) {
    auto it = flow_of.find({k.saddr, k.dir});
    REQUIRE(it != flow_of.end());
    plexus_ct4_value want = ctValue(it->second);
    CHECK(std::memcmp(&v, &want, sizeof(v)) == 0);
  }

  // Growing again keeps every entry.
  size_t kept = entries->size();
  dp.reset();
  auto grown = root.load(4096);
  CHECK(root.maxEntries("plexus_ct4_v2") == 4096);
  r = reportFrom(*grown, "plexus_ct4_v2");
  REQUIRE(r != nullptr);
  CHECK(r->lossless());
  CHECK(r->carried == kept);
  CHECK(countKeys(grown->lb().ct.fd()) == kept);
}

TEST_CASE("a carry interrupted before its old pin was removed is finished at the next load", "[bpf][migration]") {
  Root root;
  // What a kill -9 between the move aside and the carry leaves: the old map pinned as "<name>_old".
  UniqueFd old(bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "plexus_ct4_v2", sizeof(plexus_ct4_key),
                              sizeof(plexus_ct4_value), 8192, nullptr));
  REQUIRE(old.valid());
  for (uint32_t i = 0; i < 10; ++i) {
    plexus_ct4_key k = ctKey(i, PLEXUS_CT_EGRESS);
    plexus_ct4_value v = ctValue(i);
    REQUIRE(bpf_map_update_elem(old.get(), &k, &v, BPF_NOEXIST) == 0);
  }
  REQUIRE(bpf_obj_pin(old.get(), (root.path + "/plexus_ct4_v2_old").c_str()) == 0);
  auto dp = root.load();
  CHECK_FALSE(pinned(root.path + "/plexus_ct4_v2_old"));
  CHECK(countKeys(dp->lb().ct.fd()) == 10);
  auto v = dp->lb().ct.lookup(ctKey(3, PLEXUS_CT_EGRESS));
  REQUIRE(v.ok());
  REQUIRE(v->has_value());
  CHECK((*v)->nat_port == ctValue(3).nat_port);
}

TEST_CASE("a failed load puts a map moved aside back; a layout changed in place is refused", "[bpf][migration]") {
  Root root;
  {
    auto dp = root.load(2048);
    REQUIRE(dp->lb().ct.update(ctKey(1, PLEXUS_CT_INGRESS), ctValue(1)).ok());
  }
  // The endpoints map pinned with a value size this build does not have: the same name with another layout, which
  // only a new version may bring. libbpf refuses it, so the load fails...
  UniqueFd bad(bpf_map_create(BPF_MAP_TYPE_HASH, "plexus_endpoint", sizeof(plexus_endpoint_key), 12, 16, nullptr));
  REQUIRE(bad.valid());
  const std::string ep_pin = root.path + "/plexus_endpoints_v1";
  REQUIRE(unlink(ep_pin.c_str()) == 0);
  REQUIRE(bpf_obj_pin(bad.get(), ep_pin.c_str()) == 0);
  LxcConfig cfg;
  cfg.bpf_root = root.path;
  cfg.sizes.ct = 1024;  // ... after the conntrack map was moved aside for its new size
  auto failed = LxcDatapath::load(cfg);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().message.find("must match this build's layouts") != std::string::npos);
  // Nothing is lost: the conntrack map is pinned where it was, with its size and entry, and nothing is left aside.
  CHECK(root.maxEntries("plexus_ct4_v2") == 2048);
  CHECK_FALSE(pinned(root.path + "/plexus_ct4_v2_old"));
  UniqueFd ct(bpf_obj_get((root.path + "/plexus_ct4_v2").c_str()));
  auto map = BpfMap<plexus_ct4_key, plexus_ct4_value>::fromFd(ct.get());
  REQUIRE(map.ok());
  auto v = map->lookup(ctKey(1, PLEXUS_CT_INGRESS));
  REQUIRE(v.ok());
  CHECK(v->has_value());
  CHECK(root.maxEntries("plexus_endpoints_v1") == 16);
}

namespace {
// A policy outer map of `slots` endpoints pinned under `name`, endpoint 5 holding an inner map of `inner_type` with
// `entries`.
void pinPolicyOuter(const Root& root, const char* name, bpf_map_type inner_type, uint32_t slots,
                    const PolicyEntries& entries) {
  LIBBPF_OPTS(bpf_map_create_opts, inner_opts, .map_flags = BPF_F_NO_PREALLOC);
  UniqueFd inner(bpf_map_create(inner_type, "plexus_policy_i", sizeof(plexus_policy_key), sizeof(plexus_policy_value),
                                PLEXUS_POLICY_INNER_MAX, &inner_opts));
  REQUIRE(inner.valid());
  for (const auto& [k, v] : entries) {
    REQUIRE(bpf_map_update_elem(inner.get(), &k, &v, BPF_ANY) == 0);
  }
  LIBBPF_OPTS(bpf_map_create_opts, outer_opts, .inner_map_fd = static_cast<__u32>(inner.get()));
  UniqueFd outer(bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, name, sizeof(uint32_t), sizeof(uint32_t), slots,
                                &outer_opts));
  REQUIRE(outer.valid());
  uint32_t ep = 5;
  int inner_fd = inner.get();
  REQUIRE(bpf_map_update_elem(outer.get(), &ep, &inner_fd, BPF_ANY) == 0);
  REQUIRE(bpf_obj_pin(outer.get(), (root.path + "/" + name).c_str()) == 0);
}
}  // namespace

TEST_CASE("a map of maps pinned with another size is recreated with its inner maps", "[bpf][migration]") {
  Root root;
  // The policy outer map as a build with room for 64 endpoints left it, endpoint 5 holding its hash.
  PolicyEntries policy = layoutPolicy(allowAllPolicy());
  pinPolicyOuter(root, "plexus_policy_v3", BPF_MAP_TYPE_HASH, 64, policy);

  auto dp = root.load();
  CHECK(root.maxEntries("plexus_policy_v3") == PLEXUS_POLICY_ENDPOINTS_MAX);
  const CarryReport* r = reportFrom(*dp, "plexus_policy_v3");
  REQUIRE(r != nullptr);
  CHECK(r->read == 1);
  CHECK(r->carried == 1);
  CHECK(r->lossless());
  auto got = dp->policy().get(5);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 2);
  CHECK(got->front().first.prefixlen == PLEXUS_POLICY_FIXED_PREFIX);
  CHECK_FALSE(dp->policy().get(6).ok());
}

namespace {
// An ingress entry of `prefixlen` whose rule id is its length.
std::pair<plexus_policy_key, plexus_policy_value> policyEntry(uint32_t prefixlen, uint32_t identity, uint8_t proto,
                                                              uint16_t port, bool deny = false) {
  plexus_policy_key k = policyKey(identity, PLEXUS_DIR_INGRESS, proto, port);
  k.prefixlen = prefixlen;
  return std::pair(k, policyValue(prefixlen, deny));
}

// Endpoint 5's entries as older builds left them: an exact port, a port range (two prefixes), a protocol and a deny.
PolicyEntries olderPolicy() {
  return {policyEntry(PLEXUS_POLICY_FULL_PREFIX, 300, 6, 80),
          policyEntry(PLEXUS_POLICY_FULL_PREFIX - 3, 300, 6, 8000),
          policyEntry(PLEXUS_POLICY_FULL_PREFIX - 1, 300, 6, 8008),
          policyEntry(PLEXUS_POLICY_PROTO_PREFIX, 301, 17, 0),
          policyEntry(PLEXUS_POLICY_FIXED_PREFIX, 302, 0, 0, true)};
}

std::vector<std::string> policyBytes(const PolicyEntries& entries) {  // each entry's key and value bytes, sorted
  std::vector<std::string> out;
  for (const auto& [k, v] : entries) {
    out.push_back(std::string(reinterpret_cast<const char*>(&k), sizeof(k)) +
                  std::string(reinterpret_cast<const char*>(&v), sizeof(v)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The v3 hash holds the ranges too: identity 300's summary names both range lengths.
void checkV3Ranges(const Root& root) {
  uint32_t ep = 5;
  uint32_t inner_id = 0;
  UniqueFd outer(bpf_obj_get((root.path + "/plexus_policy_v3").c_str()));
  REQUIRE(bpf_map_lookup_elem(outer.get(), &ep, &inner_id) == 0);
  UniqueFd hash(bpf_map_get_fd_by_id(inner_id));
  auto map = BpfMap<plexus_policy_key, plexus_policy_value>::fromFd(hash.get());
  REQUIRE(map.ok());
  plexus_policy_key summary{};
  summary.identity = 300;
  summary.direction = PLEXUS_DIR_INGRESS;
  auto v = map->lookup(summary);
  REQUIRE(v.ok());
  REQUIRE(v->has_value());
  CHECK((*v)->flags == (PLEXUS_POLICY_S_PORT | PLEXUS_POLICY_S_RANGE));
  CHECK((*v)->rule_id == ((1u << 13) | (1u << 15)));
}
}  // namespace

TEST_CASE("the policy tries of plexus_policy_v1 are laid out anew in plexus_policy_v3", "[bpf][migration]") {
  Root root;
  PolicyEntries v1 = olderPolicy();  // one trie per endpoint, every entry in it
  pinPolicyOuter(root, "plexus_policy_v1", BPF_MAP_TYPE_LPM_TRIE, PLEXUS_POLICY_ENDPOINTS_MAX, v1);

  auto dp = root.load();
  const CarryReport* r = reportFrom(*dp, "plexus_policy_v1");
  REQUIRE(r != nullptr);
  CHECK(r->to == "plexus_policy_v3");
  CHECK(r->read == 1);
  CHECK(r->carried == 1);
  CHECK(r->lossless());
  CHECK_FALSE(pinned(root.path + "/plexus_policy_v1"));  // carried whole: the old pin is gone
  auto got = dp->policy().get(5);
  REQUIRE(got.ok());
  CHECK(policyBytes(*got) == policyBytes(v1));
  checkV3Ranges(root);
}

TEST_CASE("the hashes and range tries of plexus_policy_v2 are laid out anew in plexus_policy_v3", "[bpf][migration]") {
  Root root;
  // What v2 held: a hash of the entries without the ranges (with v2's summaries, which carry no range lengths), and
  // a trie of the ranges.
  PolicyEntries entries = olderPolicy();
  PolicyEntries hash, ranges;
  for (const auto& e : layoutPolicy(entries)) {
    bool range = e.first.prefixlen > PLEXUS_POLICY_PROTO_PREFIX && e.first.prefixlen < PLEXUS_POLICY_FULL_PREFIX;
    auto& part = range ? ranges : hash;
    part.push_back(e);
    if (e.first.prefixlen == PLEXUS_POLICY_SUMMARY_PREFIX) {
      part.back().second.rule_id = 0;
    }
  }
  REQUIRE(ranges.size() == 2);
  pinPolicyOuter(root, "plexus_policy_v2", BPF_MAP_TYPE_HASH, PLEXUS_POLICY_ENDPOINTS_MAX, hash);
  pinPolicyOuter(root, "plexus_policy_range_v1", BPF_MAP_TYPE_LPM_TRIE, PLEXUS_POLICY_ENDPOINTS_MAX, ranges);

  auto dp = root.load();
  const CarryReport* r = reportFrom(*dp, "plexus_policy_v2");
  REQUIRE(r != nullptr);
  CHECK(r->to == "plexus_policy_v3");
  CHECK(r->read == 1);
  CHECK(r->carried == 1);
  CHECK(r->lossless());
  CHECK_FALSE(pinned(root.path + "/plexus_policy_v2"));
  CHECK_FALSE(pinned(root.path + "/plexus_policy_range_v1"));
  auto got = dp->policy().get(5);
  REQUIRE(got.ok());
  CHECK(policyBytes(*got) == policyBytes(entries));
  checkV3Ranges(root);
}
