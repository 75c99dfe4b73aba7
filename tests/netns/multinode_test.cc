// Pods on different nodes, end to end, in both of Cilium's routing modes: native routing with
// auto-direct-node-routes (kernel routes to other nodes' pod CIDRs via their InternalIPs) and tunnel (VXLAN device
// plexus_vxlan, UDP 8472, the source identity in the VNI). Each case builds a Fabric (tests/netns/fabric.h): node
// namespaces joined by a bridge, one agent each, the cluster described to every agent with v1 Node and Pod
// manifests through `plexus apply`. The fabric checks its own underlay (node to bridge, node to node) before each
// agent starts, so a fabric fault fails there, distinct from a missing feature.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <set>
#include <sstream>
#include <thread>

#include "fabric.h"

using namespace plexus::testing;

namespace {

// "addresses" may hold strings or {type, address} objects: look for the quoted IP.
bool listsAddress(const nlohmann::json& node, const std::string& ip) {
  return node.contains("addresses") && node["addresses"].dump().find("\"" + ip + "\"") != std::string::npos;
}

// Three nodes; frontend on n1, backend on n2, db on n3, and a plain pod on each. Node and Pod manifests applied
// to every node.
struct Cluster {
  Fabric fabric;
  FabricPod* frontend;
  FabricPod* backend;
  FabricPod* db;
  std::vector<FabricPod*> plain;

  Cluster(const std::string& mode, int cidr_base, size_t nodes = 3)
      : fabric(FabricOptions{.nodes = nodes, .cidr_base = cidr_base, .agent_args = routingArgs(mode)}) {
    frontend = &fabric.addPod(0, "frontend", {{"app", "frontend"}});
    backend = nodes > 1 ? &fabric.addPod(1, "backend", {{"app", "backend"}}) : nullptr;
    db = nodes > 2 ? &fabric.addPod(2, "db", {{"app", "database"}}) : nullptr;
    for (size_t i = 0; i < nodes; ++i) {
      plain.push_back(&fabric.addPod(i, "plain" + std::to_string(i + 1), {{"app", "plain"}}));
    }
    fabric.applyCluster();
  }
  // Waits (bounded) until a pod on node 0 reaches a pod on every other node: the cluster has converged.
  void requireConverged() {
    for (size_t i = 1; i < fabric.size(); ++i) {
      INFO("convergence: plain1 (node 0) -> " << plain[i]->name << " " << plain[i]->ip() << " (node " << i << ")\n"
                                               << fabric.logs());
      REQUIRE(waitUntil([&] { return pingOnce(plain[0]->netns(), plain[i]->ip()); }, std::chrono::seconds(20)));
    }
  }
};

// Answers each connection on port 8080 with the pod's name (bounded).
struct Greeter {
  int fd = -1;
  std::atomic<bool> stop{false};
  std::thread t;
  Greeter(const FabricPod& pod) {
    fd = tcpListen(pod.netns().path(), 8080).first;
    std::string name = pod.name;
    t = std::thread([this, name] {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      for (int i = 0; i < 2000 && !stop && std::chrono::steady_clock::now() < deadline; ++i) {
        int c = acceptWithin(fd, std::chrono::milliseconds(100));
        if (c >= 0) {
          (void)!write(c, name.data(), name.size());
          close(c);
        }
      }
    });
  }
  ~Greeter() {
    stop = true;
    t.join();
    close(fd);
  }
};

std::string readGreeting(int fd) {
  char buf[64] = {};
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 3000) != 1) {
    return "";
  }
  ssize_t n = read(fd, buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Connects from `from` to ip:port until the greeting is `name` (bounded by waitUntil); the last answer in *answer.
bool greetedBy(const Netns& from, const std::string& ip, uint16_t port, const std::string& name, std::string* answer) {
  return waitUntil([&] {
    int fd = tcpConnect(from.path(), ip, port);
    *answer = fd >= 0 ? readGreeting(fd) : "";
    if (fd >= 0) {
      close(fd);
    }
    return *answer == name;
  });
}

// A NodePort Service "web" (port 80 -> 8080) with one EndpointSlice holding `backend` on node `node_name`.
std::string nodePortService(const std::string& cluster_ip, int node_port, const FabricPod& backend,
                            const std::string& node_name) {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: NodePort\n"
         "  clusterIP: " + cluster_ip + "\n  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: " +
         std::to_string(node_port) + "}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
         "metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\n"
         "addressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n"
         "- addresses: [" + backend.ip() + "]\n  conditions: {ready: true}\n  nodeName: " + node_name + "\n";
}

// Tells each TCP connection on 8080 and each UDP datagram on 8081 the address it came from (bounded): what the
// backend sees as the client.
struct PeerTeller {
  int tcp = -1;
  int udp = -1;
  std::atomic<bool> stop{false};
  std::thread t;
  explicit PeerTeller(const FabricPod& pod) {
    tcp = tcpListen(pod.netns().path(), 8080).first;
    udp = socketInNetns(pod.netns().path(), SOCK_DGRAM);
    sockaddr_in any = ipv4Address("0.0.0.0", 8081);
    (void)!bind(udp, reinterpret_cast<sockaddr*>(&any), sizeof(any));
    t = std::thread([this] {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
      for (int i = 0; i < 5000 && !stop && std::chrono::steady_clock::now() < deadline; ++i) {
        pollfd p[2] = {{tcp, POLLIN, 0}, {udp, POLLIN, 0}};
        if (poll(p, 2, 100) <= 0) {
          continue;
        }
        sockaddr_in peer{};
        socklen_t len = sizeof(peer);
        char buf[64];
        if (p[0].revents & POLLIN) {
          int c = accept(tcp, reinterpret_cast<sockaddr*>(&peer), &len);
          if (c >= 0) {
            std::string who = inet_ntoa(peer.sin_addr);
            (void)!write(c, who.data(), who.size());
            close(c);
          }
        }
        len = sizeof(peer);
        if ((p[1].revents & POLLIN) &&
            recvfrom(udp, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&peer), &len) >= 0) {
          std::string who = inet_ntoa(peer.sin_addr);
          sendto(udp, who.data(), who.size(), 0, reinterpret_cast<sockaddr*>(&peer), len);
        }
      }
    });
  }
  ~PeerTeller() {
    stop = true;
    t.join();
    close(tcp);
    close(udp);
  }
};

