/* Programs on the VXLAN device plexus_vxlan (collect-metadata mode; routing mode tunnel).
 *   plexus_from_overlay: tc ingress. Decapsulated packets: the VNI is the sender's security identity; a packet for a
 *   local endpoint is judged by that endpoint's ingress policy with it and delivered into the pod with
 *   bpf_redirect_peer. Anything else goes to the stack.
 *   plexus_to_overlay: tc egress. Packets the host stack routes into the device (host to remote pod) carry no tunnel
 *   key yet: they get one from the ipcache, with the host's identity (NodePort flows translated to another node's
 *   backend first get the node's address as source). Pod packets keyed by plexus_from_container pass.
 * Like bpf_lxc.c, each entry parses, dispatches to lib/ helpers and leaves through verdict_exit() (lib/verdict.h). */
#include "vmlinux.h"

#include "lib/common.h"
#include "lib/endpoints.h"
#include "lib/lb_xlate.h"
#include "lib/local.h"
#include "lib/overlay.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/snat.h"
#include "lib/verdict.h"

char LICENSE[] SEC("license") = "GPL";

/* A decapsulated packet. Returns a TC action or a negative reason. */
static __always_inline int overlay_ipv4_ingress(struct __sk_buff *skb, struct verdict_ctx *c) {
  struct bpf_tunnel_key key = {};
  if (!overlay_has_key(skb, &key)) {
    return PLEXUS_DROP(INVALID_PACKET); /* a collect-metadata device gives every packet its key */
  }
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  struct plexus_endpoint_value *dst = endpoint_lookup(ip->daddr);
  if (!dst || (dst->flags & (PLEXUS_EP_F_HOST | PLEXUS_EP_F_CHAINED))) {
    /* For the node itself or not ours to deliver: the stack routes it (a chained endpoint's to-container program
     * judges it there). Its L2 destination was the sending node's, which the stack would discard as another host's. */
    bpf_skb_change_type(skb, PACKET_HOST);
    return TC_ACT_OK;
  }
  /* Nothing on this node translated what the tunnel brings (the sender's node did). */
  int ret = local_ingress(skb, c, ip, dst, overlay_identity_of_vni(key.tunnel_id), 1, 1);
  if (ret < 0) {
    return ret;
  }
  return local_deliver(skb, dst, 1);
}

/* A packet about to be encapsulated. Returns a TC action or a negative reason. */
static __always_inline int overlay_ipv4_egress(struct __sk_buff *skb, struct verdict_ctx *c) {
  struct bpf_tunnel_key key = {};
  if (overlay_has_key(skb, &key)) {
    return TC_ACT_OK; /* keyed by plexus_from_container, and counted there */
  }
  c->observed = 1;
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  struct flow4 f = {};
  int ret = flow4_parse(skb, ip, &f);
  verdict_trace_flow(c, &f);
  if (ret < 0) {
    return ret;
  }
  /* A NodePort flow from outside that from-netdev translated to a backend on another node: the backend must answer
   * through this node (loadBalancer.mode snat), so the source becomes the node's address, as at the devices. */
  ret = snat4_nodeport(skb, &f);
  if (ret < 0) {
    return ret;
  }
  /* The host's own traffic is identity host; a local pod's that took the stack path (a chained endpoint) keeps its. */
  struct plexus_endpoint_value *src = endpoint_lookup(f.saddr);
  __u32 identity = src && !(src->flags & PLEXUS_EP_F_HOST) ? src->identity : PLEXUS_IDENTITY_HOST;
  c->t.src_identity = identity;
  if (src && !(src->flags & PLEXUS_EP_F_HOST)) {
    c->t.endpoint_id = src->ep_id;
  }
  struct plexus_ipcache_value *info = ipcache_lookup(f.daddr);
  if (!info || !info->tunnel_endpoint) {
    return PLEXUS_DROP(NO_TUNNEL_ENDPOINT);
  }
  c->t.dst_identity = info->identity;
  ret = overlay_set_key(skb, info->tunnel_endpoint, identity);
  if (ret < 0) {
    return ret;
  }
  return TC_ACT_OK;
}

SEC("tc")
int plexus_from_overlay(struct __sk_buff *skb) {
  /* Counted and reported only for local endpoints (observed is set on the way). */
  struct verdict_ctx c = {.reason = PLEXUS_REASON_FORWARDED, .direction = PLEXUS_DIR_INGRESS};
  int ret = TC_ACT_OK;
  if (skb->protocol == bpf_htons(ETH_P_IP)) {
    ret = overlay_ipv4_ingress(skb, &c);
  }
  return verdict_exit(skb, &c, ret);
}

SEC("tc")
int plexus_to_overlay(struct __sk_buff *skb) {
  struct verdict_ctx c = {.reason = PLEXUS_REASON_FORWARDED_TUNNEL, .direction = PLEXUS_DIR_EGRESS};
  int ret = TC_ACT_OK;
  if (skb->protocol == bpf_htons(ETH_P_IP)) {
    ret = overlay_ipv4_egress(skb, &c);
  }
  return verdict_exit(skb, &c, ret);
}
