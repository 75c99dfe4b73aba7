/* ARP responder for pods: every pod routes through a gateway that exists only in the datapath, so
 * the host-side veth answers every ARP request from its pod with its own MAC. */
#pragma once

#include "lib/common.h"
#include "lib/endpoints.h"
#include "lib/parse.h"

struct arp_eth_ipv4 {
  __be16 htype;
  __be16 ptype;
  __u8 hlen;
  __u8 plen;
  __be16 op;
  __u8 sha[ETH_ALEN];
  __be32 sip;
  __u8 tha[ETH_ALEN];
  __be32 tip;
} __attribute__((packed));

/* Rewrites an ARP request into the reply in place and returns it to the sender (egress of the
 * same veth delivers into the pod). Returns a TC action, or 0 to let the packet pass untouched
 * when it is not a request we should answer (gratuitous ARP, unknown sender, chained endpoint). */
static __always_inline int arp_respond(struct __sk_buff *skb) {
  struct ethhdr *eth = ctx_ptr(skb, 0, sizeof(*eth) + sizeof(struct arp_eth_ipv4));
  if (!eth) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  struct arp_eth_ipv4 *arp = (void *)(eth + 1);
  if (arp->op != bpf_htons(ARPOP_REQUEST) || arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
      arp->hlen != ETH_ALEN || arp->plen != 4) {
    return TC_ACT_OK;
  }
  __be32 sip = arp->sip;
  __be32 tip = arp->tip;
  if (sip == tip) {
    return TC_ACT_OK; /* gratuitous ARP: nothing to answer */
  }
  struct plexus_endpoint_value *ep = endpoint_lookup(sip);
  if (!ep || ep->ifindex != skb->ifindex || (ep->flags & PLEXUS_EP_F_CHAINED)) {
    return TC_ACT_OK;
  }
  __u8 node_mac[ETH_ALEN];
  __u8 pod_mac[ETH_ALEN];
  __builtin_memcpy(node_mac, ep->node_mac, ETH_ALEN);
  __builtin_memcpy(pod_mac, arp->sha, ETH_ALEN);

  __builtin_memcpy(eth->h_dest, pod_mac, ETH_ALEN);
  __builtin_memcpy(eth->h_source, node_mac, ETH_ALEN);
  arp->op = bpf_htons(ARPOP_REPLY);
  __builtin_memcpy(arp->tha, pod_mac, ETH_ALEN);
  arp->tip = sip;
  __builtin_memcpy(arp->sha, node_mac, ETH_ALEN);
  arp->sip = tip;
  return bpf_redirect(skb->ifindex, 0);
}
