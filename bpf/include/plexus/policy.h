/* Per-endpoint policy maps. Each endpoint owns a hash (inner map of plexus_policy_v3, an ARRAY_OF_MAPS indexed by
 * endpoint id). An entry matches (peer identity, direction) exactly, then protocol and destination port as a prefix:
 * the whole port (FULL_PREFIX), a port range as a handful of aligned prefixes (lengths between PROTO_PREFIX and
 * FULL_PREFIX), every port of one protocol (PROTO_PREFIX) or every protocol (FIXED_PREFIX). The hash holds every
 * entry keyed with its prefix length and the uncovered bits zero, plus one summary per (identity, direction): key
 * prefixlen 0, value flags saying which kinds of entries that identity has and, in rule_id, which range lengths
 * (bit n: entries of length PROTO_PREFIX + n). A packet is matched for its peer identity and for the wildcard
 * identity 0, each the longest match in the order FULL, the range lengths longest first, PROTO, FIXED, asking only
 * for the lengths the summary names: a verdict costs a bounded number of hash lookups (at most 18 per identity),
 * whatever the entry count. (Until 2026-12-06 the ranges were an LPM trie per endpoint, plexus_policy_range_v1,
 * whose walk deepened with the entries.)
 *
 * Verdict contract (userspace resolves deny precedence inside each identity's key space):
 *   - a DENY entry found for either identity drops the packet (POLICY_DENY);
 *   - otherwise an entry found for either identity allows it;
 *   - otherwise the packet is dropped (POLICY_DENIED).
 * An entry of a peer identity marked FINAL decides alone (it is a deny, or no wildcard deny exists in its
 * direction), so the wildcard lookup is skipped. A direction that no policy selects gets one allow-all entry:
 * identity 0, prefix FIXED_PREFIX. An endpoint with no map at all drops everything: the datapath never fails open. */
#pragma once
#include "plexus/types.h"

#define PLEXUS_POLICY_ENDPOINTS_MAX 65536
/* Entries per endpoint: the template's size and the largest --bpf-policy-map-max. The agent sizes each endpoint's
 * maps to the entries it writes (none is preallocated), so memory follows the real entry count; it refuses (and
 * reports) a policy that would need more than the configured size, never truncating it. */
#define PLEXUS_POLICY_INNER_MAX 131072
#define PLEXUS_POLICY_MAP_DEFAULT_MAX 16384 /* Cilium's bpf-policy-map-max default */
/* Bits of the key data covered by the fixed part: identity (32) + direction (8). Protocol adds 8,
 * the destination port up to 16 more. */
#define PLEXUS_POLICY_FIXED_PREFIX 40
#define PLEXUS_POLICY_PROTO_PREFIX (PLEXUS_POLICY_FIXED_PREFIX + 8)
#define PLEXUS_POLICY_FULL_PREFIX (PLEXUS_POLICY_PROTO_PREFIX + 16)
/* The key of an identity's summary in the hash: prefixlen 0, identity, direction; protocol and port zero. */
#define PLEXUS_POLICY_SUMMARY_PREFIX 0
/* ICMP is judged with its type in the port slot (protocol ICMP, dport = htons(type)), as Cilium keys CNP `icmps`
 * rules. An ICMP packet without a header (a later fragment) is judged on this port, which no type takes: only
 * entries covering every port (or every protocol) match it, as a later TCP/UDP fragment is judged on port 0. */
#define PLEXUS_POLICY_ICMP_NO_TYPE 0xffff

struct plexus_policy_key {
  __u32 prefixlen;  /* prefix length over the bytes that follow (the trie's LPM length; part of the hash's key) */
  __u32 identity;   /* peer identity, host order; 0 = any peer */
  __u8 direction;   /* enum plexus_direction */
  __u8 protocol;    /* IPPROTO_*; covered only when prefixlen >= PROTO_PREFIX (else: any protocol) */
  __be16 dport;     /* network order; covered by the last 0..16 prefix bits (0 bits: any port). ICMP: the type */
};

enum plexus_policy_flags {
  PLEXUS_POLICY_F_DENY = 1 << 0,  /* explicit deny: beats any allow */
  PLEXUS_POLICY_F_FINAL = 1 << 1, /* a peer identity's entry that decides without the wildcard lookup (set by the
                                     agent's map writer, not by the compiler) */
  /* Summary values (key prefixlen 0): which prefix lengths the identity has in this direction. */
  PLEXUS_POLICY_S_PORT = 1 << 2,  /* FULL_PREFIX entries (hash) */
  PLEXUS_POLICY_S_RANGE = 1 << 3, /* port-range entries (hash; their lengths in the summary's rule_id) */
  PLEXUS_POLICY_S_PROTO = 1 << 4, /* PROTO_PREFIX entries (hash) */
  PLEXUS_POLICY_S_ANY = 1 << 5,   /* FIXED_PREFIX entries (hash) */
  PLEXUS_POLICY_S_INLINE = 1 << 6, /* with S_ANY alone: that entry is the identity's only one in this direction, and
                                    * the summary carries its verdict (its DENY and FINAL flags, its rule in rule_id),
                                    * so the verdict costs this one lookup */
};

struct plexus_policy_value {
  __be16 proxy_port; /* reserved for L7 redirection; 0 today */
  __u8 flags;        /* enum plexus_policy_flags */
  __u8 pad;          /* zero */
  __u32 rule_id;     /* id of the deciding rule, for flow events and explain (host order); a summary's: the range
                        lengths it has, bit n for PROTO_PREFIX + n (1..15), or with S_INLINE its entry's rule */
};
