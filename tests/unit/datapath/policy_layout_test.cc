// How an endpoint's policy entries are laid out in its hash (bpf/include/plexus/policy.h): the keys, the summaries
// with their range lengths, the FINAL marks, and the way back.
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
// `inline_summaries` false reads the layout as programs older than S_INLINE do (the entries, never the summary's
// verdict), which must give the same answers.
std::optional<plexus_policy_value> match(const PolicyEntries& l, uint32_t id, uint8_t dir, uint8_t proto,
                                         uint16_t port, bool inline_summaries) {
  const plexus_policy_value* s = find(l, PLEXUS_POLICY_SUMMARY_PREFIX, id, dir);
  if (!s) {
    return std::nullopt;
  }
  if (inline_summaries && (s->flags & PLEXUS_POLICY_S_INLINE)) {
    plexus_policy_value v{};
    v.flags = s->flags & (PLEXUS_POLICY_F_DENY | PLEXUS_POLICY_F_FINAL);
    v.rule_id = s->rule_id;
    return v;
  }
  const plexus_policy_value* v = nullptr;
  if ((s->flags & PLEXUS_POLICY_S_PORT) && (v = find(l, PLEXUS_POLICY_FULL_PREFIX, id, dir, proto, port))) {
    return *v;
  }
  if (s->flags & PLEXUS_POLICY_S_RANGE) {
    for (uint32_t bits = 15; bits >= 1; --bits) {  // the lengths the summary names, longest first
      uint16_t masked = static_cast<uint16_t>(port & (0xffff << (16 - bits)));
      if ((s->rule_id & (1u << bits)) &&
          (v = find(l, PLEXUS_POLICY_PROTO_PREFIX + bits, id, dir, proto, masked))) {
        return *v;
      }
    }
  }
  if ((s->flags & PLEXUS_POLICY_S_PROTO) && (v = find(l, PLEXUS_POLICY_PROTO_PREFIX, id, dir, proto))) {
    return *v;
  }
  if ((s->flags & PLEXUS_POLICY_S_ANY) && (v = find(l, PLEXUS_POLICY_FIXED_PREFIX, id, dir))) {
    return *v;
  }
  return std::nullopt;
}

int verdict(const PolicyEntries& l, uint32_t peer, uint8_t dir, uint8_t proto, uint16_t port,
            bool inline_summaries = true) {
  auto exact = match(l, peer, dir, proto, port, inline_summaries);
  if (exact && (exact->flags & (PLEXUS_POLICY_F_DENY | PLEXUS_POLICY_F_FINAL))) {
    return (exact->flags & PLEXUS_POLICY_F_DENY) ? 1 : 0;
  }
  auto any = match(l, 0, dir, proto, port, inline_summaries);
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

TEST_CASE("the hash holds every entry; summaries name the kinds and the range lengths", "[unit][policy]") {
  PolicyEntries in = {entry(PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80, false, 1),
                      entry(PLEXUS_POLICY_FULL_PREFIX - 4, 300, PLEXUS_DIR_INGRESS, 6, 8000, false, 2),
                      entry(PLEXUS_POLICY_FULL_PREFIX - 1, 300, PLEXUS_DIR_INGRESS, 6, 9000, false, 4),
                      entry(PLEXUS_POLICY_PROTO_PREFIX, 301, PLEXUS_DIR_INGRESS, 17, 0, false, 3),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_EGRESS)};
  PolicyEntries l = layoutPolicy(in);
  CHECK(find(l, PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80) != nullptr);
  const auto* range = find(l, PLEXUS_POLICY_FULL_PREFIX - 4, 300, PLEXUS_DIR_INGRESS, 6, 8000);
  REQUIRE(range != nullptr);
  CHECK(range->rule_id == 2);
  CHECK(find(l, PLEXUS_POLICY_FULL_PREFIX - 1, 300, PLEXUS_DIR_INGRESS, 6, 9000) != nullptr);
  CHECK(find(l, PLEXUS_POLICY_PROTO_PREFIX, 301, PLEXUS_DIR_INGRESS, 17) != nullptr);
  CHECK(find(l, PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_EGRESS) != nullptr);
  // One summary per (identity, direction), naming the kinds it has and, for ranges, their lengths.
  const auto* s300 = find(l, PLEXUS_POLICY_SUMMARY_PREFIX, 300, PLEXUS_DIR_INGRESS);
  REQUIRE(s300 != nullptr);
  CHECK(s300->flags == (PLEXUS_POLICY_S_PORT | PLEXUS_POLICY_S_RANGE));
  CHECK(s300->rule_id == ((1u << 12) | (1u << 15)));
  CHECK(find(l, PLEXUS_POLICY_SUMMARY_PREFIX, 301, PLEXUS_DIR_INGRESS)->flags == PLEXUS_POLICY_S_PROTO);
  CHECK(find(l, PLEXUS_POLICY_SUMMARY_PREFIX, 301, PLEXUS_DIR_INGRESS)->rule_id == 0);
  // An identity whose only entry covers every port: its summary carries the verdict (the entry stays).
  CHECK(find(l, PLEXUS_POLICY_SUMMARY_PREFIX, 0, PLEXUS_DIR_EGRESS)->flags ==
        (PLEXUS_POLICY_S_ANY | PLEXUS_POLICY_S_INLINE));
  CHECK(find(l, PLEXUS_POLICY_SUMMARY_PREFIX, 0, PLEXUS_DIR_INGRESS) == nullptr);
  CHECK(l.size() == 5 + 3);
}

