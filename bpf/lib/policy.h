/* Per-endpoint policy enforcement: a verdict of a bounded number of hash lookups (plexus/policy.h) plus conntrack.
 * Every packet in a connection's own direction is judged, so that policy changes reach open connections; replies
 * of allowed connections and ICMP errors about them pass on conntrack alone. */
#pragma once
#include "plexus/policy.h"
#include "lib/common.h"
#include "lib/conntrack.h"
#include "lib/endpoints.h"

const volatile __u8 cfg_enable_policy = 1; /* enforce per-endpoint policy maps (rodata, STYLE.md rule 6) */
const volatile __u8 cfg_policy_audit = 0;  /* policy audit mode: a would-be drop passes and is reported as AUDIT */

/* Sizes rather than __type: clang emits struct pointees of an inner-map template only as forward
 * declarations, which libbpf cannot size. The inner maps themselves are created by the agent, each sized to what
 * it holds. */
struct plexus_policy_inner {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, PLEXUS_POLICY_INNER_MAX);
  __uint(key_size, sizeof(struct plexus_policy_key));
  __uint(value_size, sizeof(struct plexus_policy_value));
  __uint(map_flags, BPF_F_NO_PREALLOC);
};

/* plexus_policy_v3: endpoint id -> that endpoint's hash of entries and summaries; written by the agent (policy
 * manager), which builds each hash whole and swaps it in with one update (shadow then swap). v2 kept the port
 * ranges apart in an LPM trie per endpoint (plexus_policy_range_v1); the agent carries both into v3 at load. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
  __uint(max_entries, PLEXUS_POLICY_ENDPOINTS_MAX);
  __type(key, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
  __array(values, struct plexus_policy_inner);
} plexus_policy_v3 SEC(".maps");

/* plexus_policy_epoch_v1: 0 -> the policy epoch; written by the agent, which moves it on after every write to a map a
 * verdict reads (the policy hashes, the endpoints map, the ipcache). A conntrack entry of a connection policy allowed
 * keeps the epoch of that verdict (verdict_epoch) and its rule: while the epoch is the same, the connection's next
 * packets take the verdict from the entry instead of the policy hashes (the peer's identity, the policy and the
 * endpoint's identity cannot have changed since). 0: none yet (nothing is cached). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_policy_epoch_v1 SEC(".maps");

static __always_inline __u32 policy_epoch_now(void) {
  __u32 zero = 0;
  __u32 *epoch = bpf_map_lookup_elem(&plexus_policy_epoch_v1, &zero);
  return epoch ? *epoch : 0;
}

/* The longest range entry of endpoint `idx` for the port among the lengths an identity's summary names (bit n:
 * PROTO_PREFIX + n), longest first, copied into *out (returns 1; 0: none). *k holds the identity, direction and
 * protocol. A global function: the verifier checks it once, on its own; inlined or as a static subprogram it was
 * walked again for every state its callers reach it in, and the unrolled probes took some builds past the
 * verifier's 1,000,000 instructions (tests/bpf/verifier_test.cc). */
__noinline int policy_match_range(__u32 idx, const struct plexus_policy_key *k, __u32 lengths, __u16 port,
                                  struct plexus_policy_value *out) {
  if (!k || !out) {
    return 0;
  }
  void *hash = bpf_map_lookup_elem(&plexus_policy_v3, &idx);
  if (!hash) {
    return 0;
  }
  struct plexus_policy_key q = *k;
#pragma unroll
  for (int n = 15; n >= 1; n--) {
    if (lengths & (1u << n)) {
      q.prefixlen = PLEXUS_POLICY_PROTO_PREFIX + n;
      q.dport = bpf_htons(port & (__u16)(0xffff << (16 - n)));
      struct plexus_policy_value *v = bpf_map_lookup_elem(hash, &q);
      if (v) {
        *out = *v;
        return 1;
      }
    }
  }
  return 0;
}