// A datagram from `from` to ip:port on a connected socket (so only an answer from ip:port counts); the answer, or ""
// after 5 tries of 1 s.
std::string udpAsk(const Netns& from, const std::string& ip, uint16_t port) {
  int fd = socketInNetns(from.path(), SOCK_DGRAM);
  sockaddr_in to = ipv4Address(ip, port);
  std::string answer;
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0) {
    for (int attempt = 0; attempt < 5 && answer.empty(); ++attempt) {
      (void)!send(fd, "who", 3, 0);
      pollfd p{fd, POLLIN, 0};
      char buf[64];
      ssize_t n = poll(&p, 1, 1000) == 1 ? recv(fd, buf, sizeof(buf), 0) : -1;
      answer = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    }
  }
  if (fd >= 0) {
    close(fd);
  }
  return answer;
}

// A NodePort Service "echo" with TCP 80 -> 8080 (node_port), UDP 81 -> 8081 (node_port + 1) and TCP 82 -> 8082
// (node_port + 2), one EndpointSlice holding `backend` on node `node_name`.
std::string echoNodePortService(const std::string& cluster_ip, int node_port, const FabricPod& backend,
                                const std::string& node_name) {
  auto np = [&](int i) { return std::to_string(node_port + i); };
  return "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: default}\nspec:\n  type: NodePort\n"
         "  clusterIP: " + cluster_ip + "\n  ports:\n"
         "  - {name: tcp, port: 80, protocol: TCP, targetPort: 8080, nodePort: " + np(0) + "}\n"
         "  - {name: udp, port: 81, protocol: UDP, targetPort: 8081, nodePort: " + np(1) + "}\n"
         "  - {name: stream, port: 82, protocol: TCP, targetPort: 8082, nodePort: " + np(2) + "}\n"
         "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
         "metadata: {name: echo-1, namespace: default, labels: {kubernetes.io/service-name: echo}}\n"
         "addressType: IPv4\nports:\n- {name: tcp, port: 8080, protocol: TCP}\n- {name: udp, port: 8081, protocol: UDP}\n"
         "- {name: stream, port: 8082, protocol: TCP}\nendpoints:\n"
         "- addresses: [" + backend.ip() + "]\n  conditions: {ready: true}\n  nodeName: " + node_name + "\n";
}

// Packets node `n`'s stack received from the backend's port (an iptables raw PREROUTING counter the caller added with
// countFrom): the backend's replies that came back through this node.
uint64_t countedFrom(Netns& n, const std::string& chain) {
  auto out = n.exec("iptables -t raw -L " + chain + " -v -x -n").out;
  uint64_t total = 0;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    uint64_t pkts = 0;
    if (fields >> pkts) {
      total += pkts;
    }
  }
  return total;
}
}  // namespace

TEST_CASE("multinode: the fabric joins node namespaces over one bridge", "[netns][multinode]") {
  // Native routing without the new flags: only the underlay is under test here (agents on, no Node manifests).
  Fabric f(FabricOptions{.nodes = 3, .cidr_base = 200, .agent_args = {"--routing-mode", "native"}});
  for (size_t i = 0; i < f.size(); ++i) {
    for (size_t j = 0; j < f.size(); ++j) {
      if (i != j) {
        INFO("underlay " << i << " -> " << j);
        CHECK(f.underlayPing(i, j));
      }
    }
    CHECK(f.node(i).node().exec("ip -4 -o addr show dev " + f.underlayDevice(i)).out.find(Fabric::underlayIp(i) + "/24") !=
          std::string::npos);
  }
  FabricPod& a = f.addPod(0, "a", {{"app", "a"}});
  FabricPod& b = f.addPod(1, "b");
  CHECK(a.ip().rfind("10.200.0.", 0) == 0);
  CHECK(b.ip().rfind("10.201.0.", 0) == 0);
  // The manifests name every node (InternalIP, podCIDR) and every pod (nodeName, podIP, labels).
  std::string m = f.clusterManifest();
  CHECK(m.find("kind: Node") != std::string::npos);
  CHECK(m.find("name: " + f.nodeName(2)) != std::string::npos);
  CHECK(m.find("podCIDR: 10.202.0.0/24") != std::string::npos);
  CHECK(m.find("address: 172.30.0.11") != std::string::npos);
  CHECK(m.find("nodeName: " + f.nodeName(1)) != std::string::npos);
  CHECK(m.find("podIP: " + b.ip()) != std::string::npos);
  CHECK(m.find("app: \"a\"") != std::string::npos);
}

