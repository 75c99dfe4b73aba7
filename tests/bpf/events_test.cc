// [bpf] flow events: what reaches the ring buffer under monitor aggregation, and what a full ring does.
#include "lxc_fixture.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "plexus/datapath/event_reader.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

std::vector<plexus_flow_event> drain(Fixture& f) { return drainEvents(f.dp->eventsFd()); }

std::vector<uint8_t> aToB(uint16_t sport, uint16_t dport, uint8_t flags) {
  PacketSpec s{kPodAMac, kNodeAMac, kPodA, kPodB, IPPROTO_TCP};
  s.sport = sport;
  s.dport = dport;
  s.tcp_flags = flags;
  return ipv4Packet(s);
}

}  // namespace

TEST_CASE("new connections and TCP flag changes make events, repeated packets do not", "[bpf][events]") {
  Fixture f;
  drain(f);
  f.run(f.dp->fromContainerFd(), aToB(1111, 80, 0x02));  // SYN: new connection
  f.run(f.dp->fromContainerFd(), aToB(1111, 80, 0x10));  // ACK: a new flag
  f.run(f.dp->fromContainerFd(), aToB(1111, 80, 0x10));  // ACK again: nothing new
  f.run(f.dp->fromContainerFd(), aToB(1111, 80, 0x10));
  auto events = drain(f);
  REQUIRE(events.size() == 2);
  const auto& e = events[0];
  CHECK(e.verdict == PLEXUS_VERDICT_FORWARDED);
  CHECK(e.reason == PLEXUS_REASON_FORWARDED);
  CHECK(e.direction == PLEXUS_DIR_EGRESS);
  CHECK(Ipv4::fromNetwork(e.saddr) == kPodA);
  CHECK(Ipv4::fromNetwork(e.daddr) == kPodB);
  CHECK(ntohs(e.sport) == 1111);
  CHECK(ntohs(e.dport) == 80);
  CHECK(e.proto == IPPROTO_TCP);
  CHECK(e.tcp_flags == 0x02);
  CHECK(e.endpoint_id == 1);
  CHECK(e.src_identity == 257);
  CHECK(e.dst_identity == 258);
  CHECK(e.is_reply == 0);
  CHECK(events[1].tcp_flags == 0x10);
  CHECK(f.dp->lostEvents() == 0);
}

TEST_CASE("every drop makes an event with its reason", "[bpf][events]") {
  Fixture f;
  REQUIRE(f.dp->policy().set(2, {}).ok());  // B admits nothing
  drain(f);
  for (int i = 0; i < 3; ++i) {
    f.run(f.dp->fromContainerFd(), aToB(2222, 443, 0x02));
  }
  auto events = drain(f);
  REQUIRE(events.size() == 3);
  for (const auto& e : events) {
    CHECK(e.verdict == PLEXUS_VERDICT_DROPPED);
    CHECK(e.reason == PLEXUS_REASON_POLICY_DENIED);
    CHECK(e.direction == PLEXUS_DIR_INGRESS);
    CHECK(e.endpoint_id == 2);
    CHECK(ntohs(e.dport) == 443);
  }
}

TEST_CASE("without aggregation every packet makes an event; a full ring counts lost events", "[bpf][events]") {
  datapath::LxcConfig cfg;
  cfg.monitor_aggregation = PLEXUS_AGGREGATION_NONE;
  Fixture f(cfg);
  drain(f);
  // One event is 48 bytes plus an 8-byte header: 4 MiB hold about 75k. Send more without draining.
  constexpr int kPackets = 80000;
  auto pkt = aToB(3333, 80, 0x10);
  // (The repeats reuse one skb whose TTL the redirect decrements, so most of them end as TTL drops: every one
  // of them still makes an event.)
  REQUIRE(progRun(f.dp->fromContainerFd(), pkt, 0, kPackets).err == 0);
  uint64_t lost = f.dp->lostEvents();
  CHECK(lost > 0);
  // With the ring full, forwarding goes on.
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3334, 80, 0x02)).retval == TC_ACT_REDIRECT);
  CHECK(f.dp->lostEvents() == lost + 1);
  lost += 1;
  auto events = drain(f);
  CHECK(lost > 0);
  CHECK(events.size() + lost == kPackets + 1);
}

