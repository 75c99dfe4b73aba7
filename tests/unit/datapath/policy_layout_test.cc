// How an endpoint's policy entries are laid out in its hash and range trie (bpf/include/plexus/policy.h): which
// entries go where, the summaries, the FINAL marks, and the way back.
#include <netinet/in.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <tuple>

#include "plexus/datapath/policy_layout.h"
#include "plexus/reasons.h"

using namespace plexus::datapath;

namespace {

std::pair<plexus_policy_key, plexus_policy_value> entry(uint32_t prefixlen, uint32_t identity, uint8_t dir,
                                                        uint8_t proto = 0, uint16_t port = 0, bool deny = false,
                                                        uint32_t rule = 0) {
  plexus_policy_key k{};
  k.prefixlen = prefixlen;
  k.identity = identity;
  k.direction = dir;
  k.protocol = proto;
  k.dport = htons(port);
  plexus_policy_value v{};
  v.flags = deny ? PLEXUS_POLICY_F_DENY : 0;
  v.rule_id = rule;
  return {k, v};
}

const plexus_policy_value* find(const PolicyEntries& in, uint32_t prefixlen, uint32_t identity, uint8_t dir,
                                uint8_t proto = 0, uint16_t port = 0) {
  for (const auto& [k, v] : in) {
    if (k.prefixlen == prefixlen && k.identity == identity && k.direction == dir && k.protocol == proto &&
        k.dport == htons(port)) {
      return &v;
    }
  }
  return nullptr;
}

std::vector<std::string> bytes(const PolicyEntries& entries) {
  std::vector<std::string> out;
  for (const auto& [k, v] : entries) {
    out.push_back(std::string(reinterpret_cast<const char*>(&k), sizeof(k)) +
                  std::string(reinterpret_cast<const char*>(&v), sizeof(v)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The BPF program's lookup order (bpf/lib/policy.h policy_match and policy_verdict) over a layout, in userspace;
// verdict(): 0 allow, 1 deny, 2 no entry. Checked against the longest-prefix reading of the entries (contract()).
const plexus_policy_value* match(const PolicyLayout& l, uint32_t id, uint8_t dir, uint8_t proto, uint16_t port) {
  const plexus_policy_value* s = find(l.hash, PLEXUS_POLICY_SUMMARY_PREFIX, id, dir);
  if (!s) {
    return nullptr;
  }
  const plexus_policy_value* v = nullptr;
  if ((s->flags & PLEXUS_POLICY_S_PORT) && (v = find(l.hash, PLEXUS_POLICY_FULL_PREFIX, id, dir, proto, port))) {
    return v;
  }
  if (s->flags & PLEXUS_POLICY_S_RANGE) {
    uint32_t best = 0;
    for (const auto& [k, rv] : l.ranges) {
      uint32_t bits = k.prefixlen - PLEXUS_POLICY_PROTO_PREFIX;
      uint16_t mask = static_cast<uint16_t>(0xffff << (16 - bits));
      if (k.identity == id && k.direction == dir && k.protocol == proto &&
          (ntohs(k.dport) & mask) == (port & mask) && k.prefixlen > best) {
        best = k.prefixlen;
        v = &rv;
      }
    }
    if (v) {
      return v;
    }
  }
  if ((s->flags & PLEXUS_POLICY_S_PROTO) && (v = find(l.hash, PLEXUS_POLICY_PROTO_PREFIX, id, dir, proto))) {
    return v;
  }
  if (s->flags & PLEXUS_POLICY_S_ANY) {
    return find(l.hash, PLEXUS_POLICY_FIXED_PREFIX, id, dir);
  }
  return nullptr;
}

int verdict(const PolicyLayout& l, uint32_t peer, uint8_t dir, uint8_t proto, uint16_t port) {
  const plexus_policy_value* exact = match(l, peer, dir, proto, port);
  if (exact && (exact->flags & (PLEXUS_POLICY_F_DENY | PLEXUS_POLICY_F_FINAL))) {
    return (exact->flags & PLEXUS_POLICY_F_DENY) ? 1 : 0;
  }
  const plexus_policy_value* any = match(l, 0, dir, proto, port);
  if (any && (any->flags & PLEXUS_POLICY_F_DENY)) {
    return 1;
  }
  return exact || any ? 0 : 2;
}

// The contract on the entries themselves: the longest prefix per identity, a deny of either identity wins.
int contract(const PolicyEntries& entries, uint32_t peer, uint8_t dir, uint8_t proto, uint16_t port) {
  auto longest = [&](uint32_t id) -> std::optional<plexus_policy_value> {
    std::optional<plexus_policy_value> best;
    uint32_t best_len = 0;
    for (const auto& [k, v] : entries) {
      uint32_t bits = k.prefixlen <= PLEXUS_POLICY_PROTO_PREFIX ? 0 : k.prefixlen - PLEXUS_POLICY_PROTO_PREFIX;
      uint16_t mask = bits == 0 ? 0 : static_cast<uint16_t>(0xffff << (16 - bits));
      bool proto_ok = k.prefixlen == PLEXUS_POLICY_FIXED_PREFIX || k.protocol == proto;
      if (k.identity == id && k.direction == dir && proto_ok && (ntohs(k.dport) & mask) == (port & mask) &&
          (!best || k.prefixlen > best_len)) {
        best = v;
        best_len = k.prefixlen;
      }
    }
    return best;
  };
  auto p = longest(peer), a = longest(0);
  if ((p && (p->flags & PLEXUS_POLICY_F_DENY)) || (a && (a->flags & PLEXUS_POLICY_F_DENY))) {
    return 1;
  }
  return p || a ? 0 : 2;
}

}  // namespace

TEST_CASE("the hash holds exact ports, protocols and L3 entries; the trie holds port ranges", "[unit][policy]") {
  PolicyEntries in = {entry(PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80, false, 1),
                      entry(PLEXUS_POLICY_FULL_PREFIX - 4, 300, PLEXUS_DIR_INGRESS, 6, 8000, false, 2),
                      entry(PLEXUS_POLICY_PROTO_PREFIX, 301, PLEXUS_DIR_INGRESS, 17, 0, false, 3),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_EGRESS)};
  PolicyLayout l = layoutPolicy(in);
  REQUIRE(l.ranges.size() == 1);
  CHECK(l.ranges[0].first.dport == htons(8000));
  CHECK(l.ranges[0].second.rule_id == 2);
  CHECK(find(l.hash, PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80) != nullptr);
  CHECK(find(l.hash, PLEXUS_POLICY_PROTO_PREFIX, 301, PLEXUS_DIR_INGRESS, 17) != nullptr);
  CHECK(find(l.hash, PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_EGRESS) != nullptr);
  // One summary per (identity, direction), naming the lengths it has.
  const auto* s300 = find(l.hash, PLEXUS_POLICY_SUMMARY_PREFIX, 300, PLEXUS_DIR_INGRESS);
  REQUIRE(s300 != nullptr);
  CHECK(s300->flags == (PLEXUS_POLICY_S_PORT | PLEXUS_POLICY_S_RANGE));
  CHECK(find(l.hash, PLEXUS_POLICY_SUMMARY_PREFIX, 301, PLEXUS_DIR_INGRESS)->flags == PLEXUS_POLICY_S_PROTO);
  CHECK(find(l.hash, PLEXUS_POLICY_SUMMARY_PREFIX, 0, PLEXUS_DIR_EGRESS)->flags == PLEXUS_POLICY_S_ANY);
  CHECK(find(l.hash, PLEXUS_POLICY_SUMMARY_PREFIX, 0, PLEXUS_DIR_INGRESS) == nullptr);
  CHECK(l.hash.size() == 3 + 3);
}

TEST_CASE("bits a prefix does not cover are zero in the hash key", "[unit][policy]") {
  PolicyEntries in = {entry(PLEXUS_POLICY_PROTO_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 1234),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 301, PLEXUS_DIR_INGRESS, 17, 53)};
  PolicyLayout l = layoutPolicy(in);
  CHECK(find(l.hash, PLEXUS_POLICY_PROTO_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 0) != nullptr);
  CHECK(find(l.hash, PLEXUS_POLICY_FIXED_PREFIX, 301, PLEXUS_DIR_INGRESS, 0, 0) != nullptr);
}

TEST_CASE("a peer's entry is FINAL unless a wildcard deny exists in its direction", "[unit][policy]") {
  PolicyEntries in = {entry(PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80),
                      entry(PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_EGRESS, 6, 80),
                      entry(PLEXUS_POLICY_FULL_PREFIX, 301, PLEXUS_DIR_EGRESS, 6, 22, true),
                      entry(PLEXUS_POLICY_FULL_PREFIX, 0, PLEXUS_DIR_EGRESS, 6, 23, true),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_INGRESS)};
  PolicyLayout l = layoutPolicy(in);
  // Ingress has no wildcard deny: the peer's allow decides alone.
  CHECK(find(l.hash, PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80)->flags == PLEXUS_POLICY_F_FINAL);
  // Egress has one: the peer's allow needs the wildcard lookup; a peer's deny never does.
  CHECK(find(l.hash, PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_EGRESS, 6, 80)->flags == 0);
  CHECK(find(l.hash, PLEXUS_POLICY_FULL_PREFIX, 301, PLEXUS_DIR_EGRESS, 6, 22)->flags ==
        (PLEXUS_POLICY_F_DENY | PLEXUS_POLICY_F_FINAL));
  // Wildcard entries are the last lookup: never FINAL.
  CHECK(find(l.hash, PLEXUS_POLICY_FULL_PREFIX, 0, PLEXUS_DIR_EGRESS, 6, 23)->flags == PLEXUS_POLICY_F_DENY);
  CHECK(find(l.hash, PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_INGRESS)->flags == 0);
}

TEST_CASE("policyEntries gives back what layoutPolicy was given", "[unit][policy]") {
  PolicyEntries in = {entry(PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80, false, 7),
                      entry(PLEXUS_POLICY_FULL_PREFIX - 2, 300, PLEXUS_DIR_INGRESS, 6, 96, true, 8),
                      entry(PLEXUS_POLICY_PROTO_PREFIX, 0, PLEXUS_DIR_EGRESS, 1, 0, true, 9),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_INGRESS)};
  PolicyLayout l = layoutPolicy(in);
  CHECK(bytes(policyEntries(l.hash, l.ranges)) == bytes(in));
  CHECK(policyEntries(layoutPolicy({}).hash, {}).empty());
}