TEST_CASE("multinode: pods on different nodes reach each other (ICMP, TCP, UDP, from hosts); nodes are listed and "
          "healthy",
          "[netns][multinode]") {
  std::string mode = GENERATE(as<std::string>{}, "native", "tunnel");
  INFO("routing mode " << mode);
  Cluster c(mode, mode == "native" ? 210 : 214);
  Fabric& f = c.fabric;
  c.requireConverged();

  // Every pair of pods on different nodes, both directions.
  const auto& pods = f.pods();
  for (const auto& from : pods) {
    for (const auto& to : pods) {
      if (from.node == to.node) {
        continue;
      }
      INFO(from.name << " (node " << from.node << ", " << from.ip() << ") -> " << to.name << " (node " << to.node
                     << ", " << to.ip() << ")");
      CHECK(ping(from.netns(), to.ip()));
      CHECK(tcpOk(from, to));
      CHECK(udpRoundTrip(from.netns().path(), to.netns().path(), to.ip()));
    }
  }
  // Each node's host reaches a pod on every other node.
  for (size_t i = 0; i < f.size(); ++i) {
    for (const auto* p : c.plain) {
      if (p->node == i) {
        continue;
      }
      INFO("host of node " << i << " -> " << p->name << " " << p->ip() << " (node " << p->node << ")");
      CHECK(ping(f.node(i).node(), p->ip()));
      auto [lfd, port] = tcpListen(p->netns().path());
      REQUIRE(lfd >= 0);
      int cfd = tcpConnect(f.node(i).node().path(), p->ip(), port);
      CHECK(cfd >= 0);
      int afd = cfd >= 0 ? acceptWithin(lfd) : -1;
      CHECK(afd >= 0);
      if (cfd >= 0 && afd >= 0) {
        CHECK(exchange(cfd, afd, "from host"));
      }
      for (int fd : {cfd, afd, lfd}) {
        if (fd >= 0) {
          close(fd);
        }
      }
    }
  }

  // The datapath of the mode: direct routes via InternalIPs, or the agent's VXLAN device on UDP 8472.
  for (size_t i = 0; i < f.size(); ++i) {
    for (size_t j = 0; j < f.size(); ++j) {
      if (mode == "native" && i != j) {
        auto r = f.node(i).node().exec("ip -4 route show " + f.podCidr(j));
        INFO("node " << i << " route to " << f.podCidr(j) << ": " << r.out);
        CHECK(r.out.find("via " + Fabric::underlayIp(j)) != std::string::npos);
      }
    }
    // BPF host routing (the default with kube-proxy replacement and a device): in native mode pods' packets to
    // other nodes leave by FIB lookup and redirect, counted as FORWARDED_FIB; tunnel mode redirects into the tunnel.
    auto st = f.node(i).cli({"status"});
    INFO("node " << i << " status: " << st.out);
    CHECK(st.out.find("Host: BPF") != std::string::npos);
    CHECK(st.out.find("VERIFIED INSNS") != std::string::npos);
    // Every loaded program with the verifier's cost; the tunnel device's programs in tunnel mode only.
    auto st_json = nlohmann::json::parse(f.node(i).cli({"status", "-o", "json"}).out, nullptr, false);
    REQUIRE(st_json.contains("programs"));
    CHECK(st_json.value("verifier_insn_limit", 0) == 1000000);  // the kernel's BPF_COMPLEXITY_LIMIT_INSNS
    bool overlay_listed = false;
    for (const auto& prog : st_json["programs"]) {
      INFO(prog.dump());
      CHECK(prog.value("verified_insns", 0) > 0);
      CHECK(prog.value("verified_insns", 0) < st_json.value("verifier_insn_limit", 0));
      overlay_listed = overlay_listed || prog.value("name", "") == "plexus_from_overlay";
    }
    CHECK(overlay_listed == (mode == "tunnel"));
    if (mode == "native") {
      CHECK(reasonCount(f.node(i), "FORWARDED_FIB") > 0);
    }
    auto vx = f.node(i).node().exec("ip -d link show dev plexus_vxlan");
    INFO("node " << i << " plexus_vxlan: " << vx.out << vx.err);
    if (mode == "tunnel") {
      CHECK(vx.exit_code == 0);
      CHECK(vx.out.find("vxlan") != std::string::npos);
      CHECK(vx.out.find("dstport 8472") != std::string::npos);
    } else {
      CHECK(vx.exit_code != 0);  // native routing creates no tunnel device
    }
  }

  // A download between pods on different nodes: the server pod's 64 KiB writes leave its veth as GSO packets far
  // larger than the MTU, and those leave the node by FIB lookup and redirect too, not by the stack's forwarding (the
  // lookup checks a GSO packet's segments against the MTU, not its whole length).
  if (mode == "native") {
    auto bytes = [&](const char* reason) { return reasonCount(f.node(1), reason, "bytes", "EGRESS"); };
    uint64_t fib_before = bytes("FORWARDED_FIB");
    uint64_t stack_before = bytes("FORWARDED");
    constexpr size_t kSize = 16 << 20;
    CHECK(tcpDownload(c.plain[0]->netns().path(), c.plain[1]->netns().path(), c.plain[1]->ip(), kSize) == kSize);
    uint64_t by_fib = bytes("FORWARDED_FIB") - fib_before;
    uint64_t by_stack = bytes("FORWARDED") - stack_before;
    INFO("node 1 egress bytes during the download: " << by_fib << " by FIB and redirect, " << by_stack
                                                     << " to the stack");
    CHECK(by_fib >= kSize);
    CHECK(by_stack < kSize / 10);
  }

  // plexus node list: all three nodes with their CIDRs and InternalIPs, the others reachable (health probes).
  for (size_t i = 0; i < f.size(); ++i) {
    auto list = nodeList(f.node(i));
    INFO("node " << i << " node list: " << list.dump());
    REQUIRE(list.is_array());
    CHECK(list.size() == f.size());
    for (size_t j = 0; j < f.size(); ++j) {
      const auto* n = findNode(list, f.nodeName(j));
      INFO("entry for node " << j << " (" << f.nodeName(j) << ")");
      REQUIRE(n != nullptr);
      CHECK(n->value("pod_cidrs", nlohmann::json::array()) == nlohmann::json::array({f.podCidr(j)}));
      CHECK(listsAddress(*n, Fabric::underlayIp(j)));
      CHECK(n->contains("reachable"));
    }
    bool healthy = waitUntil(
        [&] {
          auto l = nodeList(f.node(i));
          for (size_t j = 0; j < f.size(); ++j) {
            const auto* n = findNode(l, f.nodeName(j));
            if (j != i && (n == nullptr || n->value("reachable", false) != true)) {
              return false;
            }
          }
          return true;
        },
        std::chrono::seconds(45));
    INFO("node " << i << " node list after waiting: " << nodeList(f.node(i)).dump());
    CHECK(healthy);
    auto status = f.node(i).cli({"status"});
    INFO("plexus status: " << status.out << status.err);
    CHECK(status.out.find("3/3 reachable") != std::string::npos);
  }
}

