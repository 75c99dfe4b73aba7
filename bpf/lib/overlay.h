/* VXLAN tunnel (routing mode tunnel): the tunnel key of a collect-metadata device. The sender's security identity
 * rides in the 24-bit VNI, as in Cilium, so the receiving node judges ingress policy by it. */
#pragma once

#include "plexus/identity.h"
#include "plexus/routing.h"
#include "lib/common.h"

/* Load-time switches (STYLE.md rule 6), set by the agent through the skeleton before load. */
const volatile __u8 cfg_routing_mode = PLEXUS_ROUTING_NATIVE; /* enum plexus_routing_mode */
const volatile __u32 cfg_tunnel_ifindex = 0;                  /* plexus_vxlan; 0: no tunnel */
const volatile __be16 cfg_tunnel_port = 0;                    /* its UDP port, network order; 0: no tunnel */

/* Sets the tunnel key the VXLAN device encapsulates with: outer destination `remote` (network order; the helper takes
 * host order), VNI = identity. A node-local identity (bit 24, policy CIDRs) never names a sender on the wire, and
 * masking it would name another identity: refused. Returns 0 or a negative reason. */
static __always_inline int overlay_set_key(struct __sk_buff *skb, __be32 remote, __u32 identity) {
  if (identity > PLEXUS_IDENTITY_VNI_MAX) {
    return PLEXUS_DROP(INVALID_IDENTITY);
  }
  struct bpf_tunnel_key key = {};
  key.remote_ipv4 = bpf_ntohl(remote);
  key.tunnel_id = identity;
  key.tunnel_ttl = PLEXUS_TUNNEL_TTL;
  /* VXLAN's outer UDP checksum is optional for IPv4 (RFC 7348 §5); Cilium sends it zero too. */
  if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0) {
    return PLEXUS_DROP(REDIRECT_FAILED);
  }
  return 0;
}

/* Whether the packet already carries a tunnel key (from-container keyed it before its redirect): the metadata itself
 * is the mark, so nothing in skb->mark or cb[] has to survive the redirect. */
static __always_inline int overlay_has_key(struct __sk_buff *skb, struct bpf_tunnel_key *key) {
  return bpf_skb_get_tunnel_key(skb, key, sizeof(*key), 0) == 0;
}

/* The sender identity a VNI stands for. Traffic from another node's host carries host (1) there; here it is that
 * node, remote-node (6), as in Cilium. */
static __always_inline __u32 overlay_identity_of_vni(__u32 vni) {
  return vni == PLEXUS_IDENTITY_HOST ? PLEXUS_IDENTITY_REMOTE_NODE : vni;
}
