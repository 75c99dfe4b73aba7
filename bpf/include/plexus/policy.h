/* Per-endpoint policy maps. Each endpoint owns one LPM trie (inner map) reached through
 * plexus_policy_v1 (ARRAY_OF_MAPS indexed by endpoint id). An entry matches
 * (peer identity, direction) exactly, then protocol and destination port as an LPM prefix, so a
 * port range is a handful of prefixes and ANY protocol is a shorter prefix. A packet needs two
 * lookups: its peer identity, and the wildcard identity 0.
 *
 * Verdict contract (userspace resolves deny precedence inside each lookup's key space):
 *   - a DENY entry found by either lookup drops the packet (POLICY_DENY);
 *   - otherwise an entry found by either lookup allows it;
 *   - otherwise the packet is dropped (POLICY_DENIED).
 * A direction that no policy selects gets one allow-all entry: identity 0, prefix FIXED_PREFIX. An endpoint
 * with no map at all drops everything: the datapath never fails open. */
#pragma once
#include "plexus/types.h"

#define PLEXUS_POLICY_ENDPOINTS_MAX 65536
/* Entries per endpoint: the template's size and the largest --bpf-policy-map-max. The tries are not preallocated,
 * so memory follows the real entry count; the agent refuses (and reports) a policy that would need more than the
 * configured size, never truncating it. */
#define PLEXUS_POLICY_INNER_MAX 65536
#define PLEXUS_POLICY_MAP_DEFAULT_MAX 16384 /* Cilium's bpf-policy-map-max default */
/* Bits of the key data covered by the fixed part: identity (32) + direction (8). Protocol adds 8,
 * the destination port up to 16 more. */
#define PLEXUS_POLICY_FIXED_PREFIX 40
#define PLEXUS_POLICY_PROTO_PREFIX (PLEXUS_POLICY_FIXED_PREFIX + 8)
#define PLEXUS_POLICY_FULL_PREFIX (PLEXUS_POLICY_PROTO_PREFIX + 16)
/* ICMP is judged with its type in the port slot (protocol ICMP, dport = htons(type)), as Cilium keys CNP `icmps`
 * rules. An ICMP packet without a header (a later fragment) is judged on this port, which no type takes: only
 * entries covering every port (or every protocol) match it, as a later TCP/UDP fragment is judged on port 0. */
#define PLEXUS_POLICY_ICMP_NO_TYPE 0xffff

struct plexus_policy_key {
  __u32 prefixlen;  /* LPM prefix length over the bytes that follow */
  __u32 identity;   /* peer identity, host order; 0 = any peer */
  __u8 direction;   /* enum plexus_direction */
  __u8 protocol;    /* IPPROTO_*; covered only when prefixlen >= PROTO_PREFIX (else: any protocol) */
  __be16 dport;     /* network order; covered by the last 0..16 prefix bits (0 bits: any port). ICMP: the type */
};

enum plexus_policy_flags {
  PLEXUS_POLICY_F_DENY = 1 << 0, /* explicit deny: beats any allow */
};

struct plexus_policy_value {
  __be16 proxy_port; /* reserved for L7 redirection; 0 today */
  __u8 flags;        /* enum plexus_policy_flags */
  __u8 pad;          /* zero */
  __u32 rule_id;     /* id of the deciding rule, for flow events and explain (host order) */
};
