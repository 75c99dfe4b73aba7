/* The floor of BPF forwarding between veth pods on two nodes, for bench/multinode/run.sh's "floor" row: the datapath's
 * forwarding step alone (the FIB lookup, the TTL, the MACs, the redirect), with nothing a CNI adds to it: no endpoint,
 * identity, conntrack, policy, service, metrics or event lookups. Attached with tc on the "routes" setup's shape
 * (pods on plain veths with /32 routes and static neighbours), so the kernel's routes stay the fallback:
 *   floor_from_pod: ingress of a pod's host-side veth; the FIB's next hop, then bpf_redirect to its device, as
 *                   plexus's from-container does with BPF host routing (lib/fib.h, the same code);
 *   floor_to_pod:   ingress of the node's wire; a packet the FIB routes to another device (a pod's veth) goes into the
 *                   pod with bpf_redirect_peer, as plexus's from-netdev delivers to a local pod.
 * Whatever the FIB does not forward (the node's own traffic, ARP) goes to the stack. */
#include "vmlinux.h"

#include "lib/common.h"
#include "lib/fib.h"
#include "lib/l3.h"
#include "lib/parse.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tc/from_pod")
int floor_from_pod(struct __sk_buff *skb) {
  if (skb->protocol != bpf_htons(ETH_P_IP)) {
    return TC_ACT_OK;
  }
  /* No parse: the flow's ports only feed multipath hashing, and these routes have one path. */
  struct flow4 f = {};
  int ret = fib_redirect_v4(skb, &f, 0, 0);
  return ret < 0 ? TC_ACT_SHOT : ret;
}

SEC("tc/to_pod")
int floor_to_pod(struct __sk_buff *skb) {
  if (skb->protocol != bpf_htons(ETH_P_IP)) {
    return TC_ACT_OK;
  }
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip || ip->ttl <= 1) {
    return TC_ACT_OK;
  }
  struct bpf_fib_lookup p = {};
  p.family = AF_INET;
  p.tos = ip->tos;
  p.l4_protocol = ip->protocol;
  p.tot_len = skb->gso_size ? 0 : bpf_ntohs(ip->tot_len); /* as lib/fib.h: a GSO packet by its segments */
  p.ipv4_src = ip->saddr;
  p.ipv4_dst = ip->daddr;
  p.ifindex = skb->ifindex;
  if (bpf_fib_lookup(skb, &p, sizeof(p), 0) != BPF_FIB_LKUP_RET_SUCCESS || p.ifindex == skb->ifindex) {
    return TC_ACT_OK;
  }
  if (ipv4_dec_ttl(skb, ip) < 0 || eth_store_addrs(skb, p.smac, p.dmac) < 0) {
    return TC_ACT_SHOT;
  }
  return bpf_redirect_peer(p.ifindex, 0);
}