TEST_CASE("multinode: a CNP on node 2 admits the frontend of node 1 and drops the database of node 3, observed "
          "with the remote pod's name",
          "[netns][multinode]") {
  std::string mode = GENERATE(as<std::string>{}, "native", "tunnel");
  INFO("routing mode " << mode);
  Cluster c(mode, mode == "native" ? 218 : 222);
  Fabric& f = c.fabric;
  c.requireConverged();
  // Before the policy both remote clients reach the backend, so a later failure is the policy's doing.
  REQUIRE(tcpOk(*c.frontend, *c.backend));
  REQUIRE(tcpOk(*c.db, *c.backend));

  f.applyEverywhere(R"(apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: backend, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: backend}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
)",
                    "cnp.yaml");
  INFO(f.logs());
  bool dropped = waitUntil([&] { return !tcpOk(*c.db, *c.backend, std::chrono::milliseconds(700)); },
                           std::chrono::seconds(15));
  CHECK(dropped);
  CHECK_FALSE(tcpOk(*c.db, *c.backend, std::chrono::milliseconds(700)));
  CHECK(tcpOk(*c.frontend, *c.backend));
  CHECK(udpRoundTrip(c.frontend->netns().path(), c.backend->netns().path(), c.backend->ip()));
  // Pods the policy does not select are untouched.
  CHECK(tcpOk(*c.db, *c.plain[1]));

  // Node 2 reports the drop with the remote source pod (learnt from its Pod manifest) and the local destination.
  auto observed = waitForDrop(f.node(1), "db", "backend");
  INFO("DROPPED flows on node 2: " << droppedFlowsText(f.node(1)));
  REQUIRE(observed.has_value());
  nlohmann::json drop = *observed;  // a copy: operator[] below may add what is missing
  CHECK(drop["source"]["namespace"] == "default");
  CHECK(drop["destination"]["namespace"] == "default");
  CHECK(drop.dump().find("\"" + c.db->ip() + "\"") != std::string::npos);  // the remote source address
  CHECK(drop.value("drop_reason_desc", "") == "POLICY_DENIED");
  CHECK(drop.value("traffic_direction", "") == "INGRESS");

  // policy explain on node 2 judges the remote peers by their identities, named by pod or by address; their own
  // side (egress) is their node's to enforce.
  for (const std::string& db : {std::string("default/db"), c.db->ip()}) {
    auto ex = f.node(1).cli({"policy", "explain", "--from", db, "--to", "default/backend", "--port", "80/tcp"});
    INFO("explain from " << db << ": " << ex.out << ex.err);
    CHECK(ex.exit_code == 0);
    CHECK(ex.out.rfind("DENIED", 0) == 0);
    CHECK(ex.out.find("ingress at default/backend") != std::string::npos);
    CHECK(ex.out.find("on node " + f.nodeName(c.db->node)) != std::string::npos);
  }
  auto ex = f.node(1).cli({"policy", "explain", "--from", "default/frontend", "--to", "default/backend", "--port",
                           "80/tcp"});
  INFO("explain from the frontend: " << ex.out << ex.err);
  CHECK(ex.exit_code == 0);
  CHECK(ex.out.rfind("ALLOWED", 0) == 0);
  CHECK(ex.out.find("ALLOWED by") != std::string::npos);
}

