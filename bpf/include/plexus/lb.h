/* Service load-balancing maps (kube-proxy replacement). Layout follows the shape of Cilium's lb4 maps
 * (service slot 0 is the master entry; slots 1..count point at backends). */
#pragma once
#include "plexus/types.h"

/* The defaults of --bpf-lb-map-max (the agent sizes the services, backends, rev-NAT, Maglev outer and affinity maps
 * with it before load). */
#define PLEXUS_LB_MAP_DEFAULT_MAX 65536
#define PLEXUS_LB_SERVICES_MAX 65536
#define PLEXUS_LB_BACKENDS_MAX 65536
#define PLEXUS_LB_REVNAT_MAX 65536
#define PLEXUS_LB_MAGLEV_OUTER_MAX 65536
#define PLEXUS_LB_AFFINITY_MAX 65536
#define PLEXUS_LB_SOCK_REVNAT_MAX 262144
#define PLEXUS_LB_SRC_RANGE_MAX 65536
#define PLEXUS_MAGLEV_DEFAULT_M 16381
/* Hairpin: a pod reaching itself through a frontend on the per-packet path gets this source address (as Cilium's
 * IPV4_LOOPBACK), since a packet from its own address would be dropped as martian; replies are restored. */
#define PLEXUS_LB_HAIRPIN_ADDR 0xa9fe2a01 /* 169.254.42.1, host order */

/* loadBalancer.mode (--bpf-lb-mode): how a node frontend reaches a backend on another node. */
enum plexus_lb_mode {
  PLEXUS_LB_MODE_SNAT = 0,   /* the entry node's address as source; replies return through the entry node */
  PLEXUS_LB_MODE_DSR = 1,    /* the client's address kept; the backend's node replies to the client directly */
  PLEXUS_LB_MODE_HYBRID = 2, /* DSR for TCP, SNAT for the rest */
};

/* Direct server return, dispatched with an IPv4 option (Cilium's dsrDispatch "opt"): the entry node inserts it after
 * the IPv4 header of the translated packet (every UDP packet, a TCP connection's SYN), and the backend's node keeps
 * the frontend it names to put back as the source of the backend's replies. Option type 0x9a (RFC 791: copied flag
 * set, class 0, number 26, the number Cilium uses), length 8. */
#define PLEXUS_DSR_OPT_TYPE 0x9a
#define PLEXUS_DSR_OPT_LEN 8

struct plexus_dsr_opt4 {
  __u8 type;      /* PLEXUS_DSR_OPT_TYPE */
  __u8 len;       /* PLEXUS_DSR_OPT_LEN */
  __be16 port;    /* the frontend port, network order */
  __be32 address; /* the frontend address, network order */
};

/* plexus_lb4_services_v1: HASH, {frontend, slot} -> service/backend pointer. Written by the agent. */
struct plexus_lb4_key {
  __be32 address;     /* frontend IP, network order */
  __be16 dport;       /* frontend port, network order */
  __u16 backend_slot; /* 0 = master entry, 1..count = backends (host order) */
  __u8 proto;         /* IPPROTO_TCP / IPPROTO_UDP */
  __u8 scope;         /* enum plexus_lb_scope */
  __u8 pad[2];        /* zero */
};

enum plexus_lb_scope {
  PLEXUS_LB_SCOPE_EXTERNAL = 0, /* lookups for traffic from outside the node */
  PLEXUS_LB_SCOPE_INTERNAL = 1, /* lookups for traffic from local pods/host (internalTrafficPolicy) */
};

enum plexus_lb_flags {
  PLEXUS_SVC_F_CLUSTERIP = 1 << 0,
  PLEXUS_SVC_F_NODEPORT = 1 << 1,
  PLEXUS_SVC_F_EXTERNAL_IP = 1 << 2,
  PLEXUS_SVC_F_LOADBALANCER = 1 << 3,
  PLEXUS_SVC_F_ETP_LOCAL = 1 << 4,  /* externalTrafficPolicy: Local */
  PLEXUS_SVC_F_ITP_LOCAL = 1 << 5,  /* internalTrafficPolicy: Local */
  PLEXUS_SVC_F_AFFINITY = 1 << 6,   /* sessionAffinity: ClientIP */
  PLEXUS_SVC_F_MAGLEV = 1 << 7,     /* backend selection through the per-service Maglev table */
  PLEXUS_SVC_F_TWO_SCOPES = 1 << 8, /* external master only: an internal-scope entry exists for local clients */
  PLEXUS_SVC_F_SOURCE_RANGE = 1 << 9, /* external LoadBalancer master only: clients must be in
                                       * plexus_lb4_source_range_v1 (spec.loadBalancerSourceRanges) */
};

