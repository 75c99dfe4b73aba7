// [bpf] tests of the per-packet service path in bpf_lxc: DNAT with conntrack, reverse NAT of replies, Maglev
// and affinity selection, terminating backends, and the refusal of services without backends.
#include <linux/icmp.h>

#include <fstream>

#include "lxc_fixture.h"
#include "plexus/datapath/host_datapath.h"
#include "plexus/lb/planner.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

const Ipv4 kVip = *Ipv4::parse("10.96.0.10");
const Ipv4 kRemoteBackend = *Ipv4::parse("10.244.0.77");
constexpr uint16_t kVipPort = 80;
constexpr uint16_t kBackendPort = 8080;
constexpr uint16_t kRevNat = 7;

struct ServiceSpec {
  std::vector<std::pair<uint32_t, Ipv4>> backends;  // id, address (all :8080)
  std::vector<uint32_t> slots;                      // backend ids in the selectable slots
  uint16_t flags = PLEXUS_SVC_F_CLUSTERIP;
  uint32_t affinity_timeout = 0;
  uint8_t proto = IPPROTO_TCP;
};

plexus_lb4_key svcKey(uint16_t slot, uint8_t proto) {
  plexus_lb4_key k{};
  k.address = kVip.networkOrder();
  k.dport = htons(kVipPort);
  k.backend_slot = slot;
  k.proto = proto;
  k.scope = PLEXUS_LB_SCOPE_EXTERNAL;
  return k;
}

void installService(Fixture& f, const ServiceSpec& s) {
  auto& lb = f.dp->lb();
  for (const auto& [id, addr] : s.backends) {
    plexus_lb4_backend b{};
    b.address = addr.networkOrder();
    b.port = htons(kBackendPort);
    b.proto = s.proto;
    b.state = PLEXUS_BACKEND_ACTIVE;
    REQUIRE(lb.backends.update(id, b).ok());
  }
  plexus_lb4_service master{};
  master.count = static_cast<uint16_t>(s.slots.size());
  master.rev_nat_index = kRevNat;
  master.flags = s.flags;
  master.affinity_timeout = s.affinity_timeout;
  REQUIRE(lb.services.update(svcKey(0, s.proto), master).ok());
  for (size_t i = 0; i < s.slots.size(); ++i) {
    plexus_lb4_service slot{};
    slot.backend_id = s.slots[i];
    slot.rev_nat_index = kRevNat;
    REQUIRE(lb.services.update(svcKey(static_cast<uint16_t>(i + 1), s.proto), slot).ok());
  }
  plexus_lb4_reverse_nat rn{};
  rn.address = kVip.networkOrder();
  rn.port = htons(kVipPort);
  REQUIRE(lb.revnat.update(kRevNat, rn).ok());
}

void setBackendState(Fixture& f, uint32_t id, uint8_t state) {
  auto b = f.dp->lb().backends.lookup(id);
  REQUIRE(b.ok());
  REQUIRE(b->has_value());
  auto v = **b;
  v.state = state;
  REQUIRE(f.dp->lb().backends.update(id, v).ok());
}

const iphdr* ipOf(const std::vector<uint8_t>& pkt) { return reinterpret_cast<const iphdr*>(pkt.data() + 14); }
const tcphdr* tcpOf(const std::vector<uint8_t>& pkt) {
  return reinterpret_cast<const tcphdr*>(pkt.data() + 14 + sizeof(iphdr));
}

std::vector<uint8_t> clientPacket(uint16_t sport, uint8_t flags, uint8_t proto = IPPROTO_TCP, Ipv4 vip = kVip) {
  PacketSpec s{kPodAMac, kNodeAMac, kPodA, vip, proto};
  s.sport = sport;
  s.dport = kVipPort;
  s.tcp_flags = flags;
  return withL4Checksum(ipv4Packet(s));
}

std::optional<plexus_ct4_value> ctEntry(Fixture& f, Ipv4 s, Ipv4 d, uint16_t sp, uint16_t dp, uint8_t dir) {
  auto v = f.dp->lb().ct.lookup(ctKey(s, d, sp, dp, IPPROTO_TCP, dir));
  REQUIRE(v.ok());
  return *v;
}