TEST_CASE("multinode: a ClusterIP with backends on nodes 2 and 3 works from a pod and from the host of node 1",
          "[netns][multinode]") {
  std::string mode = GENERATE(as<std::string>{}, "native", "tunnel");
  INFO("routing mode " << mode);
  Cluster c(mode, mode == "native" ? 226 : 230);
  Fabric& f = c.fabric;
  c.requireConverged();
  const std::string vip = "10.96.70.10";
  f.applyEverywhere("apiVersion: v1\nkind: Service\nmetadata: {name: remote, namespace: default}\nspec:\n"
                    "  type: ClusterIP\n  clusterIP: " + vip + "\n  ports: [{name: http, port: 80, protocol: TCP, "
                    "targetPort: 8080}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
                    "metadata:\n  name: remote-1\n  namespace: default\n  labels: {kubernetes.io/service-name: remote}\n"
                    "addressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n"
                    "- addresses: [" + c.plain[1]->ip() + "]\n  conditions: {ready: true}\n  nodeName: " +
                        f.nodeName(1) + "\n- addresses: [" + c.plain[2]->ip() + "]\n  conditions: {ready: true}\n"
                    "  nodeName: " + f.nodeName(2) + "\n",
                    "svc.yaml");
  Greeter g2(*c.plain[1]);
  Greeter g3(*c.plain[2]);
  INFO("service get: " << f.node(0).cli({"service", "get", "remote", "-o", "json"}).out << f.logs());


  // From a pod of node 1 (per-packet LB): every answer comes from a backend, both backends answer.
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    int fd = tcpConnect(c.plain[0]->netns().path(), vip, 80);
    CHECK(fd >= 0);
    if (fd >= 0) {
      seen.insert(readGreeting(fd));
      close(fd);
    }
  }
  INFO("answers from the pod: " << [&] {
    std::string s;
    for (const auto& x : seen) {
      s += "[" + x + "] ";
    }
    return s;
  }());
  CHECK(seen == std::set<std::string>{"plain2", "plain3"});

  // From a host process of node 1 in the agent's cgroup (socket LB).
  std::set<std::string> host_seen;
  for (int i = 0; i < 6; ++i) {
    auto r = f.node(0).node().exec("echo $$ > " + f.node(0).agent().cgroup() + "/cgroup.procs && exec nc -w 3 " +
                                   vip + " 80 </dev/null");
    INFO("host nc: " << r.exit_code << " " << r.out << r.err);
    CHECK((r.out == "plain2" || r.out == "plain3"));
    host_seen.insert(r.out);
  }
  CHECK_FALSE(host_seen.empty());
}

TEST_CASE("multinode: without --devices, the underlay is detected once the other nodes are known (the route to "
          "them), gets the host programs, and NodePort listens on its address",
          "[netns][multinode]") {
  // The node namespaces have no default route: at start nothing carries one, so no device is selected yet.
  FabricOptions o{.nodes = 2, .cidr_base = 250, .agent_args = routingArgs("native")};
  o.detect_devices = true;
  Fabric f(o);
  FabricPod& web = f.addPod(1, "web", {{"app", "web"}});
  f.addPod(0, "client", {{"app", "client"}});
  f.applyCluster();
  for (size_t i = 0; i < f.size(); ++i) {
    bool detected = waitUntil([&] {
      return f.node(i).cli({"status"}).out.find("Devices:                 " + f.underlayDevice(i)) != std::string::npos;
    });
    INFO("node " << i << " status: " << f.node(i).cli({"status"}).out << "\n" << f.node(i).agent().log());
    CHECK(detected);
    CHECK(f.node(i).agent().log().find("devices: " + f.underlayDevice(i) + " selected") != std::string::npos);
  }
  f.applyEverywhere(nodePortService("10.96.71.10", 30091, web, f.nodeName(1)), "svc.yaml");
  Greeter g(web);
  // From node 1's host to node 2's underlay address: translated by the host program on the detected device.
  std::string answer;
  bool reached = greetedBy(f.node(0).node(), Fabric::underlayIp(1), 30091, "web", &answer);
  INFO("NodePort answer: [" << answer << "]\n" << f.logs());
  CHECK(reached);
}

