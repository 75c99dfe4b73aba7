#pragma once
// How one endpoint's policy entries are laid out in its maps (bpf/include/plexus/policy.h): a hash of the entries
// with the three fixed prefix lengths plus a summary per (identity, direction), and an LPM trie of the port-range
// entries. Pure, so the layout is unit-tested; PolicyMaps writes it.

#include <cstdint>
#include <utility>
#include <vector>

#include "plexus/policy.h"

namespace plexus::datapath {

// (key, value) pairs as the compiler's encoder makes them: prefixlen FIXED, PROTO, FULL or a port-range length.
using PolicyEntries = std::vector<std::pair<plexus_policy_key, plexus_policy_value>>;

struct PolicyLayout {
  // FULL, PROTO and FIXED entries with the bits their prefix does not cover zeroed, peer identities' entries marked
  // FINAL where no wildcard deny exists in their direction (or they are denies themselves); then one summary per
  // (identity, direction).
  PolicyEntries hash;
  PolicyEntries ranges;  // the port-range entries, as they are: the trie (empty: the endpoint needs none)
};

PolicyLayout layoutPolicy(const PolicyEntries& entries);

// The entries back from what the maps hold: summaries left out, FINAL cleared (a layout's inverse).
PolicyEntries policyEntries(const PolicyEntries& hash, const PolicyEntries& ranges);

}  // namespace plexus::datapath
