/* Connection tracking: which backend a translated service flow got (SERVICE entries), which frontend its replies
 * must carry (REVERSE entries), and which connections policy admitted (EGRESS, INGRESS; lib/policy.h). LRU, so a
 * full table evicts the oldest flows instead of refusing new ones. Tuples are lib/parse.h's: ICMP echo is keyed by
 * its identifier (request: dport, reply: sport). */
#pragma once
#include "plexus/conntrack.h"
#include "lib/common.h"
#include "lib/parse.h"

/* plexus_ct4_v2: {tuple, dir} -> {backend, rev_nat_index, flags, nat_port}; written by BPF (service translation
 * and policy), read and garbage-collected by the agent. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PLEXUS_CT4_DEFAULT_MAX); /* resized by the agent before load (--ct-map-size) */
  __type(key, struct plexus_ct4_key);
  __type(value, struct plexus_ct4_value);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_ct4_v2 SEC(".maps");

/* The clock of conntrack and masquerade stamps: CLOCK_MONOTONIC at tick resolution (bpf_ktime_get_coarse_ns), which
 * reads no clocksource (in a VM, bpf_ktime_get_ns reads the paravirtual clock on every call). The agent's garbage
 * collector reads CLOCK_MONOTONIC itself. */
static __always_inline __u64 ct_clock(void) { return bpf_ktime_get_coarse_ns(); }

/* How long ago `stamp` was at `now`, signed: a stamp taken from the precise clock a moment ago (the agent, a test) may
 * be up to a tick ahead of ct_clock(), and is then recent, not 500 years old. */
static __always_inline __s64 ct_age(__u64 now, __u64 stamp) { return (__s64)(now - stamp); }

/* Refreshes a last-seen stamp, only when it is PLEXUS_CT_STAMP_NS old or older: most packets write nothing. */
static __always_inline void ct_stamp(__u64 *stamp, __u64 now) {
  if (ct_age(now, *stamp) >= (__s64)PLEXUS_CT_STAMP_NS) {
    *stamp = now;
  }
}

static __always_inline struct plexus_ct4_value *ct4_lookup(const struct flow4 *f, __u8 dir) {
  struct plexus_ct4_key key = {
      .saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport, .proto = f->proto, .dir = dir};
  return bpf_map_lookup_elem(&plexus_ct4_v2, &key);
}

/* The entry of tuple t in direction dir; `reverse`: of the tuple as its replies carry it (addresses and ports
 * swapped). */
static __always_inline struct plexus_ct4_value *ct4_lookup_tuple(const struct flow4_tuple *t, __u8 dir, int reverse) {
  struct plexus_ct4_key key = {.proto = t->proto, .dir = dir};
  key.saddr = reverse ? t->daddr : t->saddr;
  key.daddr = reverse ? t->saddr : t->daddr;
  key.sport = reverse ? t->dport : t->sport;
  key.dport = reverse ? t->sport : t->dport;
  return bpf_map_lookup_elem(&plexus_ct4_v2, &key);
}

static __always_inline void ct4_delete(const struct flow4 *f, __u8 dir) {
  struct plexus_ct4_key key = {
      .saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport, .proto = f->proto, .dir = dir};
  bpf_map_delete_elem(&plexus_ct4_v2, &key);
}

/* Refreshes an entry on a packet: last use (ct_stamp) and the TCP flags of the packet's direction (replies are
 * tracked apart, as in Cilium's tx/rx flags), writing only what changed. Returns 1 when the packet carries a TCP flag
 * its direction had not shown yet (monitor aggregation reports those). */
static __always_inline __u8 ct4_touch(struct plexus_ct4_value *v, __u8 tcp_flags, int reply) {
  ct_stamp(&v->last_seen_ns, ct_clock());
  __u8 *seen = reply ? &v->rx_flags : &v->tx_flags;
  /* A reply direction's first packet is news even without TCP flags (an echo reply, a UDP answer), as Cilium reports
   * each direction's first packet; a TCP packet always carries a flag. */
  __u8 mark = reply && !tcp_flags ? PLEXUS_CT_RX_SEEN : tcp_flags;
  __u8 changed = (mark & ~*seen) != 0;
  if (changed) {
    *seen |= mark;
  }
  return changed;
}

static __always_inline int ct4_closing(const struct plexus_ct4_value *v) {
  return ((v->tx_flags | v->rx_flags) & PLEXUS_CT_CLOSING_FLAGS) != 0;
}

/* Drops the reverse entry a reply of flow f would match (backend -> client), if any. */
static __always_inline void ct4_forget_reverse(const struct flow4 *f, __u8 reverse_dir) {
  struct plexus_ct4_key rev = {
      .saddr = f->daddr, .daddr = f->saddr, .sport = f->dport, .dport = f->sport, .proto = f->proto, .dir = reverse_dir};
  bpf_map_delete_elem(&plexus_ct4_v2, &rev);
}

