/* Flow events: what the datapath tells the agent about forwards and drops (Hubble-style observability). */
#pragma once
#include "plexus/types.h"

#define PLEXUS_EVENTS_RING_BYTES (1 << 20) /* 1 MiB ring buffer (16,384 flow events); a full ring counts lost events */

enum plexus_verdict {
  PLEXUS_VERDICT_FORWARDED = 1,
  PLEXUS_VERDICT_DROPPED = 2,
  PLEXUS_VERDICT_TRANSLATED = 3, /* a service frontend was rewritten to a backend */
  PLEXUS_VERDICT_AUDIT = 4,      /* policy audit mode: policy would have dropped it (the reason says why); it passed */
};

/* Monitor aggregation (rodata cfg_monitor_aggregation), like Cilium's --monitor-aggregation. */
enum plexus_aggregation {
  PLEXUS_AGGREGATION_NONE = 0,   /* an event for every packet */
  PLEXUS_AGGREGATION_MEDIUM = 1, /* new connections, TCP flag changes and every drop (default) */
};

/* plexus_events_v1: RINGBUF of struct plexus_flow_event. Written by BPF; read by the agent. */
struct plexus_flow_event {
  __u64 timestamp_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
  __u8 verdict;         /* enum plexus_verdict */
  __u8 reason;          /* enum plexus_reason */
  __u8 direction;       /* enum plexus_direction, relative to the endpoint */
  __u8 proto;           /* IPPROTO_* */
  __u8 tcp_flags;
  __u8 is_reply;        /* the packet belongs to the reverse direction of a tracked connection */
  __u16 endpoint_id;    /* where it was observed (0: host device) */
  __u32 src_identity;
  __u32 dst_identity;
  __be32 saddr;
  __be32 daddr;
  __be16 sport;
  __be16 dport;
  __be32 orig_daddr;    /* service frontend before translation; 0 when none */
  __be16 orig_dport;
  __u8 icmp_type;       /* ICMP: the message type and code (valid when flags has PLEXUS_EVENT_F_ICMP) */
  __u8 icmp_code;
  __u32 len;            /* packet length in bytes */
  /* Since 2026-12-06 (56 B): a reader keeps accepting the 48 bytes above, from programs loaded before. */
  __u32 rule_id;        /* the policy rule that allowed, denied or audited the packet (0: none, or not judged) */
  __u8 flags;           /* enum plexus_event_flags */
  __u8 pad[3];          /* zero */
};

/* The size of an event from programs that predate rule_id and the ICMP fields. */
#define PLEXUS_FLOW_EVENT_V1_SIZE 48

enum plexus_event_flags {
  PLEXUS_EVENT_F_ICMP = 1 << 0, /* icmp_type and icmp_code are the packet's (a first ICMP fragment or whole packet) */
};

/* plexus_events_lost_v1: PERCPU_ARRAY[PLEXUS_EVENTS_LOST_SLOTS] of __u64 at key 0, events that did not fit the
 * ring. */
#define PLEXUS_EVENTS_LOST_SLOTS 1
