#include "plexus/datapath/policy_layout.h"

#include <arpa/inet.h>

#include <map>
#include <tuple>

namespace plexus::datapath {

namespace {

uint8_t summaryFlag(uint32_t prefixlen) {
  switch (prefixlen) {
    case PLEXUS_POLICY_FULL_PREFIX:
      return PLEXUS_POLICY_S_PORT;
    case PLEXUS_POLICY_PROTO_PREFIX:
      return PLEXUS_POLICY_S_PROTO;
    case PLEXUS_POLICY_FIXED_PREFIX:
      return PLEXUS_POLICY_S_ANY;
    default:
      return PLEXUS_POLICY_S_RANGE;
  }
}

}  // namespace

PolicyEntries layoutPolicy(const PolicyEntries& entries) {
  bool wildcard_deny[256] = {};
  for (const auto& [k, v] : entries) {
    if (k.identity == 0 && (v.flags & PLEXUS_POLICY_F_DENY)) {
      wildcard_deny[k.direction] = true;
    }
  }
  PolicyEntries out;
  struct Summary {
    uint8_t flags = 0;
    uint32_t range_lengths = 0;
  };
  std::map<std::pair<uint32_t, uint8_t>, Summary> summaries;  // (identity, direction)
  std::map<std::pair<uint32_t, uint8_t>, plexus_policy_value> fixed;  // the identity's FIXED_PREFIX entry, as laid out
  for (auto [k, v] : entries) {
    uint8_t flag = summaryFlag(k.prefixlen);
    Summary& summary = summaries[{k.identity, k.direction}];
    summary.flags |= flag;
    v.flags &= static_cast<uint8_t>(~PLEXUS_POLICY_F_FINAL);
    if (k.identity != 0 && ((v.flags & PLEXUS_POLICY_F_DENY) || !wildcard_deny[k.direction])) {
      v.flags |= PLEXUS_POLICY_F_FINAL;
    }
    if (flag == PLEXUS_POLICY_S_RANGE) {
      // A length between PROTO and FULL: the port's top bits, the rest zero (as the datapath masks the packet's).
      uint32_t bits = k.prefixlen - PLEXUS_POLICY_PROTO_PREFIX;
      summary.range_lengths |= 1u << bits;
      k.dport = htons(static_cast<uint16_t>(ntohs(k.dport) & (0xffffu << (16 - bits))));
    } else if (k.prefixlen != PLEXUS_POLICY_FULL_PREFIX) {
      k.dport = 0;
    }
    if (k.prefixlen == PLEXUS_POLICY_FIXED_PREFIX) {
      k.protocol = 0;
      fixed[{k.identity, k.direction}] = v;
    }
    out.emplace_back(k, v);
  }
  for (const auto& [id_dir, summary] : summaries) {
    plexus_policy_key k{};
    k.prefixlen = PLEXUS_POLICY_SUMMARY_PREFIX;
    k.identity = id_dir.first;
    k.direction = id_dir.second;
    plexus_policy_value v{};
    v.flags = summary.flags;
    v.rule_id = summary.range_lengths;
    auto only = fixed.find(id_dir);
    if (summary.flags == PLEXUS_POLICY_S_ANY && only != fixed.end() && only->second.proxy_port == 0) {
      // The identity's one entry in this direction covers every protocol and port: the summary carries its verdict,
      // and the datapath stops at the summary (the entry stays, for programs older than S_INLINE).
      v.flags |= PLEXUS_POLICY_S_INLINE | (only->second.flags & (PLEXUS_POLICY_F_DENY | PLEXUS_POLICY_F_FINAL));
      v.rule_id = only->second.rule_id;
    }
    out.emplace_back(k, v);
  }
  return out;
}

PolicyEntries policyEntries(const PolicyEntries& hash) {
  PolicyEntries out;
  for (auto [k, v] : hash) {
    if (k.prefixlen == PLEXUS_POLICY_SUMMARY_PREFIX) {
      continue;
    }
    v.flags &= static_cast<uint8_t>(~PLEXUS_POLICY_F_FINAL);
    out.emplace_back(k, v);
  }
  return out;
}

}  // namespace plexus::datapath
