// [bpf] tests: the real bpf_lxc programs through BPF_PROG_TEST_RUN with crafted packets and seeded maps.
#include "lxc_fixture.h"

#include <map>

using namespace plexus;
using namespace plexus::testing;


TEST_CASE("from-container answers ARP for the gateway with the host veth MAC", "[bpf]") {
  Fixture f;
  auto r = f.run(f.dp->fromContainerFd(), arpRequest(kPodAMac, kPodA, kGateway));
  REQUIRE(r.retval == TC_ACT_REDIRECT);
  REQUIRE(macAt(r.out, 0) == kPodAMac);     // back to the asking pod
  REQUIRE(macAt(r.out, 6) == kNodeAMac);
  REQUIRE(r.out[14 + 7] == 2);              // ARP reply
  REQUIRE(macAt(r.out, 14 + 8) == kNodeAMac);  // sender hardware address: the host veth
  uint32_t sip = 0;
  uint32_t tip = 0;
  std::memcpy(&sip, r.out.data() + 14 + 14, 4);
  std::memcpy(&tip, r.out.data() + 14 + 24, 4);
  REQUIRE(Ipv4::fromNetwork(sip) == kGateway);
  REQUIRE(Ipv4::fromNetwork(tip) == kPodA);
  REQUIRE(f.counter(PLEXUS_REASON_ARP_REPLY, PLEXUS_DIR_EGRESS) == 1);
}

TEST_CASE("from-container ignores gratuitous ARP and ARP from unknown senders", "[bpf]") {
  Fixture f;
  REQUIRE(f.run(f.dp->fromContainerFd(), arpRequest(kPodAMac, kPodA, kPodA)).retval == TC_ACT_OK);
  REQUIRE(f.run(f.dp->fromContainerFd(), arpRequest(kPodAMac, *Ipv4::parse("10.244.0.99"), kGateway)).retval ==
          TC_ACT_OK);
  REQUIRE(f.counter(PLEXUS_REASON_ARP_REPLY, PLEXUS_DIR_EGRESS) == 0);
}

TEST_CASE("same-node pod-to-pod is redirected to the peer with rewritten L2 and TTL", "[bpf]") {
  Fixture f;
  for (uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}}) {
    PacketSpec s{kPodAMac, kNodeAMac, kPodA, kPodB, proto};
    auto r = f.run(f.dp->fromContainerFd(), ipv4Packet(s));
    REQUIRE(r.retval == TC_ACT_REDIRECT);
    // The destination endpoint's MACs identify the redirect target: only pod B's entry carries them.
    REQUIRE(macAt(r.out, 0) == kPodBMac);
    REQUIRE(macAt(r.out, 6) == kNodeBMac);
    auto* ip = reinterpret_cast<const iphdr*>(r.out.data() + 14);
    REQUIRE(ip->ttl == 63);
    REQUIRE(ipChecksum(ip, sizeof(iphdr)) == 0);  // a valid header sums to zero
  }
  REQUIRE(f.counter(PLEXUS_REASON_FORWARDED, PLEXUS_DIR_EGRESS) == 2);
}

TEST_CASE("traffic to the host, the gateway and the world goes to the kernel stack unchanged", "[bpf]") {
  Fixture f;
  for (const char* dst : {"10.244.0.1", "8.8.8.8", "192.168.1.10"}) {
    INFO(dst);
    PacketSpec s{kPodAMac, kNodeAMac, kPodA, *Ipv4::parse(dst)};
    auto pkt = ipv4Packet(s);
    auto r = f.run(f.dp->fromContainerFd(), pkt);
    REQUIRE(r.retval == TC_ACT_OK);
    REQUIRE(r.out == pkt);
  }
}

TEST_CASE("a spoofed source address is dropped and counted", "[bpf]") {
  Fixture f;
  // Pod B's address sent from pod A's veth, and an address nobody owns.
  for (const char* src : {"10.244.0.6", "10.244.0.200"}) {
    PacketSpec s{kPodAMac, kNodeAMac, *Ipv4::parse(src), kPodB};
    REQUIRE(f.run(f.dp->fromContainerFd(), ipv4Packet(s)).retval == TC_ACT_SHOT);
  }
  REQUIRE(f.counter(PLEXUS_REASON_INVALID_SOURCE_IP, PLEXUS_DIR_EGRESS) == 2);
  REQUIRE(f.counter(PLEXUS_REASON_FORWARDED, PLEXUS_DIR_EGRESS) == 0);
}

TEST_CASE("TTL 1 to a local pod is dropped as TTL exceeded", "[bpf]") {
  Fixture f;
  PacketSpec s{kPodAMac, kNodeAMac, kPodA, kPodB};
  s.ttl = 1;
  REQUIRE(f.run(f.dp->fromContainerFd(), ipv4Packet(s)).retval == TC_ACT_SHOT);
  REQUIRE(f.counter(PLEXUS_REASON_TTL_EXCEEDED, PLEXUS_DIR_EGRESS) == 1);
}

