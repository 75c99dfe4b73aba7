/* Packet parsing: bounds-checked access to linear packet data, the IPv4 header, and the 5-tuple a packet belongs to.
 * Every program and helper reads headers through these, so each bound check exists once. */
#pragma once

#include "plexus/conntrack.h"
#include "plexus/policy.h"
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

/* ICMP types (RFC 792) the datapath treats specially. */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

/* A conntrack tuple: addresses and ports in network order. */
struct flow4_tuple {
  __be32 saddr;
  __be32 daddr;
  __be16 sport;
  __be16 dport;
  __u8 proto;
};

/* The flow a packet belongs to, in the packet's own direction. ICMP echo is tracked by its identifier, as Cilium
 * does: a request carries it in dport, a reply in sport, so a reply's reversed tuple is its request's and a request
 * can never be taken for the reply of another (GHSA-c66w-hq56-4q97: a peer's request reusing an endpoint's
 * identifier must not pass as a reply). */
struct flow4 {
  __be32 saddr;
  __be32 daddr;
  __be16 sport;    /* TCP/UDP source port; ICMP echo reply: the identifier */
  __be16 dport;    /* TCP/UDP destination port; ICMP echo request: the identifier */
  __u8 proto;
  __u8 tcp_flags;
  __u16 l4_off;    /* from the start of the frame */
  __u8 has_ports;  /* a TCP or UDP packet whose ports were read (not a non-first fragment) */
  __u8 icmp_type;  /* ICMP: the message type, which policy judges in the port slot */
  __u8 icmp_code;  /* ICMP: the code (for flow events) */
  __u8 has_icmp;   /* an ICMP packet whose header was read (not a non-first fragment) */
  __u8 related;    /* an ICMP error (unreachable, time exceeded, parameter problem) whose quoted header was read:
                    * `quoted` is the tuple of the packet it reports on */
  struct flow4_tuple quoted;
};

/* The port slot a packet is judged on by policy: the destination port, or for ICMP the type (Cilium's layout: a
 * CNP `icmps` type is a port of protocol ICMP). */
static __always_inline __be16 flow4_policy_port(const struct flow4 *f) {
  if (f->proto != IPPROTO_ICMP) {
    return f->dport; /* 0 for a later fragment: only entries covering every port match it */
  }
  return bpf_htons(f->has_icmp ? f->icmp_type : PLEXUS_POLICY_ICMP_NO_TYPE);
}

/* The header an ICMP error quotes (RFC 792: the original IP header and at least its first 8 payload bytes), as the
 * tuple of that original packet. Returns 1 when the quote names a trackable packet (IPv4 without a fragment offset,
 * and for TCP/UDP its ports), else 0: the error is then judged by policy as an ICMP packet of its own. */
static __always_inline int flow4_parse_quoted(struct __sk_buff *skb, __u32 off, struct flow4_tuple *t) {
  struct iphdr inner;
  if (bpf_skb_load_bytes(skb, off, &inner, sizeof(inner)) < 0 || inner.version != 4 || inner.ihl < 5 ||
      (inner.frag_off & bpf_htons(IP_OFFSET))) {
    return 0;
  }
  t->saddr = inner.saddr;
  t->daddr = inner.daddr;
  t->proto = inner.protocol;
  t->sport = 0;
  t->dport = 0;
  __u32 l4 = off + inner.ihl * 4;
  if (inner.protocol == IPPROTO_TCP || inner.protocol == IPPROTO_UDP) {
    __be16 ports[2];
    if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) < 0) {
      return 0;
    }
    t->sport = ports[0];
    t->dport = ports[1];
  } else if (inner.protocol == IPPROTO_ICMP) {
    struct icmphdr hdr;
    if (bpf_skb_load_bytes(skb, l4, &hdr, sizeof(hdr)) < 0) {
      return 0;
    }
    if (hdr.type == ICMP_ECHO) {
      t->dport = hdr.un.echo.id;
    } else if (hdr.type == ICMP_ECHOREPLY) {
      t->sport = hdr.un.echo.id;
    } else {
      return 0; /* errors are not sent about errors (RFC 1122 §3.2.2), nor tracked */
    }
  }
  return 1;
}

/* A TCP segment that opens a connection: SYN without ACK (tcp_flags is 0 for anything but TCP). */
static __always_inline int flow4_opens(const struct flow4 *f) {
  return (f->tcp_flags & (PLEXUS_TCP_SYN | PLEXUS_TCP_ACK)) == PLEXUS_TCP_SYN;
}

/* An ICMP error message (RFC 792, RFC 1122 §3.2.2): destination unreachable, time exceeded, parameter problem. Errors
 * are reports about another packet, never a flow of their own: whether or not their quote names a tracked flow
 * (f->related), they open no conntrack entry. */
static __always_inline int flow4_icmp_error(const struct flow4 *f) {
  return f->has_icmp &&
         (f->icmp_type == ICMP_DEST_UNREACH || f->icmp_type == ICMP_TIME_EXCEEDED || f->icmp_type == ICMP_PARAMETERPROB);
}

/* ICMP: the type, the echo identifier into the tuple, and for errors the quoted packet. A first fragment only
 * (later ones carry no ICMP header). Returns 0, or a negative reason for a truncated ICMP header. */
static __always_inline int flow4_parse_icmp(struct __sk_buff *skb, __u32 l4_off, struct flow4 *f) {
  struct icmphdr hdr; /* type, code, checksum and 4 bytes of rest-of-header (echo: identifier, sequence) */
  if (bpf_skb_load_bytes(skb, l4_off, &hdr, sizeof(hdr)) < 0) {
    return PLEXUS_DROP(INVALID_PACKET);
  }
  f->icmp_type = hdr.type;
  f->icmp_code = hdr.code;
  f->has_icmp = 1;
  switch (hdr.type) {
    case ICMP_ECHO:
      f->dport = hdr.un.echo.id;
      break;
    case ICMP_ECHOREPLY:
      f->sport = hdr.un.echo.id;
      break;
    case ICMP_DEST_UNREACH:
    case ICMP_TIME_EXCEEDED:
    case ICMP_PARAMETERPROB:
      /* An error travels back to the source of the packet it quotes; a quote from anyone else is no error about
       * a flow of this packet's destination, and stays unrelated. */
      f->related = flow4_parse_quoted(skb, l4_off + sizeof(hdr), &f->quoted) && f->quoted.saddr == f->daddr;
      break;
    default:
      break;
  }
  return 0;
}

/* Fills f from the IPv4 header, the ports and TCP flags for TCP and UDP, the type (echo identifier, quoted packet)
 * for ICMP; first fragments only: later ones carry no L4 header. Returns 0 (f->has_ports says whether there were
 * TCP/UDP ports), or a negative reason for a truncated L4 header. */
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
  f->icmp_type = 0;
  f->icmp_code = 0;
  f->has_icmp = 0;
  f->related = 0;
  if (ip->frag_off & bpf_htons(IP_OFFSET)) {
    return 0;
  }
  if (ip->protocol == IPPROTO_ICMP) {
    return flow4_parse_icmp(skb, l4_off, f);
  }
  if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) {
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