/* The longest entry of `identity` matching (dir, proto, dport), copied into *out (returns 1; 0: none): its summary
 * first (which carries the verdict itself when the identity's only entry covers every port: S_INLINE), then only the
 * prefix lengths the summary names, longest first. */
static __always_inline int policy_match(void *hash, __u32 idx, __u32 identity, __u8 dir, __u8 proto, __be16 dport,
                                        struct plexus_policy_value *out) {
  struct plexus_policy_key k = {.prefixlen = PLEXUS_POLICY_SUMMARY_PREFIX, .identity = identity, .direction = dir};
  struct plexus_policy_value *v = bpf_map_lookup_elem(hash, &k);
  if (!v) {
    return 0;
  }
  __u8 has = v->flags;
  if (has & PLEXUS_POLICY_S_INLINE) {
    out->flags = has & (PLEXUS_POLICY_F_DENY | PLEXUS_POLICY_F_FINAL);
    out->rule_id = v->rule_id;
    return 1;
  }
  __u32 range_lengths = v->rule_id;
  k.prefixlen = PLEXUS_POLICY_FULL_PREFIX;
  k.protocol = proto;
  k.dport = dport;
  if (has & PLEXUS_POLICY_S_PORT) {
    v = bpf_map_lookup_elem(hash, &k);
    if (v) {
      *out = *v;
      return 1;
    }
  }
  if ((has & PLEXUS_POLICY_S_RANGE) && policy_match_range(idx, &k, range_lengths, bpf_ntohs(dport), out)) {
    return 1;
  }
  k.dport = 0;
  if (has & PLEXUS_POLICY_S_PROTO) {
    k.prefixlen = PLEXUS_POLICY_PROTO_PREFIX;
    v = bpf_map_lookup_elem(hash, &k);
    if (v) {
      *out = *v;
      return 1;
    }
  }
  if (has & PLEXUS_POLICY_S_ANY) {
    k.prefixlen = PLEXUS_POLICY_FIXED_PREFIX;
    k.protocol = 0;
    v = bpf_map_lookup_elem(hash, &k);
    if (v) {
      *out = *v;
      return 1;
    }
  }
  return 0;
}

/* Returns 0 to allow, or the drop reason; *rule_id is the deciding entry's rule (0 when none decided). */
static __always_inline int policy_verdict(__u16 ep_id, __u32 peer, __u8 dir, __u8 proto, __be16 dport,
                                          __u32 *rule_id) {
  __u32 idx = ep_id;
  *rule_id = 0;
  void *hash = bpf_map_lookup_elem(&plexus_policy_v3, &idx);
  if (!hash) {
    return PLEXUS_DROP(POLICY_DENIED);
  }
  struct plexus_policy_value exact = {}, any = {};
  int has_exact = policy_match(hash, idx, peer, dir, proto, dport, &exact);
  if (has_exact && (exact.flags & (PLEXUS_POLICY_F_DENY | PLEXUS_POLICY_F_FINAL))) {
    *rule_id = exact.rule_id;
    return (exact.flags & PLEXUS_POLICY_F_DENY) ? PLEXUS_DROP(POLICY_DENY) : 0;
  }
  int has_any = policy_match(hash, idx, 0, dir, proto, dport, &any);
  if (has_any && (any.flags & PLEXUS_POLICY_F_DENY)) {
    *rule_id = any.rule_id;
    return PLEXUS_DROP(POLICY_DENY);
  }
  if (has_exact || has_any) {
    *rule_id = has_exact ? exact.rule_id : any.rule_id;
    return 0;
  }
  return PLEXUS_DROP(POLICY_DENIED);
}