// A second frontend, 10.96.0.11 (reverse NAT index 8), on the same backend 1 (pod B).
Ipv4 installFrontendB(Fixture& f) {
  const Ipv4 vip_b = *Ipv4::parse("10.96.0.11");
  auto& lb = f.dp->lb();
  plexus_lb4_service master{};
  master.count = 1;
  master.rev_nat_index = 8;
  master.flags = PLEXUS_SVC_F_CLUSTERIP;
  plexus_lb4_service slot{};
  slot.backend_id = 1;
  slot.rev_nat_index = 8;
  REQUIRE(lb.services.update(lb::makeLbKey(vip_b, kVipPort, IPPROTO_TCP, PLEXUS_LB_SCOPE_EXTERNAL, 1), slot).ok());
  REQUIRE(lb.services.update(lb::makeLbKey(vip_b, kVipPort, IPPROTO_TCP, PLEXUS_LB_SCOPE_EXTERNAL, 0), master).ok());
  plexus_lb4_reverse_nat rn{};
  rn.address = vip_b.networkOrder();
  rn.port = htons(kVipPort);
  REQUIRE(lb.revnat.update(8, rn).ok());
  return vip_b;
}

}  // namespace

TEST_CASE("a packet to a ClusterIP is translated to a backend with valid checksums and tracked", "[bpf][lb]") {
  Fixture f;
  installService(f, {{{1, kPodB}}, {1}});
  auto r = f.run(f.dp->fromContainerFd(), clientPacket(40000, 0x02));
  // The backend is pod B on this node: translated, then delivered with redirect_peer.
  REQUIRE(r.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(r.out)->daddr) == kPodB);
  CHECK(ntohs(tcpOf(r.out)->dest) == kBackendPort);
  CHECK(ipChecksum(ipOf(r.out), sizeof(iphdr)) == 0);
  CHECK(l4Checksum(r.out) == 0);
  CHECK(macAt(r.out, 0) == kPodBMac);
  auto fwd = ctEntry(f, kPodA, kVip, 40000, kVipPort, PLEXUS_CT_SERVICE);
  REQUIRE(fwd.has_value());
  CHECK(fwd->backend_id == 1);
  auto rev = ctEntry(f, kPodB, kPodA, kBackendPort, 40000, PLEXUS_CT_REVERSE);
  REQUIRE(rev.has_value());
  CHECK(rev->rev_nat_index == kRevNat);
  CHECK(f.counter(PLEXUS_REASON_SERVICE_TRANSLATED, PLEXUS_DIR_EGRESS) == 1);
}

TEST_CASE("a live connection opened straight to an address keeps going there when a frontend appears on it",
          "[bpf][lb]") {
  // As kube-proxy's conntrack keeps a connection's (absence of) translation: the pod's egress entry of the untranslated
  // tuple tells from-container it is no service flow, and the service lookup is skipped for it.
  Fixture f;
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40100, 0x02)).retval == TC_ACT_OK);  // no frontend: the stack's
  REQUIRE(ctEntry(f, kPodA, kVip, 40100, kVipPort, PLEXUS_CT_EGRESS).has_value());
  installService(f, {{{1, kPodB}}, {1}});
  auto next = f.run(f.dp->fromContainerFd(), clientPacket(40100, 0x10));
  CHECK(next.retval == TC_ACT_OK);
  CHECK(Ipv4::fromNetwork(ipOf(next.out)->daddr) == kVip);
  CHECK_FALSE(ctEntry(f, kPodA, kVip, 40100, kVipPort, PLEXUS_CT_SERVICE).has_value());
  // A new connection is translated; so is the old tuple once it closed (a reset) and opens again.
  auto fresh = f.run(f.dp->fromContainerFd(), clientPacket(40101, 0x02));
  CHECK(fresh.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(fresh.out)->daddr) == kPodB);
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40100, 0x04)).retval == TC_ACT_OK);
  auto again = f.run(f.dp->fromContainerFd(), clientPacket(40100, 0x02));
  CHECK(again.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(again.out)->daddr) == kPodB);
  // Its later packets stay translated: the egress entry of the old tuple is closing, and the pod's live entry is
  // now the backend's tuple.
  auto later = f.run(f.dp->fromContainerFd(), clientPacket(40100, 0x10));
  CHECK(later.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(later.out)->daddr) == kPodB);
}