#define CT4_PORT_SPAN (PLEXUS_CT_PORT_MAX - PLEXUS_CT_PORT_MIN + 1)

/* An entry older than PLEXUS_CT_TIME_WAIT_NS no longer holds its tuple (plexus/conntrack.h). */
static __always_inline int ct4_recent(const struct plexus_ct4_value *v, __u64 now) {
  return v && ct_age(now, v->last_seen_ns) < (__s64)PLEXUS_CT_TIME_WAIT_NS;
}

/* The source port a new translated flow uses towards its backend. Normally the client's own. But when a reverse
 * entry for that tuple (backend -> client:port) belongs to another frontend's flow, or to a flow whose port was
 * moved, the backend may still hold that connection (TIME_WAIT); the client stamps its TCP timestamps per
 * destination address, so to the backend the new SYN looks older and is refused (PAWS), costing a reset and a SYN
 * retransmit. As netfilter's NAT does for a tuple in use, the flow then moves to a free port: one with no recent
 * reverse entry and no recent connection of the client's own to the backend (16 random tries; none free: the port
 * is kept). A reuse through the same frontend keeps its port (its timestamps are the same sequence). An entry older
 * than PLEXUS_CT_TIME_WAIT_NS holds nothing. Returns the port, in network order. */
static __always_inline __be16 ct4_pick_port(const struct flow4 *f, __be32 backend_addr, __be16 backend_port,
                                            __u16 rev_nat_index, __u8 reverse_dir) {
  struct plexus_ct4_key rev = {
      .saddr = backend_addr, .daddr = f->saddr, .sport = backend_port, .dport = f->sport, .proto = f->proto,
      .dir = reverse_dir};
  __u64 now = ct_clock();
  struct plexus_ct4_value *held = bpf_map_lookup_elem(&plexus_ct4_v2, &rev);
  if (!ct4_recent(held, now) || (held->rev_nat_index == rev_nat_index && held->nat_port == 0)) {
    return f->sport;
  }
  __u32 start = bpf_get_prandom_u32();
  for (__u32 i = 0; i < PLEXUS_CT_PORT_TRIES; i++) {
    __be16 port = bpf_htons((__u16)(PLEXUS_CT_PORT_MIN + (start + i * 4099) % CT4_PORT_SPAN));
    rev.dport = port;
    if (ct4_recent(bpf_map_lookup_elem(&plexus_ct4_v2, &rev), now)) {
      continue;
    }
    struct plexus_ct4_key own = {
        .saddr = f->saddr, .daddr = backend_addr, .sport = port, .dport = backend_port, .proto = f->proto,
        .dir = PLEXUS_CT_EGRESS};
    if (ct4_recent(bpf_map_lookup_elem(&plexus_ct4_v2, &own), now)) {
      continue;
    }
    return port;
  }
  return f->sport; /* no free candidate: keep the port, as before */
}

/* Records a new translated flow: client->frontend gets the backend (and the port the flow was moved to, if it was),
 * backend->client gets the frontend (keyed on the port the backend sees; the client's own port to restore), unless
 * reverse_dir is 0. */
static __always_inline int ct4_create(const struct flow4 *f, __be32 backend_addr, __be16 backend_port, __u32 backend_id,
                                      __u16 rev_nat_index, __u8 reverse_dir, __be16 port) {
  __be16 moved = port != f->sport ? port : 0;
  struct plexus_ct4_key fwd = {
      .saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport, .proto = f->proto,
      .dir = PLEXUS_CT_SERVICE};
  struct plexus_ct4_value v = {.last_seen_ns = ct_clock(), .backend_id = backend_id,
                               .rev_nat_index = rev_nat_index, .tx_flags = f->tcp_flags, .nat_port = moved};
  if (bpf_map_update_elem(&plexus_ct4_v2, &fwd, &v, BPF_ANY) < 0) {
    return PLEXUS_DROP(CT_MAP_FULL);
  }
  if (!reverse_dir) {
    return 0; /* direct server return: replies do not come back through this node */
  }
  struct plexus_ct4_key rev = {
      .saddr = backend_addr, .daddr = f->saddr, .sport = backend_port, .dport = port, .proto = f->proto,
      .dir = reverse_dir};
  v.nat_port = moved ? f->sport : 0;
  if (bpf_map_update_elem(&plexus_ct4_v2, &rev, &v, BPF_ANY) < 0) {
    return PLEXUS_DROP(CT_MAP_FULL);
  }
  return 0;
}
