/* Delivery into a local endpoint's network namespace without a pass through the node's stack. */
#pragma once

#include "lib/common.h"
#include "lib/endpoints.h"
#include "lib/l3.h"
#include "lib/parse.h"

/* Rewrites L2 for the pod (its own MAC as destination, the host veth's as source), decrements the TTL as the router
 * the node is, and hands the packet straight to the ingress of the veth's peer inside the pod, skipping the host stack
 * (kernel commit 9aa1206e8f48, bpf_redirect_peer; only valid from tc ingress).
 * from_outside: the packet came from another device (the VXLAN device, an external device), whose L2 destination was
 * not the pod's, so the device marked it PACKET_OTHERHOST; the pod's IP layer would drop it as such, since
 * redirect_peer does not run eth_type_trans again. Cilium does the same (bpf/lib/l3.h, redirect_ep: "When coming
 * from overlay, we need to set packet type to HOST"). */
static __always_inline int local_deliver(struct __sk_buff *skb, const struct plexus_endpoint_value *dst,
                                         int from_outside) {
  __u8 src_mac[ETH_ALEN];
  __u8 dst_mac[ETH_ALEN];
  __u32 ifindex = dst->ifindex;
  __builtin_memcpy(src_mac, dst->node_mac, ETH_ALEN);
  __builtin_memcpy(dst_mac, dst->pod_mac, ETH_ALEN);
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  int ret = ipv4_dec_ttl(skb, ip);
  if (ret < 0) {
    return ret;
  }
  ret = eth_store_addrs(skb, src_mac, dst_mac);
  if (ret < 0) {
    return ret;
  }
  if (from_outside && bpf_skb_change_type(skb, PACKET_HOST) < 0) {
    return PLEXUS_DROP(REDIRECT_FAILED);
  }
  return bpf_redirect_peer(ifindex, 0);
}