TEST_CASE("events name the policy rule that decided, and carry an ICMP message's type and code", "[bpf][events]") {
  Fixture f;
  const auto& k = policyKey;
  const auto& v = policyValue;
  // A's egress: allowed by rule 41 (egress to any); B's ingress: TCP 80 from A by rule 42, TCP 443 denied by 43,
  // echo requests from A by rule 44.
  REQUIRE(f.dp->policy().set(1, {{k(0, PLEXUS_DIR_EGRESS, 0, -1), v(41, false)}}).ok());
  REQUIRE(f.dp->policy().set(2, {{k(257, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 80), v(42, false)},
                                 {k(0, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 443), v(43, true)},
                                 {k(257, PLEXUS_DIR_INGRESS, IPPROTO_ICMP, 8), v(44, false)}})
              .ok());
  drain(f);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3000, 80, 0x02)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3001, 443, 0x02)).retval == TC_ACT_SHOT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3002, 8080, 0x02)).retval == TC_ACT_SHOT);
  CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(PacketSpec{kPodAMac, kNodeAMac, kPodA, kPodB}, true, 9)).retval ==
        TC_ACT_REDIRECT);
  auto events = drain(f);
  REQUIRE(events.size() == 4);
  // A forwarded same-node connection's event names the ingress rule that admitted it (else the egress rule).
  CHECK(events[0].verdict == PLEXUS_VERDICT_FORWARDED);
  CHECK(events[0].rule_id == 42);
  CHECK((events[0].flags & PLEXUS_EVENT_F_ICMP) == 0);
  CHECK(events[1].reason == PLEXUS_REASON_POLICY_DENY);
  CHECK(events[1].rule_id == 43);
  CHECK(events[2].reason == PLEXUS_REASON_POLICY_DENIED);  // no rule admits it: no rule to name
  CHECK(events[2].rule_id == 0);
  CHECK(events[3].proto == IPPROTO_ICMP);
  CHECK(events[3].rule_id == 44);
  CHECK((events[3].flags & PLEXUS_EVENT_F_ICMP) != 0);
  CHECK(events[3].icmp_type == 8);
  CHECK(events[3].icmp_code == 0);
  CHECK(events[3].pad[0] == 0);
}

TEST_CASE("a reply direction's first packet makes an event without TCP flags too (UDP, ICMP echo)", "[bpf][events]") {
  Fixture f;
  drain(f);
  PacketSpec udp{kPodAMac, kNodeAMac, kPodA, kPodB, IPPROTO_UDP};
  udp.sport = 5000;
  udp.dport = 53;
  PacketSpec answer{kPodBMac, kNodeBMac, kPodB, kPodA, IPPROTO_UDP};
  answer.sport = 53;
  answer.dport = 5000;
  CHECK(f.run(f.dp->fromContainerFd(), ipv4Packet(udp)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), ipv4Packet(udp)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(PacketSpec{kPodAMac, kNodeAMac, kPodA, kPodB}, true, 77)).retval ==
        TC_ACT_REDIRECT);
  // B answers: the test runs packets from one ifindex, which anti-spoofing ties to one pod, so the pods swap theirs.
  f.addEndpoint(kPodB, kPodAIfindex, 2, kPodBMac, kNodeBMac, 0);
  f.addEndpoint(kPodA, kPodBIfindex, 1, kPodAMac, kNodeAMac, 0);
  for (int i = 0; i < 2; ++i) {
    CHECK(f.run(f.dp->fromContainerFd(), ipv4Packet(answer)).retval == TC_ACT_REDIRECT);
    CHECK(f.run(f.dp->fromContainerFd(), icmpEcho(PacketSpec{kPodBMac, kNodeBMac, kPodB, kPodA}, false, 77)).retval ==
          TC_ACT_REDIRECT);
  }
  auto events = drain(f);
  REQUIRE(events.size() == 4);  // the request's first packet, the echo request, the first answer, the first echo reply
  CHECK(events[0].is_reply == 0);
  CHECK(events[0].proto == IPPROTO_UDP);
  CHECK(events[1].icmp_type == 8);
  CHECK(events[2].is_reply == 1);
  CHECK(events[2].proto == IPPROTO_UDP);
  CHECK(events[3].is_reply == 1);
  CHECK(events[3].icmp_type == 0);
}

TEST_CASE("the agent's event reader hands over every event: by itself while idle, and all of them at flush",
          "[bpf][events]") {
  datapath::LxcConfig cfg;
  cfg.monitor_aggregation = PLEXUS_AGGREGATION_NONE;
  Fixture f(cfg);
  drain(f);
  std::atomic<uint64_t> seen{0};
  datapath::EventReader reader;
  REQUIRE(reader.start(f.dp->eventsFd(), [&seen](const plexus_flow_event&) { ++seen; }).ok());
  // Idle first, so the reader has lengthened its period; then a burst without flush: it still drains it by itself.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  constexpr int kBurst = 500;
  REQUIRE(progRun(f.dp->fromContainerFd(), aToB(4444, 80, 0x10), 0, kBurst).err == 0);
  for (int i = 0; i < 100 && seen < kBurst; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(seen == kBurst);
  // flush(): what the ring holds when it is called is handed over before it returns.
  for (int round = 0; round < 5; ++round) {
    uint64_t before = seen;
    REQUIRE(progRun(f.dp->fromContainerFd(), aToB(4445, 80, 0x10), 0, 64).err == 0);
    reader.flush();
    CHECK(seen == before + 64);
  }
  reader.stop();
  CHECK(f.dp->lostEvents() == 0);
}
