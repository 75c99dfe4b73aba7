// [bpf] spec.loadBalancerSourceRanges on the real host program: a LoadBalancer frontend whose master carries
// PLEXUS_SVC_F_SOURCE_RANGE admits clients from outside the node only when plexus_lb4_source_range_v1 holds a range of
// its reverse-NAT index around them; others are dropped as NOT_IN_SRC_RANGE, counted and reported. The keys are made
// by the planner's own encoder (lb::makeSourceRangeKey), so an encoding the trie cannot match fails here.
#include "lxc_fixture.h"
#include "plexus/datapath/host_datapath.h"
#include "plexus/lb/planner.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

const Ipv4 kLbIp = *Ipv4::parse("203.0.113.7");  // status.loadBalancer.ingress
const Ipv4 kInside = *Ipv4::parse("198.51.100.7");
const Ipv4 kOutside = *Ipv4::parse("192.0.2.99");
const Mac kClientMac = *Mac::parse("02:aa:00:00:00:02");
const Mac kDeviceMac = *Mac::parse("02:bb:00:00:00:02");
constexpr uint16_t kRevNat = 11;

struct RangeFixture : Fixture {
  std::unique_ptr<datapath::HostDatapath> host;

  RangeFixture() {
    host = loadHost();
    // The LoadBalancer frontend kLbIp:80 -> pod B :8080 (backend 1), restricted to source ranges.
    auto& lb = dp->lb();
    plexus_lb4_backend b{};
    b.address = kPodB.networkOrder();
    b.port = htons(8080);
    b.proto = IPPROTO_TCP;
    REQUIRE(lb.backends.update(1, b).ok());
    plexus_lb4_service slot{};
    slot.backend_id = 1;
    slot.rev_nat_index = kRevNat;
    REQUIRE(lb.services.update(lb::makeLbKey(kLbIp, 80, IPPROTO_TCP, PLEXUS_LB_SCOPE_EXTERNAL, 1), slot).ok());
    plexus_lb4_service master{};
    master.count = 1;
    master.rev_nat_index = kRevNat;
    master.flags = PLEXUS_SVC_F_LOADBALANCER | PLEXUS_SVC_F_SOURCE_RANGE;
    REQUIRE(lb.services.update(lb::makeLbKey(kLbIp, 80, IPPROTO_TCP, PLEXUS_LB_SCOPE_EXTERNAL, 0), master).ok());
    plexus_lb4_reverse_nat rn{};
    rn.address = kLbIp.networkOrder();
    rn.port = htons(80);
    REQUIRE(lb.revnat.update(kRevNat, rn).ok());
  }

  void allow(uint16_t rev_nat_index, const char* cidr) {
    REQUIRE(dp->lb().source_ranges.update(lb::makeSourceRangeKey(rev_nat_index, *Ipv4Prefix::parse(cidr)), 1).ok());
  }
  void disallow(uint16_t rev_nat_index, const char* cidr) {
    REQUIRE(dp->lb().source_ranges.erase(lb::makeSourceRangeKey(rev_nat_index, *Ipv4Prefix::parse(cidr))).ok());
  }

  Run fromOutside(Ipv4 client, uint16_t sport, uint8_t flags = 0x02) {
    PacketSpec s{kClientMac, kDeviceMac, client, kLbIp, IPPROTO_TCP};
    s.sport = sport;
    s.dport = 80;
    s.tcp_flags = flags;
    return run(host->fromNetdevFd(), ipv4Packet(s));
  }

  static Ipv4 destination(const Run& r) {
    return Ipv4::fromNetwork(reinterpret_cast<const iphdr*>(r.out.data() + 14)->daddr);
  }
};

}  // namespace

TEST_CASE("from-netdev: a LoadBalancer IP admits a client inside its source ranges and drops one outside, counted "
          "and reported as NOT_IN_SRC_RANGE",
          "[bpf][host][source-range]") {
  RangeFixture f;
  f.allow(kRevNat, "198.51.100.0/24");
  f.allow(kRevNat + 1, "192.0.2.0/24");  // another frontend's range admits nobody here
  drainEvents(f.dp->eventsFd());

  auto in = f.fromOutside(kInside, 51000);
  CHECK(in.retval == TC_ACT_OK);
  CHECK(RangeFixture::destination(in) == kPodB);

  auto out = f.fromOutside(kOutside, 51001);
  CHECK(out.retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_NOT_IN_SRC_RANGE, PLEXUS_DIR_INGRESS) == 1);
  CHECK(f.counter(PLEXUS_REASON_SERVICE_TRANSLATED, PLEXUS_DIR_INGRESS) == 1);
  auto events = drainEvents(f.dp->eventsFd());
  const plexus_flow_event* drop = nullptr;
  for (const auto& e : events) {
    if (e.verdict == PLEXUS_VERDICT_DROPPED) {
      drop = &e;
    }
  }
  REQUIRE(drop);
  CHECK(drop->reason == PLEXUS_REASON_NOT_IN_SRC_RANGE);
  CHECK(drop->direction == PLEXUS_DIR_INGRESS);
  CHECK(Ipv4::fromNetwork(drop->saddr) == kOutside);
  CHECK(Ipv4::fromNetwork(drop->daddr) == kLbIp);
  CHECK(ntohs(drop->dport) == 80);
  CHECK(ntohs(drop->sport) == 51001);
  // No conntrack entry was created for the refused client: nothing of its flow survives.
  auto ct = f.dp->lb().ct.entries();
  REQUIRE(ct.ok());
  for (const auto& [k, v] : *ct) {
    CHECK(Ipv4::fromNetwork(k.saddr) != kOutside);
    CHECK(Ipv4::fromNetwork(k.daddr) != kOutside);
  }
}

