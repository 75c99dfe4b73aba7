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

/* skb->mark of a pod's packet that from-container sent out of a device by the FIB (BPF host routing), or into the
 * tunnel (the VXLAN driver keeps the mark on the outer packet), with nothing left for the device's egress program
 * (plexus_to_netdev) to do: a destination inside the cluster (no masquerade), and no NodePort flow's reply still to get
 * its frontend back (from-container restored it). That program clears it and passes the packet on. A pod cannot set
 * it: a packet crossing the veth into the node's namespace has its mark scrubbed. */
#define PLEXUS_MARK_HOST_ROUTED 0x0E5A0000
