/* Refusing a connection to a service with no backends, at once, as kube-proxy's REJECT rule does: a TCP
 * segment is answered with a RST (RFC 9293 §3.10.7.1, "reset generation"), anything else with ICMP
 * destination unreachable / port unreachable (RFC 792) quoting the IP header and the first 8 payload bytes.
 * The reply is built in place; the program sends it back out of the interface the packet came from. */
#pragma once
#include "lib/common.h"
#include "lib/parse.h"

#define REJECT_TCP_LEN 40  /* IPv4 + TCP, no options */
#define REJECT_ICMP_LEN 56 /* IPv4 + ICMP + quoted IPv4 header + 8 bytes */

static __always_inline __u16 csum_fold(__s64 sum) {
  __u64 s = (__u64)sum;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return (__u16)~s;
}

struct reject_ip {
  __u8 ver_ihl;
  __u8 tos;
  __be16 tot_len;
  __be16 id;
  __be16 frag_off;
  __u8 ttl;
  __u8 protocol;
  __u16 check;
  __be32 saddr;
  __be32 daddr;
};

struct reject_tcp {
  __be16 source;
  __be16 dest;
  __be32 seq;
  __be32 ack_seq;
  __u8 doff_res;
  __u8 flags;
  __be16 window;
  __u16 check;
  __be16 urg_ptr;
};

struct reject_pseudo {
  __be32 saddr;
  __be32 daddr;
  __u8 zero;
  __u8 proto;
  __be16 len;
};

static __always_inline int reject_swap_eth(struct __sk_buff *skb) {
  __u8 macs[2 * ETH_ALEN];
  __u8 swapped[2 * ETH_ALEN];
  if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) < 0) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  __builtin_memcpy(swapped, macs + ETH_ALEN, ETH_ALEN);
  __builtin_memcpy(swapped + ETH_ALEN, macs, ETH_ALEN);
  if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0) < 0) {
    return PLEXUS_DROP(REDIRECT_FAILED);
  }
  return 0;
}

static __always_inline void reject_ip_header(struct reject_ip *ip, __be32 saddr, __be32 daddr, __u8 proto,
                                             __u16 len) {
  __builtin_memset(ip, 0, sizeof(*ip));
  ip->ver_ihl = 0x45;
  ip->tot_len = bpf_htons(len);
  ip->frag_off = bpf_htons(0x4000); /* DF */
  ip->ttl = 64;
  ip->protocol = proto;
  ip->saddr = saddr;
  ip->daddr = daddr;
  ip->check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
}

static __always_inline int reject_tcp(struct __sk_buff *skb, const struct flow4 *f) {
  struct reject_tcp in;
  __be16 tot_len;
  if (bpf_skb_load_bytes(skb, f->l4_off, &in, sizeof(in)) < 0 ||
      bpf_skb_load_bytes(skb, ETH_HLEN + 2, &tot_len, 2) < 0) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  if (in.flags & PLEXUS_TCP_RST) {
    return PLEXUS_DROP(NO_SERVICE_BACKEND); /* never answer a reset */
  }
  __u32 seg_len = bpf_ntohs(tot_len) - (f->l4_off - ETH_HLEN) - (in.doff_res >> 4) * 4;
  if (in.flags & PLEXUS_TCP_SYN) {
    seg_len += 1;
  }
  if (in.flags & PLEXUS_TCP_FIN) {
    seg_len += 1;
  }
  struct reject_tcp out = {.source = f->dport, .dest = f->sport, .doff_res = 5 << 4};
  if (in.flags & PLEXUS_TCP_ACK) {
    out.seq = in.ack_seq;
    out.flags = PLEXUS_TCP_RST;
  } else {
    out.ack_seq = bpf_htonl(bpf_ntohl(in.seq) + seg_len);
    out.flags = PLEXUS_TCP_RST | PLEXUS_TCP_ACK;
  }
  struct reject_pseudo ph = {.saddr = f->daddr, .daddr = f->saddr, .proto = IPPROTO_TCP, .len = bpf_htons(20)};
  __s64 sum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
  sum = bpf_csum_diff(0, 0, (__be32 *)&out, sizeof(out), (__u32)sum);
  out.check = csum_fold(sum);
  struct reject_ip ip;
  reject_ip_header(&ip, f->daddr, f->saddr, IPPROTO_TCP, REJECT_TCP_LEN);

  if (bpf_skb_change_tail(skb, ETH_HLEN + REJECT_TCP_LEN, 0) < 0 ||
      bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0) < 0 ||
      bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(ip), &out, sizeof(out), 0) < 0) {
    return PLEXUS_DROP(REDIRECT_FAILED);
  }
  return 0;
}

struct reject_icmp {
  __u8 type;
  __u8 code;
  __u16 check;
  __be32 unused;
  __u8 quote[28];
};

static __always_inline int reject_icmp(struct __sk_buff *skb, const struct flow4 *f) {
  struct reject_icmp icmp = {.type = 3, .code = 3};
  if (bpf_skb_load_bytes(skb, ETH_HLEN, icmp.quote, sizeof(icmp.quote)) < 0) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  if ((icmp.quote[0] & 0x0f) != 5) {
    return PLEXUS_DROP(NO_SERVICE_BACKEND); /* IP options: quoting needs the whole header; just drop */
  }
  icmp.check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)&icmp, sizeof(icmp), 0));
  struct reject_ip ip;
  reject_ip_header(&ip, f->daddr, f->saddr, IPPROTO_ICMP, REJECT_ICMP_LEN);
  if (bpf_skb_change_tail(skb, ETH_HLEN + REJECT_ICMP_LEN, 0) < 0 ||
      bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0) < 0 ||
      bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(ip), &icmp, sizeof(icmp), 0) < 0) {
    return PLEXUS_DROP(REDIRECT_FAILED);
  }
  return 0;
}

/* Turns the packet into the refusal, addressed back to its sender. Returns 0 or a negative reason (a reset is never
 * answered; IP options are not quoted): the caller sends it back out of the interface it came from. */
static __always_inline int reject_no_backend(struct __sk_buff *skb, const struct flow4 *f) {
  int ret = f->proto == IPPROTO_TCP ? reject_tcp(skb, f) : reject_icmp(skb, f);
  if (ret < 0) {
    return ret;
  }
  return reject_swap_eth(skb);
}
