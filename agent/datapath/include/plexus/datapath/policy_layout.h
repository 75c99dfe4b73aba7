#pragma once
// How one endpoint's policy entries are laid out in its hash (bpf/include/plexus/policy.h): every entry keyed with
// its prefix length and the bits the prefix does not cover zeroed, plus a summary per (identity, direction) naming
// the kinds of entries and the port-range lengths it has. Pure, so the layout is unit-tested; PolicyMaps writes it.

#include <cstdint>
#include <utility>
#include <vector>

#include "plexus/policy.h"

namespace plexus::datapath {

// (key, value) pairs as the compiler's encoder makes them: prefixlen FIXED, PROTO, FULL or a port-range length.
using PolicyEntries = std::vector<std::pair<plexus_policy_key, plexus_policy_value>>;

// The hash's contents: the entries with the bits their prefix does not cover zeroed, peer identities' entries marked
// FINAL where no wildcard deny exists in their direction (or they are denies themselves); then one summary per
// (identity, direction).
PolicyEntries layoutPolicy(const PolicyEntries& entries);

// The entries back from what a hash holds (or the concatenated contents of an older layout's maps): summaries left
// out, FINAL cleared (a layout's inverse, up to the uncovered port bits it zeroed).
PolicyEntries policyEntries(const PolicyEntries& hash);

}  // namespace plexus::datapath
