// [bpf] ICMP in conntrack and policy: echo tracked by its identifier (request and reply on one entry, a request never
// taken for a reply), ICMP errors related to the flow they quote, CNP `icmps` entries (the type in the port slot of
// protocol ICMP), and policy changes reaching established connections (Cilium's deny truth table: ping denied after
// an L3 deny or a new default deny).
#include "lxc_fixture.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

constexpr uint32_t kIdA = 257;  // Fixture: identity = 256 + endpoint id
constexpr uint32_t kIdB = 258;

plexus_policy_key key(uint32_t identity, uint8_t dir, uint8_t proto = 0, int port = -1) {
  return policyKey(identity, dir, proto, port);
}
plexus_policy_value allow(uint32_t rule = 1) { return policyValue(rule); }
plexus_policy_value deny(uint32_t rule = 2) { return policyValue(rule, true); }

PacketSpec fromA() { return PacketSpec{kPodAMac, kNodeAMac, kPodA, kPodB}; }
PacketSpec fromB() { return PacketSpec{kPodBMac, kNodeBMac, kPodB, kPodA}; }

std::vector<uint8_t> udp(PacketSpec s, uint16_t sport, uint16_t dport) {
  s.proto = IPPROTO_UDP;
  s.sport = sport;
  s.dport = dport;
  return ipv4Packet(s);
}

std::vector<uint8_t> tcp(PacketSpec s, uint16_t sport, uint16_t dport, uint8_t flags) {
  s.proto = IPPROTO_TCP;
  s.sport = sport;
  s.dport = dport;
  s.tcp_flags = flags;
  return ipv4Packet(s);
}

// An ICMP message of any type with 4 zero bytes of rest-of-header.
std::vector<uint8_t> icmpType(PacketSpec s, uint8_t type) {
  s.proto = IPPROTO_ICMP;
  return ipv4WithPayload(s, {type, 0, 0, 0, 0, 0, 0, 0});
}

bool ctHas(Fixture& f, const plexus_ct4_key& k) {
  auto v = f.dp->lb().ct.lookup(k);
  REQUIRE(v.ok());
  return v->has_value();
}

// The tests run packets from the fixture's ifindex, which anti-spoofing ties to one pod; to send as pod B, the two
// endpoints swap ifindexes (and policies are set again: addEndpoint installs allow-all).
void sendAs(Fixture& f, bool b_sends, const datapath::PolicyEntries& a, const datapath::PolicyEntries& b) {
  f.addEndpoint(kPodB, b_sends ? kPodAIfindex : kPodBIfindex, 2, kPodBMac, kNodeBMac, 0);
  f.addEndpoint(kPodA, b_sends ? kPodBIfindex : kPodAIfindex, 1, kPodAMac, kNodeAMac, 0);
  REQUIRE(f.dp->policy().set(1, a).ok());
  REQUIRE(f.dp->policy().set(2, b).ok());
}

}  // namespace

TEST_CASE("ICMP echo is tracked by identifier: replies pass on their request's entry, nothing else does",
          "[bpf][policy][icmp]") {
  Fixture f;
  // A may ping B; nothing allows B to A, in either endpoint's policy.
  datapath::PolicyEntries a = {{key(kIdB, PLEXUS_DIR_EGRESS, IPPROTO_ICMP, 8), allow()}};
  datapath::PolicyEntries b = {{key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_ICMP, 8), allow()}};
  REQUIRE(f.dp->policy().set(1, a).ok());
  REQUIRE(f.dp->policy().set(2, b).ok());
  REQUIRE(f.run(f.dp->fromContainerFd(), icmpEcho(fromA(), true, 100)).retval == TC_ACT_REDIRECT);
  // Request: the identifier in the destination port slot, one entry per identifier.
  CHECK(ctHas(f, ctKey(kPodA, kPodB, 0, 100, IPPROTO_ICMP, PLEXUS_CT_EGRESS)));
  CHECK(ctHas(f, ctKey(kPodA, kPodB, 0, 100, IPPROTO_ICMP, PLEXUS_CT_INGRESS)));
  CHECK_FALSE(ctHas(f, ctKey(kPodA, kPodB, 0, 0, IPPROTO_ICMP, PLEXUS_CT_EGRESS)));

  sendAs(f, true, a, b);
  // The reply carries the identifier in the source slot: reversed, it is the request's tuple.
  CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(fromB(), false, 100)).retval == TC_ACT_REDIRECT);
  // A reply nobody asked for, and a request of B's reusing A's identifier (GHSA-c66w-hq56-4q97), are judged as
  // what they are, and nothing admits them.
  CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(fromB(), false, 101)).retval == TC_ACT_SHOT);
  CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(fromB(), true, 100)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_EGRESS) == 2);
}