struct plexus_lb4_service {
  __u32 backend_id;       /* slot > 0: the backend id; slot 0: 0 */
  __u16 count;            /* slot 0: number of active backend slots */
  __u16 rev_nat_index;    /* service id; key of revnat, maglev and affinity maps (host order) */
  __u32 affinity_timeout; /* seconds, slot 0 only (host order) */
  __u16 flags;            /* enum plexus_lb_flags */
  __u16 pad;              /* zero */
};

enum plexus_backend_state {
  PLEXUS_BACKEND_ACTIVE = 0,
  PLEXUS_BACKEND_TERMINATING = 1, /* existing connections only */
  PLEXUS_BACKEND_QUARANTINED = 2,
  PLEXUS_BACKEND_MAINTENANCE = 3,
};

/* plexus_lb4_backends_v1: HASH, backend id (u32) -> backend. Written by the agent. */
struct plexus_lb4_backend {
  __be32 address; /* network order */
  __be16 port;    /* network order */
  __u8 proto;
  __u8 state;     /* enum plexus_backend_state */
};

/* plexus_lb4_reverse_nat_v1: HASH, rev_nat_index (u16) -> original frontend. Written by the agent. */
struct plexus_lb4_reverse_nat {
  __be32 address; /* network order */
  __be16 port;    /* network order */
  __u16 pad;      /* zero */
};

/* plexus_lb4_maglev_v1: HASH_OF_MAPS, rev_nat_index (u32) -> ARRAY[M] of backend id (u32).
 * Inner tables are built in userspace and swapped in whole. */

/* plexus_lb4_affinity_v1: LRU_HASH, {client, service} -> {backend, last use}. Written by BPF.
 * The client is the source IPv4 (tc path) or the network-namespace cookie (socket path), as in Cilium. */
struct plexus_lb4_affinity_key {
  __u64 client;        /* IPv4 in network order (zero-extended), or netns cookie */
  __u16 rev_nat_index; /* host order */
  __u8 netns_cookie;   /* 1: client is a netns cookie */
  __u8 pad[5];         /* zero */
};

struct plexus_lb4_affinity_value {
  __u64 last_used_ns; /* bpf_ktime_get_ns() */
  __u32 backend_id;
  __u32 pad;          /* zero */
};

/* plexus_lb4_sock_revnat_v1: LRU_HASH, {socket cookie, backend} -> frontend. Written by the socket programs at
 * connect/sendmsg so that recvmsg and getpeername report the service address the application asked for. */
struct plexus_lb4_sock_revnat_key {
  __u64 cookie;    /* bpf_get_socket_cookie() */
  __be32 address;  /* backend, network order */
  __be16 port;     /* backend, network order */
  __u16 pad;       /* zero */
};

struct plexus_lb4_sock_revnat_value {
  __be32 address;        /* frontend, network order */
  __be16 port;           /* frontend, network order */
  __u16 rev_nat_index;   /* host order */
};

/* plexus_lb4_source_range_v1: LPM_TRIE, {rev_nat_index, client prefix} -> 1. Written by the agent (service planner):
 * the spec.loadBalancerSourceRanges of each LoadBalancer frontend whose master carries PLEXUS_SVC_F_SOURCE_RANGE, as
 * Cilium's lb4_src_range map. The index is always matched whole (it is part of every prefix), the address by the
 * range's length: prefixlen = PLEXUS_LB_SRC_RANGE_FIXED_PREFIX + the range's length. */
#define PLEXUS_LB_SRC_RANGE_FIXED_PREFIX 32 /* rev_nat_index and pad, in bits */
struct plexus_lb4_src_range_key {
  __u32 prefixlen;     /* LPM: bits of the rest that count (host order) */
  __u16 rev_nat_index; /* the frontend's (host order) */
  __u16 pad;           /* zero */
  __be32 address;      /* the range's network address, or the client when looking up (network order) */
};
