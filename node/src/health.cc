#include "plexus/node/health.h"

#include <fmt/format.h>

namespace plexus::node {

uint16_t internetChecksum(std::span<const uint8_t> bytes) {
  uint32_t sum = 0;
  size_t i = 0;
  for (; i + 1 < bytes.size(); i += 2) {
    sum += static_cast<uint32_t>(bytes[i]) << 8 | bytes[i + 1];
  }
  if (i < bytes.size()) {
    sum += static_cast<uint32_t>(bytes[i]) << 8;
  }
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum & 0xffff);
}

std::vector<uint8_t> icmpEchoRequest(uint16_t id, uint16_t seq, std::span<const uint8_t> payload) {
  std::vector<uint8_t> m(kIcmpHeaderBytes + payload.size(), 0);
  m[0] = kIcmpEchoRequest;
  m[1] = 0;  // code
  m[4] = static_cast<uint8_t>(id >> 8);
  m[5] = static_cast<uint8_t>(id & 0xff);
  m[6] = static_cast<uint8_t>(seq >> 8);
  m[7] = static_cast<uint8_t>(seq & 0xff);
  std::copy(payload.begin(), payload.end(), m.begin() + kIcmpHeaderBytes);
  uint16_t sum = internetChecksum(m);
  m[2] = static_cast<uint8_t>(sum >> 8);
  m[3] = static_cast<uint8_t>(sum & 0xff);
  return m;
}

std::optional<EchoReply> parseEchoReply(std::span<const uint8_t> message, bool with_ip_header) {
  EchoReply r;
  if (with_ip_header) {
    // IPv4 header: version 4, IHL in 32-bit words (at least 5), protocol 1 (ICMP) at offset 9, source at 12.
    if (message.size() < 20 || (message[0] >> 4) != 4) {
      return std::nullopt;
    }
    size_t ihl = static_cast<size_t>(message[0] & 0x0f) * 4;
    if (ihl < 20 || message.size() < ihl || message[9] != 1) {
      return std::nullopt;
    }
    r.source = Ipv4((static_cast<uint32_t>(message[12]) << 24) | (static_cast<uint32_t>(message[13]) << 16) |
                    (static_cast<uint32_t>(message[14]) << 8) | message[15]);
    message = message.subspan(ihl);
  }
  if (message.size() < kIcmpHeaderBytes || message[0] != kIcmpEchoReply || message[1] != 0 ||
      internetChecksum(message) != 0) {
    return std::nullopt;
  }
  r.id = static_cast<uint16_t>(message[4] << 8 | message[5]);
  r.seq = static_cast<uint16_t>(message[6] << 8 | message[7]);
  return r;
}

std::string summary(const NodeProbe& p) {
  if (p.reachable()) {
    return "ok";
  }
  auto one = [](const char* what, const ProbeResult& r) {
    return r.ok ? fmt::format("{} ok", what) : fmt::format("{}: {}", what, r.message);
  };
  return one("icmp", p.icmp) + ", " + one("tcp", p.tcp);
}

}  // namespace plexus::node
