// [bpf] tests of bpf_host's single exit: NodePort traffic from outside that the device program refuses or drops is
// counted under its reason and reported as a flow event, like the lxc programs' drops; translated flows are reported
// under monitor aggregation; the rest of the device's traffic is neither counted nor reported.
#include "lxc_fixture.h"
#include "plexus/datapath/host_datapath.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

const Ipv4 kNodeIp = *Ipv4::parse("192.0.2.10");  // a NodePort frontend: the node's device address
const Ipv4 kClient = *Ipv4::parse("198.51.100.7");
const Mac kClientMac = *Mac::parse("02:aa:00:00:00:01");
const Mac kDeviceMac = *Mac::parse("02:bb:00:00:00:01");
constexpr uint16_t kNodePort = 30080;
constexpr uint16_t kRevNat = 9;

struct HostFixture : Fixture {
  std::unique_ptr<datapath::HostDatapath> host;

  explicit HostFixture(datapath::LxcConfig cfg = {}) : Fixture(cfg) {
    host = loadHost(cfg);
    // The node's address is identity host in the ipcache, as the agent writes it.
    plexus_ipcache_key k{};
    k.prefixlen = 32;
    k.ip = kNodeIp.networkOrder();
    plexus_ipcache_value v{};
    v.identity = PLEXUS_IDENTITY_HOST;
    REQUIRE(dp->ipcache().update(k, v).ok());
  }

  // A NodePort frontend on the node's address; backend ids in `backends` are `backend` (pod B) on :8080.
  void installNodePort(const std::vector<uint32_t>& backends, Ipv4 backend = kPodB, uint8_t proto = IPPROTO_TCP) {
    auto& lb = dp->lb();
    plexus_lb4_key key{};
    key.address = kNodeIp.networkOrder();
    key.dport = htons(kNodePort);
    key.proto = proto;
    key.scope = PLEXUS_LB_SCOPE_EXTERNAL;
    for (size_t i = 0; i < backends.size(); ++i) {
      plexus_lb4_backend b{};
      b.address = backend.networkOrder();
      b.port = htons(8080);
      b.proto = proto;
      b.state = PLEXUS_BACKEND_ACTIVE;
      REQUIRE(lb.backends.update(backends[i], b).ok());
      plexus_lb4_service slot{};
      slot.backend_id = backends[i];
      slot.rev_nat_index = kRevNat;
      key.backend_slot = static_cast<uint16_t>(i + 1);
      REQUIRE(lb.services.update(key, slot).ok());
    }
    plexus_lb4_service master{};
    master.count = static_cast<uint16_t>(backends.size());
    master.rev_nat_index = kRevNat;
    master.flags = PLEXUS_SVC_F_NODEPORT;
    key.backend_slot = 0;
    REQUIRE(lb.services.update(key, master).ok());
    plexus_lb4_reverse_nat rn{};
    rn.address = kNodeIp.networkOrder();
    rn.port = htons(kNodePort);
    REQUIRE(lb.revnat.update(kRevNat, rn).ok());
  }

  Run fromOutside(uint16_t sport, uint8_t flags, Ipv4 dst = kNodeIp, uint8_t proto = IPPROTO_TCP) {
    PacketSpec s{kClientMac, kDeviceMac, kClient, dst, proto};
    s.sport = sport;
    s.dport = kNodePort;
    s.tcp_flags = flags;
    return run(host->fromNetdevFd(), withL4Checksum(ipv4Packet(s)));
  }

  std::vector<plexus_flow_event> events() { return drainEvents(dp->eventsFd()); }
};

void checkNoBackendEvent(const plexus_flow_event& e, uint16_t sport, uint8_t flags) {
  CHECK(e.verdict == PLEXUS_VERDICT_DROPPED);
  CHECK(e.reason == PLEXUS_REASON_NO_SERVICE_BACKEND);
  CHECK(e.direction == PLEXUS_DIR_INGRESS);
  CHECK(e.endpoint_id == 0);  // the host device
  CHECK(Ipv4::fromNetwork(e.saddr) == kClient);
  CHECK(Ipv4::fromNetwork(e.daddr) == kNodeIp);
  CHECK(ntohs(e.sport) == sport);
  CHECK(ntohs(e.dport) == kNodePort);
  CHECK(e.proto == IPPROTO_TCP);
  CHECK(e.tcp_flags == flags);
  CHECK(e.src_identity == PLEXUS_IDENTITY_WORLD);
  CHECK(e.dst_identity == PLEXUS_IDENTITY_HOST);
}

}  // namespace

