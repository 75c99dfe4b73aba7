/* Masquerade (BPF SNAT, --enable-bpf-masquerade): a local pod's traffic leaving the node through an external device
 * towards the world gets the device's address as its source, at the device's egress (plexus_to_netdev); replies,
 * and ICMP errors about those flows, get the pod back at the device's ingress (plexus_from_netdev). The NAT map keeps
 * both directions of each flow: EGRESS {pod tuple} -> {node address, port} and INGRESS {reply tuple} -> {pod, port}.
 * TCP and UDP are translated by port, ICMP echo by identifier. What stays inside the cluster (the ipcache knows the
 * destination as a pod, a node or a pod CIDR) or inside --ipv4-native-routing-cidr keeps the pod's address. */
#pragma once
#include "plexus/identity.h"
#include "plexus/nat.h"
#include "lib/common.h"
#include "lib/conntrack.h"
#include "lib/endpoints.h"
#include "lib/nat.h"
#include "lib/parse.h"

const volatile __u8 cfg_masquerade = 0;
const volatile __be32 cfg_native_cidr_addr = 0; /* network order; with the mask: --ipv4-native-routing-cidr */
const volatile __be32 cfg_native_cidr_mask = 0; /* network order; 0: none */

/* plexus_snat4_v1: both directions of each masqueraded flow; written by BPF, garbage-collected by the agent with
 * conntrack's lifetimes. LRU: a full map evicts the least recently used flow. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PLEXUS_SNAT4_DEFAULT_MAX); /* resized by the agent before load (--bpf-nat-global-max) */
  __type(key, struct plexus_snat4_key);
  __type(value, struct plexus_snat4_value);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_snat4_v1 SEC(".maps");

/* plexus_devices_v1: ifindex -> the device's masquerade address; written by the agent as it selects devices. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, PLEXUS_DEVICES_MAX);
  __type(key, __u32);
  __type(value, struct plexus_device_value);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_devices_v1 SEC(".maps");

/* The i-th port of the masquerade ranges (i < PLEXUS_SNAT_PORT_SPAN), in host order. */
static __always_inline __u16 snat4_port_at(__u32 i) {
  const __u32 low = PLEXUS_SNAT_PORT_LOW_MAX - PLEXUS_SNAT_PORT_LOW_MIN + 1;
  return (__u16)(i < low ? PLEXUS_SNAT_PORT_LOW_MIN + i : PLEXUS_SNAT_PORT_MIN + (i - low));
}

/* Whether a port (host order) is one the masquerade hands out: anything else on the node's address (a NodePort, the
 * node's own connections) is not in the NAT map, and needs no lookup there. */
static __always_inline int snat4_port_in_range(__u16 port) {
  return (port >= PLEXUS_SNAT_PORT_LOW_MIN && port <= PLEXUS_SNAT_PORT_LOW_MAX) || port >= PLEXUS_SNAT_PORT_MIN;
}

static __always_inline __be32 snat4_device_addr(__u32 ifindex) {
  struct plexus_device_value *d = bpf_map_lookup_elem(&plexus_devices_v1, &ifindex);
  return d ? d->ipv4 : 0;
}

/* Masquerade applies to destinations outside the cluster: not in the native routing CIDR, and world to the ipcache
 * (unknown, world, or a CIDR identity of a policy). Pods, nodes and pod CIDRs keep the pod's address. */
static __always_inline int snat4_outside(__be32 daddr) {
  if (cfg_native_cidr_mask && (daddr & cfg_native_cidr_mask) == cfg_native_cidr_addr) {
    return 0;
  }
  struct plexus_ipcache_value *v = ipcache_lookup(daddr);
  return !v || v->identity == PLEXUS_IDENTITY_WORLD || (v->identity & PLEXUS_IDENTITY_LOCAL_FLAG);
}

/* Rewrites the address and the port (TCP/UDP) or echo identifier (ICMP) of the source (is_src) or destination. ICMP
 * has no pseudo-header: only the IP checksum follows the address, and the ICMP checksum the identifier. */
static __always_inline int snat4_rewrite(struct __sk_buff *skb, const struct flow4 *f, int is_src, __be32 addr,
                                         __be16 port) {
  if (f->proto != IPPROTO_ICMP) {
    return nat4_rewrite(skb, f, is_src, addr, port);
  }
  __be32 old_addr = is_src ? f->saddr : f->daddr;
  if (bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, old_addr, addr, 4) < 0 ||
      bpf_skb_store_bytes(skb, is_src ? IPV4_SADDR_OFF : IPV4_DADDR_OFF, &addr, 4, 0) < 0) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  __be16 old_id = is_src ? f->dport : f->sport; /* a request leaving carries it in dport, a reply arriving in sport */
  if (old_id != port && (bpf_l4_csum_replace(skb, f->l4_off + 2, old_id, port, 2) < 0 ||
                         bpf_skb_store_bytes(skb, f->l4_off + 4, &port, 2, 0) < 0)) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  return 0;
}

