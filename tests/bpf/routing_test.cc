// [bpf] routing modes through BPF_PROG_TEST_RUN: which packets from-container puts into the tunnel (and with which
// identity), what the tunnel device's egress program keys, and that the defaults keep the single-node behaviour.
// test_run cannot show a tunnel key; tunnel_test.cc checks the key on real VXLAN devices.
#include "lxc_fixture.h"
#include "plexus/datapath/host_datapath.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

const Ipv4 kRemotePod = *Ipv4::parse("10.244.1.7");
const Ipv4 kRemoteNode = *Ipv4::parse("192.0.2.20");
const Ipv4 kRemoteNodeOther = *Ipv4::parse("192.0.2.21");
constexpr uint32_t kRemotePodIdentity = 4242;
constexpr uint32_t kTunnelIfindex = 1;  // test_run does not check the redirect target

datapath::LxcConfig tunnelConfig() {
  datapath::LxcConfig cfg;
  cfg.routing_mode = datapath::RoutingMode::kTunnel;
  cfg.tunnel_ifindex = kTunnelIfindex;
  return cfg;
}

void setIpcache(Fixture& f, const std::string& prefix, uint32_t identity, Ipv4 tunnel_endpoint) {
  auto p = *Ipv4Prefix::parse(prefix);
  plexus_ipcache_key k{};
  k.prefixlen = static_cast<uint32_t>(p.length());
  k.ip = p.network().networkOrder();
  plexus_ipcache_value v{};
  v.identity = identity;
  v.tunnel_endpoint = tunnel_endpoint.networkOrder();
  REQUIRE(f.dp->ipcache().update(k, v).ok());
}

// The agent's ipcache on a multi-node cluster: the remote pod, its node's pod CIDR, the remote node itself.
void seedRemote(Fixture& f) {
  setIpcache(f, kRemotePod.toString() + "/32", kRemotePodIdentity, kRemoteNode);
  setIpcache(f, "10.244.1.0/24", PLEXUS_IDENTITY_UNKNOWN, kRemoteNode);
  setIpcache(f, kRemoteNode.toString() + "/32", PLEXUS_IDENTITY_REMOTE_NODE, Ipv4{});
}

std::vector<uint8_t> fromPodA(Ipv4 dst, uint16_t sport = 40000) {
  PacketSpec s{kPodAMac, kNodeAMac, kPodA, dst, IPPROTO_TCP};
  s.sport = sport;
  return ipv4Packet(s);
}

}  // namespace

TEST_CASE("tunnel mode: from-container redirects a remote pod's traffic into the tunnel, unchanged", "[bpf][tunnel]") {
  Fixture f(tunnelConfig());
  seedRemote(f);
  drainEvents(f.dp->eventsFd());
  auto pkt = fromPodA(kRemotePod);
  auto r = f.run(f.dp->fromContainerFd(), pkt);
  CHECK(r.retval == TC_ACT_REDIRECT);
  CHECK(r.out == pkt);  // the inner frame travels as the pod sent it (no TTL or L2 rewrite before encapsulation)
  CHECK(f.counter(PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) == 1);
  CHECK(f.counter(PLEXUS_REASON_FORWARDED, PLEXUS_DIR_EGRESS) == 0);
  auto events = drainEvents(f.dp->eventsFd());
  REQUIRE(events.size() == 1);
  CHECK(events[0].verdict == PLEXUS_VERDICT_FORWARDED);
  CHECK(events[0].reason == PLEXUS_REASON_FORWARDED_TUNNEL);
  CHECK(events[0].src_identity == PLEXUS_IDENTITY_CLUSTER_MIN + 1);  // pod A: the VNI it was sent with
  CHECK(events[0].dst_identity == kRemotePodIdentity);
  CHECK(Ipv4::fromNetwork(events[0].daddr) == kRemotePod);

  // Any address of the remote pod CIDR has the node as tunnel endpoint.
  CHECK(f.run(f.dp->fromContainerFd(), fromPodA(*Ipv4::parse("10.244.1.99"))).retval == TC_ACT_REDIRECT);
  CHECK(f.counter(PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) == 2);
}