/* What policy enforcement tells the event layer. */
struct policy_trace {
  __u8 notify;   /* a new connection, or new TCP flags on a known one */
  __u8 is_reply;
  __u8 audit;    /* audit mode: the policy would have dropped the packet (0: no) */
  /* ... and the reason it would have. Apart from the flag and never branched on, so that the verifier's states after
   * an audited verdict differ in one bit only: with the reason in the flag, it walked the rest of from-container once
   * per reason (559,932 processed instructions instead of 341,294 with audit, tunnel and DSR). */
  __u8 audit_reason;
  __u8 own_live; /* the packet matched its own direction's entry, which was not closing: a packet of a connection this
                  * point admitted, so no reply of another flow (no reverse NAT to look up) */
  __u8 cached;   /* that entry holds a verdict of the current policy epoch: rule_id is its rule, nothing to look up */
  __u8 peer_from_packet; /* set by the caller: the peer's identity came with the packet (a tunnel's VNI), not from the
                          * maps whose writes move the epoch on, so no kept verdict applies and none is kept */
  __u8 untranslated;     /* set by the caller: nothing on this node translated the flow (an entry it opens is marked
                          * PLEXUS_CT_F_UNTRANSLATED) */
  __u8 reply_untranslated; /* a reply whose connection's entry is marked PLEXUS_CT_F_UNTRANSLATED: no reverse
                            * translation to look up */
  __u32 rule_id; /* the rule that decided a judged packet (0: none, or not judged) */
};

/* Takes the verdict an established connection's entry holds, when it was made in the current policy epoch (never in
 * audit mode, whose verdicts pass packets policy would drop). */
static __always_inline void policy_take_cached(const struct plexus_ct4_value *v, struct policy_trace *pt,
                                               __u32 epoch) {
  if (!cfg_policy_audit && !pt->peer_from_packet && epoch && v->verdict_epoch == epoch) {
    pt->cached = 1;
    pt->rule_id = v->backend_id;
  }
}

/* How conntrack knows a packet at one enforcement point (Cilium's CT_NEW, CT_ESTABLISHED, CT_REPLY, CT_RELATED). */
enum policy_ct_state {
  POLICY_CT_NEW = 0,         /* no entry: policy judges it, and an allowed packet opens one */
  POLICY_CT_ESTABLISHED = 1, /* a packet of a connection this point admitted, in the admitted direction */
  POLICY_CT_REPLY = 2,       /* a reply of a connection this point admitted */
  POLICY_CT_RELATED = 3,     /* an ICMP error about a packet of an admitted connection */
};

/* What the caller already knows of the packet's own-direction entry (policy_own_entry): nothing, that there is none,
 * or that it is live (and refreshed). */
enum policy_own_seen {
  POLICY_OWN_UNSEEN = 0,
  POLICY_OWN_NONE = 1,
  POLICY_OWN_LIVE = 2,
  POLICY_OWN_REPLY = 3, /* none, and the packet is a reply of a live untranslated connection (policy_reply_entry) */
};

/* Classifies the packet at an enforcement point whose own entries are in direction `own` (the connections it
 * admitted) and `other` the opposite one (the connections whose replies it sees). An ICMP error travels against the
 * packet it quotes, so it is related when that packet was one of a known connection's: sent in the connection's
 * direction (an `other` entry of the quoted tuple) or as its reply (an `own` entry of the quoted tuple reversed), as
 * netfilter relates errors (RFC 1122 §3.2.2.1 on which errors quote what). It refreshes nothing. An error that quotes
 * no known flow is judged as an ICMP packet of its own type. `own_seen` spares the own-direction lookup the caller made
 * already (policy_own_entry, on this very tuple). `epoch`: the policy epoch, read once by the caller. */