TEST_CASE("a summary carries the verdict of an identity's only entry when it covers every port", "[unit][policy]") {
  PolicyEntries in = {entry(PLEXUS_POLICY_FIXED_PREFIX, 300, PLEXUS_DIR_INGRESS, 0, 0, false, 11),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 301, PLEXUS_DIR_INGRESS, 0, 0, true, 12),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 302, PLEXUS_DIR_INGRESS, 0, 0, false, 13),
                      entry(PLEXUS_POLICY_FULL_PREFIX, 302, PLEXUS_DIR_INGRESS, 6, 22, true, 14),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_EGRESS, 0, 0, false, 15),
                      entry(PLEXUS_POLICY_FULL_PREFIX, 0, PLEXUS_DIR_EGRESS, 6, 23, true, 16)};
  PolicyEntries l = layoutPolicy(in);
  // A peer's allow and deny: FINAL (no wildcard deny in ingress), the rule where a summary keeps range lengths.
  const auto* allow = find(l, PLEXUS_POLICY_SUMMARY_PREFIX, 300, PLEXUS_DIR_INGRESS);
  REQUIRE(allow != nullptr);
  CHECK(allow->flags == (PLEXUS_POLICY_S_ANY | PLEXUS_POLICY_S_INLINE | PLEXUS_POLICY_F_FINAL));
  CHECK(allow->rule_id == 11);
  const auto* deny = find(l, PLEXUS_POLICY_SUMMARY_PREFIX, 301, PLEXUS_DIR_INGRESS);
  REQUIRE(deny != nullptr);
  CHECK(deny->flags == (PLEXUS_POLICY_S_ANY | PLEXUS_POLICY_S_INLINE | PLEXUS_POLICY_F_DENY | PLEXUS_POLICY_F_FINAL));
  CHECK(deny->rule_id == 12);
  // An identity with a port entry too, and the egress wildcard with a port deny: no verdict in the summary.
  CHECK(find(l, PLEXUS_POLICY_SUMMARY_PREFIX, 302, PLEXUS_DIR_INGRESS)->flags ==
        (PLEXUS_POLICY_S_ANY | PLEXUS_POLICY_S_PORT));
  CHECK(find(l, PLEXUS_POLICY_SUMMARY_PREFIX, 0, PLEXUS_DIR_EGRESS)->flags ==
        (PLEXUS_POLICY_S_ANY | PLEXUS_POLICY_S_PORT));
  // The entries themselves are all still there, and come back unchanged.
  CHECK(bytes(policyEntries(l)) == bytes(in));
}

