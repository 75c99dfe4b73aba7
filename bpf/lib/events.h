/* Flow events into the ring buffer, bounded by monitor aggregation. A full ring never blocks forwarding: the
 * event is counted as lost and the packet goes on. */
#pragma once
#include "plexus/events.h"
#include "lib/common.h"

const volatile __u8 cfg_enable_events = 1;                               /* hubble.enabled */
const volatile __u8 cfg_monitor_aggregation = PLEXUS_AGGREGATION_MEDIUM;

/* plexus_events_v1: ring of struct plexus_flow_event; written by the tc programs' exits (lib/verdict.h), read by the
 * agent (`plexus observe`). */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, PLEXUS_EVENTS_RING_BYTES); /* resized by the agent before load (--events-ring-size) */
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_events_v1 SEC(".maps");

/* plexus_events_lost_v1: 0 -> per-CPU count of events the full ring refused; written by events_emit, read by the
 * agent. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, PLEXUS_EVENTS_LOST_SLOTS);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_events_lost_v1 SEC(".maps");

/* What a program learnt about a packet on its way to the exit. */
struct trace_info {
  __u8 notify;     /* aggregation says this packet deserves an event */
  __u8 is_reply;
  __u8 tcp_flags;
  __u8 proto;
  __u16 endpoint_id;
  __u32 src_identity;
  __u32 dst_identity;
  __be32 saddr;
  __be32 daddr;
  __be16 sport;
  __be16 dport;
  __be32 orig_daddr;
  __be16 orig_dport;
  __u8 icmp_type;
  __u8 icmp_code;
  __u8 event_flags; /* enum plexus_event_flags */
  __u32 rule_id;    /* the policy rule that decided (0: none) */
};

static __always_inline void events_emit(const struct trace_info *t, __u8 verdict, __u8 reason, __u8 direction,
                                        __u32 len) {
  if (!cfg_enable_events) {
    return;
  }
  if (verdict != PLEXUS_VERDICT_DROPPED && cfg_monitor_aggregation != PLEXUS_AGGREGATION_NONE && !t->notify) {
    return;
  }
  struct plexus_flow_event *e = bpf_ringbuf_reserve(&plexus_events_v1, sizeof(*e), 0);
  if (!e) {
    __u32 zero = 0;
    __u64 *lost = bpf_map_lookup_elem(&plexus_events_lost_v1, &zero);
    if (lost) {
      *lost += 1;
    }
    return;
  }
  e->timestamp_ns = bpf_ktime_get_ns();
  e->verdict = verdict;
  e->reason = reason;
  e->direction = direction;
  e->proto = t->proto;
  e->tcp_flags = t->tcp_flags;
  e->is_reply = t->is_reply;
  e->endpoint_id = t->endpoint_id;
  e->src_identity = t->src_identity;
  e->dst_identity = t->dst_identity;
  e->saddr = t->saddr;
  e->daddr = t->daddr;
  e->sport = t->sport;
  e->dport = t->dport;
  e->orig_daddr = t->orig_daddr;
  e->orig_dport = t->orig_dport;
  e->icmp_type = t->icmp_type;
  e->icmp_code = t->icmp_code;
  e->len = len;
  e->rule_id = t->rule_id;
  e->flags = t->event_flags;
  e->pad[0] = 0;
  e->pad[1] = 0;
  e->pad[2] = 0;
  /* Batched wakeups: the agent drains the ring every few milliseconds, so a notification per event (a wakeup and
   * a context switch per new connection) is only needed once the ring fills up. */
  __u64 flags = BPF_RB_NO_WAKEUP;
  if (bpf_ringbuf_query(&plexus_events_v1, BPF_RB_AVAIL_DATA) >
      bpf_ringbuf_query(&plexus_events_v1, BPF_RB_RING_SIZE) / 4) {
    flags = BPF_RB_FORCE_WAKEUP;
  }
  bpf_ringbuf_submit(e, flags);
}
