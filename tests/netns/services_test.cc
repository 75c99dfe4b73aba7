// Kube-proxy replacement end to end: Services applied with plexus apply, backends from pods, traffic through the
// per-packet path (pods), the socket path (the agent's cgroup) and NodePort from outside the node.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "node_fixture.h"
#include "plexus/conntrack.h"
#include "plexus/lb.h"
#include "plexus/lb/planner.h"

using namespace plexus::testing;

namespace {
const char* kPods = R"(apiVersion: v1
kind: Pod
metadata: {name: web1, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web2, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
)";

// A ClusterIP Service on port 80 that selects app=<app> and targets the pods' "http" port.
std::string clusterIpService(const std::string& name, const std::string& ip, const std::string& app = "web") {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec: {clusterIP: " + ip +
         ", selector: {app: " + app + "}, ports: [{name: http, port: 80, targetPort: http}]}\n";
}

void apply(NodeFixture& node, const std::string& yaml, const std::string& file) {
  std::string path = node.dir() + "/" + file;
  std::ofstream(path) << yaml;
  auto r = node.cli({"apply", "-f", path});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

// A TCP connect from a namespace to ip:port that reports errno, bounded by SO_SNDTIMEO.
int connectErrno(const std::string& netns_path, const std::string& ip, uint16_t port) {
  int fd = socketInNetns(netns_path, SOCK_STREAM);
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  int err = r == 0 ? 0 : errno;
  close(fd);
  return err;
}

// Listens on 8080 in a pod and answers each connection with the pod's name (bounded).
struct Greeter {
  int fd = -1;
  std::thread t;
  Greeter(const Pod& pod, std::string name) {
    fd = tcpListen(pod.netns->path(), 8080).first;
    t = std::thread([this, name] {
      // Bounded: at most 2000 accepts or 60 s.
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      for (int i = 0; i < 2000 && !stop && std::chrono::steady_clock::now() < deadline; ++i) {
        int c = acceptWithin(fd, std::chrono::milliseconds(100));
        if (c >= 0) {
          // Kept before the greeting goes out: the client reads `kept` once it has the greeting.
          if (keep_open) {
            kept.push_back(c);
          }
          (void)!write(c, name.data(), name.size());
          if (!keep_open) {
            close(c);
          }
        }
      }
    });
  }
  ~Greeter() {
    stop = true;
    t.join();
    for (int c : kept) {
      close(c);
    }
    close(fd);
  }
  std::atomic<bool> stop{false};
  bool keep_open = false;
  std::vector<int> kept;
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
}  // namespace

TEST_CASE("a ClusterIP service reaches its pods, and one without backends refuses at once", "[netns][services]") {
  NodeFixture node("10.235.0.0/24");
  Pod web1 = node.addPod("web1");
  Pod web2 = node.addPod("web2");
  Pod client = node.addPod("client");
  apply(node, kPods, "pods.yaml");
  apply(node, R"(apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  clusterIP: 10.96.0.11
  selector: {app: nobody}
  ports: [{port: 80}]
)", "svc.yaml");

  auto list = node.cliJson({"service", "list"});
  REQUIRE(list.size() == 2);
  Greeter g1(web1, "web1");
  Greeter g2(web2, "web2");
  std::set<std::string> seen;
  for (int i = 0; i < 12; ++i) {
    int fd = tcpConnect(client.netns->path(), "10.96.0.10", 80);
    REQUIRE(fd >= 0);
    seen.insert(readGreeting(fd));
    close(fd);
  }
  CHECK(seen.count("web1") + seen.count("web2") == seen.size());
  CHECK_FALSE(seen.empty());
  auto svc = node.cliJson({"service", "get", "web"});
  const auto& fe = svc["service"]["frontends"][0];
  CHECK(fe["address"] == "10.96.0.10");
  CHECK(fe["backends"].size() == 2);
  CHECK(fe["backends"][0]["port"] == 8080);

  // No backends: the connection is refused at once (RST), not black-holed.
  CHECK(connectErrno(client.netns->path(), "10.96.0.11", 80) == ECONNREFUSED);

  // Deleting a backend pod's endpoint takes it out of the service.
  REQUIRE(node.cni("DEL", web2, node.cniConfig()).exit_code == 0);
  svc = node.cliJson({"service", "get", "web"});
  CHECK(svc["service"]["frontends"][0]["backends"].size() == 1);
}

TEST_CASE("socket LB translates the ClusterIP for processes in the agent's cgroup", "[netns][services]") {
  NodeFixture node("10.234.0.0/24");
  Pod web1 = node.addPod("web1");
  apply(node, kPods, "pods.yaml");
  apply(node, clusterIpService("web", "10.96.1.10"), "svc.yaml");
  Greeter g(web1, "web1");
  // A host process of the node, in the agent's cgroup: connect() itself goes to the backend.
  auto r = node.node().exec("echo $$ > " + node.agent().cgroup() + "/cgroup.procs && exec nc -w 3 10.96.1.10 80 </dev/null");
  INFO(r.out << r.err);
  CHECK(r.out == "web1");
}

TEST_CASE("NodePort from outside the node reaches the pods through the external device", "[netns][services]") {
  std::string dev = uniqueName("vn");
  std::string peer = uniqueName("ve");
  Netns ext("ex");
  NodeFixture node("10.233.0.0/24", {"--devices", dev, "--maglev-table-size", "251"}, externalLink(dev, peer, ext));
  Pod web1 = node.addPod("web1");
  Pod web2 = node.addPod("web2");
  apply(node, kPods, "pods.yaml");
  apply(node, R"(apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 10.96.2.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: none}
spec: {type: NodePort, selector: {app: nobody}, ports: [{port: 81, nodePort: 30081}]}
)", "svc.yaml");
  Greeter g1(web1, "web1");
  Greeter g2(web2, "web2");
  int fd = tcpConnect(ext.path(), "192.0.2.1", 30080);
  INFO("lb map:\n" << node.cli({"bpf", "lb", "list"}).out << "\nagent log:\n" << node.agent().log());
  REQUIRE(fd >= 0);
  std::string who = readGreeting(fd);
  close(fd);
  CHECK((who == "web1" || who == "web2"));
  CHECK(connectErrno(ext.path(), "192.0.2.1", 30081) == ECONNREFUSED);

  // The NodePort frontend uses Maglev; the table the kernel holds names only the two backends.
  auto svc = node.cliJson({"service", "get", "web"});
  REQUIRE(svc["maglev"].size() == 1);
  const auto& slots = svc["maglev"][0]["slots"];
  CHECK(slots.size() == 251);
  std::set<std::string> owners(slots.begin(), slots.end());
  CHECK(owners == std::set<std::string>{web1.ip + ":8080", web2.ip + ":8080"});
}

TEST_CASE("invalid Service manifests are refused with the field named", "[netns][services]") {
  NodeFixture node("10.232.0.0/24");
  std::string path = node.dir() + "/bad.yaml";
  std::ofstream(path) << "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: [{port: 0}]}\n";
  auto r = node.cli({"apply", "-f", path});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("Service default/bad: spec.ports[0].port: must be 1-65535") != std::string::npos);
  CHECK(node.cliJson({"service", "list"}).empty());
}

namespace {
const char* kThreePods = R"(apiVersion: v1
kind: Pod
metadata: {name: b1, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b2, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b3, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
)";

std::string greetingVia(const Pod& client, const std::string& vip) {
  int fd = tcpConnect(client.netns->path(), vip, 80);
  if (fd < 0) {
    return "";
  }
  std::string who = readGreeting(fd);
  close(fd);
  return who;
}
}  // namespace

TEST_CASE("300 connections to a ClusterIP share out fairly over 3 backends; ClientIP affinity holds",
          "[netns][services]") {
  NodeFixture node("10.231.0.0/24");
  Pod b1 = node.addPod("b1");
  Pod b2 = node.addPod("b2");
  Pod b3 = node.addPod("b3");
  Pod client = node.addPod("client");
  apply(node, kThreePods, "pods.yaml");
  apply(node, R"(apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 10.96.3.10, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  clusterIP: 10.96.3.11
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports: [{name: http, port: 80, targetPort: http}]
)", "svc.yaml");
  Greeter g1(b1, "b1");
  Greeter g2(b2, "b2");
  Greeter g3(b3, "b3");
  std::map<std::string, int> share;
  for (int i = 0; i < 300; ++i) {
    share[greetingVia(client, "10.96.3.10")]++;
  }
  INFO("b1 " << share["b1"] << " b2 " << share["b2"] << " b3 " << share["b3"] << " none " << share[""]);
  CHECK(share[""] == 0);
  // A fair share of 100 each; 60 is five standard deviations below it.
  for (const char* b : {"b1", "b2", "b3"}) {
    CHECK(share[b] >= 60);
  }
  std::set<std::string> sticky;
  for (int i = 0; i < 20; ++i) {
    sticky.insert(greetingVia(client, "10.96.3.11"));
  }
  CHECK(sticky.size() == 1);
  CHECK_FALSE(sticky.count(""));
}

TEST_CASE("a terminating backend finishes its open connection; removing a backend keeps the others' flows",
          "[netns][services]") {
  NodeFixture node("10.230.0.0/24");
  Pod b1 = node.addPod("b1");
  Pod b2 = node.addPod("b2");
  Pod b3 = node.addPod("b3");
  Pod client = node.addPod("client");
  apply(node, kThreePods, "pods.yaml");
  apply(node, clusterIpService("web", "10.96.4.10"), "svc.yaml");
  Greeter g1(b1, "b1");
  Greeter g2(b2, "b2");
  Greeter g3(b3, "b3");
  g1.keep_open = g2.keep_open = g3.keep_open = true;
  // Open connections until every backend holds one.
  std::map<std::string, int> open_fd;
  for (int i = 0; i < 60 && open_fd.size() < 3; ++i) {
    int fd = tcpConnect(client.netns->path(), "10.96.4.10", 80);
    REQUIRE(fd >= 0);
    std::string who = readGreeting(fd);
    if (!who.empty() && !open_fd.count(who)) {
      open_fd[who] = fd;
    } else {
      close(fd);
    }
  }
  REQUIRE(open_fd.size() == 3);

  // b1 starts terminating (the pod has a deletionTimestamp): out of the slots, its connection goes on.
  apply(node, R"(apiVersion: v1
kind: Pod
metadata: {name: b1, labels: {app: web}, deletionTimestamp: "2026-11-22T00:00:00Z"}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]})", "term.yaml");
  auto svc = node.cliJson({"service", "get", "web"});
  CHECK(svc["service"]["frontends"][0]["active_backends"] == 2);
  // The open connection still carries data both ways: the client's bytes reach b1's side, and b1's answer comes
  // back through the reverse translation.
  REQUIRE(write(open_fd["b1"], "still", 5) == 5);
  bool arrived = false;
  for (int server_fd : g1.kept) {  // b1 takes no new connections now, so its list no longer changes
    pollfd sp{server_fd, POLLIN, 0};
    char got[8] = {};
    if (poll(&sp, 1, 2000) == 1 && read(server_fd, got, sizeof(got)) == 5 && std::string(got, 5) == "still") {
      arrived = true;
      CHECK(write(server_fd, "reply", 5) == 5);
    }
  }
  CHECK(arrived);
  pollfd cp{open_fd["b1"], POLLIN, 0};
  char back[8] = {};
  CHECK(poll(&cp, 1, 2000) == 1);
  CHECK(read(open_fd["b1"], back, sizeof(back)) == 5);
  for (int i = 0; i < 30; ++i) {
    CHECK(greetingVia(client, "10.96.4.10") != "b1");
  }