TEST_CASE("multinode: NodePort on node 1 to a backend on node 2 answers a client outside the cluster (SNAT to node "
          "1's address), in native routing and in the tunnel", "[netns][multinode][nodeport]") {
  std::string mode = GENERATE("native", "tunnel");
  INFO("routing mode " << mode);
  Fabric f(FabricOptions{.nodes = 2, .cidr_base = 208, .agent_args = routingArgs(mode)});
  FabricPod& web = f.addPod(1, "web", {{"app", "web"}});
  f.applyCluster();
  f.applyEverywhere(nodePortService("10.96.72.10", 30092, web, f.nodeName(1)), "svc.yaml");
  Greeter g(web);
  // The fabric namespace is outside the cluster: it has no route to the pods, so the backend's reply can only come
  // back through node 1, which restores the client and the frontend.
  std::string answer;
  bool reached = greetedBy(f.fabricNetns(), Fabric::underlayIp(0), 30092, "web", &answer);
  INFO("NodePort answer: [" << answer << "]\n" << f.logs());
  CHECK(reached);
  bool snat = false;
  for (const auto& row : f.node(0).cliJson({"bpf", "nat", "list"})) {
    snat = snat || (row.value("direction", "") == "egress" &&
                    row.value("translated_to", "").rfind(Fabric::underlayIp(0) + ":", 0) == 0 &&
                    row.value("destination", "") == web.ip() + ":8080");
  }
  CHECK(snat);
}

TEST_CASE("multinode: NodePort by direct server return (dsr; hybrid: TCP only): the backend sees the client's address "
          "and its replies skip the entry node; pods and hosts of both nodes reach it; established flows survive kill -9 of "
          "the entry node's agent",
          "[netns][multinode][nodeport][dsr]") {
  auto [mode, lb] = GENERATE(table<std::string, std::string>(
      {{"native", "snat"}, {"native", "dsr"}, {"tunnel", "dsr"}, {"native", "hybrid"}}));
  INFO("routing mode " << mode << ", --bpf-lb-mode " << lb);
  auto args = routingArgs(mode);
  args.insert(args.end(), {"--bpf-lb-mode", lb});
  Fabric f(FabricOptions{.nodes = 2, .cidr_base = mode == "tunnel" ? 212 : 214, .agent_args = args});
  FabricPod& echo = f.addPod(1, "echo", {{"app", "echo"}});
  f.applyCluster();
  f.applyEverywhere(echoNodePortService("10.96.73.10", 30093, echo, f.nodeName(1)), "svc.yaml");
  PeerTeller teller(echo);
  const std::string client = "172.30.0.1";  // the fabric namespace: outside the cluster
  const std::string entry_ip = Fabric::underlayIp(0);
  bool tcp_dsr = lb != "snat";
  bool udp_dsr = lb == "dsr";
  // The replies the client gets (from the frontend's address and port), counted by the node whose device sent them
  // onto the fabric: node 1 (back through the entry node) or node 2 (straight from the backend's node).
  auto mac = [&](size_t i) {
    return f.node(i).node().exec("tr -d '\\n' < /sys/class/net/" + f.underlayDevice(i) + "/address").out;
  };
  std::string rules;
  for (size_t i = 0; i < 2; ++i) {
    for (const std::string proto : {"tcp", "udp"}) {
      std::string chain = "PLEXUS_TEST_" + proto + std::to_string(i);
      rules += "iptables -t raw -N " + chain + " && iptables -t raw -A " + chain + " -m mac --mac-source " + mac(i) +
               " -s " + entry_ip + " -p " + proto + " --sport " + (proto == "tcp" ? "30093" : "30094") +
               " && iptables -t raw -A PREROUTING -j " + chain + " && ";
    }
  }
  REQUIRE(f.fabricNetns().exec(rules + "true").exit_code == 0);
  // BPF host routing forwards the NodePort flows at the entry node itself (translated requests to the backend's node,
  // by FIB lookup and redirect or into the tunnel; SNAT's replies to the client by the FIB): its stack's forwarding is
  // never needed.
  REQUIRE(f.node(0).node().exec("iptables -P FORWARD DROP").exit_code == 0);

  std::string answer;
  bool reached = greetedBy(f.fabricNetns(), entry_ip, 30093, tcp_dsr ? client : entry_ip, &answer);
  INFO("TCP: the backend saw [" << answer << "]\n" << f.logs());
  CHECK(reached);
  std::string udp = udpAsk(f.fabricNetns(), entry_ip, 30094);
  INFO("UDP: the backend saw [" << udp << "]");
  CHECK(udp == (udp_dsr ? client : entry_ip));
  CHECK((countedFrom(f.fabricNetns(), "PLEXUS_TEST_tcp0") == 0) == tcp_dsr);
  CHECK((countedFrom(f.fabricNetns(), "PLEXUS_TEST_tcp1") > 0) == tcp_dsr);
  CHECK((countedFrom(f.fabricNetns(), "PLEXUS_TEST_udp0") == 0) == udp_dsr);
  CHECK((countedFrom(f.fabricNetns(), "PLEXUS_TEST_udp1") > 0) == udp_dsr);
  // The backend's node keeps the frontend of each DSR flow for its replies.
  bool kept = false;
  for (const auto& row : f.node(1).cliJson({"bpf", "nat", "list"})) {
    kept = kept || (row.value("direction", "") == "dsr" && row.value("translated_to", "") == entry_ip + ":30093");
  }
  CHECK(kept == tcp_dsr);
  // The entry node's conntrack (cilium-dbg's `bpf ct list global` form): the NodePort flows' service entries, and a
  // reverse entry (replies back through it) only without DSR.
  bool service = false;
  bool reverse = false;
  for (const auto& row : f.node(0).cliJson({"bpf", "ct", "list", "global"})) {
    service = service || (row.value("kind", "") == "service" && row.value("destination", "") == entry_ip + ":30093");
    reverse = reverse || (row.value("kind", "") == "reverse-nodeport" && row.value("proto", "") == "TCP" &&
                          row.value("source", "") == echo.ip() + ":8080");
  }
  CHECK(service);
  CHECK(reverse != tcp_dsr);

  // Hairpin and host traffic: pods on either node and the nodes' own processes reach the NodePort of either node.
  FabricPod& near = f.addPod(0, "near", {{"app", "near"}});
  FabricPod& beside = f.addPod(1, "beside", {{"app", "beside"}});
  f.applyCluster();
  auto reaches = [&](const Netns& from, const std::string& ip) {
    return waitUntil([&] {
      int fd = tcpConnect(from.path(), ip, 30093);
      std::string seen = fd >= 0 ? readGreeting(fd) : "";
      if (fd >= 0) {
        close(fd);
      }
      return !seen.empty();
    }, std::chrono::seconds(10));
  };
  // A host process in the agent's cgroup (socket LB), as the node's processes are in a real cluster.
  auto host_reaches = [&](size_t node, const std::string& ip) {
    auto r = f.node(node).node().exec("echo $$ > " + f.node(node).agent().cgroup() +
                                      "/cgroup.procs && exec nc -w 3 " + ip + " 30093 </dev/null");
    INFO("host of node " << node << " to " << ip << ": [" << r.out << r.err << "]");
    return !r.out.empty();
  };
  for (const std::string& ip : {entry_ip, Fabric::underlayIp(1)}) {
    INFO("NodePort at " << ip);
    CHECK(reaches(near.netns(), ip));
    CHECK(reaches(beside.netns(), ip));
    CHECK(host_reaches(0, ip));
    CHECK(host_reaches(1, ip));
  }

  // An established NodePort connection survives kill -9 of the entry node's agent (and its restart).
  auto [lfd, port] = tcpListen(echo.netns().path(), 8082);
  REQUIRE(lfd >= 0);
  int cfd = tcpConnect(f.fabricNetns().path(), entry_ip, 30095);
  REQUIRE(cfd >= 0);
  int afd = acceptWithin(lfd);
  REQUIRE(afd >= 0);
  CHECK(exchange(cfd, afd, "before"));
  CHECK(exchange(afd, cfd, "reply before"));
  f.node(0).agent().kill9();
  CHECK(exchange(cfd, afd, "while the agent is down"));
  CHECK(exchange(afd, cfd, "reply while the agent is down"));
  CHECK(f.node(0).agent().start());
  CHECK(exchange(cfd, afd, "after restart"));
  CHECK(exchange(afd, cfd, "reply after restart"));
  close(cfd);
  close(afd);
  close(lfd);
}

