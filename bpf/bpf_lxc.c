/* Programs on the host side of each pod's veth.
 *   plexus_from_container: tc ingress of lxc* (packets leaving the pod)
 *   plexus_to_container:   tc egress of lxc*  (packets the host stack delivers to the pod)
 * Each entry parses, dispatches to lib/ helpers, and leaves through verdict_exit() (lib/verdict.h): helpers
 * return a TC action (>= 0) or a negative plexus_reason, and only the exit turns a reason into a drop, a counter
 * and a flow event. */
#include "vmlinux.h"

#include "lib/common.h"
#include "lib/arp.h"
#include "lib/dsr.h"
#include "lib/endpoints.h"
#include "lib/fib.h"
#include "lib/l3.h"
#include "lib/lb_xlate.h"
#include "lib/local.h"
#include "lib/overlay.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/reject.h"
#include "lib/verdict.h"

char LICENSE[] SEC("license") = "GPL";

/* Load-time switches, set through the skeleton's rodata before load (STYLE.md rule 6). */
const volatile __u8 cfg_redirect_peer = 1; /* same-node pod-to-pod via bpf_redirect_peer */
const volatile __u8 cfg_arp_responder = 1; /* answer pods' ARP requests in the datapath */
const volatile __u8 cfg_lb_per_packet = 1; /* translate services at tc too (needed when socket LB is off) */
/* cfg_enable_policy: lib/policy.h; cfg_routing_mode, cfg_tunnel_ifindex: lib/overlay.h; cfg_host_routing: lib/fib.h. */

/* Fills the event fields from the flow as it was judged. */
static __always_inline void lxc_trace_flow(struct verdict_ctx *c, const struct flow4 *f,
                                           const struct policy_trace *pt) {
  verdict_trace_flow(c, f);
  c->t.notify |= pt->notify;
  c->t.is_reply = pt->is_reply;
  c->t.rule_id = pt->rule_id;
  verdict_note_audit(c, pt);
}

/* Where addr lives, looked up once per packet for policy, the event and the forwarding (under load each lookup costs
 * a few hundred ns of cache misses): returns 1 for a local endpoint, else 0 with *tunnel_endpoint the node hosting it
 * (0: none known); *identity is identity_of(addr). A global function: the verifier sees its answers as plain values,
 * instead of carrying a found and a missing entry through the rest of from-container (which doubled its states). */
__noinline int lxc_resolve_dst(__be32 addr, __u32 *identity, __be32 *tunnel_endpoint) {
  if (!identity || !tunnel_endpoint) {
    return 0;
  }
  *tunnel_endpoint = 0;
  struct plexus_endpoint_value *ep = endpoint_lookup(addr);
  if (ep) {
    *identity = ep->identity;
    return 1;
  }
  struct plexus_ipcache_value *v = ipcache_lookup(addr);
  *identity = v ? v->identity : PLEXUS_IDENTITY_WORLD;
  *tunnel_endpoint = v ? v->tunnel_endpoint : 0;
  return 0;
}

/* A destination on another node (`no_reverse`: the packet is known to be no NodePort flow's reply: one of a connection
 * the pod opened, or the reply of one nothing on this node translated). Tunnel mode: a destination whose ipcache entry
 * names the node hosting it is encapsulated towards that node with the sender's identity as VNI and redirected into the
 * VXLAN device. Otherwise, with BPF host routing, the FIB decides; anything else is the stack's (world, node addresses,
 * native routes). */
