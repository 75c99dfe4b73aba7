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

  HostFixture() {
    datapath::LxcConfig cfg;
    cfg.bpf_root = bpffs.path() + "/plexus";
    auto loaded = datapath::HostDatapath::load(cfg);
    INFO((loaded.ok() ? std::string() : loaded.error().message));
    REQUIRE(loaded.ok());
    host = std::move(loaded.value());
    // The node's address is identity host in the ipcache, as the agent writes it.
    plexus_ipcache_key k{};
    k.prefixlen = 32;
    k.ip = kNodeIp.networkOrder();
    plexus_ipcache_value v{};
    v.identity = PLEXUS_IDENTITY_HOST;
    REQUIRE(dp->ipcache().update(k, v).ok());
  }

  // A NodePort frontend on the node's address; backend ids in `backends` are pod B on :8080.
  void installNodePort(const std::vector<uint32_t>& backends) {
    auto& lb = dp->lb();
    plexus_lb4_key key{};
    key.address = kNodeIp.networkOrder();
    key.dport = htons(kNodePort);
    key.proto = IPPROTO_TCP;
    key.scope = PLEXUS_LB_SCOPE_EXTERNAL;
    for (size_t i = 0; i < backends.size(); ++i) {
      plexus_lb4_backend b{};
      b.address = kPodB.networkOrder();
      b.port = htons(8080);
      b.proto = IPPROTO_TCP;
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

  Run fromOutside(uint16_t sport, uint8_t flags, Ipv4 dst = kNodeIp) {
    PacketSpec s{kClientMac, kDeviceMac, kClient, dst, IPPROTO_TCP};
    s.sport = sport;
    s.dport = kNodePort;
    s.tcp_flags = flags;
    return run(host->fromNetdevFd(), ipv4Packet(s));
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
