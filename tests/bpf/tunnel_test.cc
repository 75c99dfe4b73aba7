// [bpf] routing modes on real devices: two "node" namespaces joined by a veth underlay, each with a pod namespace
// behind a host veth, the real programs attached, and UDP sent between the pods. What BPF_PROG_TEST_RUN cannot show
// is checked here: the VNI a packet was encapsulated with (the receiving node reports it as the source identity and
// judges policy by it), delivery into the pod with bpf_redirect_peer, and BPF host routing (fib lookup + redirect),
// which bypasses the node's netfilter FORWARD chain.
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <thread>

#include "lxc_fixture.h"
#include "plexus/datapath/host_datapath.h"
#include "plexus/datapath/netlink.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

// Runs fn on a thread inside the namespace (tc attachment talks netlink in the caller's namespace).
void inNetns(const Netns& ns, const std::function<void()>& fn) {
  bool entered = false;
  std::thread t([&] {
    int fd = open(ns.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return;
    }
    entered = setns(fd, CLONE_NEWNET) == 0;
    close(fd);
    if (entered) {
      fn();
    }
  });
  t.join();
  REQUIRE(entered);
}

void must(const Netns& ns, const std::string& cmd) {
  auto r = ns.exec(cmd);
  INFO(ns.name() << ": " << cmd << ": " << r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

std::string read(const Netns& ns, const std::string& cmd) {
  auto r = ns.exec(cmd);
  INFO(cmd << ": " << r.err);
  REQUIRE(r.exit_code == 0);
  std::string s = r.out;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

uint32_t ifindexOf(const Netns& ns, const std::string& dev) {
  return static_cast<uint32_t>(std::stoul(read(ns, "cat /sys/class/net/" + dev + "/ifindex")));
}
Mac macOf(const Netns& ns, const std::string& dev) { return *Mac::parse(read(ns, "cat /sys/class/net/" + dev + "/address")); }

uint64_t counter(datapath::LxcDatapath& dp, uint8_t reason, uint8_t direction) {
  auto entries = dp.metrics().entries();
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

// A UDP datagram from `from` (source port sport, optionally bound to src_ip) to dst:dport, received in `to`. Sent
// up to `tries` times, each waiting 1 s (the first may wait for ARP); true when one arrived intact. A check that
// expects a drop sends once (kExpectDrop): a drop needs no retry, and a datagram wrongly let through would still
// arrive within the second, its ARP included.
constexpr int kExpectDrop = 1;

bool udpDelivered(const Netns& from, uint16_t sport, const Netns& to, Ipv4 dst, uint16_t dport,
                  const std::string& src_ip = "0.0.0.0", int tries = 3) {
  int rx = socketInNetns(to.path(), SOCK_DGRAM);
  int tx = socketInNetns(from.path(), SOCK_DGRAM);
  REQUIRE(rx >= 0);
  REQUIRE(tx >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(dport);
  REQUIRE(bind(rx, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  timeval tv{1, 0};
  setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in s{};
  s.sin_family = AF_INET;
  s.sin_port = htons(sport);
  inet_pton(AF_INET, src_ip.c_str(), &s.sin_addr);
  REQUIRE(bind(tx, reinterpret_cast<sockaddr*>(&s), sizeof(s)) == 0);
  sockaddr_in d{};
  d.sin_family = AF_INET;
  d.sin_port = htons(dport);
  d.sin_addr.s_addr = dst.networkOrder();
  const std::string msg = "plexus-routing";
  bool ok = false;
  for (int i = 0; i < tries && !ok; ++i) {
    sendto(tx, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&d), sizeof(d));
    char buf[64];
    ssize_t n = recv(rx, buf, sizeof(buf), 0);
    ok = n == static_cast<ssize_t>(msg.size()) && std::string(buf, static_cast<size_t>(n)) == msg;
  }
  close(rx);
  close(tx);
  return ok;
}

// The same datagram, expected dropped: sent once (kExpectDrop); true when it did not arrive.
bool udpDropped(const Netns& from, uint16_t sport, const Netns& to, Ipv4 dst, uint16_t dport,
                const std::string& src_ip = "0.0.0.0") {
  return !udpDelivered(from, sport, to, dst, dport, src_ip, kExpectDrop);
}

void setIpcache(datapath::LxcDatapath& dp, const std::string& prefix, uint32_t identity, Ipv4 tunnel_endpoint) {
  auto p = *Ipv4Prefix::parse(prefix);
  plexus_ipcache_key k{};
  k.prefixlen = static_cast<uint32_t>(p.length());
  k.ip = p.network().networkOrder();
  plexus_ipcache_value v{};
  v.identity = identity;
  v.tunnel_endpoint = tunnel_endpoint.networkOrder();
  REQUIRE(dp.ipcache().update(k, v).ok());
}

// Ingress allows exactly `peers` (any protocol and port); egress allows everything.
datapath::PolicyEntries ingressFrom(const std::vector<uint32_t>& peers) {
  datapath::PolicyEntries out;
  for (uint32_t id : peers) {
    plexus_policy_key k{};
    k.prefixlen = PLEXUS_POLICY_FIXED_PREFIX;
    k.identity = id;
    k.direction = PLEXUS_DIR_INGRESS;
    out.emplace_back(k, plexus_policy_value{});
  }
  plexus_policy_key e{};
  e.prefixlen = PLEXUS_POLICY_FIXED_PREFIX;
  e.direction = PLEXUS_DIR_EGRESS;
  out.emplace_back(e, plexus_policy_value{});
  return out;
}

// One node: its namespace, a pod namespace behind host veth "lxc0", and the node's datapath on a private bpffs.
struct Node {
  Netns ns{"pxn"};
  Netns pod{"pxp"};
  TempDir tmp;
  BpffsMount bpffs{tmp.path() + "/bpffs"};
  Ipv4 pod_ip;
  Ipv4 underlay_ip;
  uint16_t ep_id;
  uint32_t pod_identity;
  uint32_t lxc_ifindex = 0;
  uint32_t vxlan_ifindex = 0;
  std::unique_ptr<datapath::LxcDatapath> dp;
  std::unique_ptr<datapath::OverlayDatapath> overlay;
  std::unique_ptr<datapath::HostDatapath> host;

  Node(Ipv4 pod_ip_, Ipv4 underlay_ip_, uint16_t ep_id_, uint32_t identity)
      : pod_ip(pod_ip_), underlay_ip(underlay_ip_), ep_id(ep_id_), pod_identity(identity) {
    must(ns, "ip link set lo up");
    must(pod, "ip link set lo up");
    must(ns, "ip link add lxc0 type veth peer name eth0 netns " + pod.name());
    must(ns, "ip link set lxc0 up");
    must(pod, "ip addr add " + pod_ip.toString() + "/32 dev eth0");
    must(pod, "ip link set eth0 up");
    // The pod's gateway exists only in the datapath (from-container answers its ARP), as plexus-cni sets it up.
    must(pod, "ip route add 169.254.1.1/32 dev eth0 scope link");
    must(pod, "ip route add default via 169.254.1.1 dev eth0");
    must(ns, "ip route add " + pod_ip.toString() + "/32 dev lxc0");
    lxc_ifindex = ifindexOf(ns, "lxc0");
  }

  // The tunnel device, created by the agent's own call (collect-metadata VXLAN on PLEXUS_VXLAN_PORT).
  void addVxlan() {
    inNetns(ns, [&] {
      auto link = datapath::ensureVxlanDevice("plexus_vxlan", PLEXUS_VXLAN_PORT);
      INFO((link.ok() ? std::string() : link.error().message));
      REQUIRE(link.ok());
      vxlan_ifindex = static_cast<uint32_t>(link->ifindex);
    });
    REQUIRE(vxlan_ifindex == ifindexOf(ns, "plexus_vxlan"));
  }

  void load(datapath::LxcConfig cfg, bool with_overlay, bool with_host, const std::string& netdev = "") {
    cfg.bpf_root = bpffs.path() + "/plexus";
    auto loaded = datapath::LxcDatapath::load(cfg);
    INFO((loaded.ok() ? std::string() : loaded.error().message));
    REQUIRE(loaded.ok());
    dp = std::move(loaded.value());
    plexus_endpoint_key k{};
    k.ip = pod_ip.networkOrder();
    plexus_endpoint_value v{};
    v.ifindex = lxc_ifindex;
    v.identity = pod_identity;
    v.ep_id = ep_id;
    Mac pm = macOf(pod, "eth0");
    Mac nm = macOf(ns, "lxc0");
    std::memcpy(v.pod_mac, pm.b, 6);
    std::memcpy(v.node_mac, nm.b, 6);
    REQUIRE(dp->endpoints().update(k, v).ok());
    REQUIRE(dp->policy().set(ep_id, datapath::allowAllPolicy()).ok());
    if (with_overlay) {
      auto ov = datapath::OverlayDatapath::load(cfg);
      INFO((ov.ok() ? std::string() : ov.error().message));
      REQUIRE(ov.ok());
      overlay = std::move(ov.value());
    }
    if (with_host) {
      auto h = datapath::HostDatapath::load(cfg);
      INFO((h.ok() ? std::string() : h.error().message));
      REQUIRE(h.ok());
      host = std::move(h.value());
    }
    uint32_t netdev_ifindex = netdev.empty() ? 0 : ifindexOf(ns, netdev);
    inNetns(ns, [&] {
      auto st = dp->attachEndpoint(static_cast<int>(lxc_ifindex));
      INFO((st.ok() ? std::string() : st.error().message));
      REQUIRE(st.ok());
      if (overlay) {
        auto so = overlay->attachOverlay(static_cast<int>(vxlan_ifindex));
        INFO((so.ok() ? std::string() : so.error().message));
        REQUIRE(so.ok());
      }
      if (host) {
        auto sh = host->attachDevice(static_cast<int>(netdev_ifindex));
        INFO((sh.ok() ? std::string() : sh.error().message));
        REQUIRE(sh.ok());
      }
    });
  }
};

// Joins two nodes with a veth underlay ("ul0" on both sides).
void underlay(Node& a, Node& b) {
  must(a.ns, "ip link add ul0 type veth peer name ul0 netns " + b.ns.name());
  for (Node* n : {&a, &b}) {
    must(n->ns, "ip addr add " + n->underlay_ip.toString() + "/24 dev ul0");
    must(n->ns, "ip link set ul0 up");
  }
}

const Ipv4 kPod1 = *Ipv4::parse("10.244.1.5");
const Ipv4 kPod2 = *Ipv4::parse("10.244.2.6");
const Ipv4 kNode1 = *Ipv4::parse("192.168.77.1");
const Ipv4 kNode2 = *Ipv4::parse("192.168.77.2");
constexpr uint32_t kPod1Identity = 1001;
constexpr uint32_t kPod2Identity = 1002;
constexpr uint32_t kOtherIdentity = 1003;

datapath::LxcConfig tunnelConfig(uint32_t vxlan_ifindex) {
  datapath::LxcConfig cfg;
  cfg.routing_mode = datapath::RoutingMode::kTunnel;
  cfg.tunnel_ifindex = vxlan_ifindex;
  return cfg;
}

void setIdentity(Node& n, uint32_t identity) {
  plexus_endpoint_key k{};
  k.ip = n.pod_ip.networkOrder();
  auto v = n.dp->endpoints().lookup(k);
  REQUIRE(v.ok());
  REQUIRE(v->has_value());
  plexus_endpoint_value ep = **v;
  ep.identity = identity;
  REQUIRE(n.dp->endpoints().update(k, ep).ok());
}

}  // namespace

TEST_CASE("tunnel: the VNI carries the sender's identity and the receiver judges ingress policy by it",
          "[bpf][tunnel][kernel]") {
  Node n1(kPod1, kNode1, 1, kPod1Identity);
  Node n2(kPod2, kNode2, 2, kPod2Identity);
  underlay(n1, n2);
  n1.addVxlan();
  n2.addVxlan();
  n1.load(tunnelConfig(n1.vxlan_ifindex), true, false);
  n2.load(tunnelConfig(n2.vxlan_ifindex), true, false);
  // Each node's ipcache, as the agents write it: the other node's pod (identity, hosting node) and pod CIDR, the
  // other node's address.
  setIpcache(*n1.dp, kPod2.toString() + "/32", kPod2Identity, kNode2);
  setIpcache(*n1.dp, "10.244.2.0/24", PLEXUS_IDENTITY_UNKNOWN, kNode2);
  setIpcache(*n1.dp, kNode2.toString() + "/32", PLEXUS_IDENTITY_REMOTE_NODE, Ipv4{});
  setIpcache(*n2.dp, kPod1.toString() + "/32", kPod1Identity, kNode1);
  setIpcache(*n2.dp, "10.244.1.0/24", PLEXUS_IDENTITY_UNKNOWN, kNode1);
  setIpcache(*n2.dp, kNode1.toString() + "/32", PLEXUS_IDENTITY_REMOTE_NODE, Ipv4{});
  // Pod 2 admits pod 1's identity and other nodes' hosts, nothing else. Its ipcache entry for pod 1 says
  // kPod1Identity whatever the VNI says: only the VNI can make the verdicts below differ.
  REQUIRE(n2.dp->policy().set(2, ingressFrom({kPod1Identity, PLEXUS_IDENTITY_REMOTE_NODE})).ok());
  drainEvents(n2.dp->eventsFd());

  SECTION("a pod with an admitted identity reaches the remote pod") {
    REQUIRE(udpDelivered(n1.pod, 41001, n2.pod, kPod2, 7001));
    CHECK(counter(*n1.dp, PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) >= 1);
    CHECK(counter(*n2.dp, PLEXUS_REASON_FORWARDED, PLEXUS_DIR_INGRESS) >= 1);
    auto events = drainEvents(n2.dp->eventsFd());
    REQUIRE_FALSE(events.empty());
    CHECK(events[0].verdict == PLEXUS_VERDICT_FORWARDED);
    CHECK(events[0].src_identity == kPod1Identity);  // read from the VNI
    CHECK(events[0].dst_identity == kPod2Identity);
    CHECK(events[0].endpoint_id == 2);
    CHECK(Ipv4::fromNetwork(events[0].saddr) == kPod1);
  }

  SECTION("the same pod sending with another identity is denied by the receiver") {
    setIdentity(n1, kOtherIdentity);
    CHECK(udpDropped(n1.pod, 41002, n2.pod, kPod2, 7002));
    CHECK(counter(*n1.dp, PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) >= 1);
    CHECK(counter(*n2.dp, PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) >= 1);
    CHECK(counter(*n2.dp, PLEXUS_REASON_FORWARDED, PLEXUS_DIR_INGRESS) == 0);
    auto events = drainEvents(n2.dp->eventsFd());
    REQUIRE_FALSE(events.empty());
    CHECK(events[0].verdict == PLEXUS_VERDICT_DROPPED);
    CHECK(events[0].reason == PLEXUS_REASON_POLICY_DENIED);
    CHECK(events[0].src_identity == kOtherIdentity);
  }

  SECTION("a flow admitted by its VNI is judged by the VNI of each packet: a verdict kept for one is none for another") {
    REQUIRE(udpDelivered(n1.pod, 41007, n2.pod, kPod2, 7007));
    // The same flow (same tuple) now carries another identity; node 2's maps, and so its policy epoch, stay as they
    // were: a verdict kept in its conntrack entry would still let it through.
    setIdentity(n1, kOtherIdentity);
    CHECK(udpDropped(n1.pod, 41007, n2.pod, kPod2, 7007));
    CHECK(counter(*n2.dp, PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) >= 1);
  }

  SECTION("replies of an admitted flow come back through the tunnel; a new flow the other way is denied") {
    REQUIRE(n1.dp->policy().set(1, ingressFrom({})).ok());  // pod 1 admits nobody: only replies may reach it
    int a = socketInNetns(n1.pod.path(), SOCK_DGRAM);
    int b = socketInNetns(n2.pod.path(), SOCK_DGRAM);
    REQUIRE(a >= 0);
    REQUIRE(b >= 0);
    sockaddr_in la{};
    la.sin_family = AF_INET;
    la.sin_port = htons(41005);
    sockaddr_in lb{};
    lb.sin_family = AF_INET;
    lb.sin_port = htons(7005);
    REQUIRE(bind(a, reinterpret_cast<sockaddr*>(&la), sizeof(la)) == 0);
    REQUIRE(bind(b, reinterpret_cast<sockaddr*>(&lb), sizeof(lb)) == 0);
    timeval tv{3, 0};  // one datagram each way, no retry: the first waits for ARP on the pod and the underlay
    setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in to_b{};
    to_b.sin_family = AF_INET;
    to_b.sin_port = htons(7005);
    to_b.sin_addr.s_addr = kPod2.networkOrder();
    char buf[16];
    sockaddr_in from{};
    socklen_t from_len = sizeof(from);
    REQUIRE(sendto(a, "ping", 4, 0, reinterpret_cast<sockaddr*>(&to_b), sizeof(to_b)) == 4);
    REQUIRE(recvfrom(b, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len) == 4);
    CHECK(from.sin_addr.s_addr == kPod1.networkOrder());
    REQUIRE(sendto(b, "pong", 4, 0, reinterpret_cast<sockaddr*>(&from), from_len) == 4);
    CHECK(recv(a, buf, sizeof(buf), 0) == 4);  // the reply: pod 1's egress entry admits it at node 1's from-overlay
    CHECK(counter(*n1.dp, PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) >= 1);
    CHECK(counter(*n2.dp, PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) >= 1);
    CHECK(counter(*n1.dp, PLEXUS_REASON_FORWARDED, PLEXUS_DIR_INGRESS) >= 1);
    close(a);
    close(b);
    // Pod 2 opening its own flow to pod 1 is judged as new, and pod 1 admits nobody.
    CHECK(udpDropped(n2.pod, 7006, n1.pod, kPod1, 41006));
    CHECK(counter(*n1.dp, PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) >= 1);
  }

  SECTION("the host's traffic routed into the tunnel arrives as remote-node") {
    must(n1.ns, "ip route add 10.244.2.0/24 dev plexus_vxlan src " + kNode1.toString());
    REQUIRE(udpDelivered(n1.ns, 41003, n2.pod, kPod2, 7003));
    CHECK(counter(*n1.dp, PLEXUS_REASON_FORWARDED_TUNNEL, PLEXUS_DIR_EGRESS) >= 1);  // keyed by to-overlay
    // Node 2's events about the datagram (others, such as the underlay's own traffic, may come first).
    auto events = drainEvents(n2.dp->eventsFd());
    auto from_node1 = std::find_if(events.begin(), events.end(),
                                   [](const auto& e) { return Ipv4::fromNetwork(e.saddr) == kNode1; });
    REQUIRE(from_node1 != events.end());
    CHECK(from_node1->src_identity == PLEXUS_IDENTITY_REMOTE_NODE);  // VNI host (1), seen as remote-node
  }

  SECTION("the host's traffic is denied when the pod does not admit remote nodes") {
    REQUIRE(n2.dp->policy().set(2, ingressFrom({kPod1Identity})).ok());
    must(n1.ns, "ip route add 10.244.2.0/24 dev plexus_vxlan src " + kNode1.toString());
    CHECK(udpDropped(n1.ns, 41004, n2.pod, kPod2, 7004));
    CHECK(counter(*n2.dp, PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) >= 1);
  }
}

TEST_CASE("native routing: BPF host routing forwards past the node's FORWARD chain, the stack path does not",
          "[bpf][native][kernel]") {
  for (bool host_routing : {true, false}) {
    INFO("host routing " << host_routing);
    Node n1(kPod1, kNode1, 1, kPod1Identity);
    // The other node: only its underlay side and an address for its "pod" matter here.
    Node n2(kPod2, kNode2, 2, kPod2Identity);
    underlay(n1, n2);
    must(n2.ns, "ip addr add " + kPod2.toString() + "/32 dev lo");
    must(n2.ns, "ip route add 10.244.1.0/24 via " + kNode1.toString());
    // autoDirectNodeRoutes: the other node's pod CIDR via its InternalIP. Forwarding on (the FIB answers only for a
    // forwarding input device), but the FORWARD chain drops: only a redirect that skips the stack gets through.
    must(n1.ns, "ip route add 10.244.2.0/24 via " + kNode2.toString());
    must(n1.ns, "sysctl -qw net.ipv4.conf.all.forwarding=1");
    must(n1.ns, "iptables -P FORWARD DROP");
    datapath::LxcConfig cfg;
    cfg.host_routing = host_routing;
    n1.load(cfg, false, true, "ul0");
    setIpcache(*n1.dp, kNode2.toString() + "/32", PLEXUS_IDENTITY_REMOTE_NODE, Ipv4{});
    setIpcache(*n1.dp, "10.244.2.0/24", PLEXUS_IDENTITY_UNKNOWN, kNode2);  // the other node's pod CIDR, as the agent
    REQUIRE(n1.dp->policy().set(1, ingressFrom({PLEXUS_IDENTITY_REMOTE_NODE})).ok());

    // Out: the first datagram finds no neighbour for the next hop (redirect_neigh resolves it), later ones do.
    const int tries = host_routing ? 3 : kExpectDrop;
    CHECK(udpDelivered(n1.pod, 42001, n2.ns, kPod2, 7101, "0.0.0.0", tries) == host_routing);
    CHECK(udpDelivered(n1.pod, 42002, n2.ns, kPod2, 7102, "0.0.0.0", tries) == host_routing);
    CHECK((counter(*n1.dp, PLEXUS_REASON_FORWARDED_FIB, PLEXUS_DIR_EGRESS) >= 2) == host_routing);
    // A destination outside the cluster (no ipcache entry) always takes the stack, whose NAT it may need: the FORWARD
    // chain drops it in both modes.
    must(n2.ns, "ip addr add 198.51.100.7/32 dev lo");
    must(n1.ns, "ip route add 198.51.100.7/32 via " + kNode2.toString());
    CHECK(udpDropped(n1.pod, 42003, n2.ns, *Ipv4::parse("198.51.100.7"), 7104));

    // In: from the other node's address (remote-node, admitted) to the pod, and from an address the pod does not
    // admit (world).
    CHECK(udpDelivered(n2.ns, 42003, n1.pod, kPod1, 7103, kNode2.toString(), tries) == host_routing);
    CHECK(udpDropped(n2.ns, 42004, n1.pod, kPod1, 7104, kPod2.toString()));
    CHECK((counter(*n1.dp, PLEXUS_REASON_POLICY_DENIED, PLEXUS_DIR_INGRESS) >= 1) == host_routing);
  }
}