TEST_CASE("the datapath's lookup order over a layout gives the longest-prefix verdict, deny first",
          "[unit][policy]") {
  // Random entry sets over a small space (three identities plus the wildcard, two directions, two protocols, ports
  // 0-15 with every prefix length), unique keys as the compiler's output has. Every packet of the space gets the
  // same verdict from both readings.
  std::mt19937 rng(12345);
  for (int round = 0; round < 300; ++round) {
    std::map<std::tuple<uint32_t, uint32_t, uint8_t, uint8_t, uint16_t>, PolicyEntries::value_type> keyed;
    int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      uint32_t id = std::vector<uint32_t>{0, 300, 301, 302}[rng() % 4];
      uint8_t dir = rng() % 2 ? PLEXUS_DIR_INGRESS : PLEXUS_DIR_EGRESS;
      uint32_t kind = rng() % 4;
      uint8_t proto = kind == 0 ? 0 : (rng() % 2 ? 6 : 17);
      uint32_t bits = kind == 0 ? 0 : kind == 1 ? 0 : kind == 2 ? 16 : 12 + rng() % 4;
      uint16_t port = static_cast<uint16_t>(rng() % 16);
      if (bits < 16) {
        port = bits == 0 ? 0 : static_cast<uint16_t>(port & (0xffff << (16 - bits)));
      }
      uint32_t len = kind == 0 ? PLEXUS_POLICY_FIXED_PREFIX : PLEXUS_POLICY_PROTO_PREFIX + bits;
      auto e = entry(len, id, dir, proto, port, rng() % 3 == 0);
      keyed[{len, id, dir, proto, port}] = e;
    }
    PolicyEntries in;
    for (const auto& [key, e] : keyed) {
      in.push_back(e);
    }
    PolicyLayout l = layoutPolicy(in);
    for (uint32_t peer : {300u, 301u, 302u, 303u}) {
      for (uint8_t dir : {uint8_t{PLEXUS_DIR_INGRESS}, uint8_t{PLEXUS_DIR_EGRESS}}) {
        for (uint8_t proto : {uint8_t{6}, uint8_t{17}, uint8_t{1}}) {
          for (uint16_t port = 0; port < 16; ++port) {
            INFO("round " << round << " peer " << peer << " dir " << int(dir) << " proto " << int(proto) << " port "
                          << port);
            CHECK(verdict(l, peer, dir, proto, port) == contract(in, peer, dir, proto, port));
          }
        }
      }
    }
  }
}
