#include "plexus/datapath/policy_layout.h"

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

PolicyLayout layoutPolicy(const PolicyEntries& entries) {
  bool wildcard_deny[256] = {};
  for (const auto& [k, v] : entries) {
    if (k.identity == 0 && (v.flags & PLEXUS_POLICY_F_DENY)) {
      wildcard_deny[k.direction] = true;
    }
  }
  PolicyLayout out;
  std::map<std::pair<uint32_t, uint8_t>, uint8_t> summaries;  // (identity, direction) -> S_* flags
  for (auto [k, v] : entries) {
    uint8_t flag = summaryFlag(k.prefixlen);
    summaries[{k.identity, k.direction}] |= flag;
    v.flags &= static_cast<uint8_t>(~PLEXUS_POLICY_F_FINAL);
    if (k.identity != 0 && ((v.flags & PLEXUS_POLICY_F_DENY) || !wildcard_deny[k.direction])) {
      v.flags |= PLEXUS_POLICY_F_FINAL;
    }
    if (flag == PLEXUS_POLICY_S_RANGE) {
      out.ranges.emplace_back(k, v);
      continue;
    }
    if (k.prefixlen != PLEXUS_POLICY_FULL_PREFIX) {
      k.dport = 0;
    }
    if (k.prefixlen == PLEXUS_POLICY_FIXED_PREFIX) {
      k.protocol = 0;
    }
    out.hash.emplace_back(k, v);
  }
  for (const auto& [id_dir, flags] : summaries) {
    plexus_policy_key k{};
    k.prefixlen = PLEXUS_POLICY_SUMMARY_PREFIX;
    k.identity = id_dir.first;
    k.direction = id_dir.second;
    plexus_policy_value v{};
    v.flags = flags;
    out.hash.emplace_back(k, v);
  }
  return out;
}

PolicyEntries policyEntries(const PolicyEntries& hash, const PolicyEntries& ranges) {
  PolicyEntries out;
  for (const auto* part : {&hash, &ranges}) {
    for (auto [k, v] : *part) {
      if (k.prefixlen == PLEXUS_POLICY_SUMMARY_PREFIX) {
        continue;
      }
      v.flags &= static_cast<uint8_t>(~PLEXUS_POLICY_F_FINAL);
      out.emplace_back(k, v);
    }
  }
  return out;
}

}  // namespace plexus::datapath