TEST_CASE("from-netdev: NodePort traffic to a frontend without backends is dropped, counted and reported",
          "[bpf][host][events]") {
  HostFixture f;
  f.installNodePort({});
  f.events();

  // A SYN is refused: the packet itself goes no further (the client gets a RST back out of the device), and it is
  // reported as the drop it is for the service.
  auto syn = f.fromOutside(50000, 0x02);
  CHECK(syn.retval == TC_ACT_REDIRECT);
  REQUIRE(syn.out.size() == 14 + 40);
  CHECK(reinterpret_cast<const tcphdr*>(syn.out.data() + 14 + sizeof(iphdr))->rst == 1);
  CHECK(f.counter(PLEXUS_REASON_NO_SERVICE_BACKEND, PLEXUS_DIR_INGRESS) == 1);
  auto events = f.events();
  REQUIRE(events.size() == 1);
  checkNoBackendEvent(events[0], 50000, 0x02);

  // A reset is never answered: it is dropped outright, and every drop is reported (no aggregation of drops).
  for (int i = 0; i < 2; ++i) {
    auto rst = f.fromOutside(50001, 0x04);
    CHECK(rst.retval == TC_ACT_SHOT);
  }
  CHECK(f.counter(PLEXUS_REASON_NO_SERVICE_BACKEND, PLEXUS_DIR_INGRESS) == 3);
  events = f.events();
  REQUIRE(events.size() == 2);
  for (const auto& e : events) {
    checkNoBackendEvent(e, 50001, 0x04);
  }
  CHECK(f.dp->lostEvents() == 0);
}

TEST_CASE("from-netdev: translated NodePort flows are counted and reported under monitor aggregation",
          "[bpf][host][events]") {
  HostFixture f;
  f.installNodePort({1});
  f.events();

  auto syn = f.fromOutside(50010, 0x02);  // a new flow
  CHECK(syn.retval == TC_ACT_OK);
  CHECK(Ipv4::fromNetwork(reinterpret_cast<const iphdr*>(syn.out.data() + 14)->daddr) == kPodB);
  f.fromOutside(50010, 0x10);  // ACK: a flag the flow had not shown
  f.fromOutside(50010, 0x10);  // nothing new: aggregated away
  CHECK(f.counter(PLEXUS_REASON_SERVICE_TRANSLATED, PLEXUS_DIR_INGRESS) == 3);
  auto events = f.events();
  REQUIRE(events.size() == 2);
  const auto& e = events[0];
  CHECK(e.verdict == PLEXUS_VERDICT_TRANSLATED);
  CHECK(e.reason == PLEXUS_REASON_SERVICE_TRANSLATED);
  CHECK(e.direction == PLEXUS_DIR_INGRESS);
  CHECK(Ipv4::fromNetwork(e.saddr) == kClient);
  CHECK(Ipv4::fromNetwork(e.daddr) == kPodB);
  CHECK(ntohs(e.dport) == 8080);
  CHECK(Ipv4::fromNetwork(e.orig_daddr) == kNodeIp);
  CHECK(ntohs(e.orig_dport) == kNodePort);
  CHECK(e.src_identity == PLEXUS_IDENTITY_WORLD);
  CHECK(e.dst_identity == PLEXUS_IDENTITY_CLUSTER_MIN + 2);  // pod B (Fixture: 256 + endpoint id)
  CHECK(e.tcp_flags == 0x02);
  CHECK(events[1].tcp_flags == 0x10);
}

TEST_CASE("from-netdev: traffic that touches no service is neither counted nor reported", "[bpf][host][events]") {
  HostFixture f;
  f.installNodePort({});
  f.events();
  auto other = f.fromOutside(50020, 0x02, *Ipv4::parse("192.0.2.11"));  // another address on the link
  CHECK(other.retval == TC_ACT_OK);
  auto entries = f.dp->metrics().entries();
  REQUIRE(entries.ok());
  CHECK(entries->empty());
  CHECK(f.events().empty());
}