TEST_CASE("replies from the backend carry the frontend address again", "[bpf][lb]") {
  Fixture f;
  installService(f, {{{1, kPodB}}, {1}});
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40001, 0x02)).retval == TC_ACT_REDIRECT);
  // The test runs every program on one ifindex; move pod B there so its reply passes anti-spoofing.
  f.addEndpoint(kPodB, kPodAIfindex, 2, kPodBMac, kNodeBMac, 0);
  f.addEndpoint(kPodA, kPodBIfindex, 1, kPodAMac, kNodeAMac, 0);
  PacketSpec s{kPodBMac, kNodeBMac, kPodB, kPodA, IPPROTO_TCP};
  s.sport = kBackendPort;
  s.dport = 40001;
  s.tcp_flags = 0x12;  // SYN-ACK
  auto r = f.run(f.dp->fromContainerFd(), withL4Checksum(ipv4Packet(s)));
  REQUIRE(r.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(r.out)->saddr) == kVip);
  CHECK(ntohs(tcpOf(r.out)->source) == kVipPort);
  CHECK(ipChecksum(ipOf(r.out), sizeof(iphdr)) == 0);
  CHECK(l4Checksum(r.out) == 0);
}

TEST_CASE("a new direct connection on a tuple a translated flow used does not get its replies rewritten",
          "[bpf][lb]") {
  // Pod A reached the backend through the ClusterIP from port 40002; later it connects to the backend directly
  // from the same port (a socket-LB connect, or a plain one). The old reverse entry must not turn the backend's
  // replies into the frontend's.
  Fixture f;
  installService(f, {{{1, kPodB}}, {1}});
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40002, 0x02)).retval == TC_ACT_REDIRECT);
  REQUIRE(ctEntry(f, kPodB, kPodA, kBackendPort, 40002, PLEXUS_CT_REVERSE).has_value());
  PacketSpec direct{kPodAMac, kNodeAMac, kPodA, kPodB, IPPROTO_TCP};
  direct.sport = 40002;
  direct.dport = kBackendPort;
  direct.tcp_flags = 0x02;
  REQUIRE(f.run(f.dp->fromContainerFd(), ipv4Packet(direct)).retval == TC_ACT_REDIRECT);
  CHECK_FALSE(ctEntry(f, kPodB, kPodA, kBackendPort, 40002, PLEXUS_CT_REVERSE).has_value());
  // The backend's SYN-ACK keeps its own address.
  f.addEndpoint(kPodB, kPodAIfindex, 2, kPodBMac, kNodeBMac, 0);
  f.addEndpoint(kPodA, kPodBIfindex, 1, kPodAMac, kNodeAMac, 0);
  PacketSpec reply{kPodBMac, kNodeBMac, kPodB, kPodA, IPPROTO_TCP};
  reply.sport = kBackendPort;
  reply.dport = 40002;
  reply.tcp_flags = 0x12;
  auto r = f.run(f.dp->fromContainerFd(), ipv4Packet(reply));
  REQUIRE(r.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(r.out)->saddr) == kPodB);
  CHECK(ntohs(tcpOf(r.out)->source) == kBackendPort);
}

