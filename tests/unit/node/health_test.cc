// Node health probes, the pure parts: ICMP echo messages (RFC 792) with the Internet checksum (RFC 1071), and how
// the ICMP and TCP probe results make a node reachable.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "plexus/node/health.h"

using namespace plexus;
using namespace plexus::node;

namespace {
std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::vector<uint8_t> withChecksum(std::vector<uint8_t> m) {
  m[2] = m[3] = 0;
  uint16_t sum = internetChecksum(m);
  m[2] = static_cast<uint8_t>(sum >> 8);
  m[3] = static_cast<uint8_t>(sum & 0xff);
  return m;
}
// The reply a peer's kernel sends for `request`: type 0, same id, sequence and payload, checksum recomputed.
std::vector<uint8_t> replyTo(std::vector<uint8_t> request) {
  request[0] = kIcmpEchoReply;
  return withChecksum(std::move(request));
}

// A minimal IPv4 header (IHL 5, or 6 with one option word) from src, protocol `proto`, in front of `payload`.
std::vector<uint8_t> withIpHeader(const std::vector<uint8_t>& payload, uint32_t src, uint8_t proto = 1,
                                  bool option = false) {
  size_t ihl = option ? 24 : 20;
  std::vector<uint8_t> p(ihl, 0);
  p[0] = static_cast<uint8_t>(0x40 | (ihl / 4));
  p[8] = 64;
  p[9] = proto;
  p[12] = static_cast<uint8_t>(src >> 24);
  p[13] = static_cast<uint8_t>(src >> 16);
  p[14] = static_cast<uint8_t>(src >> 8);
  p[15] = static_cast<uint8_t>(src);
  p.insert(p.end(), payload.begin(), payload.end());
  return p;
}
}  // namespace

TEST_CASE("Internet checksum: the RFC 1071 example, odd lengths, and zero over a checksummed message",
          "[unit][health]") {
  // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with the carries folded); the checksum is its complement.
  CHECK(internetChecksum(std::vector<uint8_t>{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}) == 0x220d);
  // An odd last byte counts as the high byte of a word padded with zero.
  CHECK(internetChecksum(std::vector<uint8_t>{0x12}) == static_cast<uint16_t>(~0x1200));
  CHECK(internetChecksum(std::vector<uint8_t>{}) == 0xffff);
  auto m = icmpEchoRequest(0x1234, 7, bytes("plexus health"));
  CHECK(internetChecksum(m) == 0);
}

TEST_CASE("An echo request carries type 8, id and sequence in network order, and the payload", "[unit][health]") {
  auto m = icmpEchoRequest(0xabcd, 0x0102, bytes("xyz"));
  REQUIRE(m.size() == 11);
  CHECK(m[0] == 8);
  CHECK(m[1] == 0);
  CHECK(m[4] == 0xab);
  CHECK(m[5] == 0xcd);
  CHECK(m[6] == 0x01);
  CHECK(m[7] == 0x02);
  CHECK(std::string(m.begin() + 8, m.end()) == "xyz");
  // A request is not a reply.
  CHECK_FALSE(parseEchoReply(m, false).has_value());
}

TEST_CASE("Echo replies are recognised from a ping socket and from a raw socket", "[unit][health]") {
  auto reply = replyTo(icmpEchoRequest(0x4242, 9, bytes("plexus health")));
  auto dgram = parseEchoReply(reply, false);
  REQUIRE(dgram.has_value());
  CHECK(dgram->id == 0x4242);
  CHECK(dgram->seq == 9);
  CHECK_FALSE(dgram->source.has_value());

  for (bool option : {false, true}) {
    INFO("IPv4 options: " << option);
    auto raw = parseEchoReply(withIpHeader(reply, 0xC0A8010C, 1, option), true);
    REQUIRE(raw.has_value());
    CHECK(raw->source == Ipv4(0xC0A8010C));
    CHECK(raw->id == 0x4242);
    CHECK(raw->seq == 9);
  }
  SECTION("not ICMP, not IPv4, a short header, truncated") {
    CHECK_FALSE(parseEchoReply(withIpHeader(reply, 0xC0A8010C, 6), true).has_value());
    auto v6 = withIpHeader(reply, 0xC0A8010C);
    v6[0] = 0x65;
    CHECK_FALSE(parseEchoReply(v6, true).has_value());
    auto ihl4 = withIpHeader(reply, 0xC0A8010C);
    ihl4[0] = 0x44;
    CHECK_FALSE(parseEchoReply(ihl4, true).has_value());
    CHECK_FALSE(parseEchoReply(std::vector<uint8_t>(reply.begin(), reply.begin() + 7), false).has_value());
    CHECK_FALSE(parseEchoReply(std::vector<uint8_t>(19, 0x45), true).has_value());
    CHECK_FALSE(parseEchoReply(reply, true).has_value());  // no IPv4 header where one is expected
  }
  SECTION("other ICMP types (destination unreachable) are not replies") {
    auto unreach = reply;
    unreach[0] = 3;
    unreach[1] = 3;
    CHECK_FALSE(parseEchoReply(withChecksum(unreach), false).has_value());
  }
}

// Property: any single bit flipped in a reply makes it unrecognisable (the checksum catches every single-bit
// error, RFC 1071 §2), and every intact reply parses back to its id and sequence.
TEST_CASE("Echo replies: round trip for random ids and payloads; any flipped bit is rejected", "[unit][health]") {
  std::mt19937 rng(5);
  for (int round = 0; round < 200; ++round) {
    uint16_t id = static_cast<uint16_t>(rng());
    uint16_t seq = static_cast<uint16_t>(rng());
    std::vector<uint8_t> payload(rng() % 40);
    for (auto& b : payload) {
      b = static_cast<uint8_t>(rng());
    }
    auto reply = replyTo(icmpEchoRequest(id, seq, payload));
    auto parsed = parseEchoReply(reply, false);
    REQUIRE(parsed.has_value());
    CHECK(parsed->id == id);
    CHECK(parsed->seq == seq);
    size_t bit = rng() % (reply.size() * 8);
    reply[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    INFO("flipped bit " << bit << " of " << reply.size() * 8);
    CHECK_FALSE(parseEchoReply(reply, false).has_value());
  }
}

TEST_CASE("A node is reachable only when both probes answered; the summary says which failed", "[unit][health]") {
  NodeProbe p;
  CHECK_FALSE(p.reachable());
  CHECK(summary(p) == "icmp: not probed yet, tcp: not probed yet");
  p.icmp = {true, 0.2, "ok"};
  p.tcp = {false, 0, "192.168.1.12:4240: Connection refused"};
  CHECK_FALSE(p.reachable());
  CHECK(summary(p) == "icmp ok, tcp: 192.168.1.12:4240: Connection refused");
  p.tcp = {true, 0.4, "ok"};
  CHECK(p.reachable());
  CHECK(summary(p) == "ok");
  p.icmp = {false, 0, "no echo reply in 1000 ms"};
  CHECK_FALSE(p.reachable());
  CHECK(summary(p) == "icmp: no echo reply in 1000 ms, tcp ok");
}