namespace {
datapath::LxcConfig masquerading() {
  datapath::LxcConfig cfg;
  cfg.masquerade = true;
  return cfg;
}

// A port of the masquerade ranges (plexus/nat.h).
bool snatPort(uint16_t port) {
  static_assert(PLEXUS_SNAT_PORT_MAX == 65535);  // the high range runs to the last port
  return (port >= PLEXUS_SNAT_PORT_LOW_MIN && port <= PLEXUS_SNAT_PORT_LOW_MAX) || port >= PLEXUS_SNAT_PORT_MIN;
}

// Source (or destination) address and port of a frame's IPv4/TCP headers.
std::pair<Ipv4, uint16_t> endpointOf(const std::vector<uint8_t>& frame, bool source) {
  REQUIRE(frame.size() >= 14 + 20 + 4);
  uint32_t addr = 0;
  uint16_t port = 0;
  std::memcpy(&addr, frame.data() + 14 + (source ? 12 : 16), 4);
  std::memcpy(&port, frame.data() + 14 + 20 + (source ? 0 : 2), 2);
  return {Ipv4::fromNetwork(addr), ntohs(port)};
}
}  // namespace

TEST_CASE("to-netdev masquerades a pod's flow to the world; from-netdev takes the reply back; a full port range "
          "drops with NAT_NO_PORT", "[bpf][host][masquerade]") {
  HostFixture f(masquerading());
  // BPF_PROG_TEST_RUN runs on the loopback device: it is the masquerading device here.
  REQUIRE(f.host->setMasqueradeAddress(1, kNodeIp).ok());
  PacketSpec out{kPodAMac, kDeviceMac, kPodA, kClient, IPPROTO_TCP};
  out.sport = 40000;
  out.dport = 80;
  auto sent = f.run(f.host->toNetdevFd(), ipv4Packet(out));
  REQUIRE(sent.retval == TC_ACT_OK);
  auto [src, nat_port] = endpointOf(sent.out, true);
  CHECK(src == kNodeIp);
  CHECK(snatPort(nat_port));
  // The flow's next packet keeps its port.
  auto again = f.run(f.host->toNetdevFd(), ipv4Packet(out));
  CHECK(endpointOf(again.out, true).second == nat_port);

  // The reply goes back to pod A's own port.
  PacketSpec reply{kClientMac, kDeviceMac, kClient, kNodeIp, IPPROTO_TCP};
  reply.sport = 80;
  reply.dport = nat_port;
  reply.tcp_flags = 0x12;
  auto back = f.run(f.host->fromNetdevFd(), ipv4Packet(reply));
  REQUIRE(back.retval == TC_ACT_OK);
  CHECK(endpointOf(back.out, false) == std::pair<Ipv4, uint16_t>{kPodA, 40000});

  // The node's own traffic, and a pod's traffic to a cluster address (pod B's identity in the ipcache), keep theirs.
  PacketSpec own{kDeviceMac, kClientMac, kNodeIp, kClient, IPPROTO_TCP};
  CHECK(endpointOf(f.run(f.host->toNetdevFd(), ipv4Packet(own)).out, true).first == kNodeIp);
  plexus_ipcache_key k{};
  k.prefixlen = 32;
  k.ip = kClient.networkOrder();
  plexus_ipcache_value v{};
  v.identity = PLEXUS_IDENTITY_REMOTE_NODE;
  REQUIRE(f.dp->ipcache().update(k, v).ok());
  PacketSpec inside = out;
  inside.sport = 40002;
  CHECK(endpointOf(f.run(f.host->toNetdevFd(), ipv4Packet(inside)).out, true).first == kPodA);
  REQUIRE(f.dp->ipcache().erase(k).ok());
  // A packet from-container sent here by the FIB is marked as needing nothing: it passes as it is, mark cleared (that
  // program only forwards cluster destinations so, never this world one: the mark alone decides here).
  auto marked = progRun(f.host->toNetdevFd(), ipv4Packet(inside), 0, 1, PLEXUS_MARK_HOST_ROUTED);
  REQUIRE(marked.err == 0);
  CHECK(marked.retval == TC_ACT_OK);
  CHECK(endpointOf(marked.out, true).first == kPodA);
  CHECK(marked.mark == 0);

  // Every port towards the client's :80 taken: a new flow is dropped, counted under NAT_NO_PORT.
  auto nat = f.dp->nat();
  REQUIRE(nat.ok());
  for (uint32_t port = PLEXUS_SNAT_PORT_LOW_MIN; port <= PLEXUS_SNAT_PORT_MAX; ++port) {
    if (!snatPort(static_cast<uint16_t>(port))) {
      continue;
    }
    plexus_snat4_key taken{};
    taken.saddr = kClient.networkOrder();
    taken.daddr = kNodeIp.networkOrder();
    taken.sport = htons(80);
    taken.dport = htons(static_cast<uint16_t>(port));
    taken.proto = IPPROTO_TCP;
    taken.dir = PLEXUS_SNAT_INGRESS;
    plexus_snat4_value holder{};
    holder.to_addr = kPodB.networkOrder();
    holder.to_port = htons(static_cast<uint16_t>(port));
    (void)nat->update(taken, holder, BPF_NOEXIST);  // the flow above holds one already
  }
  PacketSpec late = out;
  late.sport = 40001;
  auto refused = f.run(f.host->toNetdevFd(), ipv4Packet(late));
  CHECK(refused.retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_NAT_NO_PORT, PLEXUS_DIR_EGRESS) == 1);
  // The established flow is untouched.
  CHECK(endpointOf(f.run(f.host->toNetdevFd(), ipv4Packet(out)).out, true).second == nat_port);

  // Its FIN marks both of its entries closing.
  PacketSpec fin = out;
  fin.tcp_flags = 0x11;  // FIN, ACK
  REQUIRE(f.run(f.host->toNetdevFd(), ipv4Packet(fin)).retval == TC_ACT_OK);
  plexus_snat4_key egress{};
  egress.saddr = kPodA.networkOrder();
  egress.daddr = kClient.networkOrder();
  egress.sport = htons(40000);
  egress.dport = htons(80);
  egress.proto = IPPROTO_TCP;
  egress.dir = PLEXUS_SNAT_EGRESS;
  plexus_snat4_key ingress{};
  ingress.saddr = kClient.networkOrder();
  ingress.daddr = kNodeIp.networkOrder();
  ingress.sport = htons(80);
  ingress.dport = htons(nat_port);
  ingress.proto = IPPROTO_TCP;
  ingress.dir = PLEXUS_SNAT_INGRESS;
  for (const auto& k : {egress, ingress}) {
    auto v = nat->lookup(k);
    REQUIRE(v.ok());
    REQUIRE(v->has_value());
    CHECK(((*v)->flags & PLEXUS_SNAT_F_CLOSING) != 0);
  }
  // The pod reusing the port for a new connection (a SYN on the same tuple) opens them again, same port.
  auto syn = f.run(f.host->toNetdevFd(), ipv4Packet(out));
  CHECK(endpointOf(syn.out, true).second == nat_port);
  for (const auto& k : {egress, ingress}) {
    CHECK(((*nat->lookup(k))->flags & PLEXUS_SNAT_F_CLOSING) == 0);
  }
  REQUIRE(f.run(f.host->toNetdevFd(), ipv4Packet(fin)).retval == TC_ACT_OK);

  // Closed flows past their TIME_WAIT give their ports back: the holders marked closing (last seen at boot time), the
  // refused flow now gets a port, and the previous owner's egress entry goes.
  auto entries = nat->entries();
  REQUIRE(entries.ok());
  for (auto [k, v] : *entries) {
    if (k.dir == PLEXUS_SNAT_INGRESS && v.to_addr == kPodB.networkOrder()) {
      v.flags = PLEXUS_SNAT_F_CLOSING;
      v.last_seen_ns = 0;
      REQUIRE(nat->update(k, v).ok());
    }
  }
  auto reused = f.run(f.host->toNetdevFd(), ipv4Packet(late));
  REQUIRE(reused.retval == TC_ACT_OK);
  auto [reused_src, reused_port] = endpointOf(reused.out, true);
  CHECK(reused_src == kNodeIp);
  CHECK(snatPort(reused_port));
}

