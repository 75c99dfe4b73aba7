/* Per-endpoint policy enforcement: an O(1)-bounded verdict (two LPM lookups) plus conntrack, so that only the
 * first packet of a connection is judged and replies of allowed connections pass. */
#pragma once
#include "plexus/policy.h"
#include "lib/common.h"
#include "lib/conntrack.h"
#include "lib/endpoints.h"

const volatile __u8 cfg_enable_policy = 1; /* enforce per-endpoint policy maps (rodata, STYLE.md rule 6) */

/* Sizes rather than __type: clang emits struct pointees of an inner-map template only as forward
 * declarations, which libbpf cannot size. The tries themselves are created by the agent. */
struct plexus_policy_inner {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, PLEXUS_POLICY_INNER_MAX);
  __uint(key_size, sizeof(struct plexus_policy_key));
  __uint(value_size, sizeof(struct plexus_policy_value));
  __uint(map_flags, BPF_F_NO_PREALLOC);
};

/* plexus_policy_v1: endpoint id -> that endpoint's LPM trie; written by the agent (policy manager), which builds each
 * trie whole and swaps it in with one update (shadow then swap). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
  __uint(max_entries, PLEXUS_POLICY_ENDPOINTS_MAX);
  __type(key, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
  __array(values, struct plexus_policy_inner);
} plexus_policy_v1 SEC(".maps");

/* Returns 0 to allow, or the drop reason. */
static __always_inline int policy_verdict(__u16 ep_id, __u32 peer, __u8 dir, __u8 proto, __be16 dport) {
  __u32 idx = ep_id;
  void *trie = bpf_map_lookup_elem(&plexus_policy_v1, &idx);
  if (!trie) {
    return PLEXUS_DROP(POLICY_DENIED);
  }
  struct plexus_policy_key k = {
      .prefixlen = PLEXUS_POLICY_FULL_PREFIX, .identity = peer, .direction = dir, .protocol = proto, .dport = dport};
  struct plexus_policy_value *exact = bpf_map_lookup_elem(trie, &k);
  k.identity = 0;
  struct plexus_policy_value *any = bpf_map_lookup_elem(trie, &k);
  if ((exact && (exact->flags & PLEXUS_POLICY_F_DENY)) || (any && (any->flags & PLEXUS_POLICY_F_DENY))) {
    return PLEXUS_DROP(POLICY_DENY);
  }
  if (exact || any) {
    return 0;
  }
  return PLEXUS_DROP(POLICY_DENIED);
}

/* What policy enforcement tells the event layer. */
struct policy_trace {
  __u8 notify;   /* a new connection, or new TCP flags on a known one */
  __u8 is_reply;
};

/* Is this packet part of a connection already allowed at this enforcement point? `own` is the point's own
 * direction (a connection it admitted), `other` the opposite one (a connection whose replies this is). */
static __always_inline int policy_ct_known(const struct flow4 *f, __u8 own, __u8 other, struct policy_trace *pt) {
  struct plexus_ct4_value *v = ct4_lookup(f, own);
  if (!v) {
    struct flow4 r = {.saddr = f->daddr, .daddr = f->saddr, .sport = f->dport, .dport = f->sport, .proto = f->proto};
    v = ct4_lookup(&r, other);
    if (v) {
      pt->is_reply = 1;
    }
  }
  if (!v) {
    return 0;
  }
  pt->notify |= ct4_touch(v, f->tcp_flags, pt->is_reply);
  return 1;
}

static __always_inline int policy_ct_admit(const struct flow4 *f, __u8 dir) {
  struct plexus_ct4_key key = {
      .saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport, .proto = f->proto, .dir = dir};
  struct plexus_ct4_value v = {.last_seen_ns = bpf_ktime_get_ns(), .tx_flags = f->tcp_flags};
  if (bpf_map_update_elem(&plexus_ct4_v2, &key, &v, BPF_ANY) < 0) {
    return PLEXUS_DROP(CT_MAP_FULL);
  }
  return 0;
}

/* Egress enforcement for the endpoint that sent the packet. */
static __always_inline int policy_egress(const struct flow4 *f, const struct plexus_endpoint_value *src,
                                         struct policy_trace *pt) {
  if (policy_ct_known(f, PLEXUS_CT_EGRESS, PLEXUS_CT_INGRESS, pt)) {
    return 0;
  }
  pt->notify = 1;
  int ret = policy_verdict(src->ep_id, identity_of(f->daddr), PLEXUS_DIR_EGRESS, f->proto, f->dport);
  if (ret < 0) {
    return ret;
  }
  return policy_ct_admit(f, PLEXUS_CT_EGRESS);
}

/* Ingress enforcement for the endpoint the packet is delivered to. */
static __always_inline int policy_ingress(const struct flow4 *f, const struct plexus_endpoint_value *dst,
                                          __u32 src_identity, struct policy_trace *pt) {
  if (policy_ct_known(f, PLEXUS_CT_INGRESS, PLEXUS_CT_EGRESS, pt)) {
    return 0;
  }
  pt->notify = 1;
  int ret = policy_verdict(dst->ep_id, src_identity, PLEXUS_DIR_INGRESS, f->proto, f->dport);
  if (ret < 0) {
    return ret;
  }
  return policy_ct_admit(f, PLEXUS_CT_INGRESS);
}
