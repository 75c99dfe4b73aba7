/* Endpoint and ipcache maps: which local pod owns an IP, and which identity any prefix has. */
#pragma once
#include "plexus/types.h"

#define PLEXUS_ENDPOINTS_MAX 65536
#define PLEXUS_IPCACHE_MAX 512000

/* plexus_endpoints_v1: HASH, pod IPv4 -> local endpoint. Written by the agent (endpoint manager). */
struct plexus_endpoint_key {
  __be32 ip; /* network order */
};

enum plexus_endpoint_flags {
  PLEXUS_EP_F_HOST = 1 << 0,    /* the node's own address (router IP) */
  PLEXUS_EP_F_CHAINED = 1 << 1, /* veth owned by another plugin (generic-veth chaining): no L2 games */
};

struct plexus_endpoint_value {
  __u32 ifindex;     /* host-side veth ifindex (host order) */
  __u32 identity;    /* security identity of the pod (host order) */
  __u16 ep_id;       /* endpoint id (host order), also the policy map slot */
  __u16 flags;       /* enum plexus_endpoint_flags */
  __u8 pod_mac[6];   /* MAC of the pod-side interface, wire order */
  __u8 node_mac[6];  /* MAC of the host-side veth, wire order */
  __u8 pad[4];       /* zero */
};

/* plexus_ipcache_v1: LPM_TRIE, prefix -> identity (+ tunnel endpoint). Written by the agent. */
struct plexus_ipcache_key {
  __u32 prefixlen; /* LPM prefix length in bits, counted over `ip` */
  __be32 ip;       /* network order */
};

struct plexus_ipcache_value {
  __u32 identity;      /* host order */
  __be32 tunnel_endpoint; /* node IP that hosts this prefix; 0 for local or world */
  __u8 flags;
  __u8 pad[3];         /* zero */
};
