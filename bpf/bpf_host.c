/* Programs on the node's external devices (--devices).
 *   plexus_from_netdev: tc ingress. NodePort, LoadBalancer and externalIPs traffic arriving from outside the
 *   node is translated to a backend here, with conntrack; everything else passes to the stack untouched.
 *   plexus_to_netdev: tc egress. Replies of those flows get the frontend back as their source on their way
 *   out (not earlier: a node address as source would be a martian on the pod's side of the stack). A pod's packet
 *   that from-container sent here by the FIB carries PLEXUS_MARK_HOST_ROUTED (plexus/routing.h): nothing to do.
 *   With BPF host routing (cfg_host_routing), plexus_from_netdev also delivers traffic for local endpoints (after any
 *   NodePort translation) straight into the pod with bpf_redirect_peer, after the endpoint's ingress policy judged
 *   it with the source's ipcache identity; the stack path would have reached the pod's to-container program instead.
 *   A translated packet for elsewhere (a NodePort backend on another node, a NodePort reply to its client) leaves by
 *   the FIB at once (bpf_redirect to its device's egress, where plexus_to_netdev still sees it), or in tunnel mode into
 *   the tunnel device (where plexus_to_overlay keys it).
 * Like bpf_lxc.c, each entry parses, dispatches to lib/ helpers and leaves through verdict_exit() (lib/verdict.h),
 * which turns a negative reason into TC_ACT_SHOT, a counter and a flow event. Only packets that touch a service are
 * counted and reported: the rest of the device's traffic is not ours to judge. */
#include "vmlinux.h"

#include "lib/common.h"
#include "lib/dsr.h"
#include "lib/fib.h"
#include "lib/lb_xlate.h"
#include "lib/local.h"
#include "lib/overlay.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/reject.h"
#include "lib/snat.h"
#include "lib/verdict.h"

char LICENSE[] SEC("license") = "GPL";

/* A frontend without backends: the packet becomes a TCP RST or ICMP port unreachable back to the client, out of the
 * device it came in on, as kube-proxy's REJECT rule answers. Reported as a drop of NO_SERVICE_BACKEND. */
static __always_inline int host_refuse(struct __sk_buff *skb, struct verdict_ctx *c, const struct flow4 *f) {
  c->reason = PLEXUS_REASON_NO_SERVICE_BACKEND;
  c->refused = 1;
  int ret = reject_no_backend(skb, f);
  if (ret < 0) {
    return ret;
  }
  return bpf_redirect(skb->ifindex, 0);
}

/* Whether BPF host routing delivers into endpoint `ep`: a local pod (the node's own addresses, and chained endpoints
 * whose veth another plugin owns, are the stack's). */
static __always_inline int host_delivers_into(const struct plexus_endpoint_value *ep) {
  return !(ep->flags & (PLEXUS_EP_F_HOST | PLEXUS_EP_F_CHAINED));
}

/* A local pod's endpoint, which BPF host routing delivers into, or 0. */
static __always_inline struct plexus_endpoint_value *host_local_pod(__be32 addr) {
  struct plexus_endpoint_value *dst = endpoint_lookup(addr);
  return dst && host_delivers_into(dst) ? dst : 0;
}

/* BPF host routing, inbound: a packet for the local pod `dst` goes into the pod at once, after its ingress policy.
 * The source is outside the node (another node's pod or host, or the world): its identity is the ipcache's. `f` and
 * `parsed` and `untranslated` as local_ingress_flow() takes them. Returns a TC action or a negative reason. */
static __always_inline int host_deliver(struct __sk_buff *skb, struct verdict_ctx *c, struct flow4 *f, int parsed,
                                        const struct plexus_endpoint_value *dst, int untranslated) {
  int ret = local_ingress_flow(skb, c, f, parsed, dst, identity_of(f->saddr), 0, untranslated);
  if (ret < 0) {
    return ret;
  }
  return local_deliver(skb, dst, 1);
}

/* BPF host routing, a rewritten packet for an address of no local endpoint. In tunnel mode, a destination behind
 * another node's tunnel endpoint goes into the tunnel device at once, whose egress program keys it (and SNATs a NodePort
 * flow), as the stack's route into it would; a packet the tunnel's MTU does not take is left to the stack, which
 * answers with fragmentation needed. Anything else leaves by the FIB. */
static __always_inline int host_forward_remote(struct __sk_buff *skb, const struct flow4 *f) {
  if (cfg_tunnel_ifindex) {
    struct plexus_ipcache_value *info = ipcache_lookup(f->daddr);
    if (info && info->tunnel_endpoint) {
      return ipv4_too_big_for(skb, cfg_tunnel_ifindex) ? TC_ACT_OK : bpf_redirect(cfg_tunnel_ifindex, 0);
    }
  }
  return fib_redirect_v4(skb, f, cfg_tunnel_ifindex, 1);
}

/* BPF host routing for a packet whose destination was rewritten (a NodePort flow's backend, a masqueraded flow's pod,
 * a NodePort reply's client): into a local pod as above (parsed again); to an address of no local endpoint out by the
 * FIB at once, skipping the stack's forwarding as the stack would route it; the device's egress program still sees it
 * on its way out (the NodePort SNAT and the frontend of replies). */