  // b3 goes away for good: the flows to b2 are untouched.
  REQUIRE(node.cni("DEL", b3, node.cniConfig()).exit_code == 0);
  CHECK(write(open_fd["b2"], "alive", 5) == 5);
  char buf[8];
  pollfd p{open_fd["b2"], POLLIN, 0};
  CHECK(poll(&p, 1, 200) == 0);  // no RST or FIN arrived on the untouched flow
  (void)buf;
  for (auto& [who, fd] : open_fd) {
    close(fd);
  }
}

TEST_CASE("UDP services and externalIPs/LoadBalancer frontends from outside", "[netns][services]") {
  std::string dev = uniqueName("vn");
  std::string peer = uniqueName("ve");
  Netns ext("ex");
  NodeFixture node("10.229.0.0/24", {"--devices", dev}, [&](Netns& n) {
    externalLink(dev, peer, ext)(n);
    // The external client reaches the frontend addresses through the node.
    ext.exec("ip route add 198.51.100.0/24 via 192.0.2.1");
  });
  Pod web1 = node.addPod("web1");
  Pod client = node.addPod("client");
  apply(node, kPods, "pods.yaml");
  apply(node, R"(apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  clusterIP: 10.96.5.53
  selector: {app: web}
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 5353}]
---
apiVersion: v1
kind: Service
metadata: {name: web-ext}
spec:
  type: LoadBalancer
  clusterIP: 10.96.5.10
  externalIPs: [198.51.100.7]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
