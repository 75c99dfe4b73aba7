/* Masquerade (BPF SNAT) of pods' traffic leaving the node through an external device: layouts shared with the
 * agent. */
#pragma once
#include "plexus/types.h"

/* Default size; the agent sets max_entries from --bpf-nat-global-max before load (Cilium's default). */
#define PLEXUS_SNAT4_DEFAULT_MAX 524288
/* Ports (ICMP echo: identifiers) a masqueraded flow gets on the node's address: outside the kernel's default ephemeral
 * range (32768-60999: the node's own connections and the service port moves) and the NodePort range (30000-32767), so
 * that neither collides with them, and above the privileged ports: 1024-29999 and 61000-65535, 33,512 ports per
 * destination address and port (a burst of new connections to one server needs one each until TIME_WAIT passes). */
#define PLEXUS_SNAT_PORT_LOW_MIN 1024
#define PLEXUS_SNAT_PORT_LOW_MAX 29999
#define PLEXUS_SNAT_PORT_MIN 61000
#define PLEXUS_SNAT_PORT_MAX 65535
#define PLEXUS_SNAT_PORT_SPAN \
  ((PLEXUS_SNAT_PORT_LOW_MAX - PLEXUS_SNAT_PORT_LOW_MIN + 1) + (PLEXUS_SNAT_PORT_MAX - PLEXUS_SNAT_PORT_MIN + 1))
#define PLEXUS_SNAT_PORT_TRIES 32
/* Devices (the external ones the host programs run on) and their masquerade address. */
#define PLEXUS_DEVICES_MAX 256

enum plexus_snat_dir {
  PLEXUS_SNAT_EGRESS = 1,  /* pod -> outside, as the pod sent it: which node address and port it leaves with */
  PLEXUS_SNAT_INGRESS = 2, /* outside -> node address and port, as the reply arrives: which pod and port it is for */
  PLEXUS_SNAT_DSR = 3,     /* on a DSR backend's node: backend -> client, as the backend replies: the frontend to put
                            * back as the source (to_addr, to_port) */
};

/* The local side's port is the TCP/UDP port or the ICMP echo identifier; the remote side's is the TCP/UDP port, 0 for
 * ICMP. */
struct plexus_snat4_key {
  __be32 saddr;
  __be32 daddr;
  __be16 sport;
  __be16 dport;
  __u8 proto;
  __u8 dir; /* enum plexus_snat_dir */
  __u8 pad[2];
};

enum plexus_snat_flags {
  PLEXUS_SNAT_F_CLOSING = 1 << 0, /* a TCP FIN or RST was seen: the flow is over once its TIME_WAIT has passed */
};

struct plexus_snat4_value {
  __u64 last_seen_ns; /* as the conntrack entries' (plexus/conntrack.h): CLOCK_MONOTONIC, every PLEXUS_CT_STAMP_NS at most */
  __be32 to_addr; /* EGRESS: the node address; INGRESS: the pod */
  __be16 to_port; /* EGRESS: the allocated port; INGRESS: the pod's port */
  __u8 flags;     /* enum plexus_snat_flags */
  __u8 pad;
};

struct plexus_device_value {
  __be32 ipv4; /* the address pods' traffic leaving through the device is masqueraded to; 0: none */
  __u32 pad;
};