static __always_inline int policy_ct_state(const struct flow4 *f, __u8 own, __u8 other, struct policy_trace *pt,
                                           int own_seen, __u32 epoch) {
  pt->own_live = 0;
  if (own_seen == POLICY_OWN_LIVE) {
    pt->own_live = 1;
    return POLICY_CT_ESTABLISHED; /* pt->cached as policy_own_entry found it */
  }
  pt->cached = 0; /* not another enforcement point's (from-container judges egress, then a local peer's ingress) */
  if (own_seen == POLICY_OWN_REPLY) {
    return POLICY_CT_REPLY; /* refreshed, and pt->is_reply set, by policy_reply_entry */
  }
  pt->reply_untranslated = 0;
  if (f->related) {
    if (ct4_lookup_tuple(&f->quoted, other, 0) || ct4_lookup_tuple(&f->quoted, own, 1)) {
      pt->is_reply = 1;
      return POLICY_CT_RELATED;
    }
    return POLICY_CT_NEW;
  }
  struct plexus_ct4_value *v = own_seen == POLICY_OWN_NONE ? 0 : ct4_lookup(f, own);
  int state = POLICY_CT_ESTABLISHED;
  if (!v) {
    struct flow4_tuple t = {.saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport,
                            .proto = f->proto};
    v = ct4_lookup_tuple(&t, other, 1);
    state = POLICY_CT_REPLY;
  }
  if (!v) {
    return POLICY_CT_NEW;
  }
  pt->own_live = state == POLICY_CT_ESTABLISHED && !ct4_closing(v);
  pt->is_reply = state == POLICY_CT_REPLY;
  pt->reply_untranslated = pt->is_reply && (v->flags & PLEXUS_CT_F_UNTRANSLATED);
  pt->notify |= ct4_touch(v, f->tcp_flags, pt->is_reply);
  if (state == POLICY_CT_ESTABLISHED) {
    policy_take_cached(v, pt, epoch);
  }
  return state;
}

/* Looks the packet's own-direction entry up ahead of policy_enforce() (which is then told what was found): a packet
 * of a live connection the point admitted is refreshed here. A closing entry is left for policy_ct_state to judge;
 * so is an ICMP error. */
static __always_inline int policy_own_entry(const struct flow4 *f, __u8 own, struct policy_trace *pt) {
  if (f->related) {
    return POLICY_OWN_UNSEEN;
  }
  struct plexus_ct4_value *v = ct4_lookup(f, own);
  if (!v) {
    return POLICY_OWN_NONE;
  }
  if (ct4_closing(v)) {
    return POLICY_OWN_UNSEEN;
  }
  pt->notify |= ct4_touch(v, f->tcp_flags, 0);
  policy_take_cached(v, pt, policy_epoch_now());
  return POLICY_OWN_LIVE;
}

/* After policy_own_entry found no own-direction entry: whether the packet is a reply of a live connection the point
 * admitted that nothing on this node translated (its other-direction entry, marked PLEXUS_CT_F_UNTRANSLATED): then it
 * is refreshed, and neither reverse translation nor a frontend is to be looked up for it (POLICY_OWN_REPLY). Else
 * POLICY_OWN_NONE, and policy_enforce looks again. */
static __always_inline int policy_reply_entry(const struct flow4 *f, __u8 other, struct policy_trace *pt) {
  struct flow4_tuple t = {.saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport, .proto = f->proto};
  struct plexus_ct4_value *v = ct4_lookup_tuple(&t, other, 1);
  if (!v || !(v->flags & PLEXUS_CT_F_UNTRANSLATED) || ct4_closing(v)) {
    return POLICY_OWN_NONE;
  }
  pt->is_reply = 1;
  pt->reply_untranslated = 1;
  pt->notify |= ct4_touch(v, f->tcp_flags, 1);
  return POLICY_OWN_REPLY;
}

/* A new connection policy allowed: its entry, with the verdict cached as of `epoch` (0: not cached) and `flags`. */
static __always_inline int policy_ct_admit(const struct flow4 *f, __u8 dir, __u32 epoch, __u32 rule_id,
                                           __u16 flags) {
  struct plexus_ct4_key key = {
      .saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport, .proto = f->proto, .dir = dir};
  struct plexus_ct4_value v = {.last_seen_ns = ct_clock(), .backend_id = rule_id, .tx_flags = f->tcp_flags,
                               .flags = flags, .verdict_epoch = epoch};
  if (bpf_map_update_elem(&plexus_ct4_v2, &key, &v, BPF_ANY) < 0) {
    return PLEXUS_DROP(CT_MAP_FULL);
  }
  return 0;
}

