/* spec.loadBalancerSourceRanges: which clients may reach a LoadBalancer frontend from outside the node (Cilium's
 * lb4_src_range_ok). Checked on the per-packet path for external-scope lookups only (lb4_xlate with internal == 0):
 * local pods and the host reach services through the socket programs or the internal scope, as in Cilium, where the
 * check sits in the NodePort path. */
#pragma once
#include "plexus/lb.h"
#include "lib/common.h"

/* plexus_lb4_source_range_v1: {rev_nat_index, client prefix} -> 1; written by the agent (service planner). */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, PLEXUS_LB_SRC_RANGE_MAX);
  __type(key, struct plexus_lb4_src_range_key);
  __type(value, __u8);
  __uint(map_flags, BPF_F_NO_PREALLOC); /* the kernel refuses a preallocated LPM trie */
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_lb4_source_range_v1 SEC(".maps");

/* Returns 0 when the client may use the frontend (no ranges, or a range holds it), or NOT_IN_SRC_RANGE. Checked on
 * every packet, not only a flow's first, so that narrowing the ranges also ends established flows (as Cilium). */
static __always_inline int lb4_src_range_check(const struct plexus_lb4_service *svc, __be32 saddr) {
  if (!(svc->flags & PLEXUS_SVC_F_SOURCE_RANGE)) {
    return 0;
  }
  struct plexus_lb4_src_range_key key = {.prefixlen = PLEXUS_LB_SRC_RANGE_FIXED_PREFIX + 32,
                                         .rev_nat_index = svc->rev_nat_index,
                                         .address = saddr};
  return bpf_map_lookup_elem(&plexus_lb4_source_range_v1, &key) ? 0 : PLEXUS_DROP(NOT_IN_SRC_RANGE);
}
