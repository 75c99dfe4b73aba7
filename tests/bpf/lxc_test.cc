// [bpf] tests: the real bpf_lxc programs through BPF_PROG_TEST_RUN with crafted packets and seeded maps.
#include <bpf/bpf.h>
#include <linux/pkt_cls.h>

#include <catch2/catch.hpp>

#include "packet.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/reasons.h"
#include "testing.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

const Mac kPodAMac = *Mac::parse("02:00:00:00:00:0a");
const Mac kNodeAMac = *Mac::parse("02:00:00:00:01:0a");
const Mac kPodBMac = *Mac::parse("02:00:00:00:00:0b");
const Mac kNodeBMac = *Mac::parse("02:00:00:00:01:0b");
const Ipv4 kPodA = *Ipv4::parse("10.244.0.5");
const Ipv4 kPodB = *Ipv4::parse("10.244.0.6");
const Ipv4 kGateway = *Ipv4::parse("10.244.0.1");
// BPF_PROG_TEST_RUN runs on the loopback device unless told otherwise: pod A "lives" behind ifindex 1.
constexpr uint32_t kPodAIfindex = 1;
constexpr uint32_t kPodBIfindex = 4242;

struct Fixture {
  TempDir tmp;
  BpffsMount bpffs{tmp.path() + "/bpffs"};
  std::unique_ptr<datapath::LxcDatapath> dp;

  explicit Fixture(datapath::LxcConfig cfg = {}) {
    cfg.bpf_root = bpffs.path() + "/plexus";
    auto loaded = datapath::LxcDatapath::load(cfg);
    REQUIRE(loaded.ok());
    dp = std::move(loaded.value());
    addEndpoint(kPodA, kPodAIfindex, 1, kPodAMac, kNodeAMac, 0);
    addEndpoint(kPodB, kPodBIfindex, 2, kPodBMac, kNodeBMac, 0);
    addEndpoint(kGateway, 0, 0, Mac{}, Mac{}, PLEXUS_EP_F_HOST);
  }

  void addEndpoint(Ipv4 ip, uint32_t ifindex, uint16_t id, const Mac& pod, const Mac& node, uint16_t flags) {
    plexus_endpoint_key k{};
    k.ip = ip.networkOrder();
    plexus_endpoint_value v{};
    v.ifindex = ifindex;
    v.ep_id = id;
    v.identity = 256 + id;
    v.flags = flags;
    std::memcpy(v.pod_mac, pod.b, 6);
    std::memcpy(v.node_mac, node.b, 6);
    REQUIRE(dp->endpoints().update(k, v).ok());
  }

  struct Run {
    int retval = -1;
    std::vector<uint8_t> out;
  };

  Run run(int prog_fd, const std::vector<uint8_t>& pkt) {
    Run r;
    r.out.resize(pkt.size() + 256);
    __sk_buff ctx{};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data(), .data_out = r.out.data(),
                .data_size_in = static_cast<uint32_t>(pkt.size()), .data_size_out = static_cast<uint32_t>(r.out.size()),
                .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = 1);
    int err = bpf_prog_test_run_opts(prog_fd, &opts);
    REQUIRE(err == 0);
    r.retval = static_cast<int>(opts.retval);
    r.out.resize(opts.data_size_out);
    return r;
  }

  uint64_t counter(uint8_t reason, uint8_t direction) {
    auto entries = dp->metrics().entries();
    REQUIRE(entries.ok());
    uint64_t packets = 0;
    for (const auto& [k, per_cpu] : *entries) {
      if (k.reason == reason && k.direction == direction) {
        for (const auto& v : per_cpu) {
          packets += v.packets;
        }
      }
    }
    return packets;
  }
};

Mac macAt(const std::vector<uint8_t>& pkt, size_t off) {
  Mac m;
  std::memcpy(m.b, pkt.data() + off, 6);
  return m;
}

}  // namespace

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