/* A closed TCP flow's entries hold their port for a TIME_WAIT period after its last packet (plexus/conntrack.h: the
 * remote side may still hold the old connection), then free it for a new flow. */
static __always_inline int snat4_expired(const struct plexus_snat4_value *v, __u64 now) {
  return (v->flags & PLEXUS_SNAT_F_CLOSING) && ct_age(now, v->last_seen_ns) > (__s64)PLEXUS_CT_TIME_WAIT_NS;
}

/* TCP state in the entries: a FIN or RST marks the flow closing, a new SYN on the same tuple (the pod reused its port
 * for a new connection) open again; both the entry the packet matched and its other direction (`other`). */
static __always_inline void snat4_note_tcp(const struct flow4 *f, struct plexus_snat4_value *v,
                                           const struct plexus_snat4_key *other) {
  if (f->proto != IPPROTO_TCP) {
    return;
  }
  __u8 closing;
  if (f->tcp_flags & PLEXUS_CT_CLOSING_FLAGS) {
    closing = PLEXUS_SNAT_F_CLOSING;
  } else if (flow4_opens(f)) {
    closing = 0;
  } else {
    return;
  }
  if ((v->flags & PLEXUS_SNAT_F_CLOSING) == closing) {
    return;
  }
  v->flags = (v->flags & ~PLEXUS_SNAT_F_CLOSING) | closing;
  struct plexus_snat4_value *o = bpf_map_lookup_elem(&plexus_snat4_v1, other);
  if (o) {
    o->flags = (o->flags & ~PLEXUS_SNAT_F_CLOSING) | closing;
  }
}

/* A port for a new flow: the INGRESS entry is claimed with BPF_NOEXIST, so two flows never share a reply tuple; an
 * entry of a closed flow past its TIME_WAIT is taken over (and its EGRESS entry removed). Returns the port (network
 * order), or 0 when every try was taken. */
static __always_inline __be16 snat4_claim(struct plexus_snat4_key *rev, const struct plexus_snat4_value *back,
                                          __u64 now) {
  __u32 start = bpf_get_prandom_u32();
  for (__u32 i = 0; i < PLEXUS_SNAT_PORT_TRIES; i++) {
    __be16 port = bpf_htons(snat4_port_at((start + i * 1021) % PLEXUS_SNAT_PORT_SPAN));
    rev->dport = port;
    if (bpf_map_update_elem(&plexus_snat4_v1, rev, back, BPF_NOEXIST) == 0) {
      return port;
    }
    struct plexus_snat4_value *held = bpf_map_lookup_elem(&plexus_snat4_v1, rev);
    if (held && snat4_expired(held, now)) {
      struct plexus_snat4_key old = {.saddr = held->to_addr, .daddr = rev->saddr, .sport = held->to_port,
                                     .dport = rev->sport, .proto = rev->proto, .dir = PLEXUS_SNAT_EGRESS};
      bpf_map_delete_elem(&plexus_snat4_v1, &old);
      if (bpf_map_update_elem(&plexus_snat4_v1, rev, back, BPF_EXIST) == 0) {
        return port;
      }
    }
  }
  return 0;
}

/* The packet leaves with the node's address `node` and a port of its flow (claimed on its first packet). Returns 1, or
 * a negative reason (no free port: NAT_NO_PORT). */
static __always_inline int snat4_translate(struct __sk_buff *skb, const struct flow4 *f, __be32 node) {
  __be16 local = f->proto == IPPROTO_ICMP ? f->dport : f->sport;
  __be16 remote = f->proto == IPPROTO_ICMP ? 0 : f->dport;
  struct plexus_snat4_key key = {
      .saddr = f->saddr, .daddr = f->daddr, .sport = local, .dport = remote, .proto = f->proto,
      .dir = PLEXUS_SNAT_EGRESS};
  __u64 now = ct_clock();
  __be16 port;
  struct plexus_snat4_key rev = {
      .saddr = f->daddr, .daddr = node, .sport = remote, .proto = f->proto, .dir = PLEXUS_SNAT_INGRESS};
  struct plexus_snat4_value *v = bpf_map_lookup_elem(&plexus_snat4_v1, &key);
  if (v && v->to_addr == node && !snat4_expired(v, now)) {
    ct_stamp(&v->last_seen_ns, now);
    port = v->to_port;
    rev.dport = port;
    snat4_note_tcp(f, v, &rev);
  } else {
    struct plexus_snat4_value back = {.last_seen_ns = now, .to_addr = f->saddr, .to_port = local};
    port = snat4_claim(&rev, &back, now);
    if (!port) {
      return PLEXUS_DROP(NAT_NO_PORT);
    }
    struct plexus_snat4_value out = {.last_seen_ns = now, .to_addr = node, .to_port = port};
    if (bpf_map_update_elem(&plexus_snat4_v1, &key, &out, BPF_ANY) < 0) {
      bpf_map_delete_elem(&plexus_snat4_v1, &rev);
      return PLEXUS_DROP(NAT_FAILED);
    }
  }
  int ret = snat4_rewrite(skb, f, 1, node, port);
  return ret < 0 ? ret : 1;
}

