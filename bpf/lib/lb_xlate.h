/* Per-packet service translation at tc, for the paths the socket programs do not see: NodePort and
 * LoadBalancer traffic from outside the node (bpf_host.c), and pods when socket LB is off (bpf_lxc.c).
 * New flows pick a backend and are recorded in conntrack; later packets reuse the recorded backend, so a
 * terminating backend keeps its existing flows; replies get the frontend restored as their source. */
#pragma once
#include "lib/common.h"
#include "lib/conntrack.h"
#include "lib/endpoints.h"
#include "lib/lb.h"
#include "lib/lb_source_range.h"
#include "lib/nat.h"
#include "lib/parse.h"

/* loadBalancer.mode (enum plexus_lb_mode); set by the agent before load (--bpf-lb-mode). */
const volatile __u8 cfg_lb_mode = PLEXUS_LB_MODE_SNAT;

/* Whether a node frontend's flow of this protocol to a backend on another node goes by direct server return. */
static __always_inline int lb4_dsr_wanted(__u8 proto) {
  return cfg_lb_mode == PLEXUS_LB_MODE_DSR || (cfg_lb_mode == PLEXUS_LB_MODE_HYBRID && proto == IPPROTO_TCP);
}

/* A backend direct server return can reach: a pod on another node (the ipcache gives it a cluster identity; its node
 * runs Plexus and reads the option). Local backends, hosts and addresses outside the cluster keep SNAT. */
static __always_inline int lb4_dsr_backend(__be32 addr) {
  if (endpoint_lookup(addr)) {
    return 0;
  }
  __u32 id = ipcache_identity(addr);
  return id >= PLEXUS_IDENTITY_CLUSTER_MIN && !(id & PLEXUS_IDENTITY_LOCAL_FLAG);
}

/* Replies of translated flows: the backend's address becomes the frontend again. `dir` is REVERSE (restored
 * on the pod's veth) or REVERSE_NODEPORT (restored at the external device). Returns 0 (rewritten, or nothing to
 * rewrite) or a negative reason. */
static __always_inline int lb4_rev_nat(struct __sk_buff *skb, struct flow4 *f, __u8 dir) {
  struct plexus_ct4_value *rev = ct4_lookup(f, dir);
  if (!rev) {
    return 0;
  }
  __u16 idx = rev->rev_nat_index;
  struct plexus_lb4_reverse_nat *rn = bpf_map_lookup_elem(&plexus_lb4_reverse_nat_v1, &idx);
  if (!rn) {
    return 0;
  }
  ct4_touch(rev, f->tcp_flags, 0);
  __be32 addr = rn->address;
  __be16 port = rn->port;
  __be16 client_port = rev->nat_port;
  int ret = nat4_rewrite(skb, f, 1, addr, port);
  if (ret < 0) {
    return ret;
  }
  f->saddr = addr;
  f->sport = port;
  if (client_port) { /* the flow was moved to another source port: the client gets its own back */
    ret = nat4_rewrite(skb, f, 0, f->daddr, client_port);
    if (ret < 0) {
      return ret;
    }
    f->dport = client_port;
  }
  return 0;
}

enum lb4_action {
  LB4_PASS = 0,       /* not a frontend: nothing was done */
  LB4_TRANSLATED = 1, /* the destination (and maybe the source port) was rewritten to the flow's backend */
  LB4_NO_BACKEND = 2, /* a frontend without a usable backend: the caller refuses the packet (lib/reject.h) */
};

/* What lb4_xlate did with a packet. */
struct lb4_result {
  int status;          /* 0, or a negative reason: the packet is to be dropped (the other fields mean nothing) */
  __u8 action;         /* enum lb4_action */
  __u8 new_flow;       /* TRANSLATED: a backend was picked and conntrack entries were created for this packet */
  __u8 notify;         /* TRANSLATED: a new flow, or a TCP flag its direction had not shown (monitor aggregation) */
  __u8 dsr;            /* TRANSLATED: a direct-server-return flow (lib/dsr.h) whose packet carries the option: a new
                        * flow, a TCP SYN or a UDP datagram (later TCP packets leave it 0) */
  __be32 frontend;     /* the service address and port the packet was sent to (network order) */
  __be16 frontend_port;
};

static __always_inline struct lb4_result lb4_drop(int reason) {
  struct lb4_result r = {.status = reason};
  return r;
}

/* Packets to a frontend: new flows pick a backend and are recorded in conntrack, later packets reuse the recorded
 * backend; then the destination is rewritten. `internal`: the client is a local pod or the host (internal scope;
 * replies restored on its veth), otherwise outside the node (replies restored at the device it came in on). */