namespace {
datapath::LxcConfig lbMode(uint8_t mode) {
  datapath::LxcConfig cfg;
  cfg.lb_mode = mode;
  cfg.host_routing = true;  // from-netdev delivers into local pods (and so runs their ingress) itself
  return cfg;
}

// Pod A as a pod on another node: no endpoint here, a cluster identity in the ipcache.
void podAElsewhere(HostFixture& f) {
  plexus_endpoint_key ek{};
  ek.ip = kPodA.networkOrder();
  REQUIRE(f.dp->endpoints().erase(ek).ok());
  plexus_ipcache_key k{};
  k.prefixlen = 32;
  k.ip = kPodA.networkOrder();
  plexus_ipcache_value v{};
  v.identity = PLEXUS_IDENTITY_CLUSTER_MIN + 1;
  REQUIRE(f.dp->ipcache().update(k, v).ok());
}

const iphdr* ipOf(const std::vector<uint8_t>& frame) { return reinterpret_cast<const iphdr*>(frame.data() + 14); }
}  // namespace

TEST_CASE("DSR: the entry node puts the frontend in an IPv4 option of the SYN and keeps the client's address; the "
          "backend's node keeps it and its reply leaves with the frontend as source", "[bpf][host][dsr]") {
  HostFixture f(lbMode(PLEXUS_LB_MODE_DSR));
  f.installNodePort({1}, kPodA);
  podAElsewhere(f);
  REQUIRE(f.host->setMasqueradeAddress(1, kNodeIp).ok());  // the test device: NodePort SNAT would use it

  // Entry node: the SYN is translated to the backend, keeps the client as source, and grows the option.
  auto syn = f.fromOutside(50100, 0x02);
  REQUIRE(syn.retval == TC_ACT_OK);
  REQUIRE(syn.out.size() == 14 + 28 + 20);
  const iphdr* ip = ipOf(syn.out);
  CHECK(ip->ihl == 7);
  CHECK(ntohs(ip->tot_len) == 28 + 20);
  CHECK(ipChecksum(ip, 28) == 0);
  CHECK(Ipv4::fromNetwork(ip->saddr) == kClient);
  CHECK(Ipv4::fromNetwork(ip->daddr) == kPodA);
  plexus_dsr_opt4 opt{};
  std::memcpy(&opt, syn.out.data() + 14 + 20, sizeof(opt));
  CHECK(opt.type == PLEXUS_DSR_OPT_TYPE);
  CHECK(opt.len == PLEXUS_DSR_OPT_LEN);
  CHECK(Ipv4::fromNetwork(opt.address) == kNodeIp);
  CHECK(ntohs(opt.port) == kNodePort);
  CHECK(l4Checksum(syn.out) == 0);  // the pseudo header does not cover options
  const auto* tcp = reinterpret_cast<const tcphdr*>(syn.out.data() + 14 + 28);
  CHECK(ntohs(tcp->source) == 50100);  // the client's port is kept: the backend answers it directly
  CHECK(ntohs(tcp->dest) == 8080);
  // Later packets of the flow go to the same backend without the option; leaving, nothing translates the source.
  auto ack = f.fromOutside(50100, 0x10);
  CHECK(ipOf(ack.out)->ihl == 5);
  CHECK(Ipv4::fromNetwork(ipOf(ack.out)->daddr) == kPodA);
  auto out = f.run(f.host->toNetdevFd(), syn.out);
  CHECK(Ipv4::fromNetwork(ipOf(out.out)->saddr) == kClient);

  // The backend's node (pod A local again): the option is read on the way in, the frontend kept for the replies.
  f.addEndpoint(kPodA, kPodAIfindex, 1, kPodAMac, kNodeAMac, 0);
  auto in = f.run(f.host->fromNetdevFd(), syn.out);
  CHECK(in.retval == TC_ACT_REDIRECT);  // into the pod
  auto nat = f.dp->nat();
  REQUIRE(nat.ok());
  plexus_snat4_key k{};
  k.saddr = kPodA.networkOrder();
  k.daddr = kClient.networkOrder();
  k.sport = htons(8080);
  k.dport = htons(50100);
  k.proto = IPPROTO_TCP;
  k.dir = PLEXUS_SNAT_DSR;
  auto kept = nat->lookup(k);
  REQUIRE(kept.ok());
  REQUIRE(kept->has_value());
  CHECK(Ipv4::fromNetwork((*kept)->to_addr) == kNodeIp);
  CHECK(ntohs((*kept)->to_port) == kNodePort);

  // The backend's SYN-ACK leaves its pod as the frontend's, checksums intact.
  PacketSpec reply{kPodAMac, kNodeAMac, kPodA, kClient, IPPROTO_TCP};
  reply.sport = 8080;
  reply.dport = 50100;
  reply.tcp_flags = 0x12;
  auto back = f.run(f.dp->fromContainerFd(), withL4Checksum(ipv4Packet(reply)));
  REQUIRE(back.retval >= 0);
  CHECK(Ipv4::fromNetwork(ipOf(back.out)->saddr) == kNodeIp);
  CHECK(ntohs(reinterpret_cast<const tcphdr*>(back.out.data() + 14 + 20)->source) == kNodePort);
  CHECK(ipChecksum(ipOf(back.out), 20) == 0);
  CHECK(l4Checksum(back.out) == 0);
}