/* An established connection policy allowed again: the verdict is cached in its entry as of `epoch`. */
static __always_inline void policy_ct_note(const struct flow4 *f, __u8 dir, __u32 epoch, __u32 rule_id) {
  struct plexus_ct4_value *v = ct4_lookup(f, dir);
  if (v) {
    v->backend_id = rule_id;
    v->verdict_epoch = epoch;
  }
}

/* One enforcement point, as Cilium's bpf_lxc does it: replies and related ICMP errors pass on conntrack alone; every
 * packet in a connection's own direction is judged by the endpoint's current policy, established or not, so a policy
 * change applies to connections already open (an L3 deny or a new default deny stops the next packet, ping
 * included); an established connection the policy now refuses loses its entry. A new allowed connection gets one,
 * except an ICMP error, related or not (nothing to track). */
static __always_inline int policy_enforce(const struct flow4 *f, __u16 ep_id, __u32 peer, __u8 dir, __u8 own,
                                          __u8 other, struct policy_trace *pt, int own_seen) {
  /* Read before the verdict's lookups: a map written meanwhile moves the epoch past the one the verdict is kept with. */
  __u32 epoch = policy_epoch_now();
  int state = policy_ct_state(f, own, other, pt, own_seen, epoch);
  if (state == POLICY_CT_REPLY || state == POLICY_CT_RELATED) {
    return 0;
  }
  if (state == POLICY_CT_ESTABLISHED && pt->cached) {
    return 0; /* allowed in this epoch already, by pt->rule_id */
  }
  if (state == POLICY_CT_NEW) {
    pt->notify = 1;
  }
  int ret = policy_verdict(ep_id, peer, dir, f->proto, flow4_policy_port(f), &pt->rule_id);
  if (ret < 0 && cfg_policy_audit) {
    pt->audit = 1; /* reported as AUDIT; the connection goes on as if allowed */
    pt->audit_reason = (__u8)(-ret);
    ret = 0;
  }
  if (ret < 0) {
    if (state == POLICY_CT_ESTABLISHED) {
      ct4_delete(f, own);
    }
    return ret;
  }
  /* An ICMP error opens nothing, related or not: an entry for one whose quote names no known flow (a garbled or
   * truncated quote, another packet's source) would be keyed with ports 0, and every later non-echo ICMP message
   * of the peer (redirect, timestamp, an error of its own) would then pass as its reply, unjudged. */
  __u32 keep = pt->audit || pt->peer_from_packet ? 0 : epoch; /* an audited pass is no verdict to keep */
  if (state == POLICY_CT_ESTABLISHED) {
    if (keep) {
      policy_ct_note(f, own, keep, pt->rule_id);
    }
    return 0;
  }
  if (flow4_icmp_error(f)) {
    return 0;
  }
  return policy_ct_admit(f, own, keep, pt->rule_id, pt->untranslated ? PLEXUS_CT_F_UNTRANSLATED : 0);
}

/* Egress enforcement for the endpoint that sent the packet to a peer of identity `dst_identity` (identity_of(f->daddr),
 * which the caller has looked up already); `own_seen`: what policy_own_entry(f, PLEXUS_CT_EGRESS) said of this very
 * tuple, or POLICY_OWN_UNSEEN. */
static __always_inline int policy_egress(const struct flow4 *f, const struct plexus_endpoint_value *src,
                                         __u32 dst_identity, struct policy_trace *pt, int own_seen) {
  return policy_enforce(f, src->ep_id, dst_identity, PLEXUS_DIR_EGRESS, PLEXUS_CT_EGRESS, PLEXUS_CT_INGRESS, pt,
                        own_seen);
}

/* Ingress enforcement for the endpoint the packet is delivered to. */
static __always_inline int policy_ingress(const struct flow4 *f, const struct plexus_endpoint_value *dst,
                                          __u32 src_identity, struct policy_trace *pt) {
  return policy_enforce(f, dst->ep_id, src_identity, PLEXUS_DIR_INGRESS, PLEXUS_CT_INGRESS, PLEXUS_CT_EGRESS, pt,
                        POLICY_OWN_UNSEEN);
}
