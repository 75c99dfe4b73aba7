// BPF masquerade end to end: a node whose external device faces a "world" namespace that has no route to the pods.
// With --enable-bpf-masquerade a pod reaches it over TCP, UDP and ping with the device's address as source, and an
// ICMP error about a masqueraded flow (port unreachable) reaches the pod's socket.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "node_fixture.h"
#include "plexus/nat.h"

using namespace plexus::testing;

namespace {
std::string text(const sockaddr_in& a) {
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
  return buf;
}

// A TCP connection from a pod to a listener (on 192.0.2.2): both ends, and the client address the server sees.
struct Connection {
  int client = -1;
  int server = -1;
  sockaddr_in seen{};
  ~Connection() {
    for (int fd : {client, server}) {
      if (fd >= 0) {
        close(fd);
      }
    }
  }
};

void connectOut(const Pod& pod, int listener, uint16_t port, Connection* c) {
  c->client = tcpConnect(pod.netns->path(), "192.0.2.2", port);
  REQUIRE(c->client >= 0);
  c->server = acceptWithin(listener);
  REQUIRE(c->server >= 0);
  socklen_t len = sizeof(c->seen);
  REQUIRE(getpeername(c->server, reinterpret_cast<sockaddr*>(&c->seen), &len) == 0);
}

void receiveTimeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}
}  // namespace