TEST_CASE("tunnel mode: destinations without a tunnel endpoint and local pods are not tunnelled", "[bpf][tunnel]") {
  Fixture f(tunnelConfig());
  seedRemote(f);
  // The remote node's own address (no tunnel endpoint) and the world go to the stack unchanged.
  for (Ipv4 dst : {kRemoteNode, *Ipv4::parse("8.8.8.8")}) {
    INFO(dst.toString());
    auto pkt = fromPodA(dst);
    auto r = f.run(f.dp->fromContainerFd(), pkt);
    CHECK(r.retval == TC_ACT_OK);
    CHECK(r.out == pkt);
  }
  // A local pod is still delivered with redirect_peer (L2 rewritten for pod B).
  auto r = f.run(f.dp->fromContainerFd(), fromPodA(kPodB));
  CHECK(r.retval == TC_ACT_REDIRECT);
  CHECK(macAt(r.out, 0) == kPodBMac);
  CHECK(f.counter(PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) == 0);
}

TEST_CASE("native mode (the default): a remote pod's traffic goes to the stack as on a single node", "[bpf][tunnel]") {
  Fixture f;
  seedRemote(f);
  auto pkt = fromPodA(kRemotePod);
  auto r = f.run(f.dp->fromContainerFd(), pkt);
  CHECK(r.retval == TC_ACT_OK);
  CHECK(r.out == pkt);
  CHECK(f.counter(PLEXUS_REASON_FORWARDED, PLEXUS_DIR_EGRESS) == 1);
  CHECK(f.counter(PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) == 0);
}

TEST_CASE("tunnel mode: egress policy is judged before the tunnel", "[bpf][tunnel]") {
  Fixture f(tunnelConfig());
  seedRemote(f);
  REQUIRE(f.dp->policy().set(1, {}).ok());  // pod A may send nothing
  CHECK(f.run(f.dp->fromContainerFd(), fromPodA(kRemotePod)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_EGRESS) == 1);
  CHECK(f.counter(PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) == 0);
}

TEST_CASE("tunnel mode: an identity that does not fit the VNI is refused, never truncated", "[bpf][tunnel]") {
  Fixture f(tunnelConfig());
  seedRemote(f);
  // Pod A with a node-local identity (bit 24): masking it to 24 bits would send identity 257's VNI.
  plexus_endpoint_key k{};
  k.ip = kPodA.networkOrder();
  auto v = f.dp->endpoints().lookup(k);
  REQUIRE(v.ok());
  REQUIRE(v->has_value());
  plexus_endpoint_value ep = **v;
  ep.identity = PLEXUS_IDENTITY_LOCAL_FLAG | (PLEXUS_IDENTITY_CLUSTER_MIN + 1);
  REQUIRE(f.dp->endpoints().update(k, ep).ok());
  CHECK(f.run(f.dp->fromContainerFd(), fromPodA(kRemotePod)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_INVALID_IDENTITY, PLEXUS_DIR_EGRESS) == 1);
}

TEST_CASE("tunnel mode needs the tunnel device", "[bpf][tunnel]") {
  TempDir tmp;
  BpffsMount bpffs{tmp.path() + "/bpffs"};
  datapath::LxcConfig cfg = tunnelConfig();
  cfg.tunnel_ifindex = 0;
  cfg.bpf_root = bpffs.path() + "/plexus";
  auto loaded = datapath::LxcDatapath::load(cfg);
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.error().message.find("tunnel") != std::string::npos);
}

namespace {
// Monitor aggregation off: host traffic into the tunnel is tracked by no connection, so only a drop would make an event
// under the default aggregation.
datapath::LxcConfig everyPacketConfig() {
  datapath::LxcConfig cfg = tunnelConfig();
  cfg.monitor_aggregation = PLEXUS_AGGREGATION_NONE;
  return cfg;
}

struct OverlayFixture : Fixture {
  std::unique_ptr<datapath::OverlayDatapath> overlay;
  OverlayFixture() : Fixture(everyPacketConfig()) {
    datapath::LxcConfig cfg = everyPacketConfig();
    cfg.bpf_root = bpffs.path() + "/plexus";
    auto loaded = datapath::OverlayDatapath::load(cfg);
    INFO((loaded.ok() ? std::string() : loaded.error().message));
    REQUIRE(loaded.ok());
    overlay = std::move(loaded.value());
    seedRemote(*this);
  }
};
}  // namespace

