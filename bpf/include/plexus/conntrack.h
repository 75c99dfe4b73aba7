/* Connection tracking for per-packet service translation (tc path). */
#pragma once
#include "plexus/types.h"

/* Default size; the agent sets max_entries from --ct-map-size before load. */
#define PLEXUS_CT4_DEFAULT_MAX 262144

/* Lifetimes, measured from last_seen_ns, after which the agent's garbage collector deletes an entry. Open TCP and
 * non-TCP follow Cilium's defaults (CT_CONNECTION_LIFETIME_TCP 6 h, CT_CONNECTION_LIFETIME_NONTCP 60 s). */
#define PLEXUS_CT_LIFETIME_TCP_NS (21600ULL * PLEXUS_NSEC_PER_SEC)
#define PLEXUS_CT_LIFETIME_NON_TCP_NS (60ULL * PLEXUS_NSEC_PER_SEC)
/* How long a tuple may still be held by a TIME_WAIT socket after its entry last saw a packet: Linux keeps TIME_WAIT
 * for 60 s (TCP_TIMEWAIT_LEN), netfilter's conntrack 120 s (nf_conntrack_tcp_timeout_time_wait). One fact, used
 * twice: the datapath's source-port choice treats older entries as holding nothing, and the garbage collector keeps
 * a closing TCP entry (FIN or RST seen) this long, so that the choice can still read it (Cilium: 10 s). */
#define PLEXUS_CT_TIME_WAIT_NS (120ULL * PLEXUS_NSEC_PER_SEC)
/* A packet refreshes its entry's last_seen_ns only when the stamp is at least this old (conntrack and masquerade
 * entries alike): the lifetimes above are seconds to hours, and a connection's two directions, handled on two CPUs,
 * would otherwise write the same cache line on every packet and take turns missing it. */
#define PLEXUS_CT_STAMP_NS (100ULL * 1000 * 1000)

/* Source ports a translated flow may be moved to: the kernel's default ephemeral range
 * (net.ipv4.ip_local_port_range 32768-60999), and how many random candidates are tried. */
#define PLEXUS_CT_PORT_MIN 32768
#define PLEXUS_CT_PORT_MAX 60999
#define PLEXUS_CT_PORT_TRIES 16

/* TCP flag bits as they appear in byte 13 of the TCP header (RFC 9293 §3.1); tx_flags and rx_flags hold them. */
#define PLEXUS_TCP_FIN 0x01
#define PLEXUS_TCP_SYN 0x02
#define PLEXUS_TCP_RST 0x04
#define PLEXUS_TCP_ACK 0x10
/* rx_flags of a flow without TCP flags (UDP, ICMP): its reply direction has been seen. */
#define PLEXUS_CT_RX_SEEN 0x80
/* flags of an EGRESS or INGRESS entry: this node translated nothing of the connection (no REVERSE or REVERSE_NODEPORT
 * entry of it here), so its replies need no reverse translation and skip those lookups, and the service lookup. */
#define PLEXUS_CT_F_UNTRANSLATED 0x1
/* Either seen in either direction: the connection is closing (lifetime PLEXUS_CT_TIME_WAIT_NS). */
#define PLEXUS_CT_CLOSING_FLAGS (PLEXUS_TCP_FIN | PLEXUS_TCP_RST)

enum plexus_ct_dir {
  PLEXUS_CT_SERVICE = 1, /* client -> frontend: which backend this flow was given */
  PLEXUS_CT_REVERSE = 2, /* backend -> client: which frontend to restore as the source */
  PLEXUS_CT_EGRESS = 3,  /* a connection an endpoint opened, allowed by its egress policy */
  PLEXUS_CT_INGRESS = 4, /* a connection into an endpoint, allowed by its ingress policy */
  PLEXUS_CT_REVERSE_NODEPORT = 5, /* backend -> outside client of a node frontend: restored at the device's
                                   * egress, since the node's own address cannot be a source on the pod side */
};

/* plexus_ct4_v2: LRU_HASH. Written by BPF; read by the agent for `plexus bpf ct list`. (v1 lacked nat_port.) */
struct plexus_ct4_key {
  __be32 saddr;  /* network order */
  __be32 daddr;  /* network order */
  __be16 sport;  /* network order */
  __be16 dport;  /* network order */
  __u8 proto;
  __u8 dir;      /* enum plexus_ct_dir */
  __u8 pad[2];   /* zero */
};

struct plexus_ct4_value {
  __u64 last_seen_ns;    /* CLOCK_MONOTONIC at tick resolution (ct_clock), refreshed every PLEXUS_CT_STAMP_NS at most */
  __u32 backend_id;      /* SERVICE entries. EGRESS and INGRESS: the rule of the verdict cached with verdict_epoch */
  __u16 rev_nat_index;   /* SERVICE and REVERSE */
  __u8 tx_flags;         /* TCP flags seen in the entry's own direction */
  __u8 rx_flags;         /* TCP flags seen in replies; FIN or RST in either means closing */
  __be16 nat_port;       /* SERVICE: the source port the flow was moved to (0: kept); REVERSE: the client's own
                          * port, restored on replies (0: none). See ct4_pick_port. */
  __u16 flags;           /* EGRESS and INGRESS: PLEXUS_CT_F_* (0 in entries of agents before them: nothing known) */
  __u32 verdict_epoch;   /* EGRESS and INGRESS: the policy epoch (plexus_policy_epoch_v1) in which policy last allowed
                          * the connection; while it is current, the connection's packets skip the verdict's lookups
                          * (0: none cached). Entries of agents before it have 0 here (the pad). */
};

/* The value of plexus_ct4_v1 (retired by v2, same key). BPF never uses it: the agent reads a leftover v1 pin with it
 * and carries the entries into plexus_ct4_v2 (agent/datapath map_convert.h, docs/datapath.md "Layout and size
 * changes"). */
struct plexus_ct4_value_v1 {
  __u64 last_seen_ns;
  __u32 backend_id;
  __u16 rev_nat_index;
  __u8 tx_flags;
  __u8 rx_flags;
};