static __always_inline int lxc_forward_remote(struct __sk_buff *skb, struct verdict_ctx *c, struct flow4 *f,
                                              __u32 src_identity, __be32 tunnel_endpoint, __u8 no_reverse) {
  int tunnel = cfg_routing_mode == PLEXUS_ROUTING_TUNNEL && cfg_tunnel_ifindex;
  if (!tunnel && !cfg_host_routing) {
    return TC_ACT_OK;
  }
  /* c->t.dst_identity and tunnel_endpoint (lxc_resolve_dst) serve both modes: a tunnel-mode destination without a tunnel
   * endpoint falls through to the FIB. */
  if (tunnel && tunnel_endpoint) {
    /* The reply of a NodePort flow from a pod on another node: the device's egress, where such replies get their
     * frontend back, is not on the tunnel's way. */
    int ret = f->has_ports && !no_reverse ? lb4_rev_nat(skb, f, PLEXUS_CT_REVERSE_NODEPORT) : 0;
    if (ret < 0) {
      return ret;
    }
    ret = overlay_set_key(skb, tunnel_endpoint, src_identity);
    if (ret < 0) {
      return ret;
    }
    /* The encapsulated packet keeps the mark (same namespace): the device's egress program passes it as it is. */
    skb->mark = PLEXUS_MARK_HOST_ROUTED;
    c->reason = PLEXUS_REASON_FORWARDED_TUNNEL;
    return bpf_redirect(cfg_tunnel_ifindex, 0);
  }
  if (cfg_host_routing) {
    /* Only destinations inside the cluster (other nodes' pods and hosts): traffic leaving the cluster, and the replies
     * of connections the node's netfilter translated (portmap's hostPort DNAT, an operator's masquerade rule), need
     * the stack's NAT until the datapath masquerades itself, as Cilium keeps legacy routing without BPF masquerade. */
    __u32 identity = c->t.dst_identity;
    if (identity == PLEXUS_IDENTITY_WORLD || (identity & PLEXUS_IDENTITY_LOCAL_FLAG)) {
      return TC_ACT_OK;
    }
    /* A NodePort flow's reply gets its frontend back here, as in the tunnel, so that the device's egress program has
     * nothing to do for what leaves by the FIB (PLEXUS_MARK_HOST_ROUTED): a cluster destination is never masqueraded. */
    int ret = f->has_ports && !no_reverse ? lb4_rev_nat(skb, f, PLEXUS_CT_REVERSE_NODEPORT) : 0;
    if (ret < 0) {
      return ret;
    }
    ret = fib_redirect_v4(skb, f, cfg_tunnel_ifindex, 0);
    if (ret == TC_ACT_REDIRECT) {
      c->reason = PLEXUS_REASON_FORWARDED_FIB;
      skb->mark = PLEXUS_MARK_HOST_ROUTED;
    }
    return ret;
  }
  return TC_ACT_OK;
}

/* A service without backends: the packet becomes a TCP RST or ICMP port unreachable back to the pod, out of the veth
 * it came in on (egress of the host-side veth delivers into the pod). Reported as a drop of NO_SERVICE_BACKEND. */
