/* Packet parsing: bounds-checked access to linear packet data, the IPv4 header, and the 5-tuple a packet belongs to.
 * Every program and helper reads headers through these, so each bound check exists once. */
#pragma once

#include "plexus/conntrack.h"
#include "lib/common.h"

/* Offsets of IPv4 header fields from the start of the frame (no VLAN tags: tc sees them stripped). */
#define IPV4_TTL_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, ttl))
#define IPV4_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define IPV4_SADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define IPV4_DADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))
#define TCP_FLAGS_OFF 13 /* from the start of the TCP header (RFC 9293 §3.1) */

/* Bounds-checked pointer into linear packet data. The verifier needs the explicit end check
 * on every access (kernel Documentation/bpf/verifier.rst, "direct packet access"). */
static __always_inline void *ctx_ptr(struct __sk_buff *skb, __u32 off, __u32 len) {
  void *data = (void *)(long)skb->data;
  void *end = (void *)(long)skb->data_end;
  if (data + off + len > end) {
    return 0;
  }
  return data + off;
}

/* The packet's IPv4 header, or 0 when it is truncated or not a plausible IPv4 header. Any earlier pointer into the
 * packet is invalid after a helper that may change it (bpf_skb_store_bytes, bpf_l3_csum_replace...): call again. */
static __always_inline struct iphdr *ipv4_hdr(struct __sk_buff *skb) {
  struct iphdr *ip = ctx_ptr(skb, ETH_HLEN, sizeof(*ip));
  if (!ip || ip->ihl < 5 || ip->version != 4) {
    return 0;
  }
  return ip;
}

/* The flow a packet belongs to, in the packet's own direction. */
struct flow4 {
  __be32 saddr;
  __be32 daddr;
  __be16 sport;
  __be16 dport;
  __u8 proto;
  __u8 tcp_flags;
  __u16 l4_off;    /* from the start of the frame */
  __u8 has_ports;  /* a TCP or UDP packet whose ports were read (not a non-first fragment) */
};

/* Fills f from the IPv4 header, and the ports and TCP flags for TCP and UDP (first fragments only: later ones carry
 * no L4 header). Returns 0 (f->has_ports says whether there were ports), or a negative reason for a truncated L4
 * header. */
static __always_inline int flow4_parse(struct __sk_buff *skb, const struct iphdr *ip, struct flow4 *f) {
  __u32 l4_off = ETH_HLEN + ip->ihl * 4;
  f->saddr = ip->saddr;
  f->daddr = ip->daddr;
  f->proto = ip->protocol;
  f->l4_off = (__u16)l4_off;
  f->sport = 0;
  f->dport = 0;
  f->tcp_flags = 0;
  f->has_ports = 0;
  if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) {
    return 0;
  }
  if (ip->frag_off & bpf_htons(IP_OFFSET)) {
    return 0;
  }
  __be16 ports[2];
  if (bpf_skb_load_bytes(skb, l4_off, ports, sizeof(ports)) < 0) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  f->sport = ports[0];
  f->dport = ports[1];
  if (f->proto == IPPROTO_TCP) {
    __u8 flags;
    if (bpf_skb_load_bytes(skb, l4_off + TCP_FLAGS_OFF, &flags, 1) < 0) {
      return PLEXUS_DROP(INVALID_PACKET);
    }
    f->tcp_flags = flags;
  }
  f->has_ports = 1;
  return 0;
}