status: {loadBalancer: {ingress: [{ip: 198.51.100.8}]}}
)", "svc.yaml");

  // UDP through the ClusterIP: the reply comes back from the service address.
  int srv = socketInNetns(web1.netns->path(), SOCK_DGRAM);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(5353);
  REQUIRE(bind(srv, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  int cli = socketInNetns(client.netns->path(), SOCK_DGRAM);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(53);
  inet_pton(AF_INET, "10.96.5.53", &to.sin_addr);
  REQUIRE(sendto(cli, "q", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 1);
  pollfd ps{srv, POLLIN, 0};
  REQUIRE(poll(&ps, 1, 3000) == 1);
  char b[4];
  sockaddr_in from{};
  socklen_t fl = sizeof(from);
  REQUIRE(recvfrom(srv, b, sizeof(b), 0, reinterpret_cast<sockaddr*>(&from), &fl) == 1);
  REQUIRE(sendto(srv, "a", 1, 0, reinterpret_cast<sockaddr*>(&from), fl) == 1);
  pollfd pc{cli, POLLIN, 0};
  REQUIRE(poll(&pc, 1, 3000) == 1);
  sockaddr_in replier{};
  socklen_t rl = sizeof(replier);
  REQUIRE(recvfrom(cli, b, sizeof(b), 0, reinterpret_cast<sockaddr*>(&replier), &rl) == 1);
  CHECK(replier.sin_addr.s_addr == to.sin_addr.s_addr);
  CHECK(ntohs(replier.sin_port) == 53);
  close(srv);
  close(cli);

  // externalIPs and LoadBalancer ingress IPs from outside the node.
  Greeter g(web1, "web1");
  for (const char* ip : {"198.51.100.7", "198.51.100.8"}) {
    int fd = tcpConnect(ext.path(), ip, 80);
    INFO(ip);
    REQUIRE(fd >= 0);
    CHECK(readGreeting(fd) == "web1");
    close(fd);
  }
}

TEST_CASE("loadBalancer.algorithm random: NodePort without Maglev tables, still spread over the backends",
          "[netns][services]") {
  std::string dev = uniqueName("vn");
  std::string peer = uniqueName("ve");
  Netns ext("ex");
  NodeFixture node("10.224.0.0/24", {"--devices", dev, "--lb-algorithm", "random"}, externalLink(dev, peer, ext));
  Pod web1 = node.addPod("web1");
  Pod web2 = node.addPod("web2");
  apply(node, kPods, "pods.yaml");
  apply(node, R"(apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 10.96.2.20
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30090}]
)", "svc.yaml");
  auto svc = node.cliJson({"service", "get", "web"});
  CHECK(svc["maglev"].empty());
  for (const auto& f : svc["service"]["frontends"]) {
    CHECK(f["maglev"] == false);
  }
  Greeter g1(web1, "web1");
  Greeter g2(web2, "web2");
  std::set<std::string> seen;
  for (int i = 0; i < 40 && seen.size() < 2; ++i) {  // bounded: 40 connections
    int fd = tcpConnect(ext.path(), "192.0.2.1", 30090);
    INFO("agent log:\n" << node.agent().log());
    REQUIRE(fd >= 0);
    seen.insert(readGreeting(fd));
    close(fd);
  }
  CHECK(seen == std::set<std::string>{"web1", "web2"});
}