TEST_CASE("a client port reused towards the same backend through another frontend moves to a free port",
          "[bpf][lb]") {
  // Frontend A (kVip, index 7) and frontend B (10.96.0.11, index 8) share backend 1 (pod B). Pod A reached it
  // through A from port 41000; the backend may still hold that connection in TIME_WAIT, and pod A's timestamps
  // towards B's address are another sequence, so the same tuple through B would be refused. It moves.
  Fixture f;
  installService(f, {{{1, kPodB}}, {1}});
  const Ipv4 vip_b = installFrontendB(f);
  auto& lb = f.dp->lb();

  auto a = f.run(f.dp->fromContainerFd(), clientPacket(41000, 0x02));
  REQUIRE(a.retval == TC_ACT_REDIRECT);
  CHECK(ntohs(tcpOf(a.out)->source) == 41000);  // nothing held the tuple: the port stays
  auto held = ctEntry(f, kPodB, kPodA, kBackendPort, 41000, PLEXUS_CT_REVERSE);
  REQUIRE(held.has_value());
  CHECK(held->nat_port == 0);

  auto b = f.run(f.dp->fromContainerFd(), clientPacket(41000, 0x02, IPPROTO_TCP, vip_b));
  REQUIRE(b.retval == TC_ACT_REDIRECT);
  uint16_t moved = ntohs(tcpOf(b.out)->source);
  CHECK(moved != 41000);
  CHECK(moved >= PLEXUS_CT_PORT_MIN);
  CHECK(moved <= PLEXUS_CT_PORT_MAX);
  CHECK(Ipv4::fromNetwork(ipOf(b.out)->daddr) == kPodB);
  CHECK(ipChecksum(ipOf(b.out), sizeof(iphdr)) == 0);
  CHECK(l4Checksum(b.out) == 0);
  auto fwd = ctEntry(f, kPodA, vip_b, 41000, kVipPort, PLEXUS_CT_SERVICE);
  REQUIRE(fwd.has_value());
  CHECK(ntohs(fwd->nat_port) == moved);
  auto rev = ctEntry(f, kPodB, kPodA, kBackendPort, moved, PLEXUS_CT_REVERSE);
  REQUIRE(rev.has_value());
  CHECK(rev->rev_nat_index == 8);
  CHECK(ntohs(rev->nat_port) == 41000);
  // A's flow keeps its own entry.
  CHECK(ctEntry(f, kPodB, kPodA, kBackendPort, 41000, PLEXUS_CT_REVERSE)->rev_nat_index == kRevNat);
  // Later packets of the flow use the same port.
  auto ack = f.run(f.dp->fromContainerFd(), clientPacket(41000, 0x10, IPPROTO_TCP, vip_b));
  REQUIRE(ack.retval == TC_ACT_REDIRECT);
  CHECK(ntohs(tcpOf(ack.out)->source) == moved);
  CHECK(l4Checksum(ack.out) == 0);

  // An entry that saw no packet for longer than any TIME_WAIT holds nothing: the port stays.
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(41002, 0x02)).retval == TC_ACT_REDIRECT);
  auto aged = ctEntry(f, kPodB, kPodA, kBackendPort, 41002, PLEXUS_CT_REVERSE);
  REQUIRE(aged.has_value());
  aged->last_seen_ns = 1;  // boot time
  double uptime = 0;
  std::ifstream("/proc/uptime") >> uptime;
  // The monotonic clock must be past the TIME_WAIT horizon (CI builds for minutes first).
  REQUIRE(uptime > 10.0 + static_cast<double>(PLEXUS_CT_TIME_WAIT_NS / PLEXUS_NSEC_PER_SEC));
  REQUIRE(lb.ct.update(ctKey(kPodB, kPodA, kBackendPort, 41002, IPPROTO_TCP, PLEXUS_CT_REVERSE), *aged).ok());
  auto kept = f.run(f.dp->fromContainerFd(), clientPacket(41002, 0x02, IPPROTO_TCP, vip_b));
  REQUIRE(kept.retval == TC_ACT_REDIRECT);
  CHECK(ntohs(tcpOf(kept.out)->source) == 41002);

  // The backend's reply gets frontend B as its source and the client's own port back.
  f.addEndpoint(kPodB, kPodAIfindex, 2, kPodBMac, kNodeBMac, 0);
  f.addEndpoint(kPodA, kPodBIfindex, 1, kPodAMac, kNodeAMac, 0);
  PacketSpec s{kPodBMac, kNodeBMac, kPodB, kPodA, IPPROTO_TCP};
  s.sport = kBackendPort;
  s.dport = moved;
  s.tcp_flags = 0x12;
  auto pkt = ipv4Packet(s);
  uint16_t* check = reinterpret_cast<uint16_t*>(pkt.data() + 14 + sizeof(iphdr) + 16);
  *check = l4Checksum(pkt);
  auto reply = f.run(f.dp->fromContainerFd(), pkt);
  REQUIRE(reply.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(reply.out)->saddr) == vip_b);
  CHECK(ntohs(tcpOf(reply.out)->source) == kVipPort);
  CHECK(ntohs(tcpOf(reply.out)->dest) == 41000);
  CHECK(ipChecksum(ipOf(reply.out), sizeof(iphdr)) == 0);
  CHECK(l4Checksum(reply.out) == 0);
}

TEST_CASE("a client port reused through the same frontend keeps its port", "[bpf][lb]") {
  Fixture f;
  installService(f, {{{1, kPodB}}, {1}});
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(41001, 0x02)).retval == TC_ACT_REDIRECT);
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(41001, 0x11)).retval == TC_ACT_REDIRECT);  // FIN: closing
  auto again = f.run(f.dp->fromContainerFd(), clientPacket(41001, 0x02));
  REQUIRE(again.retval == TC_ACT_REDIRECT);
  CHECK(ntohs(tcpOf(again.out)->source) == 41001);
  CHECK(ctEntry(f, kPodA, kVip, 41001, kVipPort, PLEXUS_CT_SERVICE)->nat_port == 0);
}