/* At the device's egress: a NodePort (LoadBalancer, externalIP) flow from outside that this node translated to a
 * backend on another node leaves again towards that node; its source becomes the device's address, so that the
 * backend replies through this node (loadBalancer.mode snat), which restores the client and then the frontend. Such
 * a packet is client -> backend with the reverse entry (backend -> client) from-netdev's translation created. */
static __always_inline int snat4_nodeport(struct __sk_buff *skb, const struct flow4 *f) {
  if (!f->has_ports) {
    return 0;
  }
  struct plexus_ct4_key rev = {.saddr = f->daddr, .daddr = f->saddr, .sport = f->dport, .dport = f->sport,
                               .proto = f->proto, .dir = PLEXUS_CT_REVERSE_NODEPORT};
  if (!bpf_map_lookup_elem(&plexus_ct4_v2, &rev)) {
    return 0;
  }
  __be32 node = snat4_device_addr(skb->ifindex);
  return node ? snat4_translate(skb, f, node) : 0;
}

/* The packet an ICMP error f quotes gets `addr` as its source (quoted_src) or destination, and on that side the port
 * (ICMP echo: identifier) `port` instead of `old_port`. The quoted header's own checksum changes with its address and
 * cancels that change in the ICMP checksum; the port change is added to it (the quoted L4 checksum, often cut off by the
 * quote, is left as it is, as routers do). */
static __always_inline int snat4_rewrite_quoted(struct __sk_buff *skb, const struct flow4 *f, int quoted_src,
                                                __be32 addr, __be16 old_port, __be16 port) {
  const struct flow4_tuple *q = &f->quoted;
  __u32 inner = f->l4_off + 8; /* after the ICMP header */
  __u8 vihl = 0;
  if (bpf_skb_load_bytes(skb, inner, &vihl, 1) < 0) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  __u32 inner_l4 = inner + (vihl & 0xf) * 4;
  __u32 port_off = q->proto == IPPROTO_ICMP ? inner_l4 + 4 : inner_l4 + (quoted_src ? 0 : 2);
  __u32 addr_off = inner + (quoted_src ? __builtin_offsetof(struct iphdr, saddr) : __builtin_offsetof(struct iphdr, daddr));
  __be32 old_addr = quoted_src ? q->saddr : q->daddr;
  if (bpf_l3_csum_replace(skb, inner + __builtin_offsetof(struct iphdr, check), old_addr, addr, 4) < 0 ||
      bpf_skb_store_bytes(skb, addr_off, &addr, 4, 0) < 0) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  if (old_port != port && (bpf_l4_csum_replace(skb, f->l4_off + 2, old_port, port, 2) < 0 ||
                           bpf_skb_store_bytes(skb, port_off, &port, 2, 0) < 0)) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  return 0;
}

/* An ICMP error about a masqueraded flow (fragmentation needed, port unreachable, ...) arrives for the node address
 * and quotes the packet as it left (node:port -> remote): the outer destination and the quoted source become the pod
 * again, so that path MTU discovery and connection errors reach it. The quoted header's own checksum changes with its
 * address and cancels that change in the ICMP checksum; the quoted port (identifier) change is added to it. */
static __always_inline int snat4_ingress_error(struct __sk_buff *skb, const struct flow4 *f) {
  const struct flow4_tuple *q = &f->quoted;
  __be16 local = q->proto == IPPROTO_ICMP ? q->dport : q->sport;
  __be16 remote = q->proto == IPPROTO_ICMP ? 0 : q->dport;
  struct plexus_snat4_key key = {
      .saddr = q->daddr, .daddr = q->saddr, .sport = remote, .dport = local, .proto = q->proto,
      .dir = PLEXUS_SNAT_INGRESS};
  struct plexus_snat4_value *v = bpf_map_lookup_elem(&plexus_snat4_v1, &key);
  if (!v) {
    return 0;
  }
  __be32 pod = v->to_addr;
  __be16 pod_port = v->to_port;
  if (bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, f->daddr, pod, 4) < 0 ||
      bpf_skb_store_bytes(skb, IPV4_DADDR_OFF, &pod, 4, 0) < 0) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  int ret = snat4_rewrite_quoted(skb, f, 1, pod, local, pod_port);
  return ret < 0 ? ret : 1;
}

