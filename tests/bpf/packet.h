#pragma once
// Crafted packets for BPF_PROG_TEST_RUN.

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "plexus/common/ipv4.h"

namespace plexus::testing {

inline uint16_t ipChecksum(const void* data, size_t len) {
  uint32_t sum = 0;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i + 1 < len; i += 2) {
    sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  }
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return htons(static_cast<uint16_t>(~sum));
}

struct PacketSpec {
  Mac src_mac;
  Mac dst_mac;
  Ipv4 src;
  Ipv4 dst;
  uint8_t proto = IPPROTO_TCP;
  uint16_t sport = 40000;
  uint16_t dport = 80;
  uint8_t ttl = 64;
  uint8_t tcp_flags = 0x02;  // SYN
};

inline std::vector<uint8_t> ipv4Packet(const PacketSpec& s) {
  size_t l4 = s.proto == IPPROTO_TCP ? sizeof(tcphdr) : sizeof(udphdr);
  std::vector<uint8_t> pkt(sizeof(ethhdr) + sizeof(iphdr) + l4, 0);
  auto* eth = reinterpret_cast<ethhdr*>(pkt.data());
  std::memcpy(eth->h_dest, s.dst_mac.b, 6);
  std::memcpy(eth->h_source, s.src_mac.b, 6);
  eth->h_proto = htons(ETH_P_IP);
  auto* ip = reinterpret_cast<iphdr*>(pkt.data() + sizeof(ethhdr));
  ip->version = 4;
  ip->ihl = 5;
  ip->tot_len = htons(static_cast<uint16_t>(sizeof(iphdr) + l4));
  ip->ttl = s.ttl;
  ip->protocol = s.proto;
  ip->saddr = s.src.networkOrder();
  ip->daddr = s.dst.networkOrder();
  ip->check = ipChecksum(ip, sizeof(iphdr));
  uint8_t* l4p = pkt.data() + sizeof(ethhdr) + sizeof(iphdr);
  if (s.proto == IPPROTO_TCP) {
    auto* tcp = reinterpret_cast<tcphdr*>(l4p);
    tcp->source = htons(s.sport);
    tcp->dest = htons(s.dport);
    tcp->doff = 5;
    l4p[13] = s.tcp_flags;
  } else {
    auto* udp = reinterpret_cast<udphdr*>(l4p);
    udp->source = htons(s.sport);
    udp->dest = htons(s.dport);
    udp->len = htons(sizeof(udphdr));
  }
  return pkt;
}

// An IPv4 frame carrying `l4` as its payload (protocol s.proto); ports and flags of s are not used.
inline std::vector<uint8_t> ipv4WithPayload(const PacketSpec& s, const std::vector<uint8_t>& l4) {
  std::vector<uint8_t> pkt(sizeof(ethhdr) + sizeof(iphdr), 0);
  auto* eth = reinterpret_cast<ethhdr*>(pkt.data());
  std::memcpy(eth->h_dest, s.dst_mac.b, 6);
  std::memcpy(eth->h_source, s.src_mac.b, 6);
  eth->h_proto = htons(ETH_P_IP);
  auto* ip = reinterpret_cast<iphdr*>(pkt.data() + sizeof(ethhdr));
  ip->version = 4;
  ip->ihl = 5;
  ip->tot_len = htons(static_cast<uint16_t>(sizeof(iphdr) + l4.size()));
  ip->ttl = s.ttl;
  ip->protocol = s.proto;
  ip->saddr = s.src.networkOrder();
  ip->daddr = s.dst.networkOrder();
  ip->check = ipChecksum(ip, sizeof(iphdr));
  pkt.insert(pkt.end(), l4.begin(), l4.end());
  return pkt;
}

