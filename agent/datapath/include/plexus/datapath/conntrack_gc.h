#pragma once
// Conntrack garbage collection: entries whose flow has been quiet longer than its lifetime are deleted, so the
// table holds live flows rather than waiting for LRU eviction. Lifetimes follow Cilium's defaults except for
// closing TCP flows, which are kept for a TIME_WAIT period (the per-packet path's source-port choice reads them).

#include <netinet/in.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "plexus/common/result.h"
#include "plexus/conntrack.h"
#include "plexus/nat.h"
#include "plexus/datapath/bpf_map.h"

namespace plexus::datapath {

// Defaults from bpf/include/plexus/conntrack.h, which the datapath reads too (the closing lifetime is the TIME_WAIT
// hold of its source-port choice).
struct CtLifetimes {
  uint64_t tcp_ns = PLEXUS_CT_LIFETIME_TCP_NS;          // an open TCP flow (Cilium: 6 h)
  uint64_t tcp_closing_ns = PLEXUS_CT_TIME_WAIT_NS;     // after FIN or RST (Cilium: 10 s; see the header comment)
  uint64_t non_tcp_ns = PLEXUS_CT_LIFETIME_NON_TCP_NS;  // UDP (Cilium: 60 s)
};

// Whether an entry last seen at value.last_seen_ns is past its lifetime at now_ns (CLOCK_MONOTONIC, the clock of
// bpf_ktime_get_ns). Pure.
bool conntrackExpired(const plexus_ct4_key& key, const plexus_ct4_value& value, uint64_t now_ns,
                      const CtLifetimes& lifetimes);

struct CtGcResult {
  size_t scanned = 0;
  size_t deleted = 0;
  size_t scanned_tcp = 0;  // of which TCP (Cilium's GC metrics split TCP and non-TCP)
  size_t deleted_tcp = 0;
};

// One pass over a map: reads it and deletes the entries `expired` picks, both batched. A packet between the walk and
// the delete is lost with its entry; the flow was idle for a whole lifetime, and its next packet starts it again (as
// with Cilium's collector).
template <typename K, typename V, typename Expired>
Result<CtGcResult> collectExpired(BpfMap<K, V>& map, Expired expired) {
  auto entries = map.entries();
  if (!entries.ok()) {
    return entries.error();
  }
  CtGcResult out;
  out.scanned = entries->size();
  std::vector<K> gone;
  size_t gone_tcp = 0;
  for (const auto& [key, value] : *entries) {
    bool tcp = key.proto == IPPROTO_TCP;
    out.scanned_tcp += tcp ? 1 : 0;
    if (expired(key, value)) {
      gone.push_back(key);
      gone_tcp += tcp ? 1 : 0;
    }
  }
  auto deleted = map.eraseBatch(gone);
  if (!deleted.ok()) {
    return deleted.error();
  }
  out.deleted = *deleted;
  out.deleted_tcp = std::min(gone_tcp, out.deleted);  // an entry gone meanwhile (LRU) is not told apart
  return out;
}

Result<CtGcResult> collectConntrack(BpfMap<plexus_ct4_key, plexus_ct4_value>& ct, uint64_t now_ns,
                                    const CtLifetimes& lifetimes);

// Masquerade entries live as long as conntrack's flows: open TCP 6 h, TCP after a FIN or RST its TIME_WAIT period,
// others 60 s, since their last packet. Pure.
bool natExpired(const plexus_snat4_key& key, const plexus_snat4_value& value, uint64_t now_ns,
                const CtLifetimes& lifetimes);
Result<CtGcResult> collectNat(BpfMap<plexus_snat4_key, plexus_snat4_value>& nat, uint64_t now_ns,
                              const CtLifetimes& lifetimes);

// CLOCK_MONOTONIC in nanoseconds.
uint64_t monotonicNs();

}  // namespace plexus::datapath
