/* Programs on the node's external devices (--devices).
 *   plexus_from_netdev: tc ingress. NodePort, LoadBalancer and externalIPs traffic arriving from outside the
 *   node is translated to a backend here, with conntrack; everything else passes to the stack untouched.
 *   plexus_to_netdev: tc egress. Replies of those flows get the frontend back as their source on their way
 *   out (not earlier: a node address as source would be a martian on the pod's side of the stack). */
#include "vmlinux.h"
#include "lib/common.h"
#include "lib/lb_xlate.h"
#include "lib/metrics.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int plexus_from_netdev(struct __sk_buff *skb) {
  if (skb->protocol != bpf_htons(ETH_P_IP)) {
    return TC_ACT_OK;
  }
  struct iphdr *ip = ctx_ptr(skb, ETH_HLEN, sizeof(*ip));
  if (!ip || ip->ihl < 5 || ip->version != 4) {
    return TC_ACT_OK; /* not ours to judge: the stack drops what is malformed */
  }
  struct flow4 f = {};
  int ret = flow4_parse(skb, ip, &f);
  if (ret <= 0) {
    return TC_ACT_OK;
  }
  __u8 translated = 0;
  ret = lb4_xlate(skb, &f, 0, &translated);
  if (ret < 0) {
    metrics_update((__u8)(-ret), PLEXUS_DIR_INGRESS, skb->len);
    return TC_ACT_SHOT;
  }
  if (ret > 0) {
    metrics_update(PLEXUS_REASON_NO_SERVICE_BACKEND, PLEXUS_DIR_INGRESS, skb->len);
    return ret;
  }
  if (translated) {
    metrics_update(PLEXUS_REASON_SERVICE_TRANSLATED, PLEXUS_DIR_INGRESS, skb->len);
  }
  return TC_ACT_OK;
}

SEC("tc")
int plexus_to_netdev(struct __sk_buff *skb) {
  if (skb->protocol != bpf_htons(ETH_P_IP)) {
    return TC_ACT_OK;
  }
  struct iphdr *ip = ctx_ptr(skb, ETH_HLEN, sizeof(*ip));
  if (!ip || ip->ihl < 5 || ip->version != 4) {
    return TC_ACT_OK;
  }
  struct flow4 f = {};
  if (flow4_parse(skb, ip, &f) <= 0) {
    return TC_ACT_OK;
  }
  int ret = lb4_rev_nat(skb, &f, PLEXUS_CT_REVERSE_NODEPORT);
  if (ret < 0) {
    metrics_update((__u8)(-ret), PLEXUS_DIR_EGRESS, skb->len);
    return TC_ACT_SHOT;
  }
  return TC_ACT_OK;
}
