/* Address and port rewrites with incremental checksum updates (RFC 1624), for service DNAT and the
 * reverse SNAT of replies. */
#pragma once
#include "lib/common.h"
#include "lib/parse.h"

/* Offset of the L4 checksum field: TCP has it at byte 16, UDP at byte 6 (RFC 9293 §3.1, RFC 768). */
static __always_inline __u32 l4_csum_off(const struct flow4 *f) {
  return f->l4_off + (f->proto == IPPROTO_TCP ? 16 : 6);
}

/* Rewrites the source (is_src) or destination address and port of the packet. */
static __always_inline int nat4_rewrite(struct __sk_buff *skb, const struct flow4 *f, int is_src, __be32 new_addr,
                                        __be16 new_port) {
  __be32 old_addr = is_src ? f->saddr : f->daddr;
  __be16 old_port = is_src ? f->sport : f->dport;
  __u32 csum_off = l4_csum_off(f);
  __u64 l4_flags = BPF_F_PSEUDO_HDR;
  if (f->proto == IPPROTO_UDP) {
    /* A zero UDP checksum means "none"; keep it that way. */
    __u16 udp_csum = 0;
    if (bpf_skb_load_bytes(skb, csum_off, &udp_csum, 2) < 0) {
      return PLEXUS_DROP(INVALID_PACKET);
    }
    if (udp_csum == 0) {
      csum_off = 0;
    }
    l4_flags |= BPF_F_MARK_MANGLED_0;
  }
  if (old_addr != new_addr) {
    if (csum_off && bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, l4_flags | 4) < 0) {
      return PLEXUS_DROP(NAT_FAILED);
    }
    if (bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, old_addr, new_addr, 4) < 0) {
      return PLEXUS_DROP(NAT_FAILED);
    }
    if (bpf_skb_store_bytes(skb, is_src ? IPV4_SADDR_OFF : IPV4_DADDR_OFF, &new_addr, 4, 0) < 0) {
      return PLEXUS_DROP(NAT_FAILED);
    }
  }
  if (old_port != new_port) {
    if (csum_off && bpf_l4_csum_replace(skb, csum_off, old_port, new_port,
                                        (f->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0) | 2) < 0) {
      return PLEXUS_DROP(NAT_FAILED);
    }
    if (bpf_skb_store_bytes(skb, f->l4_off + (is_src ? 0 : 2), &new_port, 2, 0) < 0) {
      return PLEXUS_DROP(NAT_FAILED);
    }
  }
  return 0;
}