TEST_CASE("DSR modes: hybrid gives TCP direct server return and UDP SNAT; snat never writes the option, and a node "
          "not in DSR ignores one", "[bpf][host][dsr]") {
  auto mode = GENERATE(as<uint8_t>{}, PLEXUS_LB_MODE_SNAT, PLEXUS_LB_MODE_DSR, PLEXUS_LB_MODE_HYBRID);
  auto proto = GENERATE(as<uint8_t>{}, IPPROTO_TCP, IPPROTO_UDP);
  INFO("mode " << int(mode) << " protocol " << int(proto));
  bool dsr = mode == PLEXUS_LB_MODE_DSR || (mode == PLEXUS_LB_MODE_HYBRID && proto == IPPROTO_TCP);
  HostFixture f(lbMode(mode));
  f.installNodePort({1}, kPodA, proto);
  podAElsewhere(f);
  auto first = f.fromOutside(50200, 0x02, kNodeIp, proto);
  REQUIRE(first.retval == TC_ACT_OK);
  CHECK(Ipv4::fromNetwork(ipOf(first.out)->daddr) == kPodA);
  CHECK((ipOf(first.out)->ihl == 7) == dsr);
  // A reverse entry (replies back through this node) exists only without DSR.
  plexus_ct4_key rev{};
  rev.saddr = kPodA.networkOrder();
  rev.daddr = kClient.networkOrder();
  rev.sport = htons(8080);
  rev.dport = htons(50200);
  rev.proto = proto;
  rev.dir = PLEXUS_CT_REVERSE_NODEPORT;
  auto entry = f.dp->lb().ct.lookup(rev);
  REQUIRE(entry.ok());
  CHECK(entry->has_value() != dsr);
  if (proto == IPPROTO_UDP) {  // every datagram carries the option
    CHECK((ipOf(f.fromOutside(50200, 0, kNodeIp, proto).out)->ihl == 7) == dsr);
  }
  if (mode == PLEXUS_LB_MODE_SNAT) {
    // An option from elsewhere (pod A local now) is not honoured by a node in snat mode.
    f.addEndpoint(kPodA, kPodAIfindex, 1, kPodAMac, kNodeAMac, 0);
    HostFixture dsr_entry(lbMode(PLEXUS_LB_MODE_DSR));
    dsr_entry.installNodePort({1}, kPodA, proto);
    podAElsewhere(dsr_entry);
    auto with_opt = dsr_entry.fromOutside(50201, 0x02, kNodeIp, proto);
    REQUIRE(ipOf(with_opt.out)->ihl == 7);
    f.run(f.host->fromNetdevFd(), with_opt.out);
    auto nat = f.dp->nat();
    REQUIRE(nat.ok());
    auto entries = nat->entries();
    REQUIRE(entries.ok());
    CHECK(entries->empty());
  }
}

TEST_CASE("from-netdev leaves the tunnel's own packets to the tunnel device: nothing on the node's tunnel port is "
          "translated", "[bpf][host][tunnel]") {
  // A frontend on the node's address and the tunnel's port (a NodePort here, for the fixture's sake): without a tunnel
  // it is translated; with one, that port's UDP packets for the node are VXLAN's and pass as they are.
  for (bool tunnel : {false, true}) {
    INFO("tunnel " << tunnel);
    datapath::LxcConfig cfg;
    if (tunnel) {
      cfg.tunnel_ifindex = 1000;
      cfg.tunnel_port = kNodePort;
    }
    HostFixture f(cfg);
    REQUIRE(f.host->setMasqueradeAddress(1, kNodeIp).ok());
    f.installNodePort({1}, kPodB, IPPROTO_UDP);
    auto r = f.fromOutside(40000, 0, kNodeIp, IPPROTO_UDP);
    CHECK(r.retval == TC_ACT_OK);
    CHECK(endpointOf(r.out, false).first == (tunnel ? kNodeIp : kPodB));
  }
}