TEST_CASE("hairpin: a pod reaches itself through its own ClusterIP on the per-packet path", "[netns][services]") {
  NodeFixture node("10.223.0.0/24");
  Pod solo = node.addPod("solo");
  apply(node, R"(apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: solo}
spec:
  clusterIP: 10.96.7.7
  selector: {app: solo}
  ports: [{name: http, port: 80, targetPort: http}]
)", "solo.yaml");
  Greeter g(solo, "solo");
  for (int i = 0; i < 3; ++i) {  // a few connections: new flows and known ones
    int fd = tcpConnect(solo.netns->path(), "10.96.7.7", 80);
    INFO("agent log:\n" << node.agent().log());
    REQUIRE(fd >= 0);
    CHECK(readGreeting(fd) == "solo");
    close(fd);
  }
}

TEST_CASE("an agent restart keeps established per-packet service flows and removes entries of vanished services",
          "[netns][services]") {
  NodeFixture node("10.228.0.0/24");
  Pod web1 = node.addPod("web1");
  Pod web2 = node.addPod("web2");
  Pod client = node.addPod("client");
  apply(node, kPods, "pods.yaml");
  // Applied "zz" first: it gets reverse-NAT index 1, "aa" index 2. A computation from scratch would order them by
  // name and swap the two, so the restart must adopt the installed ids rather than recompute them.
  apply(node, clusterIpService("zz", "10.96.6.20"), "zz.yaml");
  apply(node, clusterIpService("aa", "10.96.6.21"), "aa.yaml");
  // An external IP is a north-south frontend: it gets a Maglev table, which the restart must adopt as well.
  apply(node, R"(apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {clusterIP: 10.96.6.22, externalIPs: [192.0.2.60], selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]})",
        "ext.yaml");
  auto ext = node.cliJson({"service", "get", "ext"});
  bool has_table = false;
  for (const auto& fe : ext["service"]["frontends"]) {
    has_table = has_table || fe.value("maglev", false);
  }
  REQUIRE(has_table);
  Greeter g1(web1, "web1");
  Greeter g2(web2, "web2");
  g1.keep_open = g2.keep_open = true;
  int fd = tcpConnect(client.netns->path(), "10.96.6.20", 80);  // the client pod: translated at tc
  REQUIRE(fd >= 0);
  std::string who = readGreeting(fd);
  REQUIRE((who == "web1" || who == "web2"));
  Greeter& g = who == "web1" ? g1 : g2;
  REQUIRE(g.kept.size() == 1);

  node.agent().kill9();
  // While the agent is down, a leftover service entry appears in the map (as from services deleted meanwhile).
  auto services = node.pinnedMap<plexus_lb4_key, plexus_lb4_service>("plexus_lb4_services_v1");
  REQUIRE(services.has_value());
  auto stale = plexus::lb::makeLbKey(*plexus::Ipv4::parse("10.96.6.99"), 80, IPPROTO_TCP, PLEXUS_LB_SCOPE_EXTERNAL, 0);
  plexus_lb4_service master{};
  master.rev_nat_index = 77;
  REQUIRE(services->update(stale, master).ok());
  REQUIRE(node.agent().start());

  // The restart wrote one operation, the removal of the leftover: every other entry, ids and the Maglev table
  // included, was adopted.
  auto scrape = node.node().exec("curl -sf http://127.0.0.1:9962/metrics").out;
  CHECK(metric(scrape, "plexus_service_sync_operations{kind=\"full\"}") == 1);
  auto left = services->lookup(stale);
  REQUIRE(left.ok());
  CHECK_FALSE(left->has_value());
  // The established connection still works both ways: its conntrack entry's reverse-NAT index still names zz.
  CHECK(exchange(fd, g.kept[0], "after"));
  CHECK(exchange(g.kept[0], fd, "reply"));
  close(fd);
  // Both services still answer new connections.
  CHECK_FALSE(greetingVia(client, "10.96.6.20").empty());
  CHECK_FALSE(greetingVia(client, "10.96.6.21").empty());
}