TEST_CASE("hairpin: a pod reaching itself through a ClusterIP gets the hairpin source, and replies come back",
          "[bpf][lb]") {
  Fixture f;
  installService(f, {{{1, kPodA}}, {1}});  // the only backend is the client itself
  auto r = f.run(f.dp->fromContainerFd(), clientPacket(40010, 0x02));
  REQUIRE(r.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(r.out)->saddr) == *Ipv4::parse("169.254.42.1"));
  CHECK(Ipv4::fromNetwork(ipOf(r.out)->daddr) == kPodA);
  CHECK(ntohs(tcpOf(r.out)->dest) == kBackendPort);
  CHECK(ipChecksum(ipOf(r.out), sizeof(iphdr)) == 0);
  CHECK(l4Checksum(r.out) == 0);
  // The pod answers the hairpin address; the reply gets the frontend as its source and the pod as destination.
  PacketSpec s{kPodAMac, kNodeAMac, kPodA, *Ipv4::parse("169.254.42.1"), IPPROTO_TCP};
  s.sport = kBackendPort;
  s.dport = 40010;
  s.tcp_flags = 0x12;
  auto pkt = ipv4Packet(s);
  uint16_t* check = reinterpret_cast<uint16_t*>(pkt.data() + 14 + sizeof(iphdr) + 16);
  *check = l4Checksum(pkt);
  auto reply = f.run(f.dp->fromContainerFd(), pkt);
  REQUIRE(reply.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(reply.out)->saddr) == kVip);
  CHECK(ntohs(tcpOf(reply.out)->source) == kVipPort);
  CHECK(Ipv4::fromNetwork(ipOf(reply.out)->daddr) == kPodA);
  CHECK(ntohs(tcpOf(reply.out)->dest) == 40010);
  CHECK(ipChecksum(ipOf(reply.out), sizeof(iphdr)) == 0);
  CHECK(l4Checksum(reply.out) == 0);
}

TEST_CASE("a service without backends refuses TCP with a RST at once", "[bpf][lb]") {
  Fixture f;
  installService(f, {{}, {}});
  auto in = clientPacket(40002, 0x02);
  auto r = f.run(f.dp->fromContainerFd(), in);
  REQUIRE(r.retval == TC_ACT_REDIRECT);  // sent back to the pod
  REQUIRE(r.out.size() == 14 + 40);
  CHECK(macAt(r.out, 0) == kPodAMac);
  CHECK(Ipv4::fromNetwork(ipOf(r.out)->saddr) == kVip);
  CHECK(Ipv4::fromNetwork(ipOf(r.out)->daddr) == kPodA);
  const tcphdr* t = tcpOf(r.out);
  CHECK(ntohs(t->source) == kVipPort);
  CHECK(ntohs(t->dest) == 40002);
  CHECK(t->rst == 1);
  CHECK(t->ack == 1);
  CHECK(ntohl(t->ack_seq) == 1);  // the SYN's sequence number (0) plus one
  CHECK(ipChecksum(ipOf(r.out), sizeof(iphdr)) == 0);
  CHECK(l4Checksum(r.out) == 0);
  CHECK(f.counter(PLEXUS_REASON_NO_SERVICE_BACKEND, PLEXUS_DIR_EGRESS) == 1);
}

TEST_CASE("a service without backends refuses UDP with ICMP port unreachable", "[bpf][lb]") {
  Fixture f;
  ServiceSpec spec{{}, {}};
  spec.proto = IPPROTO_UDP;
  installService(f, spec);
  auto in = clientPacket(40003, 0, IPPROTO_UDP);
  auto r = f.run(f.dp->fromContainerFd(), in);
  REQUIRE(r.retval == TC_ACT_REDIRECT);
  REQUIRE(r.out.size() == 14 + 56);
  const iphdr* ip = ipOf(r.out);
  CHECK(ip->protocol == IPPROTO_ICMP);
  CHECK(Ipv4::fromNetwork(ip->daddr) == kPodA);
  CHECK(ipChecksum(ip, sizeof(iphdr)) == 0);
  const uint8_t* icmp = r.out.data() + 14 + 20;
  CHECK(icmp[0] == 3);
  CHECK(icmp[1] == 3);
  CHECK(ipChecksum(icmp, 36) == 0);
  // The quoted header is the original one, addressed to the service.
  CHECK(std::memcmp(icmp + 8, in.data() + 14, 28) == 0);
}