TEST_CASE("from-netdev: source ranges are checked on every packet, so narrowing them ends established flows; "
          "0.0.0.0/0 admits all; without the flag nothing is checked",
          "[bpf][host][source-range]") {
  RangeFixture f;
  f.allow(kRevNat, "198.51.100.0/24");
  REQUIRE(f.fromOutside(kInside, 52000).retval == TC_ACT_OK);
  REQUIRE(f.fromOutside(kInside, 52000, 0x10).retval == TC_ACT_OK);
  f.disallow(kRevNat, "198.51.100.0/24");
  CHECK(f.fromOutside(kInside, 52000, 0x10).retval == TC_ACT_SHOT);  // the established flow's next ACK
  CHECK(f.fromOutside(kInside, 52001).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_NOT_IN_SRC_RANGE, PLEXUS_DIR_INGRESS) == 2);

  f.allow(kRevNat, "0.0.0.0/0");
  CHECK(f.fromOutside(kOutside, 52002).retval == TC_ACT_OK);
  CHECK(f.fromOutside(kInside, 52003).retval == TC_ACT_OK);

  // A frontend without the flag ignores the map entirely (an empty trie for its index admits all).
  f.disallow(kRevNat, "0.0.0.0/0");
  auto key = lb::makeLbKey(kLbIp, 80, IPPROTO_TCP, PLEXUS_LB_SCOPE_EXTERNAL, 0);
  auto master = f.dp->lb().services.lookup(key);
  REQUIRE(master.ok());
  REQUIRE(master->has_value());
  plexus_lb4_service open = **master;
  open.flags &= static_cast<uint16_t>(~PLEXUS_SVC_F_SOURCE_RANGE);
  REQUIRE(f.dp->lb().services.update(key, open).ok());
  CHECK(f.fromOutside(kOutside, 52004).retval == TC_ACT_OK);
  CHECK(f.counter(PLEXUS_REASON_NOT_IN_SRC_RANGE, PLEXUS_DIR_INGRESS) == 2);
}

TEST_CASE("a local pod reaching the LoadBalancer IP (internal scope, from-container) is not subject to the ranges",
          "[bpf][lb][source-range]") {
  RangeFixture f;  // no range at all: every outside client is refused
  PacketSpec s{kPodAMac, kNodeAMac, kPodA, kLbIp, IPPROTO_TCP};
  s.sport = 53000;
  s.dport = 80;
  auto r = f.run(f.dp->fromContainerFd(), ipv4Packet(s));
  CHECK(r.retval != TC_ACT_SHOT);
  CHECK(RangeFixture::destination(r) == kPodB);
  CHECK(f.counter(PLEXUS_REASON_NOT_IN_SRC_RANGE, PLEXUS_DIR_EGRESS) == 0);
  CHECK(f.fromOutside(kOutside, 53001).retval == TC_ACT_SHOT);
}

TEST_CASE("capacity: --bpf-lb-map-max sizes the source range trie for every program sharing it, and a full trie is "
          "ResourceExhausted naming it",
          "[bpf][capacity][source-range]") {
  datapath::LxcConfig cfg;
  cfg.sizes.lb = 16;
  Fixture f(cfg);
  auto info = datapath::mapInfo(f.dp->lb().source_ranges.fd());
  REQUIRE(info.ok());
  CHECK(info->max_entries == 16);
  CHECK(info->type == BPF_MAP_TYPE_LPM_TRIE);
  cfg.bpf_root = f.bpffs.path() + "/plexus";
  auto host = datapath::HostDatapath::load(cfg);  // opens the same pin with the same size: nothing moved aside
  REQUIRE(host.ok());
  for (uint32_t i = 0; i < 16; ++i) {
    auto k = lb::makeSourceRangeKey(static_cast<uint16_t>(i + 1), *Ipv4Prefix::parse("10.0.0.0/8"));
    REQUIRE(f.dp->lb().source_ranges.update(k, 1).ok());
  }
  auto full = f.dp->lb().source_ranges.update(lb::makeSourceRangeKey(17, *Ipv4Prefix::parse("10.0.0.0/8")), 1);
  REQUIRE_FALSE(full.ok());
  CHECK(full.error().code == ErrorCode::kResourceExhausted);
  CHECK(full.error().message == "map plexus_lb4_source_range_v1 is full (16 entries)");
}