TEST_CASE("bits a prefix does not cover are zero in the hash key", "[unit][policy]") {
  PolicyEntries in = {entry(PLEXUS_POLICY_PROTO_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 1234),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 301, PLEXUS_DIR_INGRESS, 17, 53),
                      entry(PLEXUS_POLICY_FULL_PREFIX - 8, 302, PLEXUS_DIR_INGRESS, 6, 0x1234)};
  PolicyEntries l = layoutPolicy(in);
  CHECK(find(l, PLEXUS_POLICY_PROTO_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 0) != nullptr);
  CHECK(find(l, PLEXUS_POLICY_FIXED_PREFIX, 301, PLEXUS_DIR_INGRESS, 0, 0) != nullptr);
  CHECK(find(l, PLEXUS_POLICY_FULL_PREFIX - 8, 302, PLEXUS_DIR_INGRESS, 6, 0x1200) != nullptr);
}

TEST_CASE("a peer's entry is FINAL unless a wildcard deny exists in its direction", "[unit][policy]") {
  PolicyEntries in = {entry(PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80),
                      entry(PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_EGRESS, 6, 80),
                      entry(PLEXUS_POLICY_FULL_PREFIX, 301, PLEXUS_DIR_EGRESS, 6, 22, true),
                      entry(PLEXUS_POLICY_FULL_PREFIX, 0, PLEXUS_DIR_EGRESS, 6, 23, true),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_INGRESS)};
  PolicyEntries l = layoutPolicy(in);
  // Ingress has no wildcard deny: the peer's allow decides alone.
  CHECK(find(l, PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80)->flags == PLEXUS_POLICY_F_FINAL);
  // Egress has one: the peer's allow needs the wildcard lookup; a peer's deny never does.
  CHECK(find(l, PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_EGRESS, 6, 80)->flags == 0);
  CHECK(find(l, PLEXUS_POLICY_FULL_PREFIX, 301, PLEXUS_DIR_EGRESS, 6, 22)->flags ==
        (PLEXUS_POLICY_F_DENY | PLEXUS_POLICY_F_FINAL));
  // Wildcard entries are the last lookup: never FINAL.
  CHECK(find(l, PLEXUS_POLICY_FULL_PREFIX, 0, PLEXUS_DIR_EGRESS, 6, 23)->flags == PLEXUS_POLICY_F_DENY);
  CHECK(find(l, PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_INGRESS)->flags == 0);
}

TEST_CASE("policyEntries gives back what layoutPolicy was given", "[unit][policy]") {
  PolicyEntries in = {entry(PLEXUS_POLICY_FULL_PREFIX, 300, PLEXUS_DIR_INGRESS, 6, 80, false, 7),
                      entry(PLEXUS_POLICY_FULL_PREFIX - 2, 300, PLEXUS_DIR_INGRESS, 6, 96, true, 8),
                      entry(PLEXUS_POLICY_PROTO_PREFIX, 0, PLEXUS_DIR_EGRESS, 1, 0, true, 9),
                      entry(PLEXUS_POLICY_FIXED_PREFIX, 0, PLEXUS_DIR_INGRESS)};
  CHECK(bytes(policyEntries(layoutPolicy(in))) == bytes(in));
  CHECK(policyEntries(layoutPolicy({})).empty());
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
    PolicyEntries l = layoutPolicy(in);
    for (uint32_t peer : {300u, 301u, 302u, 303u}) {
      for (uint8_t dir : {uint8_t{PLEXUS_DIR_INGRESS}, uint8_t{PLEXUS_DIR_EGRESS}}) {
        for (uint8_t proto : {uint8_t{6}, uint8_t{17}, uint8_t{1}}) {
          for (uint16_t port = 0; port < 16; ++port) {
            INFO("round " << round << " peer " << peer << " dir " << int(dir) << " proto " << int(proto) << " port "
                          << port);
            int want = contract(in, peer, dir, proto, port);
            CHECK(verdict(l, peer, dir, proto, port) == want);
            CHECK(verdict(l, peer, dir, proto, port, false) == want);  // programs older than S_INLINE
          }
        }
      }
    }
  }
}
