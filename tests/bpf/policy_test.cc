// [bpf] policy enforcement in bpf_lxc: the verdict contract of bpf/include/plexus/policy.h, conntrack for
// replies, ingress judged before redirect_peer, and the two drop reasons.
#include <chrono>
#include <thread>

#include "lxc_fixture.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

constexpr uint32_t kIdA = 257;  // Fixture: identity = 256 + endpoint id
constexpr uint32_t kIdB = 258;

// Port 0: every port.
plexus_policy_key key(uint32_t identity, uint8_t dir, uint8_t proto = 0, uint16_t port = 0) {
  return policyKey(identity, dir, proto, port ? port : -1);
}
plexus_policy_value allow(uint32_t rule = 1) { return policyValue(rule); }
plexus_policy_value deny(uint32_t rule = 2) { return policyValue(rule, true); }

datapath::PolicyEntries allowEgressAll() { return {{key(0, PLEXUS_DIR_EGRESS), allow()}}; }

std::vector<uint8_t> aToB(uint16_t sport, uint16_t dport, uint8_t flags = 0x02, uint8_t proto = IPPROTO_TCP) {
  PacketSpec s{kPodAMac, kNodeAMac, kPodA, kPodB, proto};
  s.sport = sport;
  s.dport = dport;
  s.tcp_flags = flags;
  return ipv4Packet(s);
}

}  // namespace

TEST_CASE("ingress policy of a same-node destination is enforced before redirect_peer", "[bpf][policy]") {
  Fixture f;
  // B admits TCP/80 from A only.
  datapath::PolicyEntries b = allowEgressAll();
  b.push_back({key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 80), allow(10)});
  REQUIRE(f.dp->policy().set(2, b).ok());

  CHECK(f.run(f.dp->fromContainerFd(), aToB(1000, 80)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(1001, 81)).retval == TC_ACT_SHOT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(1002, 80, 0, IPPROTO_UDP)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) == 2);
}

TEST_CASE("egress policy of the sender is enforced, and the installed state reads back", "[bpf][policy]") {
  Fixture f;
  datapath::PolicyEntries a = {{key(0, PLEXUS_DIR_INGRESS), allow()},
                               {key(kIdB, PLEXUS_DIR_EGRESS, IPPROTO_UDP), allow(11)}};
  REQUIRE(f.dp->policy().set(1, a).ok());
  auto back = f.dp->policy().get(1);
  REQUIRE(back.ok());
  CHECK(back->size() == 2);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(2000, 53, 0, IPPROTO_UDP)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(2001, 80)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_EGRESS) == 1);
}

TEST_CASE("deny beats allow, whichever lookup finds it", "[bpf][policy]") {
  Fixture f;
  // Allow everything from A, but deny TCP/22 from any peer.
  datapath::PolicyEntries b = allowEgressAll();
  b.push_back({key(kIdA, PLEXUS_DIR_INGRESS), allow(20)});
  b.push_back({key(0, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 22), deny(21)});
  REQUIRE(f.dp->policy().set(2, b).ok());
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3000, 80)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3001, 22)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENY, PLEXUS_DIR_INGRESS) == 1);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) == 0);
}

TEST_CASE("a peer's only entry covering every port decides from its summary, rule included", "[bpf][policy]") {
  Fixture f;
  // B: any peer allowed, but A denied outright (A's one ingress entry; its summary carries the verdict, S_INLINE).
  datapath::PolicyEntries b = allowEgressAll();
  b.push_back({key(0, PLEXUS_DIR_INGRESS), allow(30)});
  b.push_back({key(kIdA, PLEXUS_DIR_INGRESS), deny(31)});
  REQUIRE(f.dp->policy().set(2, b).ok());
  drainEvents(f.dp->eventsFd());
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3100, 80)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENY, PLEXUS_DIR_INGRESS) == 1);
  auto events = drainEvents(f.dp->eventsFd());
  REQUIRE(events.size() == 1);
  CHECK(events[0].rule_id == 31);
  // Turned into an allow: delivered, and the new connection's event names that rule.
  b.back().second = allow(32);
  REQUIRE(f.dp->policy().set(2, b).ok());
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3101, 80)).retval == TC_ACT_REDIRECT);
  events = drainEvents(f.dp->eventsFd());
  REQUIRE(events.size() == 1);
  CHECK(events[0].rule_id == 32);
}