TEST_CASE("a terminating backend keeps its flows but gets no new ones", "[bpf][lb]") {
  Fixture f;
  installService(f, {{{1, kPodB}, {2, kRemoteBackend}}, {1}});
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40004, 0x02)).retval == TC_ACT_REDIRECT);
  // Backend 1 terminates: the planner takes it out of the slots and marks it.
  setBackendState(f, 1, PLEXUS_BACKEND_TERMINATING);
  plexus_lb4_service slot{};
  slot.backend_id = 2;
  slot.rev_nat_index = kRevNat;
  REQUIRE(f.dp->lb().services.update(svcKey(1, IPPROTO_TCP), slot).ok());

  auto established = f.run(f.dp->fromContainerFd(), clientPacket(40004, 0x10));  // ACK of the old flow
  CHECK(Ipv4::fromNetwork(ipOf(established.out)->daddr) == kPodB);
  auto fresh = f.run(f.dp->fromContainerFd(), clientPacket(40005, 0x02));
  CHECK(fresh.retval == TC_ACT_OK);  // the remote backend goes through the stack
  CHECK(Ipv4::fromNetwork(ipOf(fresh.out)->daddr) == kRemoteBackend);
}

TEST_CASE("services flagged for Maglev select through their table", "[bpf][lb][maglev]") {
  Fixture f;
  ServiceSpec spec{{{1, kPodB}, {2, kRemoteBackend}}, {1}};
  spec.flags = PLEXUS_SVC_F_NODEPORT | PLEXUS_SVC_F_MAGLEV;
  installService(f, spec);
  auto& lb = f.dp->lb();
  // Read back slot by slot as written (the restart adopts installed tables this way).
  std::vector<uint32_t> pattern(lb.maglev_table_size);
  for (size_t i = 0; i < pattern.size(); ++i) {
    pattern[i] = static_cast<uint32_t>(i % 7 + 1);
  }
  REQUIRE(lb.setMaglevTable(kRevNat, pattern).ok());
  auto read = lb.maglevTable(kRevNat);
  REQUIRE(read.ok());
  CHECK(*read == pattern);
  std::vector<uint32_t> table(lb.maglev_table_size, 2);
  auto set = lb.setMaglevTable(kRevNat, table);
  INFO((set.ok() ? std::string() : set.error().message));
  REQUIRE(set.ok());
  auto back = lb.maglevTable(kRevNat);
  REQUIRE(back.ok());
  CHECK(*back == table);
  CHECK_FALSE(lb.setMaglevTable(kRevNat, std::vector<uint32_t>(13, 1)).ok());  // wrong size is refused
  for (uint16_t port = 41000; port < 41010; ++port) {
    auto r = f.run(f.dp->fromContainerFd(), clientPacket(port, 0x02));
    CHECK(Ipv4::fromNetwork(ipOf(r.out)->daddr) == kRemoteBackend);
  }
  // Swapping the table moves new flows.
  std::fill(table.begin(), table.end(), 1);
  REQUIRE(lb.setMaglevTable(kRevNat, table).ok());
  auto r = f.run(f.dp->fromContainerFd(), clientPacket(42000, 0x02));
  CHECK(Ipv4::fromNetwork(ipOf(r.out)->daddr) == kPodB);
}

TEST_CASE("ClientIP affinity keeps a client on one backend across connections", "[bpf][lb]") {
  Fixture f;
  ServiceSpec spec{{{1, kPodB}, {2, kRemoteBackend}}, {1, 2}};
  spec.flags = PLEXUS_SVC_F_CLUSTERIP | PLEXUS_SVC_F_AFFINITY;
  spec.affinity_timeout = 600;
  installService(f, spec);
  auto first = f.run(f.dp->fromContainerFd(), clientPacket(43000, 0x02));
  uint32_t chosen = ipOf(first.out)->daddr;
  for (uint16_t port = 43001; port < 43020; ++port) {
    auto r = f.run(f.dp->fromContainerFd(), clientPacket(port, 0x02));
    CHECK(ipOf(r.out)->daddr == chosen);
  }
}