TEST_CASE("ICMP errors are related to the flow they quote, not new connections", "[bpf][policy][icmp]") {
  Fixture f;
  // A may send UDP to B:53 and B admits it; no ICMP is allowed anywhere.
  datapath::PolicyEntries a = {{key(kIdB, PLEXUS_DIR_EGRESS, IPPROTO_UDP, 53), allow()}};
  datapath::PolicyEntries b = {{key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_UDP, 53), allow()}};
  REQUIRE(f.dp->policy().set(1, a).ok());
  REQUIRE(f.dp->policy().set(2, b).ok());
  auto query = udp(fromA(), 5000, 53);
  REQUIRE(f.run(f.dp->fromContainerFd(), query).retval == TC_ACT_REDIRECT);
  auto ping = icmpEcho(fromA(), true, 7);
  REQUIRE(f.run(f.dp->fromContainerFd(), ping).retval == TC_ACT_SHOT);  // no ICMP allowed: no entry either

  sendAs(f, true, a, b);
  // B's port unreachable about A's datagram (B's egress and A's ingress allow no ICMP): related, passes, and opens
  // nothing.
  CHECK(f.run(f.dp->fromContainerFd(), icmpError(fromB(), 3, 3, query)).retval == TC_ACT_REDIRECT);
  CHECK_FALSE(ctHas(f, ctKey(kPodB, kPodA, 0, 0, IPPROTO_ICMP, PLEXUS_CT_EGRESS)));
  // Fragmentation needed and time exceeded relate the same way.
  CHECK(f.run(f.dp->fromContainerFd(), icmpError(fromB(), 3, 4, query)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), icmpError(fromB(), 11, 0, query)).retval == TC_ACT_REDIRECT);
  // An error quoting a flow nobody opened (other ports), or a packet that was not A's (the error would not go back
  // to its source), is an ICMP packet like any other: nothing allows it.
  CHECK(f.run(f.dp->fromContainerFd(), icmpError(fromB(), 3, 3, udp(fromA(), 5001, 53))).retval == TC_ACT_SHOT);
  PacketSpec other = fromA();
  other.src = *Ipv4::parse("10.244.0.99");
  CHECK(f.run(f.dp->fromContainerFd(), icmpError(fromB(), 3, 3, udp(other, 5000, 53))).retval == TC_ACT_SHOT);
  // An error about a ping that was never admitted is not related either.
  CHECK(f.run(f.dp->fromContainerFd(), icmpError(fromB(), 11, 0, ping)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_EGRESS) == 4);  // with A's ping

  // B's reply, and an error A sends about it: related at A's egress and B's ingress through the connection the reply
  // belongs to (the quoted packet reversed is the admitted one).
  auto reply = udp(fromB(), 53, 5000);
  REQUIRE(f.run(f.dp->fromContainerFd(), reply).retval == TC_ACT_REDIRECT);
  sendAs(f, false, a, b);
  CHECK(f.run(f.dp->fromContainerFd(), icmpError(fromA(), 3, 3, reply)).retval == TC_ACT_REDIRECT);
}

