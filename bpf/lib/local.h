/* Delivery into a local endpoint's network namespace without a pass through the node's stack. */
#pragma once

#include "lib/common.h"
#include "lib/dsr.h"
#include "lib/endpoints.h"
#include "lib/l3.h"
#include "lib/lb_xlate.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/verdict.h"

/* A verdict policy audit mode let through: the event reports AUDIT with the reason (flag and reason stay apart: see
 * struct policy_trace). */
static __always_inline void verdict_note_audit(struct verdict_ctx *c, const struct policy_trace *pt) {
  if (pt->audit) {
    c->audit = 1;
    c->audit_reason = pt->audit_reason;
  }
}

/* Traffic entering a local endpoint from anywhere but a same-node pod's redirect: the stack's delivery (to-container),
 * the tunnel device, an external device with BPF host routing. The endpoint's ingress policy judges the flow with the
 * source's identity; then the reply of a service flow this node translated to a backend on another node gets its
 * frontend back (only the client's node holds that conntrack entry; a miss costs one lookup, which a packet of a live
 * connection the endpoint admitted in this direction skips), and a direct server
 * return flow's frontend is kept for the backend's replies (lib/dsr.h). Fills the event.
 * `f` is the packet's flow as flow4_parse() returned it (`parsed`: its result; a malformed packet is dropped here).
 * `identity_from_packet`: src_identity is the packet's own claim (the tunnel's VNI) rather than the maps' (see
 * struct policy_trace); `untranslated`: nothing on this node translated the packet (its connection's entry says so
 * to the replies). Returns 0 to go on with the delivery, or a negative reason. */
static __always_inline int local_ingress_flow(struct __sk_buff *skb, struct verdict_ctx *c, struct flow4 *f,
                                              int parsed, const struct plexus_endpoint_value *dst, __u32 src_identity,
                                              int identity_from_packet, int untranslated) {
  c->observed = 1;
  c->t.endpoint_id = dst->ep_id;
  c->t.dst_identity = dst->identity;
  c->t.src_identity = src_identity;
  verdict_trace_flow(c, f);
  if (parsed < 0) {
    return parsed;
  }
  int ret;
  int own_live = 0;
  if (cfg_enable_policy) {
    struct policy_trace pt = {.peer_from_packet = identity_from_packet, .untranslated = untranslated};
    ret = policy_ingress(f, dst, src_identity, &pt);
    own_live = pt.own_live || pt.reply_untranslated;
    c->t.notify |= pt.notify;
    c->t.is_reply = pt.is_reply;
    c->t.rule_id = pt.rule_id;
    verdict_note_audit(c, &pt);
    if (ret < 0) {
      return ret;
    }
  }
  if (!f->has_ports) {
    return 0;
  }
  ret = dsr4_ingress(skb, f);
  if (ret < 0) {
    return ret;
  }
  /* A packet of a connection the endpoint admitted in this direction is no reply of a flow translated here, nor is
   * the reply of a connection whose entry says nothing here translated it. */
  return own_live ? 0 : lb4_rev_nat(skb, f, PLEXUS_CT_REVERSE);
}

/* local_ingress_flow() for a caller that has not parsed the packet. */
static __always_inline int local_ingress(struct __sk_buff *skb, struct verdict_ctx *c, struct iphdr *ip,
                                         const struct plexus_endpoint_value *dst, __u32 src_identity,
                                         int identity_from_packet, int untranslated) {
  struct flow4 f = {};
  int parsed = flow4_parse(skb, ip, &f);
  return local_ingress_flow(skb, c, &f, parsed, dst, src_identity, identity_from_packet, untranslated);
}

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
  /* From outside and larger than the pod's device takes (a pod MTU below the node's): the stack forwards it instead,
   * so that it answers with ICMP fragmentation needed (path MTU discovery) or fragments it; redirect_peer would let
   * the pod's device drop it silently (a GSO packet, GRO'd or a TSO burst a veth carried whole, by its segments). */
  if (from_outside && ipv4_too_big_for(skb, ifindex)) {
    return TC_ACT_OK;
  }
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
