/* Direct server return (loadBalancer.mode dsr; hybrid: TCP only), dispatched with an IPv4 option as Cilium's
 * dsrDispatch "opt":
 *   the entry node translates a node frontend's flow to a backend pod on another node and keeps the client as the
 *   source (lib/lb_xlate.h creates no reverse entry, so neither reverse NAT nor the NodePort SNAT applies), and inserts
 *   the option naming the frontend into the flow's first packet (TCP SYN; every UDP datagram): dsr4_set_opt;
 *   the backend's node, on the way into the backend (local_ingress), keeps {backend, client} -> frontend in the NAT map
 *   (PLEXUS_SNAT_DSR): dsr4_ingress;
 *   the backend's replies leave its pod with the frontend as their source and go straight to the client: dsr4_reply.
 * The option is not stripped: receivers ignore an unknown option (RFC 1122 §3.2.1.8), and the L4 checksums do not
 * cover it. */
#pragma once
#include "lib/common.h"
#include "lib/endpoints.h"
#include "lib/lb_xlate.h"
#include "lib/parse.h"
#include "lib/snat.h"

/* The entry node, after lb4_xlate gave a DSR flow (lb4_result.dsr) to a remote backend: the packet's first
 * connection packet (TCP SYN) or any UDP datagram gets the option; the header grows from 20 to 28 bytes. A header that
 * already has options is left alone (the backend's node then sees no frontend: such a client is rare, and its replies
 * would carry the backend's address, which the client drops). Returns 0 or a negative reason. */
static __always_inline int dsr4_set_opt(struct __sk_buff *skb, const struct flow4 *f, __be32 frontend,
                                        __be16 frontend_port) {
  if (f->proto == IPPROTO_TCP && !flow4_opens(f)) {
    return 0; /* later packets: the backend's node already knows the flow */
  }
  struct iphdr old;
  if (bpf_skb_load_bytes(skb, ETH_HLEN, &old, sizeof(old)) < 0) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  if (old.ihl != 5) {
    return 0;
  }
  /* BPF_ADJ_ROOM_NET inserts the room right after the fixed 20-byte IPv4 header (net/core/filter.c,
   * bpf_skb_net_grow), where the option goes. */
  if (bpf_skb_adjust_room(skb, PLEXUS_DSR_OPT_LEN, BPF_ADJ_ROOM_NET, 0) < 0) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  struct {
    struct iphdr ip;
    struct plexus_dsr_opt4 opt;
  } hdr = {.ip = old};
  hdr.ip.ihl = 7;
  hdr.ip.tot_len = bpf_htons(bpf_ntohs(old.tot_len) + PLEXUS_DSR_OPT_LEN);
  hdr.ip.check = 0;
  hdr.opt.type = PLEXUS_DSR_OPT_TYPE;
  hdr.opt.len = PLEXUS_DSR_OPT_LEN;
  hdr.opt.port = frontend_port;
  hdr.opt.address = frontend;
  __s64 sum = bpf_csum_diff(0, 0, (__be32 *)&hdr, sizeof(hdr), 0);
  if (sum < 0) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  __u32 s = (__u32)sum;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  hdr.ip.check = (__sum16)~s;
  if (bpf_skb_store_bytes(skb, ETH_HLEN, &hdr, sizeof(hdr), 0) < 0) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  return 0;
}

/* The backend's node, as a packet enters a local backend from outside: a DSR option names the frontend the client
 * sent it to; the backend's replies to the client will carry it as their source. Only when this node runs DSR (the
 * option is not honoured otherwise). The client may be a pod of this node that reached another node's frontend (a
 * hairpin). Returns 0 or a negative reason. */
static __always_inline int dsr4_ingress(struct __sk_buff *skb, const struct flow4 *f) {
  if (!lb4_dsr_wanted(f->proto) || !f->has_ports || f->l4_off != ETH_HLEN + sizeof(struct iphdr) + PLEXUS_DSR_OPT_LEN) {
    return 0;
  }
  struct plexus_dsr_opt4 opt;
  if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(struct iphdr), &opt, sizeof(opt)) < 0) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  if (opt.type != PLEXUS_DSR_OPT_TYPE || opt.len != PLEXUS_DSR_OPT_LEN) {
    return 0;
  }
  struct plexus_snat4_key key = {.saddr = f->daddr, .daddr = f->saddr, .sport = f->dport, .dport = f->sport,
                                 .proto = f->proto, .dir = PLEXUS_SNAT_DSR};
  struct plexus_snat4_value v = {.last_seen_ns = ct_clock(), .to_addr = opt.address, .to_port = opt.port};
  if (bpf_map_update_elem(&plexus_snat4_v1, &key, &v, BPF_ANY) < 0) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  return 0;
}

/* A local backend's reply of a DSR flow: the frontend becomes its source again, here in the pod's egress program
 * (before the node's netfilter could take the pod's address for masquerade). Returns 1 when translated, 0 when not a
 * DSR reply, or a negative reason. */
static __always_inline int dsr4_reply(struct __sk_buff *skb, struct flow4 *f) {
  if (!lb4_dsr_wanted(f->proto) || !f->has_ports) {
    return 0;
  }
  struct plexus_snat4_key key = {.saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport,
                                 .proto = f->proto, .dir = PLEXUS_SNAT_DSR};
  struct plexus_snat4_value *v = bpf_map_lookup_elem(&plexus_snat4_v1, &key);
  if (!v) {
    return 0;
  }
  ct_stamp(&v->last_seen_ns, ct_clock());
  if (f->proto == IPPROTO_TCP && (f->tcp_flags & PLEXUS_CT_CLOSING_FLAGS)) {
    v->flags |= PLEXUS_SNAT_F_CLOSING;
  }
  __be32 addr = v->to_addr;
  __be16 port = v->to_port;
  int ret = nat4_rewrite(skb, f, 1, addr, port);
  if (ret < 0) {
    return ret;
  }
  f->saddr = addr;
  f->sport = port;
  return 1;
}
