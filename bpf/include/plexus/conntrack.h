/* Connection tracking for per-packet service translation (tc path). */
#pragma once
#include "plexus/types.h"

/* Default size; the agent sets max_entries from --ct-map-size before load. */
#define PLEXUS_CT4_DEFAULT_MAX 262144

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
  __u64 last_seen_ns;    /* bpf_ktime_get_ns() */
  __u32 backend_id;      /* SERVICE entries */
  __u16 rev_nat_index;   /* both kinds */
  __u8 tx_flags;         /* TCP flags seen in the entry's own direction */
  __u8 rx_flags;         /* TCP flags seen in replies; FIN or RST in either means closing */
  __be16 nat_port;       /* SERVICE: the source port the flow was moved to (0: kept); REVERSE: the client's own
                          * port, restored on replies (0: none). See ct4_pick_port. */
  __u16 pad[3];          /* zero */
};