TEST_CASE("non-IPv4 L3 is dropped as unsupported in both directions", "[bpf]") {
  Fixture f;
  PacketSpec s{kPodAMac, kNodeAMac, kPodA, kPodB};
  auto pkt = ipv4Packet(s);
  pkt[12] = 0x86;  // IPv6 ethertype
  pkt[13] = 0xdd;
  REQUIRE(f.run(f.dp->fromContainerFd(), pkt).retval == TC_ACT_SHOT);
  REQUIRE(f.run(f.dp->toContainerFd(), pkt).retval == TC_ACT_SHOT);
  REQUIRE(f.counter(PLEXUS_REASON_UNSUPPORTED_L3, PLEXUS_DIR_EGRESS) == 1);
  REQUIRE(f.counter(PLEXUS_REASON_UNSUPPORTED_L3, PLEXUS_DIR_INGRESS) == 1);
}

TEST_CASE("to-container passes IPv4 and counts it as ingress", "[bpf]") {
  Fixture f;
  PacketSpec s{kNodeAMac, kPodAMac, kGateway, kPodA};
  REQUIRE(f.run(f.dp->toContainerFd(), ipv4Packet(s)).retval == TC_ACT_OK);
  REQUIRE(f.counter(PLEXUS_REASON_FORWARDED, PLEXUS_DIR_INGRESS) == 1);
}

TEST_CASE("the redirect_peer switch is load-time rodata", "[bpf]") {
  datapath::LxcConfig cfg;
  cfg.redirect_peer = false;
  Fixture f(cfg);
  PacketSpec s{kPodAMac, kNodeAMac, kPodA, kPodB};
  auto pkt = ipv4Packet(s);
  auto r = f.run(f.dp->fromContainerFd(), pkt);
  REQUIRE(r.retval == TC_ACT_OK);
  REQUIRE(r.out == pkt);
}

TEST_CASE("pinned maps are reused by a second load of the programs", "[bpf]") {
  Fixture f;
  datapath::LxcConfig cfg;
  cfg.bpf_root = f.bpffs.path() + "/plexus";
  auto second = datapath::LxcDatapath::load(cfg);
  REQUIRE(second.ok());
  plexus_endpoint_key k{};
  k.ip = kPodB.networkOrder();
  auto v = (*second)->endpoints().lookup(k);
  REQUIRE(v.ok());
  REQUIRE(v->has_value());
  REQUIRE((*v)->ifindex == kPodBIfindex);
  plexus_endpoint_key missing{};
  missing.ip = Ipv4::parse("10.9.9.9")->networkOrder();
  auto absent = (*second)->endpoints().lookup(missing);
  REQUIRE(absent.ok());
  REQUIRE_FALSE(absent->has_value());
}

TEST_CASE("batched writes, reads and deletes of a map, and the key-by-key fallback without batch support", "[bpf]") {
  Fixture f;
  // The backends map (a hash): more entries than one batch holds, written and read back in batches.
  auto& backends = f.dp->lb().backends;
  std::vector<std::pair<uint32_t, plexus_lb4_backend>> pairs;
  for (uint32_t id = 1; id <= 10000; ++id) {
    plexus_lb4_backend b{};
    b.address = Ipv4(Ipv4::parse("10.1.0.0")->hostOrder() + id).networkOrder();
    b.port = htons(static_cast<uint16_t>(id));
    b.proto = IPPROTO_TCP;
    pairs.emplace_back(id, b);
  }
  REQUIRE(backends.updateBatch(pairs).ok());
  auto read = backends.entries();
  REQUIRE(read.ok());
  std::map<uint32_t, uint16_t> got;
  for (const auto& [id, b] : *read) {
    got[id] = ntohs(b.port);
  }
  REQUIRE(got.size() == 10000);
  CHECK(got.at(1) == 1);
  CHECK(got.at(10000) == 10000);
  // Batched deletes step over keys that are already gone.
  std::vector<uint32_t> doomed;
  for (uint32_t id = 1; id <= 5000; ++id) {
    doomed.push_back(id);
    if (id == 2500) {
      doomed.push_back(77777);  // never written
    }
  }
  auto deleted = backends.eraseBatch(doomed);
  REQUIRE(deleted.ok());
  CHECK(*deleted == 5000);
  auto left = backends.entries();
  REQUIRE(left.ok());
  CHECK(left->size() == 5000);
  CHECK_FALSE(backends.lookup(2501)->has_value());
  CHECK(backends.lookup(5001)->has_value());
  // The ipcache (an LPM trie) has no batch operations: the same calls fall back to one key at a time.
  std::vector<std::pair<plexus_ipcache_key, plexus_ipcache_value>> cidrs;
  for (uint32_t i = 0; i < 3; ++i) {
    plexus_ipcache_key k{};
    k.prefixlen = 24;
    k.ip = Ipv4(Ipv4::parse("172.16.0.0")->hostOrder() + (i << 8)).networkOrder();
    plexus_ipcache_value v{};
    v.identity = PLEXUS_IDENTITY_LOCAL_FLAG + i;
    cidrs.emplace_back(k, v);
  }
  REQUIRE(f.dp->ipcache().updateBatch(cidrs).ok());
  auto all = f.dp->ipcache().entries();
  REQUIRE(all.ok());
  size_t found = 0;
  for (const auto& [k, v] : *all) {
    found += k.prefixlen == 24 && v.identity >= PLEXUS_IDENTITY_LOCAL_FLAG;
  }
  CHECK(found == 3);
}