// ICMP echo request (type 8) or reply (type 0) from s.src to s.dst with identifier `id` (RFC 792).
inline std::vector<uint8_t> icmpEcho(PacketSpec s, bool request, uint16_t id, uint16_t seq = 1) {
  s.proto = IPPROTO_ICMP;
  std::vector<uint8_t> icmp = {static_cast<uint8_t>(request ? 8 : 0), 0, 0, 0,
                               static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id),
                               static_cast<uint8_t>(seq >> 8), static_cast<uint8_t>(seq)};
  icmp.resize(icmp.size() + 16, 0xa5);  // payload
  uint16_t sum = ipChecksum(icmp.data(), icmp.size());
  std::memcpy(&icmp[2], &sum, 2);
  return ipv4WithPayload(s, icmp);
}

// An ICMP error (destination unreachable 3, time exceeded 11, parameter problem 12) from s.src to s.dst quoting
// the IP header and the first 8 payload bytes of `original` (a frame as built above), as RFC 792 has it.
inline std::vector<uint8_t> icmpError(PacketSpec s, uint8_t type, uint8_t code, const std::vector<uint8_t>& original) {
  s.proto = IPPROTO_ICMP;
  std::vector<uint8_t> icmp = {type, code, 0, 0, 0, 0, 0, 0};
  size_t quote = std::min(original.size() - sizeof(ethhdr), sizeof(iphdr) + 8);
  icmp.insert(icmp.end(), original.begin() + sizeof(ethhdr), original.begin() + sizeof(ethhdr) + quote);
  uint16_t sum = ipChecksum(icmp.data(), icmp.size());
  std::memcpy(&icmp[2], &sum, 2);
  return ipv4WithPayload(s, icmp);
}

inline std::vector<uint8_t> arpRequest(const Mac& sender_mac, Ipv4 sender_ip, Ipv4 target_ip) {
  std::vector<uint8_t> pkt(14 + 28, 0);
  std::memset(pkt.data(), 0xff, 6);
  std::memcpy(pkt.data() + 6, sender_mac.b, 6);
  pkt[12] = 0x08;
  pkt[13] = 0x06;
  uint8_t* a = pkt.data() + 14;
  a[0] = 0; a[1] = 1;        // htype ethernet
  a[2] = 0x08; a[3] = 0x00;  // ptype IPv4
  a[4] = 6; a[5] = 4;
  a[6] = 0; a[7] = 1;        // request
  std::memcpy(a + 8, sender_mac.b, 6);
  uint32_t sip = sender_ip.networkOrder();
  uint32_t tip = target_ip.networkOrder();
  std::memcpy(a + 14, &sip, 4);
  std::memcpy(a + 24, &tip, 4);
  return pkt;
}

// The L4 checksum over the pseudo header and the segment (after the IPv4 header and its options): zero for a correct
// packet.
inline uint16_t l4Checksum(const std::vector<uint8_t>& pkt) {
  const auto* ip = reinterpret_cast<const iphdr*>(pkt.data() + sizeof(ethhdr));
  size_t l4_len = ntohs(ip->tot_len) - ip->ihl * 4;
  std::vector<uint8_t> buf(12 + l4_len + 1, 0);
  std::memcpy(buf.data(), &ip->saddr, 4);
  std::memcpy(buf.data() + 4, &ip->daddr, 4);
  buf[9] = ip->protocol;
  buf[10] = static_cast<uint8_t>(l4_len >> 8);
  buf[11] = static_cast<uint8_t>(l4_len);
  std::memcpy(buf.data() + 12, pkt.data() + sizeof(ethhdr) + ip->ihl * 4, l4_len);
  return ipChecksum(buf.data(), 12 + l4_len + (l4_len % 2));
}

// A TCP or UDP packet of ipv4Packet with a real L4 checksum, so that rewrites can be checked to keep it valid.
inline std::vector<uint8_t> withL4Checksum(std::vector<uint8_t> pkt) {
  const auto* ip = reinterpret_cast<const iphdr*>(pkt.data() + sizeof(ethhdr));
  uint8_t* l4 = pkt.data() + sizeof(ethhdr) + ip->ihl * 4;
  uint16_t* check = reinterpret_cast<uint16_t*>(l4 + (ip->protocol == IPPROTO_TCP ? 16 : 6));
  *check = 0;
  *check = l4Checksum(pkt);
  return pkt;
}

}  // namespace plexus::testing