/* At the device's egress: an ICMP error about a reply of a masqueraded flow (the node could not forward it into the
 * pod, fragmentation needed; or the pod itself refused it) quotes the reply as the pod got it (remote -> pod:port); the
 * remote side knows it as sent to the node's address and port, so those come back in the quote, and as the outer
 * source when the pod sent the error. Returns 1 when translated, 0 when not ours, or a negative reason. */
static __always_inline int snat4_egress_error(struct __sk_buff *skb, const struct flow4 *f) {
  const struct flow4_tuple *q = &f->quoted;
  __be16 local = q->proto == IPPROTO_ICMP ? q->sport : q->dport; /* a quoted echo reply carries the id in sport */
  __be16 remote = q->proto == IPPROTO_ICMP ? 0 : q->sport;
  struct plexus_snat4_key key = {
      .saddr = q->daddr, .daddr = q->saddr, .sport = local, .dport = remote, .proto = q->proto,
      .dir = PLEXUS_SNAT_EGRESS};
  struct plexus_snat4_value *v = bpf_map_lookup_elem(&plexus_snat4_v1, &key);
  if (!v) {
    return 0;
  }
  __be32 node = v->to_addr;
  __be16 node_port = v->to_port;
  if (f->saddr == q->daddr && (bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, f->saddr, node, 4) < 0 ||
                               bpf_skb_store_bytes(skb, IPV4_SADDR_OFF, &node, 4, 0) < 0)) {
    return PLEXUS_DROP(NAT_FAILED);
  }
  int ret = snat4_rewrite_quoted(skb, f, 0, node, local, node_port);
  return ret < 0 ? ret : 1;
}

/* At the device's egress: a local pod's packet to the outside leaves with the device's address. Returns 1 when the
 * packet was translated, 0 when it is not ours, or a negative reason (no free port: NAT_NO_PORT). */
static __always_inline int snat4_egress(struct __sk_buff *skb, const struct flow4 *f) {
  if (f->related) {
    return snat4_egress_error(skb, f);
  }
  if (!cfg_masquerade || !(f->has_ports || (f->has_icmp && f->icmp_type == ICMP_ECHO))) {
    return 0;
  }
  struct plexus_endpoint_value *src = endpoint_lookup(f->saddr);
  if (!src || (src->flags & PLEXUS_EP_F_HOST) || !snat4_outside(f->daddr)) {
    return 0;
  }
  __be32 node = snat4_device_addr(skb->ifindex);
  if (!node) {
    return 0; /* a device without an address: the stack's rules decide */
  }
  return snat4_translate(skb, f, node);
}

/* At the device's ingress: a reply (or an ICMP error) for a masqueraded flow goes back to its pod, and a NodePort
 * backend's reply back to its client (whatever cfg_masquerade says). Returns 1 when the packet was translated, 0 when
 * it is not ours (the node's own traffic), or a negative reason. */
static __always_inline int snat4_ingress(struct __sk_buff *skb, const struct flow4 *f) {
  if (f->daddr != snat4_device_addr(skb->ifindex)) {
    return 0;
  }
  if (f->related) {
    return snat4_ingress_error(skb, f);
  }
  if (!(f->has_ports || (f->has_icmp && f->icmp_type == ICMP_ECHOREPLY))) {
    return 0;
  }
  __be16 local = f->proto == IPPROTO_ICMP ? f->sport : f->dport;
  __be16 remote = f->proto == IPPROTO_ICMP ? 0 : f->sport;
  if (!snat4_port_in_range(bpf_ntohs(local))) {
    return 0; /* e.g. a NodePort request: not a reply of a translated flow */
  }
  struct plexus_snat4_key key = {
      .saddr = f->saddr, .daddr = f->daddr, .sport = remote, .dport = local, .proto = f->proto,
      .dir = PLEXUS_SNAT_INGRESS};
  struct plexus_snat4_value *v = bpf_map_lookup_elem(&plexus_snat4_v1, &key);
  if (!v) {
    return 0;
  }
  ct_stamp(&v->last_seen_ns, ct_clock());
  struct plexus_snat4_key out = {.saddr = v->to_addr, .daddr = f->saddr, .sport = v->to_port, .dport = remote,
                                 .proto = f->proto, .dir = PLEXUS_SNAT_EGRESS};
  snat4_note_tcp(f, v, &out);
  int ret = snat4_rewrite(skb, f, 0, v->to_addr, v->to_port);
  return ret < 0 ? ret : 1;
}