TEST_CASE("icmps entries: the ICMP type in the port slot of protocol ICMP, allow and deny, both directions",
          "[bpf][policy][icmp]") {
  Fixture f;
  SECTION("ingress allow of echo requests only") {
    REQUIRE(f.dp->policy().set(2, {{key(0, PLEXUS_DIR_EGRESS), allow()},
                                   {key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_ICMP, 8), allow(30)}})
                .ok());
    CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(fromA(), true, 1)).retval == TC_ACT_REDIRECT);
    CHECK(f.run(f.dp->fromContainerFd(), icmpType(fromA(), 13)).retval == TC_ACT_SHOT);  // timestamp
    CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(fromA(), false, 2)).retval == TC_ACT_SHOT);  // type 0
    CHECK(f.run(f.dp->fromContainerFd(), tcp(fromA(), 1000, 80, 0x02)).retval == TC_ACT_SHOT);
    CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) == 3);
  }
  SECTION("type 0 (echo reply) is one type, not every type") {
    REQUIRE(f.dp->policy().set(2, {{key(0, PLEXUS_DIR_EGRESS), allow()},
                                   {key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_ICMP, 0), allow(31)}})
                .ok());
    CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(fromA(), false, 3)).retval == TC_ACT_REDIRECT);
    CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(fromA(), true, 4)).retval == TC_ACT_SHOT);
    // A later fragment has no ICMP header: no single type matches it.
    auto frag = icmpEcho(fromA(), false, 5);
    frag[ETH_HLEN + 6] = 0x00;
    frag[ETH_HLEN + 7] = 0x10;  // fragment offset 16 (x 8 bytes)
    CHECK(f.run(f.dp->fromContainerFd(), frag).retval == TC_ACT_SHOT);
  }
  SECTION("ingressDeny of echo requests beats an L3 allow") {
    REQUIRE(f.dp->policy().set(2, {{key(0, PLEXUS_DIR_EGRESS), allow()},
                                   {key(kIdA, PLEXUS_DIR_INGRESS), allow(32)},
                                   {key(0, PLEXUS_DIR_INGRESS, IPPROTO_ICMP, 8), deny(33)}})
                .ok());
    CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(fromA(), true, 6)).retval == TC_ACT_SHOT);
    CHECK(f.run(f.dp->fromContainerFd(), icmpType(fromA(), 13)).retval == TC_ACT_REDIRECT);
    CHECK(f.run(f.dp->fromContainerFd(), tcp(fromA(), 1001, 80, 0x02)).retval == TC_ACT_REDIRECT);
    CHECK(f.counter(PLEXUS_REASON_POLICY_DENY, PLEXUS_DIR_INGRESS) == 1);
  }
  SECTION("egress allow and egressDeny") {
    REQUIRE(f.dp->policy().set(1, {{key(0, PLEXUS_DIR_INGRESS), allow()},
                                   {key(kIdB, PLEXUS_DIR_EGRESS, IPPROTO_ICMP, 8), allow(34)},
                                   {key(kIdB, PLEXUS_DIR_EGRESS, IPPROTO_ICMP, 13), deny(35)}})
                .ok());
    CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(fromA(), true, 7)).retval == TC_ACT_REDIRECT);
    CHECK(f.run(f.dp->fromContainerFd(), icmpType(fromA(), 13)).retval == TC_ACT_SHOT);
    CHECK(f.run(f.dp->fromContainerFd(), udp(fromA(), 1002, 53)).retval == TC_ACT_SHOT);
    CHECK(f.counter(PLEXUS_REASON_POLICY_DENY, PLEXUS_DIR_EGRESS) == 1);
    CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_EGRESS) == 1);
  }
}

TEST_CASE("a truncated ICMP header is an invalid packet", "[bpf][policy][icmp]") {
  Fixture f;
  PacketSpec s = fromA();
  s.proto = IPPROTO_ICMP;
  CHECK(f.run(f.dp->fromContainerFd(), ipv4WithPayload(s, {8, 0, 0, 0})).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_INVALID_PACKET, PLEXUS_DIR_EGRESS) == 1);
}