static __always_inline int host_forward_rewritten(struct __sk_buff *skb, struct verdict_ctx *c) {
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip) {
    return TC_ACT_OK;
  }
  struct flow4 f = {};
  int parsed = flow4_parse(skb, ip, &f);
  struct plexus_endpoint_value *ep = endpoint_lookup(f.daddr);
  if (!ep) {
    return parsed < 0 ? TC_ACT_OK : host_forward_remote(skb, &f);
  }
  return host_delivers_into(ep) ? host_deliver(skb, c, &f, parsed, ep, 0) : TC_ACT_OK;
}

/* Traffic from outside: to a node frontend (translated), a masqueraded flow's reply (translated back), and with BPF
 * host routing to a local pod (delivered). Returns a TC action or a negative reason. */
static __always_inline int host_ipv4_from_netdev(struct __sk_buff *skb, struct verdict_ctx *c) {
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip) {
    return TC_ACT_OK; /* not ours to judge: the stack drops what is malformed */
  }
  struct flow4 f = {};
  int parsed = flow4_parse(skb, ip, &f);
  if (cfg_host_routing) {
    /* A pod's address is no frontend and no masquerade address: its traffic skips both lookups and the parse that
     * delivery would repeat. */
    struct plexus_endpoint_value *dst = host_local_pod(f.daddr);
    if (dst) {
      return host_deliver(skb, c, &f, parsed, dst, 1);
    }
  }
  if (parsed < 0) {
    return TC_ACT_OK;
  }
  /* The tunnel's own packets, for this node's tunnel port: the stack hands them to the tunnel device, whose program
   * judges what they carry. No masqueraded flow's reply and no frontend is on that port of the node's address. */
  if (cfg_tunnel_port && f.proto == IPPROTO_UDP && f.dport == cfg_tunnel_port &&
      f.daddr == snat4_device_addr(skb->ifindex)) {
    return TC_ACT_OK;
  }
  /* A reply (or an ICMP error) of a masqueraded flow: back to its pod, which the stack or host routing delivers. */
  int masq = snat4_ingress(skb, &f);
  if (masq != 0) {
    if (masq < 0) {
      return masq;
    }
    return cfg_host_routing ? host_forward_rewritten(skb, c) : TC_ACT_OK;
  }
  if (!f.has_ports) {
    return TC_ACT_OK;
  }
  verdict_trace_flow(c, &f);
  struct lb4_result lb = lb4_xlate(skb, &f, 0);
  if (lb.status < 0) {
    return lb.status;
  }
  if (lb.action == LB4_NO_BACKEND) {
    return host_refuse(skb, c, &f);
  }
  if (lb.action != LB4_TRANSLATED) {
    return TC_ACT_OK;
  }
  c->observed = 1;
  c->reason = PLEXUS_REASON_SERVICE_TRANSLATED;
  c->t.notify = lb.notify;
  c->t.orig_daddr = lb.frontend;
  c->t.orig_dport = lb.frontend_port;
  verdict_trace_flow(c, &f);
  if (lb.dsr) {
    int ret = dsr4_set_opt(skb, &f, lb.frontend, lb.frontend_port);
    if (ret < 0) {
      return ret;
    }
  }
  return cfg_host_routing ? host_forward_rewritten(skb, c) : TC_ACT_OK;
}

/* Replies of NodePort flows on their way out, and pods' traffic to the outside (masquerade). Returns a TC action or a
 * negative reason. */
static __always_inline int host_ipv4_to_netdev(struct __sk_buff *skb, struct verdict_ctx *c) {
  if (skb->mark == PLEXUS_MARK_HOST_ROUTED) {
    skb->mark = 0; /* from-container did this program's part */
    return TC_ACT_OK;
  }
  struct iphdr *ip = ipv4_hdr(skb);
  if (!ip) {
    return TC_ACT_OK;
  }
  struct flow4 f = {};
  if (flow4_parse(skb, ip, &f) < 0) {
    return TC_ACT_OK;
  }
  verdict_trace_flow(c, &f);
  if (f.has_ports) {
    int ret = lb4_rev_nat(skb, &f, PLEXUS_CT_REVERSE_NODEPORT);
    if (ret < 0) {
      return ret;
    }
  }
  int masq = snat4_nodeport(skb, &f);
  if (masq == 0) {
    masq = snat4_egress(skb, &f);
  }
  return masq < 0 ? masq : TC_ACT_OK;
}

SEC("tc")
int plexus_from_netdev(struct __sk_buff *skb) {
  /* endpoint_id 0 in events: the host device. The source is outside the node, its identity from the ipcache. */
  struct verdict_ctx c = {.reason = PLEXUS_REASON_FORWARDED, .direction = PLEXUS_DIR_INGRESS, .resolve_src = 1};
  int ret = TC_ACT_OK;
  if (skb->protocol == bpf_htons(ETH_P_IP)) {
    ret = host_ipv4_from_netdev(skb, &c);
  }
  return verdict_exit(skb, &c, ret);
}

SEC("tc")
int plexus_to_netdev(struct __sk_buff *skb) {
  struct verdict_ctx c = {.reason = PLEXUS_REASON_FORWARDED, .direction = PLEXUS_DIR_EGRESS, .resolve_src = 1};
  int ret = TC_ACT_OK;
  if (skb->protocol == bpf_htons(ETH_P_IP)) {
    ret = host_ipv4_to_netdev(skb, &c);
  }
  return verdict_exit(skb, &c, ret);
}
