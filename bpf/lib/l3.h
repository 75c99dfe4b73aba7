/* IPv4 header helpers. */
#pragma once

#include "lib/common.h"
#include "lib/parse.h"

/* 1 when the packet is larger than device `ifindex` takes, a GSO packet judged segment by segment (BPF_MTU_CHK_SEGS:
 * its length is all of them together); 0 otherwise, also when the kernel cannot tell (no such device). */
static __always_inline int ipv4_too_big_for(struct __sk_buff *skb, __u32 ifindex) {
  __u32 mtu_len = 0;
  long ret = bpf_check_mtu(skb, ifindex, &mtu_len, 0, BPF_MTU_CHK_SEGS);
  return ret == BPF_MTU_CHK_RET_FRAG_NEEDED || ret == BPF_MTU_CHK_RET_SEGS_TOOBIG;
}

/* Decrements the TTL as a router would (RFC 1812 §5.3.1) and fixes the header checksum
 * incrementally (RFC 1624). The 16-bit word holding TTL also holds the protocol byte. */
static __always_inline int ipv4_dec_ttl(struct __sk_buff *skb, struct iphdr *ip) {
  if (ip->ttl <= 1) {
    return PLEXUS_DROP(TTL_EXCEEDED);
  }
  __u16 old_word = *(__u16 *)&ip->ttl;
  __u8 new_ttl = ip->ttl - 1;
  if (bpf_skb_store_bytes(skb, IPV4_TTL_OFF, &new_ttl, 1, 0) < 0) {
    return PLEXUS_DROP(REDIRECT_FAILED);
  }
  struct iphdr *ip2 = ipv4_hdr(skb);
  if (!ip2) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  __u16 new_word = *(__u16 *)&ip2->ttl;
  if (bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, old_word, new_word, 2) < 0) {
    return PLEXUS_DROP(REDIRECT_FAILED);
  }
  return 0;
}

/* Sets the Ethernet addresses before a redirect. */
static __always_inline int eth_store_addrs(struct __sk_buff *skb, const __u8 *src, const __u8 *dst) {
  if (bpf_skb_store_bytes(skb, 0, dst, ETH_ALEN, 0) < 0 ||
      bpf_skb_store_bytes(skb, ETH_ALEN, src, ETH_ALEN, 0) < 0) {
    return PLEXUS_DROP(REDIRECT_FAILED);
  }
  return 0;
}