TEST_CASE("per-packet path: a client port reused towards the same backend through another frontend still connects",
          "[netns][services]") {
  // The backend closes first, so it holds each connection in TIME_WAIT. The client then reuses its port through a
  // second frontend of the same backend; kept as is, the translated tuple would meet that TIME_WAIT socket with
  // timestamps from another sequence and be refused (a reset and a SYN retransmit). The datapath moves the flow to
  // a free port instead, and the client never sees it.
  NodeFixture node("10.227.0.0/24");
  Pod solo = node.addPod("solo");
  Pod client = node.addPod("client");
  apply(node, R"(apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
)" + clusterIpService("one", "10.96.7.10", "solo") + "---\n" + clusterIpService("two", "10.96.7.11", "solo"),
        "svc.yaml");
  auto [lfd, lport] = tcpListen(solo.netns->path(), 8080);
  REQUIRE(lfd >= 0);
  (void)lport;
  constexpr uint16_t kClientPort = 45123;
  // Connects from kClientPort to vip:80, has the server send a word and close first, and returns the client port
  // the server saw.
  auto roundTrip = [&](const std::string& vip) -> int {
    int fd = socketInNetns(client.netns->path(), SOCK_STREAM);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_port = htons(kClientPort);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) == 0);
    timeval tv{3, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(80);
    inet_pton(AF_INET, vip.c_str(), &a.sin_addr);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    int s = acceptWithin(lfd);
    REQUIRE(s >= 0);
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    REQUIRE(getpeername(s, reinterpret_cast<sockaddr*>(&peer), &len) == 0);
    CHECK(exchange(fd, s, "ping"));
    REQUIRE(write(s, "bye", 3) == 3);
    close(s);  // the server closes first: TIME_WAIT on the backend
    CHECK(readGreeting(fd) == "bye");
    close(fd);
    return ntohs(peer.sin_port);
  };
  CHECK(roundTrip("10.96.7.10") == kClientPort);  // nothing held the tuple
  // The same port through the other frontend: the backend sees another port, the client its own.
  int seen = roundTrip("10.96.7.11");
  CHECK(seen != kClientPort);
  CHECK(seen >= PLEXUS_CT_PORT_MIN);
  // Through the first frontend again, the port is kept (a reuse the client's timestamps allow).
  CHECK(roundTrip("10.96.7.10") == kClientPort);
  // The backend refused nothing on timestamps (the kernel counts PAWS rejections in TIME_WAIT).
  auto netstat = solo.netns->exec("cat /proc/net/netstat").out;
  auto names = netstat.find("TcpExt:");
  auto values = netstat.find("TcpExt:", names + 1);
  REQUIRE(values != std::string::npos);
  std::istringstream n(netstat.substr(names, netstat.find('\n', names) - names));
  std::istringstream v(netstat.substr(values, netstat.find('\n', values) - values));
  std::string name, value;
  uint64_t paws = 0;
  while (n >> name && v >> value) {
    if (name == "PAWSTimewait") {
      paws = std::stoull(value);
    }
  }
  CHECK(paws == 0);
  close(lfd);
}

