/* Shared BPF definitions: packet constants vmlinux.h lacks, and the program exit convention (helpers return 0 or
 * PLEXUS_DROP(reason); only a program's exit turns a reason into TC_ACT_SHOT, a counter and an event). Parsing
 * helpers are in lib/parse.h. */
#pragma once

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "plexus/reasons.h"

#ifndef TC_ACT_OK
#define TC_ACT_UNSPEC -1
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7
#endif

#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86DD
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define AF_INET 2
#define PACKET_HOST 0 /* skb->pkt_type (linux/if_packet.h) */

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define PLEXUS_DROP(reason) (-(int)(PLEXUS_REASON_##reason))