TEST_CASE("multinode: deleting node 3 removes its routes and ipcache entries on node 1; re-applying restores them",
          "[netns][multinode]") {
  std::string mode = GENERATE(as<std::string>{}, "native", "tunnel");
  INFO("routing mode " << mode);
  Cluster c(mode, mode == "native" ? 234 : 238);
  Fabric& f = c.fabric;
  c.requireConverged();
  FabricPod& far = *c.plain[2];
  REQUIRE(f.node(0).ipcacheHas(far.ip()));
  REQUIRE(pingOnce(c.plain[0]->netns(), far.ip()));

  auto del = f.apply(0, f.nodeManifest(2), "node3.yaml", true);
  INFO("plexus delete: " << del.out << del.err << "\n" << f.logs());
  REQUIRE(del.exit_code == 0);
  CHECK(waitUntil([&] { return !f.node(0).ipcacheHas(far.ip()); }, std::chrono::seconds(10)));
  CHECK(waitUntil([&] { return !pingOnce(c.plain[0]->netns(), far.ip()); }, std::chrono::seconds(10)));
  CHECK_FALSE(pingOnce(c.plain[0]->netns(), far.ip()));
  auto list = nodeList(f.node(0));
  INFO("node list after delete: " << list.dump());
  CHECK(list.size() == 2);
  CHECK(findNode(list, f.nodeName(2)) == nullptr);
  if (mode == "native") {
    CHECK(f.node(0).node().exec("ip -4 route show " + f.podCidr(2)).out.empty());
  }
  // Node 2 is untouched.
  CHECK(pingOnce(c.plain[0]->netns(), c.plain[1]->ip()));

  auto re = f.apply(0, f.nodeManifest(2), "node3.yaml");
  INFO("plexus apply: " << re.out << re.err);
  REQUIRE(re.exit_code == 0);
  CHECK(waitUntil([&] { return f.node(0).ipcacheHas(far.ip()); }, std::chrono::seconds(10)));
  CHECK(waitUntil([&] { return pingOnce(c.plain[0]->netns(), far.ip()); }, std::chrono::seconds(15)));
  CHECK(tcpOk(*c.plain[0], far));
  CHECK(nodeList(f.node(0)).size() == 3);
  if (mode == "native") {
    CHECK(f.node(0).node().exec("ip -4 route show " + f.podCidr(2)).out.find("via " + Fabric::underlayIp(2)) !=
          std::string::npos);
  }
}

