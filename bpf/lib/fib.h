/* BPF host routing: packets leaving a pod for another node are forwarded with a FIB lookup and a redirect to the
 * egress device, skipping the host stack's forwarding path (netfilter FORWARD, the second routing decision). Any
 * result the datapath cannot finish itself goes to the stack unchanged: host routing never drops. */
#pragma once

#include "lib/common.h"
#include "lib/l3.h"
#include "lib/parse.h"

const volatile __u8 cfg_host_routing = 0; /* 1: fib lookup + redirect; 0: the kernel stack forwards */

/* Forwards the packet (whose flow, as rewritten so far, is f) to the FIB's next hop. Returns TC_ACT_REDIRECT, TC_ACT_OK
 * (the stack's turn) or a negative reason when the packet could not be rewritten. `avoid_ifindex`: a device the result
 * must not be (the VXLAN device, whose packets need a tunnel key only the stack path gives them). `same_dev`: the
 * result may be the device the packet came in on (a node's device forwarding between two hosts of its network, as
 * NodePort flows do); a pod's veth never sends its packets back into the pod. */
static __always_inline int fib_redirect_v4(struct __sk_buff *skb, const struct flow4 *f, __u32 avoid_ifindex,
                                           int same_dev) {
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip || ip->ttl <= 1) {
    return TC_ACT_OK; /* the stack answers with ICMP time exceeded */
  }
  /* An input lookup, as the stack would do for the packet arriving on its device (a pod's veth, a node's device):
   * flags 0 (not BPF_FIB_LOOKUP_OUTPUT) and that ifindex, so policy routing by iif and its forwarding setting apply
   * (net/core/filter.c, bpf_ipv4_fib_lookup). The kernel checks the packet against the egress MTU (FRAG_NEEDED: the
   * stack fragments or answers): by tot_len, or with tot_len 0 by the skb itself, segment by segment for a GSO packet,
   * as the stack's forwarding does. A GSO packet's tot_len is the whole super-packet's, above any MTU: given that, every
   * TSO burst from a pod would fall back to the stack. Ports feed multipath hashing. */
  struct bpf_fib_lookup p = {};
  p.family = AF_INET;
  p.tos = ip->tos;
  p.l4_protocol = ip->protocol;
  p.sport = f->sport;
  p.dport = f->dport;
  p.tot_len = skb->gso_size ? 0 : bpf_ntohs(ip->tot_len);
  p.ipv4_src = ip->saddr;
  p.ipv4_dst = ip->daddr;
  p.ifindex = skb->ifindex;
  long rc = bpf_fib_lookup(skb, &p, sizeof(p), 0);
  if ((rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) || (!same_dev && p.ifindex == skb->ifindex) ||
      (avoid_ifindex && p.ifindex == avoid_ifindex)) {
    return TC_ACT_OK;
  }
  int ret = ipv4_dec_ttl(skb, ip);
  if (ret < 0) {
    return ret;
  }
  if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
    /* The next hop (p.ipv4_dst now holds the gateway, or the destination on a connected route) has no resolved
     * neighbour: the kernel resolves it and queues the packet meanwhile (bpf_redirect_neigh with a
     * nexthop, kernel 5.10; Cilium's fib_redirect does the same). */
    struct bpf_redir_neigh nh = {};
    nh.nh_family = AF_INET;
    nh.ipv4_nh = p.ipv4_dst;
    return bpf_redirect_neigh(p.ifindex, &nh, sizeof(nh), 0);
  }
  ret = eth_store_addrs(skb, p.smac, p.dmac);
  if (ret < 0) {
    return ret;
  }
  return bpf_redirect(p.ifindex, 0);
}
