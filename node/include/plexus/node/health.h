#pragma once
// Node health probes (pure parts): the ICMP echo messages the prober sends to another node's InternalIP and the
// replies it recognises, and how the two probes (ICMP echo, TCP connect to the health port) make a node's
// reachability, as cilium-health reports both paths per node. The sockets live in the agent (NodeHealth).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "plexus/common/ipv4.h"

namespace plexus::node {

// ICMP types (RFC 792).
inline constexpr uint8_t kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmpEchoRequest = 8;
inline constexpr size_t kIcmpHeaderBytes = 8;

// The Internet checksum (RFC 1071 §4.1): the ones' complement of the ones' complement sum of 16-bit words, an odd
// last byte padded with zero. Over a message whose checksum field holds the right value it returns 0.
uint16_t internetChecksum(std::span<const uint8_t> bytes);

// An ICMP echo request (type 8, code 0): header with identifier and sequence number in network order, then the
// payload, checksummed. What a raw or ping socket sends (a ping socket rewrites the identifier).
std::vector<uint8_t> icmpEchoRequest(uint16_t id, uint16_t seq, std::span<const uint8_t> payload);

struct EchoReply {
  std::optional<Ipv4> source;  // from the IPv4 header, when the message had one
  uint16_t id = 0;
  uint16_t seq = 0;
  friend bool operator==(const EchoReply&, const EchoReply&) = default;
};

// A received message as an echo reply, or none (another ICMP type, truncated, a bad checksum, not ICMP).
// with_ip_header: a raw socket delivers the IPv4 header first (RFC 791; its length from IHL); a ping socket
// (SOCK_DGRAM, IPPROTO_ICMP) delivers the ICMP message alone.
std::optional<EchoReply> parseEchoReply(std::span<const uint8_t> message, bool with_ip_header);

// One probe's outcome.
struct ProbeResult {
  bool ok = false;
  double milliseconds = 0;  // round trip, when ok
  std::string message = "not probed yet";
  friend bool operator==(const ProbeResult&, const ProbeResult&) = default;
};

// Both probes of one node. Reachable when both answered, as cilium-health counts a node (an agent that answers
// pings but not its health port is not a working node, nor is one the network drops ICMP to).
struct NodeProbe {
  ProbeResult icmp;
  ProbeResult tcp;
  bool reachable() const { return icmp.ok && tcp.ok; }
  friend bool operator==(const NodeProbe&, const NodeProbe&) = default;
};

// "ok" when both answered; otherwise what failed, e.g. "icmp ok, tcp: 192.168.1.12:4240: Connection refused".
std::string summary(const NodeProbe& probe);

}  // namespace plexus::node