TEST_CASE("multinode: a cross-node TCP stream survives kill -9 of the remote agent and its restart",
          "[netns][multinode]") {
  std::string mode = GENERATE(as<std::string>{}, "native", "tunnel");
  INFO("routing mode " << mode);
  Cluster c(mode, mode == "native" ? 242 : 246, 2);
  Fabric& f = c.fabric;
  c.requireConverged();
  auto [lfd, port] = tcpListen(c.backend->netns().path());
  REQUIRE(lfd >= 0);
  int cfd = tcpConnect(c.frontend->netns().path(), c.backend->ip(), port);
  REQUIRE(cfd >= 0);
  int afd = acceptWithin(lfd);
  REQUIRE(afd >= 0);

  // A message each way every 100 ms for ~3 s, from a thread (no Catch macros there); the agent dies meanwhile.
  std::atomic<int> sent{0}, failed{0};
  std::atomic<bool> done{false};
  std::thread stream([&] {
    for (int i = 0; i < 30; ++i) {
      if (!exchange(cfd, afd, "msg " + std::to_string(i), std::chrono::seconds(2)) ||
          !exchange(afd, cfd, "ack " + std::to_string(i), std::chrono::seconds(2))) {
        ++failed;
      }
      ++sent;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    done = true;
  });
  // Left in the kernel while the agent is down: a route of the agent's (proto 193) to a pod CIDR no node has any
  // more (as when a node is deleted meanwhile), and an operator's route it must not touch.
  auto& host2 = f.node(1).node();
  REQUIRE(host2.exec("ip route add 10.250.0.0/24 via " + Fabric::underlayIp(0) + " proto 193").exit_code == 0);
  REQUIRE(host2.exec("ip route add 10.251.0.0/24 via " + Fabric::underlayIp(0)).exit_code == 0);
  waitUntil([&] { return sent >= 5; }, std::chrono::seconds(10));
  f.node(1).agent().kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  bool restarted = f.node(1).agent().start();
  stream.join();
  INFO("node 2 agent log:\n" << f.node(1).agent().log());
  CHECK(restarted);
  CHECK(sent == 30);
  CHECK(failed == 0);
  CHECK(exchange(cfd, afd, "after restart"));
  CHECK(exchange(afd, cfd, "reply after restart"));
  close(cfd);
  close(afd);
  close(lfd);
  // The restarted agent removed its leftover route once it knew every node, and nothing else.
  bool leftover_gone =
      waitUntil([&] { return host2.exec("ip -4 route show 10.250.0.0/24").out.empty(); }, std::chrono::seconds(10));
  INFO("node 2 routes: " << host2.exec("ip -4 route show").out);
  CHECK(leftover_gone);
  CHECK_FALSE(host2.exec("ip -4 route show 10.251.0.0/24").out.empty());
  if (mode == "native") {
    CHECK(host2.exec("ip -4 route show " + f.podCidr(0)).out.find("proto 193") != std::string::npos);
  }
  // The restarted agent kept the cluster it was told about: both nodes, and new connections across them.
  CHECK(waitUntil([&] { return nodeList(f.node(1)).size() == 2; }, std::chrono::seconds(10)));
  CHECK(tcpOk(*c.frontend, *c.backend));
  CHECK(tcpOk(*c.backend, *c.frontend));
}

TEST_CASE("multinode: --tunnel-protocol geneve is refused at start, saying so", "[netns][multinode]") {
  Netns node("nd");
  TempDir tmp;
  BpffsMount bpffs(tmp.path() + "/bpffs");
  auto t0 = std::chrono::steady_clock::now();
  auto r = runCommand({"ip", "netns", "exec", node.name(), agentBinary(), "--state-dir", tmp.path() + "/state",
                       "--bpf-root", tmp.path() + "/bpffs/plexus", "--socket", tmp.path() + "/plexus.sock",
                       "--pod-cidr", "10.250.0.0/24", "--node-name", node.name(), "--routing-mode", "tunnel",
                       "--tunnel-protocol", "geneve"},
                      "", {}, std::chrono::seconds(20));
  auto elapsed = std::chrono::steady_clock::now() - t0;
  std::string text = r.out + r.err;
  INFO("exit " << r.exit_code << ": " << text);
  CHECK(r.exit_code != 0);
  CHECK(elapsed < std::chrono::seconds(15));  // refused at start, not killed by the timeout
  std::string lower;
  for (char ch : text) {
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  CHECK(lower.find("geneve") != std::string::npos);
  // A refused start leaves no tunnel device behind.
  CHECK(node.exec("ip link show plexus_vxlan").exit_code != 0);
}
