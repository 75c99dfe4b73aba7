/* The one exit of the tc programs (STYLE.md rule 8): helpers return a TC action (>= 0) or a negative plexus_reason,
 * and only verdict_exit() turns a reason into TC_ACT_SHOT, a per-CPU counter and a flow event. Shared by bpf_lxc.c
 * and bpf_host.c, so that a drop looks the same in `plexus observe` wherever it happened. */
#pragma once

#include "lib/common.h"
#include "lib/endpoints.h"
#include "lib/events.h"
#include "lib/metrics.h"
#include "lib/parse.h"

/* What a program learnt about a packet on its way to the exit. */
struct verdict_ctx {
  __u8 reason;      /* counted (and reported) for a result that is not a drop: FORWARDED, SERVICE_TRANSLATED... */
  __u8 direction;   /* enum plexus_direction */
  __u8 observed;    /* count and report a non-drop result. Drops are always counted and reported; host devices see
                     * much traffic that is none of plexus's business, and leave this 0 for it */
  __u8 refused;     /* the packet was turned into a refusal to its sender (no backend): a drop of `reason` for
                     * counters and events, though the program returns the redirect of the refusal */
  __u8 resolve_src; /* the source identity is not known yet: look it up in the ipcache when reporting */
  __u8 audit;       /* policy audit mode: the packet passed though policy would have dropped it... */
  __u8 audit_reason; /* ... for this reason (apart from the flag: see struct policy_trace) */
  struct trace_info t;
};

/* Fills the event's tuple from the flow as it was judged. */
static __always_inline void verdict_trace_flow(struct verdict_ctx *c, const struct flow4 *f) {
  c->t.saddr = f->saddr;
  c->t.daddr = f->daddr;
  /* Ports of TCP/UDP only: an ICMP echo identifier sits in the conntrack tuple's port slot but is no port. */
  c->t.sport = f->has_ports ? f->sport : 0;
  c->t.dport = f->has_ports ? f->dport : 0;
  c->t.proto = f->proto;
  c->t.tcp_flags = f->tcp_flags;
  c->t.icmp_type = f->icmp_type;
  c->t.icmp_code = f->icmp_code;
  c->t.event_flags = f->has_icmp ? PLEXUS_EVENT_F_ICMP : 0;
}

/* Identities are looked up only for a packet that is reported, so that aggregated packets cost no ipcache lookup. */
static __always_inline void verdict_resolve_identities(struct verdict_ctx *c) {
  if (!c->t.dst_identity) {
    c->t.dst_identity = identity_of(c->t.daddr);
  }
  if (c->resolve_src && !c->t.src_identity) {
    c->t.src_identity = identity_of(c->t.saddr);
  }
}

static __always_inline int verdict_exit(struct __sk_buff *skb, struct verdict_ctx *c, int ret) {
  if (ret < 0 || c->refused) {
    __u8 reason = ret < 0 ? (__u8)(-ret) : c->reason;
    metrics_update(reason, c->direction, skb->len);
    if (c->t.saddr) {
      verdict_resolve_identities(c);
    }
    events_emit(&c->t, PLEXUS_VERDICT_DROPPED, reason, c->direction, skb->len);
    return ret < 0 ? TC_ACT_SHOT : ret;
  }
  if (!c->observed) {
    return ret;
  }
  metrics_update(c->reason, c->direction, skb->len);
  if (c->t.saddr) {
    if (c->t.notify || cfg_monitor_aggregation == PLEXUS_AGGREGATION_NONE) {
      verdict_resolve_identities(c);
    }
    __u8 verdict = c->reason == PLEXUS_REASON_SERVICE_TRANSLATED ? PLEXUS_VERDICT_TRANSLATED : PLEXUS_VERDICT_FORWARDED;
    if (c->audit) {
      verdict = PLEXUS_VERDICT_AUDIT; /* with the reason it would have been dropped for */
    }
    events_emit(&c->t, verdict, c->audit ? c->audit_reason : c->reason, c->direction, skb->len);
  }
  return ret;
}
