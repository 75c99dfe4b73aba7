/* Verdict and drop reasons, defined once (STYLE.md rule 7).
 *
 * X(name, value, hubble_name, hubble_code, description)
 *   name         -> PLEXUS_REASON_<name> in BPF C, plexus::Reason::k<Name>-style via toString() in C++
 *   value        -> the number in metrics keys and events (stable: never renumber, only append)
 *   hubble_name  -> Hubble's drop_reason_desc (flow.DropReason in api/flow/flow.proto), the name Hubble users know
 *   hubble_code  -> Hubble's number for it (flow.DropReason, the deprecated Flow.drop_reason and event_type's
 *                   sub_type of a drop): Cilium's DROP_* code, negated. 0 for a reason that is not a drop
 *   description  -> human text for logs and the CLI
 *
 * A hubble_name of "FORWARDED" marks a reason that is not a drop (agent::isDropReason derives it from this list).
 * Where Hubble has no reason of ours, the nearest one is used: NAT_FAILED (a failed rewrite of the packet) is
 * ERROR_WRITING_TO_PACKET, like REDIRECT_FAILED.
 *
 * BPF helpers return 0 or -PLEXUS_REASON_<drop>; the program's single exit turns that into
 * TC_ACT_SHOT, a per-CPU counter and an event. */
#pragma once

#define PLEXUS_REASONS(X)                                                                                    \
  X(FORWARDED, 0, "FORWARDED", 0, "forwarded")                                                              \
  X(INVALID_PACKET, 1, "INVALID_PACKET_DROPPED", 134, "invalid or truncated packet")                        \
  X(UNSUPPORTED_L3, 2, "UNSUPPORTED_L3_PROTOCOL", 139, "unsupported L3 protocol")                           \
  X(INVALID_SOURCE_IP, 3, "INVALID_SOURCE_IP", 132, "source IP does not belong to the endpoint")            \
  X(POLICY_DENIED, 4, "POLICY_DENIED", 133, "policy denied (no allow rule)")                                \
  X(POLICY_DENY, 5, "POLICY_DENY", 181, "policy deny (explicit deny rule)")                                 \
  X(NO_SERVICE_BACKEND, 6, "SERVICE_BACKEND_NOT_FOUND", 158, "service has no backends")                     \
  X(CT_MAP_FULL, 7, "CT_MAP_INSERTION_FAILED", 155, "conntrack map insertion failed")                       \
  X(REDIRECT_FAILED, 8, "ERROR_WRITING_TO_PACKET", 141, "redirect or packet rewrite failed")                \
  X(TTL_EXCEEDED, 9, "TTL_EXCEEDED", 196, "TTL exceeded")                                                   \
  X(FIB_LOOKUP_FAILED, 10, "FIB_LOOKUP_FAILED", 169, "FIB lookup failed")                                   \
  X(NAT_FAILED, 11, "ERROR_WRITING_TO_PACKET", 141, "NAT failed")                                           \
  X(UNKNOWN_L4, 12, "UNKNOWN_L4_PROTOCOL", 142, "unknown L4 protocol")                                      \
  X(ARP_REPLY, 13, "FORWARDED", 0, "ARP request answered by the datapath")                                  \
  X(SERVICE_TRANSLATED, 14, "FORWARDED", 0, "service address translated")                                   \
  X(FORWARDED_TUNNEL, 15, "FORWARDED", 0, "forwarded into the VXLAN tunnel")                                \
  X(FORWARDED_FIB, 16, "FORWARDED", 0, "forwarded by BPF host routing (fib lookup)")                        \
  X(NO_TUNNEL_ENDPOINT, 17, "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT", 160, "no tunnel endpoint for the destination") \
  X(INVALID_IDENTITY, 18, "INVALID_IDENTITY", 171, "identity does not fit the tunnel's 24-bit VNI")          \
  X(NAT_NO_PORT, 19, "NO_MAPPING_FOR_NAT_MASQUERADE", 167, "no free port to masquerade the flow")            \
  X(NOT_IN_SRC_RANGE, 20, "DENIED_BY_LB_SRC_RANGE_CHECK", 177, "client outside the service's loadBalancerSourceRanges")

enum plexus_reason {
#define PLEXUS_REASON_ENUM_(name, value, hubble, code, desc) PLEXUS_REASON_##name = value,
  PLEXUS_REASONS(PLEXUS_REASON_ENUM_)
#undef PLEXUS_REASON_ENUM_
  PLEXUS_REASON_MAX_,
};

/* Traffic direction relative to the endpoint. */
enum plexus_direction {
  PLEXUS_DIR_UNSPECIFIED = 0,
  PLEXUS_DIR_INGRESS = 1, /* towards the endpoint (to-container) */
  PLEXUS_DIR_EGRESS = 2,  /* from the endpoint (from-container) */
  PLEXUS_DIR_MAX_,
};