TEST_CASE("agent config: a cilium-config's key names for the settings the agent has are accepted", "[netns][config]") {
  TempDir tmp;
  std::string path = tmp.path() + "/cilium-config.yaml";
  std::ofstream(path) << "ipam: cluster-pool\nbpf-lb-algorithm: random\nbpf-lb-maglev-table-size: 251\n"
                         "bpf-lb-maglev-hash-seed: AAAAAAAAAAAAAAAA\nbpf-ct-global-tcp-max: 70000\n"
                         "hubble-event-buffer-capacity: 1023\nbpf-lb-sock: \"false\"\ncluster-health-port: 4241\n"
                         "enable-policy: always\npolicy-audit-mode: \"true\"\nbpf-lb-mode: dsr\n";
  auto r = runCommand({agentBinary(), "--config", path, "--print-config"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  auto c = nlohmann::json::parse(r.out);
  CHECK(c["ipam-mode"] == "cluster-pool");
  CHECK(c["lb-algorithm"] == "random");
  CHECK(c["maglev-table-size"] == 251);
  CHECK(c["maglev-hash-seed"] == "AAAAAAAAAAAAAAAA");
  CHECK(c["ct-map-size"] == 70000);
  CHECK(c["hubble-flow-buffer-size"] == 1023);
  CHECK(c["enable-socket-lb"] == false);
  CHECK(c["health-port"] == 4241);
  CHECK(c["enable-policy"] == "always");
  CHECK(c["policy-audit-mode"] == true);
  CHECK(c["bpf-lb-mode"] == "dsr");
}

TEST_CASE("the agent collects expired conntrack entries on its interval", "[netns][conntrack]") {
  // The interval is validated like every flag: a clear refusal, and the value in the effective configuration.
  auto bad = runCommand({agentBinary(), "--conntrack-gc-interval", "-5", "--print-config"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--conntrack-gc-interval -5: must be 0-86400 seconds") != std::string::npos);
  auto good = runCommand({agentBinary(), "--conntrack-gc-interval", "30", "--print-config"});
  REQUIRE(good.exit_code == 0);
  CHECK(nlohmann::json::parse(good.out)["conntrack-gc-interval"] == 30);

  NodeFixture node("10.226.0.0/24", {"--conntrack-gc-interval", "1"});
  auto ct = node.pinnedMap<plexus_ct4_key, plexus_ct4_value>("plexus_ct4_v2");
  REQUIRE(ct.has_value());
  // A UDP entry quiet since boot (expired), and one seen just now (kept).
  auto entry = [](uint16_t sport) {
    plexus_ct4_key k{};
    k.saddr = plexus::Ipv4::parse("10.226.0.9")->networkOrder();
    k.daddr = plexus::Ipv4::parse("10.226.0.10")->networkOrder();
    k.sport = htons(sport);
    k.dport = htons(53);
    k.proto = IPPROTO_UDP;
    k.dir = PLEXUS_CT_EGRESS;
    return k;
  };
  plexus_ct4_value old{};
  old.last_seen_ns = 1;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  plexus_ct4_value fresh{};
  fresh.last_seen_ns = static_cast<uint64_t>(now.tv_sec) * PLEXUS_NSEC_PER_SEC + static_cast<uint64_t>(now.tv_nsec);
  REQUIRE(ct->update(entry(1), old).ok());
  REQUIRE(ct->update(entry(2), fresh).ok());
  // Bounded: up to 10 s for a pass that removed the old entry.
  double deleted = 0;
  for (int i = 0; i < 50 && deleted < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    deleted = metric(node.node().exec("curl -sf http://127.0.0.1:9962/metrics").out,
                     "plexus_conntrack_gc_entries_deleted_total");
  }
  CHECK(deleted >= 1);
  auto gone = ct->lookup(entry(1));
  REQUIRE(gone.ok());
  CHECK_FALSE(gone->has_value());
  auto kept = ct->lookup(entry(2));
  REQUIRE(kept.ok());
  CHECK(kept->has_value());
}

TEST_CASE("apply: a manifest larger than one gRPC message (11000 services and their slices) applies whole",
          "[netns][services][apply]") {
  NodeFixture node("10.227.0.0/24");
  std::string yaml;
  for (int i = 0; i < 11000; ++i) {
    std::string name = "svc-" + std::to_string(i);
    std::string ip = "10.97." + std::to_string(i / 250) + "." + std::to_string(1 + i % 250);
    yaml += "---\napiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec: {clusterIP: " + ip +
            ", ports: [{name: http, port: 80, targetPort: 8080}]}\n"
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: " + name +
            "-a, labels: {kubernetes.io/service-name: " + name + "}}\naddressType: IPv4\n"
            "ports: [{name: http, port: 8080, protocol: TCP}]\nendpoints: [{addresses: [10.1.0.1]}, "
            "{addresses: [10.1.0.2]}, {addresses: [10.1.0.3]}]\n";
  }
  REQUIRE(yaml.size() > (4u << 20));  // gRPC's default message limit
  std::string path = node.dir() + "/big.yaml";
  std::ofstream(path) << yaml;
  auto r = node.cli({"apply", "-f", path, "-o", "json"});
  INFO(r.err.substr(0, 2000));
  REQUIRE(r.exit_code == 0);
  auto out = nlohmann::json::parse(r.out);
  CHECK(out["outcomes"].size() == 22000);
  CHECK(node.cliJson({"service", "list"}).size() == 11000);
  auto last = node.cliJson({"service", "get", "svc-10999"});
  CHECK(last["service"]["frontends"][0]["backends"].size() == 3);
}