TEST_CASE("from-netdev translates NodePort traffic from outside and refuses it without backends", "[bpf][lb]") {
  Fixture f;
  datapath::LxcConfig cfg;
  cfg.bpf_root = f.bpffs.path() + "/plexus";
  auto host = datapath::HostDatapath::load(cfg);
  INFO((host.ok() ? std::string() : host.error().message));
  REQUIRE(host.ok());
  ServiceSpec spec{{{1, kPodB}}, {1}};
  spec.flags = PLEXUS_SVC_F_NODEPORT;
  installService(f, spec);  // the "node address" here is kVip
  const Ipv4 client = *Ipv4::parse("192.0.2.50");
  PacketSpec s{*Mac::parse("02:aa:00:00:00:01"), *Mac::parse("02:bb:00:00:00:01"), client, kVip, IPPROTO_TCP};
  s.sport = 50000;
  s.dport = kVipPort;
  auto pkt = ipv4Packet(s);
  uint16_t* check = reinterpret_cast<uint16_t*>(pkt.data() + 14 + sizeof(iphdr) + 16);
  *check = l4Checksum(pkt);
  auto r = f.run((*host)->fromNetdevFd(), pkt);
  CHECK(r.retval == TC_ACT_OK);  // the stack routes it to the pod
  CHECK(Ipv4::fromNetwork(ipOf(r.out)->daddr) == kPodB);
  CHECK(ipOf(r.out)->saddr == client.networkOrder());  // the client address is preserved
  CHECK(l4Checksum(r.out) == 0);
  CHECK(f.counter(PLEXUS_REASON_SERVICE_TRANSLATED, PLEXUS_DIR_INGRESS) == 1);

  // Traffic to other destinations is none of our business.
  s.dst = *Ipv4::parse("192.0.2.1");
  auto other = f.run((*host)->fromNetdevFd(), ipv4Packet(s));
  CHECK(other.retval == TC_ACT_OK);
  CHECK(Ipv4::fromNetwork(ipOf(other.out)->daddr) == *Ipv4::parse("192.0.2.1"));

  // Without backends the client gets a RST back out of the same device.
  plexus_lb4_service master{};
  master.rev_nat_index = kRevNat;
  master.flags = PLEXUS_SVC_F_NODEPORT;
  REQUIRE(f.dp->lb().services.update(svcKey(0, IPPROTO_TCP), master).ok());
  s.dst = kVip;
  s.sport = 50001;
  auto refused = f.run((*host)->fromNetdevFd(), ipv4Packet(s));
  CHECK(refused.retval == TC_ACT_REDIRECT);
  CHECK(tcpOf(refused.out)->rst == 1);
}

TEST_CASE("conntrack stamps: a packet refreshes its entry's last use only once it is PLEXUS_CT_STAMP_NS old; new TCP "
          "flags are always kept; a stamp a moment ahead of the datapath's clock is recent",
          "[bpf][lb][conntrack]") {
  Fixture f;
  installService(f, {{{1, kPodB}}, {1}});
  auto& ct = f.dp->lb().ct;
  const auto key = ctKey(kPodA, kVip, 40200, kVipPort, IPPROTO_TCP, PLEXUS_CT_SERVICE);
  auto now = [] {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * PLEXUS_NSEC_PER_SEC + static_cast<uint64_t>(ts.tv_nsec);
  };
  auto stampTo = [&](uint64_t at) {
    auto v = ctEntry(f, kPodA, kVip, 40200, kVipPort, PLEXUS_CT_SERVICE);
    REQUIRE(v.has_value());
    v->last_seen_ns = at;
    REQUIRE(ct.update(key, *v).ok());
  };
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40200, 0x02)).retval == TC_ACT_REDIRECT);
  REQUIRE(ctEntry(f, kPodA, kVip, 40200, kVipPort, PLEXUS_CT_SERVICE).has_value());

  // Stamped 10 ms ago: the next packet writes no new stamp, but its new flag (ACK) is kept.
  const uint64_t recent = now() - 10'000'000;
  stampTo(recent);
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40200, 0x10)).retval == TC_ACT_REDIRECT);
  auto v = ctEntry(f, kPodA, kVip, 40200, kVipPort, PLEXUS_CT_SERVICE);
  CHECK(v->last_seen_ns == recent);
  CHECK(v->tx_flags == (0x02 | 0x10));

  // Stamped a second ago: refreshed to about now (the coarse clock lags by a tick at most).
  const uint64_t before = now();
  stampTo(before - PLEXUS_NSEC_PER_SEC);
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40200, 0x10)).retval == TC_ACT_REDIRECT);
  v = ctEntry(f, kPodA, kVip, 40200, kVipPort, PLEXUS_CT_SERVICE);
  CHECK(v->last_seen_ns > before - PLEXUS_CT_STAMP_NS);
  CHECK(v->last_seen_ns <= now());

  // A reverse entry stamped 2 ms in the future (as the precise clock may be ahead of the coarse one) still holds its
  // tuple: another frontend's flow from the same client port is moved to another port, not given this one.
  auto rev = ctEntry(f, kPodB, kPodA, kBackendPort, 40200, PLEXUS_CT_REVERSE);
  REQUIRE(rev.has_value());
  rev->last_seen_ns = now() + 2'000'000;
  REQUIRE(ct.update(ctKey(kPodB, kPodA, kBackendPort, 40200, IPPROTO_TCP, PLEXUS_CT_REVERSE), *rev).ok());
  const Ipv4 vip_b = installFrontendB(f);
  auto other = f.run(f.dp->fromContainerFd(), clientPacket(40200, 0x02, IPPROTO_TCP, vip_b));
  REQUIRE(other.retval == TC_ACT_REDIRECT);
  CHECK(ntohs(tcpOf(other.out)->source) != 40200);
}

