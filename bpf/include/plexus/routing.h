/* Routing between nodes (Cilium's two modes). The agent picks the mode; the datapath reads it as rodata. */
#pragma once

/* cfg_routing_mode (rodata of the lxc programs). */
enum plexus_routing_mode {
  PLEXUS_ROUTING_NATIVE = 0, /* pod traffic leaves unencapsulated; the node's routes reach other nodes' pod CIDRs */
  PLEXUS_ROUTING_TUNNEL = 1, /* pod traffic to another node's pods is VXLAN-encapsulated through plexus_vxlan */
};

/* The VXLAN device: collect-metadata ("external") mode on Cilium's port. The VNI carries the sender's security
 * identity (24 bits, PLEXUS_IDENTITY_VNI_MAX), so the receiver judges policy without an ipcache lookup. */
#define PLEXUS_VXLAN_PORT 8472
#define PLEXUS_TUNNEL_TTL 64 /* outer header TTL, as Cilium's IPDEFTTL */