TEST_CASE("to-overlay keys host traffic from the ipcache, and drops what has no tunnel endpoint", "[bpf][tunnel]") {
  OverlayFixture f;
  drainEvents(f.dp->eventsFd());
  const Ipv4 node_ip = *Ipv4::parse("192.0.2.10");
  // The host stack routed the packet into the device: no key yet. It gets one and goes on.
  PacketSpec host{Mac{}, Mac{}, node_ip, kRemotePod, IPPROTO_UDP};
  auto r = f.run(f.overlay->toOverlayFd(), ipv4Packet(host));
  CHECK(r.retval == TC_ACT_OK);
  CHECK(f.counter(PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) == 1);
  auto events = drainEvents(f.dp->eventsFd());
  REQUIRE(events.size() == 1);
  CHECK(events[0].reason == PLEXUS_REASON_FORWARDED_TUNNEL);
  CHECK(events[0].src_identity == PLEXUS_IDENTITY_HOST);
  CHECK(events[0].dst_identity == kRemotePodIdentity);

  // A local pod's packet that took the stack path keeps the pod's identity.
  PacketSpec pod{Mac{}, Mac{}, kPodA, kRemotePod, IPPROTO_UDP};
  CHECK(f.run(f.overlay->toOverlayFd(), ipv4Packet(pod)).retval == TC_ACT_OK);
  events = drainEvents(f.dp->eventsFd());
  REQUIRE(events.size() == 1);
  CHECK(events[0].src_identity == PLEXUS_IDENTITY_CLUSTER_MIN + 1);

  // Routed into the device, but the ipcache names no node for it: dropped with its reason, not sent nowhere.
  for (Ipv4 dst : {kRemoteNodeOther, *Ipv4::parse("10.245.0.1")}) {
    PacketSpec lost{Mac{}, Mac{}, node_ip, dst, IPPROTO_UDP};
    CHECK(f.run(f.overlay->toOverlayFd(), ipv4Packet(lost)).retval == TC_ACT_SHOT);
  }
  CHECK(f.counter(PLEXUS_REASON_NO_TUNNEL_ENDPOINT, PLEXUS_DIR_EGRESS) == 2);
  events = drainEvents(f.dp->eventsFd());
  REQUIRE(events.size() == 2);
  CHECK(events[0].verdict == PLEXUS_VERDICT_DROPPED);
  CHECK(events[0].reason == PLEXUS_REASON_NO_TUNNEL_ENDPOINT);
}

TEST_CASE("from-overlay drops a packet without tunnel metadata", "[bpf][tunnel]") {
  OverlayFixture f;
  PacketSpec s{kPodAMac, kNodeAMac, kRemotePod, kPodB, IPPROTO_UDP};
  CHECK(f.run(f.overlay->fromOverlayFd(), ipv4Packet(s)).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_INVALID_PACKET, PLEXUS_DIR_INGRESS) == 1);
}

namespace {
// BPF host routing on the external device: the host programs loaded with host_routing, a NodePort frontend whose
// only backend is local pod B.
struct HostRoutingFixture : Fixture {
  std::unique_ptr<datapath::HostDatapath> host;
  const Ipv4 node_ip = *Ipv4::parse("192.0.2.10");
  const Ipv4 client = *Ipv4::parse("198.51.100.7");

  static datapath::LxcConfig config() {
    datapath::LxcConfig cfg;
    cfg.host_routing = true;
    return cfg;
  }