static __always_inline int lxc_refuse(struct __sk_buff *skb, struct verdict_ctx *c, const struct flow4 *f) {
  c->reason = PLEXUS_REASON_NO_SERVICE_BACKEND;
  c->refused = 1;
  int ret = reject_no_backend(skb, f);
  if (ret < 0) {
    return ret;
  }
  return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int lxc_ipv4_from_container(struct __sk_buff *skb, struct verdict_ctx *c) {
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  /* Anti-spoofing: the source must be the address of the endpoint behind this veth. */
  struct plexus_endpoint_value *src = endpoint_lookup(ip->saddr);
  if (!src || src->ifindex != skb->ifindex) {
    c->t.saddr = ip->saddr;
    c->t.daddr = ip->daddr;
    c->t.proto = ip->protocol;
    return PLEXUS_DROP(INVALID_SOURCE_IP);
  }
  struct flow4 f = {};
  int ret = flow4_parse(skb, ip, &f);
  if (ret < 0) {
    return ret;
  }
  c->t.endpoint_id = src->ep_id;
  c->t.src_identity = src->identity;
  struct policy_trace pt = {};
  lxc_trace_flow(c, &f, &pt);
  /* Services: a packet to a frontend is translated first, so that policy judges the real destination; a
   * reply of a translated flow is judged on its own tuple and gets the frontend back afterwards. A packet of a live
   * connection the pod opened untranslated (its egress entry, keyed by this very tuple) is neither: it skips both
   * lookups, and policy is told what was found (a new connection's SYN always takes the full way). */
  int service_reply = 0;
  int own_seen = POLICY_OWN_UNSEEN;
  int per_packet_lb = cfg_lb_per_packet && f.has_ports;
  if (per_packet_lb && cfg_enable_policy && !flow4_opens(&f)) {
    own_seen = policy_own_entry(&f, PLEXUS_CT_EGRESS, &pt);
    if (own_seen == POLICY_OWN_NONE) {
      /* A reply of a connection into the pod that nothing here translated: no reverse entry, no frontend. */
      own_seen = policy_reply_entry(&f, PLEXUS_CT_INGRESS, &pt);
    }
  }
  /* Whatever opens here and is not translated has no reverse entry on this node (a leftover one is forgotten below). */
  pt.untranslated = 1;
  if (per_packet_lb && own_seen != POLICY_OWN_LIVE && own_seen != POLICY_OWN_REPLY) {
    if (ct4_lookup(&f, PLEXUS_CT_REVERSE)) {
      service_reply = 1;
    } else {
      struct lb4_result lb = lb4_xlate(skb, &f, 1);
      if (lb.status < 0) {
        return lb.status;
      }
      if (lb.action == LB4_NO_BACKEND) {
        return lxc_refuse(skb, c, &f);
      }
      if (lb.action == LB4_TRANSLATED) {
        own_seen = POLICY_OWN_UNSEEN; /* another tuple now */
        pt.untranslated = 0;
        c->reason = PLEXUS_REASON_SERVICE_TRANSLATED;
        c->t.orig_daddr = lb.frontend;
        c->t.orig_dport = lb.frontend_port;
        c->t.notify |= lb.notify;
        if (f.daddr == f.saddr) {
          ret = lb4_hairpin_snat(skb, &f, lb.frontend, lb.frontend_port, lb.new_flow);
          if (ret < 0) {
            return ret;
          }
        }
      } else if (flow4_opens(&f)) {
        /* A new connection straight to this address (no frontend; a socket-LB connect lands here): a reverse
         * entry left by an earlier translated flow with the same tuple would rewrite its replies. */
        ct4_forget_reverse(&f, PLEXUS_CT_REVERSE);
      }
    }
  }
  struct flow4 judged = f;
  __u16 src_flags = src->flags;
  __be32 tunnel_endpoint = 0;
  int local = lxc_resolve_dst(judged.daddr, &c->t.dst_identity, &tunnel_endpoint);
  if (cfg_enable_policy) {
    ret = policy_egress(&judged, src, c->t.dst_identity, &pt, own_seen);
    lxc_trace_flow(c, &judged, &pt);
    if (ret < 0) {
      return ret;
    }
  } else {
    lxc_trace_flow(c, &judged, &pt);
  }
  if (service_reply) {
    __be32 own = f.saddr;  /* the replying pod; also the client when the flow is a hairpin */
    ret = lb4_rev_nat(skb, &f, PLEXUS_CT_REVERSE);
    if (ret < 0) {
      return ret;
    }
    ret = lb4_hairpin_restore(skb, &f, own);
    if (ret < 0) {
      return ret;
    }
  }
  if (!service_reply) {
    /* A reply of a direct-server-return flow gets the frontend as its source. To a client outside the node it leaves
     * by the FIB when host routing is on (the node's netfilter never saw the flow's first packets); to a local pod (a
     * hairpin through another node's frontend) it is delivered below, judged as the reply it is to that pod. */
    ret = dsr4_reply(skb, &f);
    if (ret < 0) {
      return ret;
    }
    if (ret == 1) {
      if (!local) { /* f.daddr is still judged.daddr: the reply's source changed, not its destination */
        ret = cfg_host_routing ? fib_redirect_v4(skb, &f, cfg_tunnel_ifindex, 0) : TC_ACT_OK;
        if (ret == TC_ACT_REDIRECT) {
          c->reason = PLEXUS_REASON_FORWARDED_FIB;
        }
        return ret;
      }
      judged = f;
    }
  }
  /* The rewrites invalidated packet pointers. */
  ip = ipv4_hdr(skb);
  if (!ip) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  if (ip->daddr != judged.daddr) { /* a hairpin flow's reply got its client back as destination */
    local = lxc_resolve_dst(ip->daddr, &c->t.dst_identity, &tunnel_endpoint);
  }
  struct plexus_endpoint_value *dst = local ? endpoint_lookup(ip->daddr) : 0;
  if (!dst && !(src_flags & PLEXUS_EP_F_CHAINED)) {
    return lxc_forward_remote(skb, c, &f, c->t.src_identity, tunnel_endpoint, pt.own_live || pt.reply_untranslated);
  }
  if (!dst || (dst->flags & (PLEXUS_EP_F_HOST | PLEXUS_EP_F_CHAINED)) || (src_flags & PLEXUS_EP_F_CHAINED) ||
      !cfg_redirect_peer) {
    /* Host destinations, and chained endpoints (whose veth another plugin owns), go through the kernel stack (local
     * pods reached that way are judged by their to-container program). */
    return TC_ACT_OK;
  }
  /* Same-node delivery skips the destination's to-container program: judge its ingress policy here. */
  if (cfg_enable_policy) {
    __u32 egress_rule = pt.rule_id;
    ret = policy_ingress(&judged, dst, c->t.src_identity, &pt);
    c->t.notify |= pt.notify;
    /* The event names one rule: the ingress rule that decided, else (ingress admitted it without one, or it is a
     * reply) the egress rule. A drop here is ingress's alone. */
    c->t.rule_id = (pt.rule_id || ret < 0) ? pt.rule_id : egress_rule;
    verdict_note_audit(c, &pt);
    if (ret < 0) {
      c->direction = PLEXUS_DIR_INGRESS;
      c->t.endpoint_id = dst->ep_id;
      return ret;
    }
  }
  return local_deliver(skb, dst, 0);
}

static __always_inline int lxc_ipv4_to_container(struct __sk_buff *skb, struct verdict_ctx *c) {
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  struct plexus_endpoint_value *dst = endpoint_lookup(ip->daddr);
  if (!dst || (dst->flags & PLEXUS_EP_F_HOST) || dst->ifindex != skb->ifindex) {
    return TC_ACT_OK;
  }
  int ret = local_ingress(skb, c, ip, dst, identity_of(ip->saddr), 0, 0);
  return ret < 0 ? ret : TC_ACT_OK;
}

SEC("tc")
int plexus_from_container(struct __sk_buff *skb) {
  struct verdict_ctx c = {.reason = PLEXUS_REASON_FORWARDED, .direction = PLEXUS_DIR_EGRESS, .observed = 1};
  int ret;
  switch (bpf_ntohs(skb->protocol)) {
    case ETH_P_IP:
      ret = lxc_ipv4_from_container(skb, &c);
      break;
    case ETH_P_ARP:
      if (!cfg_arp_responder) {
        ret = TC_ACT_OK;
        break;
      }
      ret = arp_respond(skb);
      if (ret == TC_ACT_REDIRECT) {
        c.reason = PLEXUS_REASON_ARP_REPLY;
      }
      break;
    default:
      ret = PLEXUS_DROP(UNSUPPORTED_L3);
      break;
  }
  return verdict_exit(skb, &c, ret);
}

SEC("tc")
int plexus_to_container(struct __sk_buff *skb) {
  struct verdict_ctx c = {.reason = PLEXUS_REASON_FORWARDED, .direction = PLEXUS_DIR_INGRESS, .observed = 1};
  int ret = TC_ACT_OK;
  switch (bpf_ntohs(skb->protocol)) {
    case ETH_P_IP:
      ret = lxc_ipv4_to_container(skb, &c);
      break;
    case ETH_P_ARP:
      break;
    default:
      ret = PLEXUS_DROP(UNSUPPORTED_L3);
      break;
  }
  return verdict_exit(skb, &c, ret);
}