TEST_CASE("masquerade: pods reach the world with the device's address, replies and ICMP errors come back",
          "[netns][masquerade]") {
  std::string dev = uniqueName("vm");
  std::string peer = uniqueName("vw");
  Netns world("wd");
  NodeFixture node("10.226.0.0/24", {"--devices", dev, "--enable-bpf-masquerade", "true"},
                   externalLink(dev, peer, world));
  Pod pod = node.addPod("client");

  SECTION("TCP: the server sees the node's address and a port of the masquerade range; data flows both ways") {
    auto [listener, port] = tcpListen(world.path(), 0);
    INFO(node.agent().log());
    {
      Connection c;
      connectOut(pod, listener, port, &c);
      CHECK(text(c.seen) == "192.0.2.1");
      uint16_t seen_port = ntohs(c.seen.sin_port);
      CHECK(((seen_port >= PLEXUS_SNAT_PORT_LOW_MIN && seen_port <= PLEXUS_SNAT_PORT_LOW_MAX) ||
             seen_port >= PLEXUS_SNAT_PORT_MIN));
      CHECK(exchange(c.client, c.server, "to the world"));
      CHECK(exchange(c.server, c.client, "and back"));
    }
    close(listener);
    // The translation is in the NAT map, both directions.
    auto nat = node.cliJson({"bpf", "nat", "list"});
    bool egress = false;
    bool ingress = false;
    for (const auto& row : nat) {
      std::string dir = row.value("direction", "");
      std::string to = row.value("translated_to", "");
      egress = egress || (dir == "egress" && to.rfind("192.0.2.1:", 0) == 0);
      ingress = ingress || (dir == "ingress" && to.rfind(pod.ip + ":", 0) == 0);
    }
    INFO(nat.dump());
    CHECK(egress);
    CHECK(ingress);
  }

  SECTION("UDP: a datagram and its reply") {
    int server = socketInNetns(world.path(), SOCK_DGRAM);
    sockaddr_in any = ipv4Address("0.0.0.0", 7007);
    REQUIRE(bind(server, reinterpret_cast<sockaddr*>(&any), sizeof(any)) == 0);
    receiveTimeout(server, 3);
    int client = socketInNetns(pod.netns->path(), SOCK_DGRAM);
    receiveTimeout(client, 3);
    sockaddr_in to = ipv4Address("192.0.2.2", 7007);
    REQUIRE(sendto(client, "ping", 4, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 4);
    char buf[16];
    sockaddr_in from{};
    socklen_t from_len = sizeof(from);
    REQUIRE(recvfrom(server, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len) == 4);
    CHECK(text(from) == "192.0.2.1");
    REQUIRE(sendto(server, "pong", 4, 0, reinterpret_cast<sockaddr*>(&from), from_len) == 4);
    CHECK(recv(client, buf, sizeof(buf), 0) == 4);
    close(client);
    close(server);
  }

  SECTION("ICMP echo by identifier") {
    CHECK(ping(*pod.netns, "192.0.2.2"));
    bool echo = false;
    for (const auto& row : node.cliJson({"bpf", "nat", "list"})) {
      echo = echo || row.value("proto", "") == "ICMP";
    }
    CHECK(echo);
  }

  SECTION("every port towards a server taken: a new flow is dropped and counted as an allocation failure") {
    auto nat = node.pinnedMap<plexus_snat4_key, plexus_snat4_value>("plexus_snat4_v1");
    REQUIRE(nat);
    // Held by flows of another pod (as after a burst of connections to one server), in both of the ranges.
    for (uint32_t p = PLEXUS_SNAT_PORT_LOW_MIN; p <= PLEXUS_SNAT_PORT_MAX; ++p) {
      if (p > PLEXUS_SNAT_PORT_LOW_MAX && p < PLEXUS_SNAT_PORT_MIN) {
        continue;
      }
      plexus_snat4_key k{};
      k.saddr = ipv4Address("192.0.2.2", 0).sin_addr.s_addr;
      k.daddr = ipv4Address("192.0.2.1", 0).sin_addr.s_addr;
      k.sport = htons(7008);
      k.dport = htons(static_cast<uint16_t>(p));
      k.proto = IPPROTO_UDP;
      k.dir = PLEXUS_SNAT_INGRESS;
      plexus_snat4_value v{};
      v.to_addr = ipv4Address("10.226.0.250", 0).sin_addr.s_addr;
      v.to_port = k.dport;
      REQUIRE(nat->update(k, v).ok());
    }
    int client = socketInNetns(pod.netns->path(), SOCK_DGRAM);
    sockaddr_in to = ipv4Address("192.0.2.2", 7008);
    for (int i = 0; i < 3; ++i) {
      CHECK(sendto(client, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 1);
    }
    close(client);
    double failures = -1;
    for (int i = 0; i < 20 && failures < 3; ++i) {  // the counters are read per scrape: bounded, 5 s
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      failures = metric(node.node().exec("curl -sf http://127.0.0.1:9962/metrics").out,
                        "plexus_nat_port_allocation_failures_total");
    }
    CHECK(failures >= 3);
  }

  SECTION("an ICMP port unreachable about a masqueraded datagram reaches the pod's socket") {
    int client = socketInNetns(pod.netns->path(), SOCK_DGRAM);
    receiveTimeout(client, 3);
    sockaddr_in closed = ipv4Address("192.0.2.2", 9);  // nothing listens: the world answers port unreachable
    REQUIRE(connect(client, reinterpret_cast<sockaddr*>(&closed), sizeof(closed)) == 0);
    int err = 0;
    char buf[4];
    // Bounded: a few datagrams (the first error may race the socket's connect state), 3 s each.
    for (int i = 0; i < 3 && err != ECONNREFUSED; ++i) {
      REQUIRE(send(client, "x", 1, 0) == 1);
      err = recv(client, buf, sizeof(buf), 0) < 0 ? errno : 0;
    }
    CHECK(err == ECONNREFUSED);
    close(client);
  }
}

TEST_CASE("masquerade: traffic inside the cluster keeps the pod's address", "[netns][masquerade]") {
  std::string dev = uniqueName("vm");
  std::string peer = uniqueName("vw");
  Netns world("wd");
  // The world's network is declared part of the native routing CIDR: its peers see the pod itself, and reply to it
  // through a route the test adds (the operator's fabric).
  NodeFixture node("10.225.0.0/24",
                   {"--devices", dev, "--enable-bpf-masquerade", "true", "--routing-mode", "native",
                    "--ipv4-native-routing-cidr", "192.0.2.0/24"},
                   externalLink(dev, peer, world));
  world.exec("ip route add 10.225.0.0/24 via 192.0.2.1");
  Pod pod = node.addPod("client");
  auto [listener, port] = tcpListen(world.path(), 0);
  {
    Connection c;
    connectOut(pod, listener, port, &c);
    CHECK(text(c.seen) == pod.ip);
  }
  close(listener);
  CHECK(node.cliJson({"bpf", "nat", "list"}).empty());
}

TEST_CASE("masquerade: refused at start without kube-proxy replacement, and in native routing without the native "
          "routing CIDR", "[netns][masquerade]") {
  TempDir tmp;
  auto start = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {agentBinary(), "--state-dir", tmp.path() + "/state", "--bpf-root",
                                     tmp.path() + "/bpf", "--socket", tmp.path() + "/s.sock", "--print-config",
                                     "--enable-bpf-masquerade", "true"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return runCommand(argv, "", {}, std::chrono::seconds(20));
  };
  auto no_kpr = start({"--kube-proxy-replacement", "false"});
  CHECK(no_kpr.exit_code != 0);
  CHECK((no_kpr.out + no_kpr.err).find("needs --kube-proxy-replacement") != std::string::npos);
  auto native = start({"--routing-mode", "native"});
  CHECK(native.exit_code != 0);
  CHECK((native.out + native.err).find("needs --ipv4-native-routing-cidr") != std::string::npos);
  auto dsr = start({"--bpf-lb-mode", "dsr", "--bpf-lb-dsr-dispatch", "ipip"});
  CHECK(dsr.exit_code != 0);
  CHECK((dsr.out + dsr.err).find("--bpf-lb-dsr-dispatch \"ipip\": only opt") != std::string::npos);
  auto mode = start({"--bpf-lb-mode", "dnat"});
  CHECK(mode.exit_code != 0);
  CHECK((mode.out + mode.err).find("must be snat, dsr or hybrid") != std::string::npos);
  auto ok = start({"--routing-mode", "native", "--ipv4-native-routing-cidr", "10.0.0.0/8"});
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
}

TEST_CASE("masquerade with iptables when BPF masquerade is off: the world sees the node's address; turned off, the "
          "chain goes", "[netns][masquerade]") {
  std::string dev = uniqueName("vm");
  std::string peer = uniqueName("vw");
  Netns world("wd");
  NodeFixture node("10.224.0.0/24", {"--devices", dev, "--enable-ipv4-masquerade", "true"},
                   externalLink(dev, peer, world));
  Pod pod = node.addPod("client");
  auto rules = node.node().exec("iptables -w -t nat -S PLEXUS_POST_nat").out;
  INFO(rules << node.agent().log());
  CHECK(rules.find("-A PLEXUS_POST_nat -s 10.224.0.0/24") != std::string::npos);
  CHECK(node.node().exec("iptables -w -t nat -C POSTROUTING -j PLEXUS_POST_nat").exit_code == 0);
  auto [listener, port] = tcpListen(world.path(), 0);
  {
    Connection c;
    connectOut(pod, listener, port, &c);
    CHECK(text(c.seen) == "192.0.2.1");
  }
  CHECK(node.cliJson({"bpf", "nat", "list"}).empty());  // netfilter's, not the datapath's
  // The agent restarted without it: the chain and the jump are gone, and the world sees the pod itself.
  node.agent().stop();
  node.agent().setExtraArgs({"--devices", dev});
  REQUIRE(node.agent().start());
  CHECK(node.node().exec("iptables -w -t nat -S PLEXUS_POST_nat").exit_code != 0);
  CHECK(node.node().exec("iptables -w -t nat -C POSTROUTING -j PLEXUS_POST_nat").exit_code != 0);
  close(listener);
}

TEST_CASE("masquerade: path MTU discovery through a smaller pod MTU: the node's fragmentation needed reaches the "
          "world as about the node's address", "[netns][masquerade]") {
  std::string dev = uniqueName("vm");
  std::string peer = uniqueName("vw");
  Netns world("wd");
  NodeFixture node("10.223.0.0/24", {"--devices", dev, "--enable-bpf-masquerade", "true", "--mtu", "1280"},
                   externalLink(dev, peer, world));
  Pod pod = node.addPod("client");
  // The pod opens the flow; the world answers on a connected socket with DF set.
  int client = socketInNetns(pod.netns->path(), SOCK_DGRAM);
  int server = socketInNetns(world.path(), SOCK_DGRAM);
  receiveTimeout(client, 3);
  receiveTimeout(server, 3);
  sockaddr_in any = ipv4Address("0.0.0.0", 7008);
  REQUIRE(bind(server, reinterpret_cast<sockaddr*>(&any), sizeof(any)) == 0);
  sockaddr_in to = ipv4Address("192.0.2.2", 7008);
  REQUIRE(sendto(client, "hello", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 5);
  char buf[2048];
  sockaddr_in from{};
  socklen_t from_len = sizeof(from);
  REQUIRE(recvfrom(server, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len) == 5);
  REQUIRE(text(from) == "192.0.2.1");
  REQUIRE(connect(server, reinterpret_cast<sockaddr*>(&from), from_len) == 0);
  int pmtu = IP_PMTUDISC_DO;
  REQUIRE(setsockopt(server, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof(pmtu)) == 0);
  std::string big(1400, 'x');
  int mtu = 0;
  // Bounded: a few datagrams; the first too-large one brings the ICMP error back, which lowers the route's MTU.
  for (int i = 0; i < 5 && mtu != 1280; ++i) {
    (void)send(server, big.data(), big.size(), 0);
    usleep(200 * 1000);
    socklen_t len = sizeof(mtu);
    REQUIRE(getsockopt(server, IPPROTO_IP, IP_MTU, &mtu, &len) == 0);
  }
  INFO(node.agent().log());
  CHECK(mtu == 1280);
  // A datagram that fits still reaches the pod (the socket reports the earlier EMSGSIZE on one send first).
  bool sent = false;
  for (int i = 0; i < 3 && !sent; ++i) {
    sent = send(server, "small", 5, 0) == 5;
  }
  REQUIRE(sent);
  CHECK(recv(client, buf, sizeof(buf), 0) == 5);
  close(client);
  close(server);
}

TEST_CASE("masquerade: a large TCP download from the internet through a smaller MTU on the path completes",
          "[netns][masquerade]") {
  // pod -- node (192.0.2.1) -- router (192.0.2.2 | 198.51.100.1) -- internet (198.51.100.2). The router's way to the
  // node takes 1280-byte packets only (a route MTU): the internet's full-size segments to the pod's masqueraded
  // address need path MTU discovery (the router's fragmentation needed) while the NAT carries the flow.
  std::string dev = uniqueName("vm");
  std::string peer = uniqueName("vw");
  std::string r_in = uniqueName("vr");
  std::string i_in = uniqueName("vi");
  Netns router("rt");
  Netns inet("in");
  NodeFixture node("10.207.0.0/24", {"--devices", dev, "--enable-bpf-masquerade", "true"},
                   externalLink(dev, peer, router));
  REQUIRE(sh("ip link add " + r_in + " netns " + router.name() + " type veth peer name " + i_in + " netns " +
             inet.name()).exit_code == 0);
  REQUIRE(router.exec("ip addr add 198.51.100.1/24 dev " + r_in + " && ip link set " + r_in + " up && "
                      "sysctl -qw net.ipv4.ip_forward=1 && ip route add 192.0.2.1/32 dev " + peer + " mtu 1280")
              .exit_code == 0);
  REQUIRE(inet.exec("ip addr add 198.51.100.2/24 dev " + i_in + " && ip link set " + i_in + " up && "
                    "ip route add 192.0.2.0/24 via 198.51.100.1").exit_code == 0);
  REQUIRE(node.node().exec("ip route add 198.51.100.0/24 via 192.0.2.2").exit_code == 0);
  Pod pod = node.addPod("client");

  constexpr size_t kSize = 4 << 20;
  size_t received = tcpDownload(pod.netns->path(), inet.path(), "198.51.100.2", kSize);
  INFO("received " << received << "\n" << node.agent().log());
  CHECK(received == kSize);
  // The internet side learnt the smaller path MTU towards the node's address.
  CHECK(inet.exec("ip route get 192.0.2.1").out.find("mtu 1280") != std::string::npos);
}