  HostRoutingFixture() : Fixture(config()) {
    host = loadHost(config());
    auto& lb = dp->lb();
    plexus_lb4_key key{};
    key.address = node_ip.networkOrder();
    key.dport = htons(30080);
    key.proto = IPPROTO_TCP;
    plexus_lb4_backend b{};
    b.address = kPodB.networkOrder();
    b.port = htons(8080);
    b.proto = IPPROTO_TCP;
    REQUIRE(lb.backends.update(1, b).ok());
    plexus_lb4_service slot{};
    slot.backend_id = 1;
    slot.rev_nat_index = 9;
    key.backend_slot = 1;
    REQUIRE(lb.services.update(key, slot).ok());
    plexus_lb4_service master{};
    master.count = 1;
    master.rev_nat_index = 9;
    master.flags = PLEXUS_SVC_F_NODEPORT;
    key.backend_slot = 0;
    REQUIRE(lb.services.update(key, master).ok());
    plexus_lb4_reverse_nat rn{};
    rn.address = node_ip.networkOrder();
    rn.port = htons(30080);
    REQUIRE(lb.revnat.update(9, rn).ok());
  }

  Run fromOutside(Ipv4 dst, uint16_t dport, uint16_t sport = 50000) {
    PacketSpec s{*Mac::parse("02:aa:00:00:00:01"), *Mac::parse("02:bb:00:00:00:01"), client, dst, IPPROTO_TCP};
    s.sport = sport;
    s.dport = dport;
    return run(host->fromNetdevFd(), ipv4Packet(s));
  }
};
}  // namespace

TEST_CASE("host routing: from-netdev delivers local pods' traffic into the pod after its ingress policy",
          "[bpf][native]") {
  HostRoutingFixture f;
  // Straight to pod B: redirected to the peer, L2 for pod B, TTL decremented.
  auto r = f.fromOutside(kPodB, 8080);
  CHECK(r.retval == TC_ACT_REDIRECT);
  CHECK(macAt(r.out, 0) == kPodBMac);
  CHECK(macAt(r.out, 6) == kNodeBMac);
  CHECK(reinterpret_cast<const iphdr*>(r.out.data() + 14)->ttl == 63);
  CHECK(f.counter(PLEXUS_REASON_FORWARDED, PLEXUS_DIR_INGRESS) == 1);

  // NodePort keeps working: translated to pod B, then delivered the same way, counted as the translation.
  auto np = f.fromOutside(f.node_ip, 30080, 50001);
  CHECK(np.retval == TC_ACT_REDIRECT);
  CHECK(Ipv4::fromNetwork(reinterpret_cast<const iphdr*>(np.out.data() + 14)->daddr) == kPodB);
  CHECK(macAt(np.out, 0) == kPodBMac);
  CHECK(f.counter(PLEXUS_REASON_SERVICE_TRANSLATED, PLEXUS_DIR_INGRESS) == 1);

  // Pod B admits nothing: dropped here, since the redirect skips its to-container program.
  REQUIRE(f.dp->policy().set(2, {}).ok());
  CHECK(f.fromOutside(kPodB, 8080, 50002).retval == TC_ACT_SHOT);
  CHECK(f.counter(PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) == 1);

  // Not a local pod: the stack's, uncounted.
  CHECK(f.fromOutside(*Ipv4::parse("10.244.9.9"), 80, 50003).retval == TC_ACT_OK);

  // A segment cut short inside its ports: dropped as invalid when it is for a local pod (it would enter the pod
  // unjudged), left to the stack otherwise.
  for (Ipv4 dst : {kPodB, f.node_ip}) {
    PacketSpec s{*Mac::parse("02:aa:00:00:00:01"), *Mac::parse("02:bb:00:00:00:01"), f.client, dst, IPPROTO_TCP};
    auto cut = ipv4Packet(s);
    cut.resize(sizeof(ethhdr) + sizeof(iphdr) + 2);
    CHECK(f.run(f.host->fromNetdevFd(), cut).retval == (dst == kPodB ? TC_ACT_SHOT : TC_ACT_OK));
  }
  CHECK(f.counter(PLEXUS_REASON_INVALID_PACKET, PLEXUS_DIR_INGRESS) == 1);
}