static __always_inline struct lb4_result lb4_xlate(struct __sk_buff *skb, struct flow4 *f, int internal) {
  /* Only outside clients' flows go by DSR; the decision follows from the backend, so every packet of a flow makes it
   * alike. */
  struct lb4_result res = {.frontend = f->daddr, .frontend_port = f->dport};
  __u8 reverse_dir = internal ? PLEXUS_CT_REVERSE : PLEXUS_CT_REVERSE_NODEPORT;
  struct plexus_lb4_key key;
  struct plexus_lb4_service *svc = lb4_lookup_service(&key, f->daddr, f->dport, f->proto, internal);
  if (!svc) {
    return res;
  }
  int range = internal ? 0 : lb4_src_range_check(svc, f->saddr);
  if (range < 0) {
    return lb4_drop(range);
  }
  struct plexus_lb4_backend *be = 0;
  __u32 id = 0;
  __be16 sport = f->sport;
  struct plexus_ct4_value *ct = ct4_lookup(f, PLEXUS_CT_SERVICE);
  if (ct) {
    be = lb4_backend(ct->backend_id);
    int new_syn = flow4_opens(f);
    /* A fresh SYN on a closed flow, or on a backend that no longer takes new flows, picks again. */
    if (be && new_syn && (ct4_closing(ct) || be->state != PLEXUS_BACKEND_ACTIVE)) {
      be = 0;
    }
    if (be) {
      id = ct->backend_id;
      if (ct->nat_port) {
        sport = ct->nat_port;
      }
      res.notify = ct4_touch(ct, f->tcp_flags, 0);
      /* Only a packet that carries the option needs to know (a retransmitted SYN, a UDP datagram): later TCP packets
       * of the flow skip the backend's two lookups. */
      res.dsr = !internal && !ct->nat_port && (f->proto != IPPROTO_TCP || new_syn) && lb4_dsr_wanted(f->proto) &&
                lb4_dsr_backend(be->address);
    }
  }
  if (!be) {
    __u32 hash = (svc->flags & PLEXUS_SVC_F_MAGLEV) ? lb4_flow_hash(f->saddr, f->daddr, f->sport, f->dport, f->proto)
                                                    : bpf_get_prandom_u32();
    id = lb4_select_backend(&key, svc, (__u64)f->saddr, 0, hash);
    be = id ? lb4_backend(id) : 0;
    if (!be) {
      res.action = LB4_NO_BACKEND;
      return res;
    }
    res.dsr = !internal && lb4_dsr_wanted(f->proto) && lb4_dsr_backend(be->address);
    /* A hairpin flow gets the hairpin source address instead, a tuple of its own. A DSR flow keeps its port (the
     * backend replies to it directly) and needs no reverse entry here. */
    if (be->address != f->saddr && !res.dsr) {
      sport = ct4_pick_port(f, be->address, be->port, svc->rev_nat_index, reverse_dir);
    }
    int ret = ct4_create(f, be->address, be->port, id, svc->rev_nat_index, res.dsr ? 0 : reverse_dir, sport);
    if (ret < 0) {
      return lb4_drop(ret);
    }
    res.new_flow = 1;
    res.notify = 1;
  }
  __be32 addr = be->address;
  __be16 port = be->port;
  int ret = nat4_rewrite(skb, f, 0, addr, port);
  if (ret < 0) {
    return lb4_drop(ret);
  }
  f->daddr = addr;
  f->dport = port;
  if (sport != f->sport) {
    ret = nat4_rewrite(skb, f, 1, f->saddr, sport);
    if (ret < 0) {
      return lb4_drop(ret);
    }
    f->sport = sport;
  }
  res.action = LB4_TRANSLATED;
  return res;
}

/* A pod translated to itself: its source becomes the hairpin address, and replies to that address get the pod's
 * own address back (lb4_hairpin_restore). `fresh`: the flow is new, so the reverse entry its replies will match is
 * created (keyed on the hairpin address) from the flow's service entry. */
static __always_inline int lb4_hairpin_snat(struct __sk_buff *skb, struct flow4 *f, __be32 vip, __be16 vport,
                                            int fresh) {
  __be32 hairpin = bpf_htonl(PLEXUS_LB_HAIRPIN_ADDR);
  if (fresh) {
    struct flow4 orig = {.saddr = f->saddr, .daddr = vip, .sport = f->sport, .dport = vport, .proto = f->proto};
    struct plexus_ct4_value *svc = ct4_lookup(&orig, PLEXUS_CT_SERVICE);
    if (!svc) {
      return PLEXUS_DROP(CT_MAP_FULL);
    }
    struct plexus_ct4_value v = *svc;
    struct plexus_ct4_key rev = {.saddr = f->daddr, .daddr = hairpin, .sport = f->dport, .dport = f->sport,
                                 .proto = f->proto, .dir = PLEXUS_CT_REVERSE};
    if (bpf_map_update_elem(&plexus_ct4_v2, &rev, &v, BPF_ANY) < 0) {
      return PLEXUS_DROP(CT_MAP_FULL);
    }
  }
  int ret = nat4_rewrite(skb, f, 1, hairpin, f->sport);
  if (ret < 0) {
    return ret;
  }
  f->saddr = hairpin;
  return 0;
}

/* The reply half: after the reverse NAT restored the frontend as the source, a destination that is the hairpin
 * address becomes the pod's own address again. */
static __always_inline int lb4_hairpin_restore(struct __sk_buff *skb, struct flow4 *f, __be32 own) {
  if (f->daddr != bpf_htonl(PLEXUS_LB_HAIRPIN_ADDR)) {
    return 0;
  }
  int ret = nat4_rewrite(skb, f, 0, own, f->dport);
  if (ret < 0) {
    return ret;
  }
  f->daddr = own;
  return 0;
}