TEST_CASE("replies of an allowed connection pass although policy would not admit them", "[bpf][policy]") {
  Fixture f;
  // A may talk to B:80; B admits it. Nothing allows B to A in either direction.
  REQUIRE(f.dp->policy().set(1, {{key(kIdB, PLEXUS_DIR_EGRESS, IPPROTO_TCP, 80), allow()}}).ok());
  REQUIRE(f.dp->policy().set(2, {{key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 80), allow()}}).ok());
  REQUIRE(f.run(f.dp->fromContainerFd(), aToB(4000, 80)).retval == TC_ACT_REDIRECT);
  // The reply comes out of B's veth; move B onto the test ifindex for anti-spoofing.
  f.addEndpoint(kPodB, kPodAIfindex, 2, kPodBMac, kNodeBMac, 0);
  f.addEndpoint(kPodA, kPodBIfindex, 1, kPodAMac, kNodeAMac, 0);
  REQUIRE(f.dp->policy().set(1, {{key(kIdB, PLEXUS_DIR_EGRESS, IPPROTO_TCP, 80), allow()}}).ok());
  REQUIRE(f.dp->policy().set(2, {{key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 80), allow()}}).ok());
  PacketSpec reply{kPodBMac, kNodeBMac, kPodB, kPodA, IPPROTO_TCP};
  reply.sport = 80;
  reply.dport = 4000;
  reply.tcp_flags = 0x12;
  CHECK(f.run(f.dp->fromContainerFd(), ipv4Packet(reply)).retval == TC_ACT_REDIRECT);
  // A new connection from B to A is still refused.
  reply.sport = 5555;
  reply.tcp_flags = 0x02;
  CHECK(f.run(f.dp->fromContainerFd(), ipv4Packet(reply)).retval == TC_ACT_SHOT);
}

TEST_CASE("an endpoint without a policy map drops everything: never fail open", "[bpf][policy]") {
  Fixture f;
  REQUIRE(f.dp->policy().clear(1).ok());
  CHECK(f.run(f.dp->fromContainerFd(), aToB(6000, 80)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_EGRESS) == 1);
}

TEST_CASE("to-container judges traffic the stack delivers, by the source's ipcache identity", "[bpf][policy]") {
  Fixture f;
  // A receives from the host on TCP/8080 only. The test runs on A's ifindex.
  plexus_ipcache_key hk{};
  hk.prefixlen = 32;
  hk.ip = kGateway.networkOrder();
  plexus_ipcache_value hv{};
  hv.identity = PLEXUS_IDENTITY_HOST;
  REQUIRE(f.dp->ipcache().update(hk, hv).ok());
  REQUIRE(f.dp->policy().set(1, {{key(PLEXUS_IDENTITY_HOST, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 8080), allow()}}).ok());
  PacketSpec s{kNodeAMac, kPodAMac, kGateway, kPodA, IPPROTO_TCP};
  s.dport = 8080;
  CHECK(f.run(f.dp->toContainerFd(), ipv4Packet(s)).retval == TC_ACT_OK);
  s.dport = 9090;
  CHECK(f.run(f.dp->toContainerFd(), ipv4Packet(s)).retval == TC_ACT_SHOT);
  // World traffic (no ipcache entry) is identity 2: not admitted.
  PacketSpec w{kNodeAMac, kPodAMac, *Ipv4::parse("198.51.100.7"), kPodA, IPPROTO_TCP};
  w.dport = 8080;
  CHECK(f.run(f.dp->toContainerFd(), ipv4Packet(w)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) == 2);
}

TEST_CASE("port ranges are prefixes: a /8 port prefix covers 256 ports with one entry", "[bpf][policy]") {
  Fixture f;
  datapath::PolicyEntries b = allowEgressAll();
  auto k = key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 0x1000);  // 4096..4351
  k.prefixlen = PLEXUS_POLICY_PROTO_PREFIX + 8;
  b.push_back({k, allow()});
  REQUIRE(f.dp->policy().set(2, b).ok());
  CHECK(f.run(f.dp->fromContainerFd(), aToB(7000, 4096)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(7001, 4351)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(7002, 4352)).retval == TC_ACT_SHOT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(7003, 4095)).retval == TC_ACT_SHOT);
}

TEST_CASE("audit mode: a packet policy would drop passes and is reported as AUDIT with the drop's reason",
          "[bpf][policy][audit]") {
  datapath::LxcConfig cfg;
  cfg.policy_audit = true;
  Fixture f(cfg);
  // B admits TCP/80 from A only; a deny rule refuses A's TCP/81.
  datapath::PolicyEntries b = allowEgressAll();
  b.push_back({key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 80), allow(10)});
  b.push_back({key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 81), deny(11)});
  REQUIRE(f.dp->policy().set(2, b).ok());
  drainEvents(f.dp->eventsFd());

  CHECK(f.run(f.dp->fromContainerFd(), aToB(1000, 80)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(1001, 82)).retval == TC_ACT_REDIRECT);  // no rule: would be dropped
  CHECK(f.run(f.dp->fromContainerFd(), aToB(1002, 81)).retval == TC_ACT_REDIRECT);  // denied: would be dropped
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) == 0);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENY, PLEXUS_DIR_INGRESS) == 0);
  auto events = drainEvents(f.dp->eventsFd());
  REQUIRE(events.size() == 3);
  CHECK(events[0].verdict == PLEXUS_VERDICT_FORWARDED);
  CHECK(events[1].verdict == PLEXUS_VERDICT_AUDIT);
  CHECK(events[1].reason == PLEXUS_REASON_POLICY_DENIED);
  CHECK(ntohs(events[1].dport) == 82);
  CHECK(events[2].verdict == PLEXUS_VERDICT_AUDIT);
  CHECK(events[2].reason == PLEXUS_REASON_POLICY_DENY);

  // Without audit mode the same packets are dropped.
  Fixture enforcing;
  REQUIRE(enforcing.dp->policy().set(2, b).ok());
  CHECK(enforcing.run(enforcing.dp->fromContainerFd(), aToB(1001, 82)).retval == TC_ACT_SHOT);
}