TEST_CASE("a connection nothing on the node translated is marked so in its policy entries, and its replies are "
          "never rewritten by a reverse entry of another flow",
          "[bpf][lb][conntrack]") {
  Fixture f;
  installService(f, {{{1, kPodB}}, {1}});
  // Straight to pod B: egress and (same-node delivery) ingress entries say nothing here translated it.
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40300, 0x02, IPPROTO_TCP, kPodB)).retval == TC_ACT_REDIRECT);
  auto egress = ctEntry(f, kPodA, kPodB, 40300, kVipPort, PLEXUS_CT_EGRESS);
  auto ingress = ctEntry(f, kPodA, kPodB, 40300, kVipPort, PLEXUS_CT_INGRESS);
  REQUIRE(egress.has_value());
  REQUIRE(ingress.has_value());
  CHECK(egress->flags == PLEXUS_CT_F_UNTRANSLATED);
  CHECK(ingress->flags == PLEXUS_CT_F_UNTRANSLATED);
  // Through the frontend: translated, so its entries are not marked (replies look their reverse entry up).
  REQUIRE(f.run(f.dp->fromContainerFd(), clientPacket(40301, 0x02)).retval == TC_ACT_REDIRECT);
  auto translated = ctEntry(f, kPodA, kPodB, 40301, kBackendPort, PLEXUS_CT_EGRESS);
  REQUIRE(translated.has_value());
  CHECK(translated->flags == 0);

  // A reverse entry for the untranslated connection's reply tuple (another flow's, left behind) is not applied.
  plexus_ct4_value stray{};
  stray.rev_nat_index = kRevNat;
  stray.last_seen_ns = 1;
  REQUIRE(f.dp->lb().ct.update(ctKey(kPodB, kPodA, kVipPort, 40300, IPPROTO_TCP, PLEXUS_CT_REVERSE), stray).ok());
  f.addEndpoint(kPodB, kPodAIfindex, 2, kPodBMac, kNodeBMac, 0);
  f.addEndpoint(kPodA, kPodBIfindex, 1, kPodAMac, kNodeAMac, 0);
  auto replyFrom = [&](uint16_t sport, uint16_t dport) {
    PacketSpec s{kPodBMac, kNodeBMac, kPodB, kPodA, IPPROTO_TCP};
    s.sport = sport;
    s.dport = dport;
    s.tcp_flags = 0x10;
    return f.run(f.dp->fromContainerFd(), withL4Checksum(ipv4Packet(s)));
  };
  auto plain = replyFrom(kVipPort, 40300);
  REQUIRE(plain.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(plain.out)->saddr) == kPodB);
  CHECK(ntohs(tcpOf(plain.out)->source) == kVipPort);
  // The translated connection's reply still gets its frontend back.
  auto back = replyFrom(kBackendPort, 40301);
  REQUIRE(back.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(ipOf(back.out)->saddr) == kVip);
  CHECK(ntohs(tcpOf(back.out)->source) == kVipPort);
}