TEST_CASE("a policy change reaches established connections: the next packet in their direction is judged again",
          "[bpf][policy][icmp]") {
  Fixture f;  // allow-all everywhere
  auto ping = icmpEcho(fromA(), true, 42);
  REQUIRE(f.run(f.dp->fromContainerFd(), ping).retval == TC_ACT_REDIRECT);
  REQUIRE(f.run(f.dp->fromContainerFd(), tcp(fromA(), 2000, 80, 0x02)).retval == TC_ACT_REDIRECT);
  REQUIRE(ctHas(f, ctKey(kPodA, kPodB, 0, 42, IPPROTO_ICMP, PLEXUS_CT_INGRESS)));
  datapath::PolicyEntries open_b = {{key(0, PLEXUS_DIR_EGRESS), allow()}, {key(0, PLEXUS_DIR_INGRESS), allow()}};

  SECTION("an L3 deny: the same ping (same identifier) and the open TCP connection are denied") {
    auto b = open_b;
    b.push_back({key(kIdA, PLEXUS_DIR_INGRESS), deny(40)});
    REQUIRE(f.dp->policy().set(2, b).ok());
    CHECK(f.run(f.dp->fromContainerFd(), ping).retval == TC_ACT_SHOT);
    CHECK(f.run(f.dp->fromContainerFd(), tcp(fromA(), 2000, 80, 0x10)).retval == TC_ACT_SHOT);
    CHECK(f.counter(PLEXUS_REASON_POLICY_DENY, PLEXUS_DIR_INGRESS) == 2);
    // The refused connections lose their entries at B; A's own (its egress admitted them) stay.
    CHECK_FALSE(ctHas(f, ctKey(kPodA, kPodB, 0, 42, IPPROTO_ICMP, PLEXUS_CT_INGRESS)));
    CHECK_FALSE(ctHas(f, ctKey(kPodA, kPodB, 2000, 80, IPPROTO_TCP, PLEXUS_CT_INGRESS)));
    CHECK(ctHas(f, ctKey(kPodA, kPodB, 0, 42, IPPROTO_ICMP, PLEXUS_CT_EGRESS)));
    // Deny lifted: the next ping is a new connection again, and allowed.
    REQUIRE(f.dp->policy().set(2, open_b).ok());
    CHECK(f.run(f.dp->fromContainerFd(), ping).retval == TC_ACT_REDIRECT);
  }
  SECTION("a new default deny (B's ingress selected, nothing allowed)") {
    REQUIRE(f.dp->policy().set(2, {{key(0, PLEXUS_DIR_EGRESS), allow()}}).ok());
    CHECK(f.run(f.dp->fromContainerFd(), ping).retval == TC_ACT_SHOT);
    CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) == 1);
  }
  SECTION("A's egress changes: judged at A") {
    REQUIRE(f.dp->policy().set(1, {{key(0, PLEXUS_DIR_INGRESS), allow()}, {key(0, PLEXUS_DIR_EGRESS), allow()},
                                   {key(kIdB, PLEXUS_DIR_EGRESS, IPPROTO_ICMP), deny(41)}})
                .ok());
    CHECK(f.run(f.dp->fromContainerFd(), ping).retval == TC_ACT_SHOT);
    CHECK(f.run(f.dp->fromContainerFd(), tcp(fromA(), 2000, 80, 0x10)).retval == TC_ACT_REDIRECT);
    CHECK(f.counter(PLEXUS_REASON_POLICY_DENY, PLEXUS_DIR_EGRESS) == 1);
  }
  SECTION("a change that still allows the connection changes nothing for it") {
    auto b = open_b;
    b.push_back({key(0, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 22), deny(42)});
    REQUIRE(f.dp->policy().set(2, b).ok());
    CHECK(f.run(f.dp->fromContainerFd(), ping).retval == TC_ACT_REDIRECT);
    CHECK(f.run(f.dp->fromContainerFd(), tcp(fromA(), 2000, 80, 0x10)).retval == TC_ACT_REDIRECT);
    CHECK(ctHas(f, ctKey(kPodA, kPodB, 0, 42, IPPROTO_ICMP, PLEXUS_CT_INGRESS)));
  }
}

TEST_CASE("an ICMP error opens no conntrack entry even when its quote names no flow: the peer's ICMP is still judged",
          "[bpf][policy][icmp]") {
  // Found by packet fuzzing (packet_fuzz_test.cc, seed 42): an error whose quote did not parse, or named another
  // source, opened an EGRESS entry with ports 0, and every later non-echo ICMP message of the peer passed the
  // endpoint's ingress as its reply, unjudged.
  Fixture f;
  REQUIRE(f.dp->policy().set(1, {{key(0, PLEXUS_DIR_EGRESS), allow()}}).ok());  // A sends anything, admits nothing
  PacketSpec s = fromA();
  s.proto = IPPROTO_ICMP;
  PacketSpec other = fromB();  // quoted: a packet from another address to A
  other.src = *Ipv4::parse("10.244.0.99");
  const std::vector<std::vector<uint8_t>> errors = {
      ipv4WithPayload(s, {3, 1, 0, 0, 0, 0, 0, 0, 0xde, 0xad}),  // a quote too short to parse
      icmpError(fromA(), 11, 0, udp(other, 53, 5353)),           // a quote of a packet B did not send
  };
  for (const auto& err : errors) {
    CHECK(f.run(f.dp->fromContainerFd(), err).retval == TC_ACT_REDIRECT);  // A's egress admits it
  }
  // B's timestamp request and redirect are no reply of anything A sent: A's ingress refuses them.
  CHECK(f.run(f.dp->toContainerFd(), icmpType(fromB(), 13)).retval == TC_ACT_SHOT);
  CHECK(f.run(f.dp->toContainerFd(), icmpType(fromB(), 5)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) == 2);
  // A request A sent does open an entry, and its reply passes on it.
  CHECK(f.run(f.dp->fromContainerFd(), icmpType(fromA(), 13)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->toContainerFd(), icmpType(fromB(), 14)).retval == TC_ACT_OK);
}