namespace {
uint32_t innerId(Fixture& f, uint32_t slot) {
  uint32_t id = 0;
  return bpf_map_lookup_elem(f.dp->policy().outerFd(), &slot, &id) == 0 ? id : 0;
}
}  // namespace

TEST_CASE("spare policy tries: inserted ahead at free ids, filled in place by a new endpoint, never over a live one",
          "[bpf][policy]") {
  Fixture f;  // endpoints 1 and 2 have their tries
  auto& maps = f.dp->policy();
  uint32_t live_a = innerId(f, 1);
  REQUIRE(live_a != 0);
  maps.keepSpares(2);
  for (int i = 0; i < 100 && maps.spares() < 2; ++i) {  // bounded: 10 s
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(maps.spares() == 2);
  CHECK(innerId(f, 1) == live_a);  // untouched
  uint32_t spare3 = innerId(f, 3);
  CHECK(spare3 != 0);
  CHECK(innerId(f, 4) != 0);
  // Endpoint 3 arrives: its entries go into the spare trie, which stays in place.
  datapath::PolicyEntries entries = allowEgressAll();
  entries.push_back({key(kIdA, PLEXUS_DIR_INGRESS, IPPROTO_TCP, 80), allow(7)});
  REQUIRE(maps.set(3, entries).ok());
  CHECK(innerId(f, 3) == spare3);
  auto got = maps.get(3);
  REQUIRE(got.ok());
  CHECK(got->size() == entries.size());
  // An update of a live endpoint still swaps a whole new trie in.
  REQUIRE(maps.set(3, allowEgressAll()).ok());
  CHECK(innerId(f, 3) != spare3);
  // The thread makes another spare at the next free id; clearing a spare id empties its slot.
  for (int i = 0; i < 100 && innerId(f, 5) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(innerId(f, 5) != 0);
  maps.keepSpares(0);  // no more refills: a cleared spare id stays empty
  REQUIRE(maps.clear(4).ok());
  CHECK(innerId(f, 4) == 0);
}

TEST_CASE("an allowed connection keeps its verdict in conntrack until the policy epoch moves on", "[bpf][policy]") {
  Fixture f;  // allow-all everywhere
  REQUIRE(f.run(f.dp->fromContainerFd(), aToB(3000, 80, 0x02)).retval == TC_ACT_REDIRECT);  // SYN: judged, kept
  uint32_t epoch = f.dp->verdictEpoch().current();
  REQUIRE(epoch != 0);
  for (uint8_t dir : {PLEXUS_CT_EGRESS, PLEXUS_CT_INGRESS}) {  // A's egress and B's ingress (same node)
    auto v = f.dp->lb().ct.lookup(ctKey(kPodA, kPodB, 3000, 80, IPPROTO_TCP, dir));
    REQUIRE(v.ok());
    REQUIRE(v->has_value());
    CHECK((*v)->verdict_epoch == epoch);
  }
  // B's ingress now refuses A, written past the epoch (a policy map without one): the open connection keeps the
  // verdict it was given, a new connection is judged by the new policy.
  datapath::PolicyMaps unversioned(datapath::UniqueFd(dup(f.dp->policy().outerFd())), f.dp->policy().capacity());
  datapath::PolicyEntries closed = allowEgressAll();
  closed.push_back({key(kIdA, PLEXUS_DIR_INGRESS), deny(50)});
  REQUIRE(unversioned.set(2, closed).ok());
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3000, 80, 0x10)).retval == TC_ACT_REDIRECT);
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3001, 80, 0x02)).retval == TC_ACT_SHOT);
  // The epoch moves on (as every write through the agent's writers does): the open connection is judged again.
  REQUIRE(f.dp->verdictEpoch().bump().ok());
  CHECK(f.run(f.dp->fromContainerFd(), aToB(3000, 80, 0x10)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENY, PLEXUS_DIR_INGRESS) == 2);
  // A write through the datapath's own policy maps moves it by itself.
  uint32_t before = f.dp->verdictEpoch().current();
  REQUIRE(f.dp->policy().set(2, allowEgressAll()).ok());
  CHECK(f.dp->verdictEpoch().current() == before + 1);
}
