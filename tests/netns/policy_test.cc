// Network policy end to end, in the style of the Kubernetes netpol e2e model: namespaces x, y, z with pods a, b,
// c each, every pod serving TCP and UDP on ports 80 and 81. Each case applies policies with `plexus apply`, probes
// every pod pair and port with real connections in parallel, and compares against a truth table.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <thread>

#include "node_fixture.h"

using namespace plexus::testing;

namespace {

constexpr uint16_t kPorts[] = {80, 81};
const char* kNamespaces[] = {"x", "y", "z"};
const char* kPodNames[] = {"a", "b", "c"};


struct Server {
  int tcp[2] = {-1, -1};
  int udp[2] = {-1, -1};
};

// What a probe saw: "from to port/proto" -> reached.
using Reach = std::map<std::string, bool>;
using Expect = std::function<bool(const std::string& from, const std::string& to, uint16_t port, bool udp)>;

std::string probeKey(const std::string& from, const std::string& to, uint16_t port, bool udp) {
  return from + " -> " + to + " " + std::to_string(port) + (udp ? "/udp" : "/tcp");
}

class Model {
 public:
  explicit Model(NodeFixture& node) : node_(node) {
    std::string manifest;
    for (const char* ns : kNamespaces) {
      manifest += std::string("apiVersion: v1\nkind: Namespace\nmetadata: {name: ") + ns + ", labels: {ns: " + ns +
                  "}}\n---\n";
      for (const char* p : kPodNames) {
        manifest += podManifest(ns, p, p);
      }
    }
    apply(manifest);
    for (const char* ns : kNamespaces) {
      for (const char* p : kPodNames) {
        std::string name = std::string(ns) + "/" + p;
        pods_.emplace(name, node.addPod(p, ns));
        Server s;
        for (int i = 0; i < 2; ++i) {
          s.tcp[i] = tcpListen(pods_[name].netns->path(), kPorts[i]).first;
          fcntl(s.tcp[i], F_SETFL, O_NONBLOCK);
          s.udp[i] = socketInNetns(pods_[name].netns->path(), SOCK_DGRAM);
          auto a = ipv4Address("0.0.0.0", kPorts[i]);
          REQUIRE(bind(s.udp[i], reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
          fcntl(s.udp[i], F_SETFL, O_NONBLOCK);
        }
        servers_[name] = s;
      }
    }
  }
  ~Model() {
    for (auto& [n, s] : servers_) {
      for (int i = 0; i < 2; ++i) {
        close(s.tcp[i]);
        close(s.udp[i]);
      }
    }
  }

  static std::string podManifest(const std::string& ns, const std::string& name, const std::string& label) {
    return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: " + ns + ", labels: {pod: " + label +
           "}}\nspec: {containers: [{name: c, ports: [{name: serve-80-tcp, containerPort: 80}, {name: serve-81-tcp, "
           "containerPort: 81}, {name: serve-80-udp, containerPort: 80, protocol: UDP}, {name: serve-81-udp, "
           "containerPort: 81, protocol: UDP}]}]}\n---\n";
  }

  void apply(const std::string& yaml, bool remove = false) {
    std::string path = node_.dir() + "/m" + std::to_string(files_++) + ".yaml";
    std::ofstream(path) << yaml;
    auto r = node_.cli({remove ? "delete" : "apply", "-f", path});
    INFO(yaml << "\n" << r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }

  const Pod& pod(const std::string& name) { return pods_.at(name); }

  // Every ordered pair of distinct pods, both ports, TCP and UDP, all at once; a connection or datagram that has
  // not arrived within the window was dropped.
  Reach probe() {
    Reach reach;
    std::vector<std::pair<std::string, int>> pending;
    for (const auto& [from, fp] : pods_) {
      for (const auto& [to, tp] : pods_) {
        if (from == to) {
          continue;
        }
        for (uint16_t port : kPorts) {
          int fd = socketInNetns(fp.netns->path(), SOCK_STREAM);
          fcntl(fd, F_SETFL, O_NONBLOCK);
          auto a = ipv4Address(tp.ip, port);
          (void)connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
          pending.emplace_back(probeKey(from, to, port, false), fd);
          int u = socketInNetns(fp.netns->path(), SOCK_DGRAM);
          std::string msg = probeKey(from, to, port, true);
          (void)sendto(u, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
          close(u);
          reach[msg] = false;
        }
      }
    }
    // Bounded: at most 2 s for the handshakes.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(2000);
    std::set<size_t> open;
    for (size_t i = 0; i < pending.size(); ++i) {
      open.insert(i);
    }
    while (!open.empty() && std::chrono::steady_clock::now() < deadline) {
      std::vector<pollfd> pfds;
      std::vector<size_t> idx;
      for (size_t i : open) {
        pfds.push_back({pending[i].second, POLLOUT, 0});
        idx.push_back(i);
      }
      if (poll(pfds.data(), pfds.size(), 100) <= 0) {
        continue;
      }
      for (size_t k = 0; k < pfds.size(); ++k) {
        if (pfds[k].revents) {
          int err = 0;
          socklen_t len = sizeof(err);
          getsockopt(pfds[k].fd, SOL_SOCKET, SO_ERROR, &err, &len);
          reach[pending[idx[k]].first] = err == 0;
          open.erase(idx[k]);
        }
      }
    }
    for (size_t i : open) {
      reach[pending[i].first] = false;
    }
    for (auto& [key, fd] : pending) {
      close(fd);
    }
    // Datagrams: whatever reached a server names its probe.
    for (auto& [name, s] : servers_) {
      for (int i = 0; i < 2; ++i) {
        char buf[256];
        for (int n = 0; n < 1000; ++n) {
          ssize_t got = recv(s.udp[i], buf, sizeof(buf), 0);
          if (got <= 0) {
            break;
          }
          reach[std::string(buf, static_cast<size_t>(got))] = true;
        }
        for (int n = 0; n < 1000; ++n) {  // drain accepted connections
          int c = accept(s.tcp[i], nullptr, nullptr);
          if (c < 0) {
            break;
          }
          close(c);
        }
      }
    }
    return reach;
  }

  // Probes and compares with the truth table; lists every mismatch.
  void check(const std::string& name, const Expect& expect) {
    auto reach = probe();
    std::vector<std::string> wrong;
    for (const auto& [from, fp] : pods_) {
      for (const auto& [to, tp] : pods_) {
        if (from == to) {
          continue;
        }
        for (uint16_t port : kPorts) {
          for (bool udp : {false, true}) {
            std::string key = probeKey(from, to, port, udp);
            bool want = expect(from, to, port, udp);
            if (reach[key] != want) {
              wrong.push_back(key + (want ? " should pass" : " should be dropped"));
            }
          }
        }
      }
    }
    std::string list;
    for (const auto& w : wrong) {
      list += "  " + w + "\n";
    }
    INFO("case " << name << ": " << wrong.size() << " wrong probes\n" << list << "policies:\n"
                 << node_.cli({"policy", "get"}).out);
    CHECK(wrong.empty());
  }

 private:
  NodeFixture& node_;
  std::map<std::string, Pod> pods_;
  std::map<std::string, Server> servers_;
  int files_ = 0;
};

bool all(const std::string&, const std::string&, uint16_t, bool) { return true; }
std::string nsOf(const std::string& p) { return p.substr(0, p.find('/')); }

const char* kNp = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n";
const char* kCnp = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n";

}  // namespace

TEST_CASE("netpol model: NetworkPolicy, CNP and CCNP truth tables with real TCP and UDP", "[netns][policy]") {
  NodeFixture node("10.227.0.0/24");
  Model m(node);
  m.check("no policy: everything reaches everything", all);

  auto deny_x = std::string(kNp) + "metadata: {name: deny-all, namespace: x}\nspec: {podSelector: {}}\n";
  m.apply(deny_x);
  m.check("default deny ingress in x", [](auto, auto to, uint16_t, bool) { return nsOf(to) != "x"; });
  // The drops are visible with their reason and pods.
  auto flows = node.cli({"observe", "--verdict", "DROPPED", "--last", "2000", "-o", "json"});
  CHECK(flows.out.find("POLICY_DENIED") != std::string::npos);
  m.apply(deny_x, true);
  m.check("policy deleted: everything restored", all);

  // podSelector alone: same namespace.
  auto from_b = std::string(kNp) +
                "metadata: {name: a-from-b, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n"
                "  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]\n";
  m.apply(from_b);
  m.check("x/a only from pod=b in x", [](auto from, auto to, uint16_t, bool) {
    return to != "x/a" || from == "x/b";
  });
  // Label change: x/c becomes pod=b and gets in; back again and it is out.
  m.apply(Model::podManifest("x", "c", "b"));
  m.check("x/c relabelled pod=b reaches x/a", [](auto from, auto to, uint16_t, bool) {
    return to != "x/a" || from == "x/b" || from == "x/c";
  });
  m.apply(Model::podManifest("x", "c", "c"));
  m.apply(from_b, true);

  // AND in one peer, OR across peers.
  m.apply(std::string(kNp) + "metadata: {name: and, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n"
                             "  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: "
                             "{matchLabels: {pod: b}}}]}]\n");
  m.check("AND: only y/b reaches x/a", [](auto from, auto to, uint16_t, bool) { return to != "x/a" || from == "y/b"; });
  m.apply(std::string(kNp) + "metadata: {name: and, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n"
                             "  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: "
                             "{matchLabels: {pod: b}}}]}]\n");
  m.check("OR: all of y and x/b reach x/a", [](auto from, auto to, uint16_t, bool) {
    return to != "x/a" || nsOf(from) == "y" || from == "x/b";
  });

  // Named port and endPort (TCP; an omitted protocol is TCP in NetworkPolicy).
  m.apply(std::string(kNp) + "metadata: {name: and, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n"
                             "  ingress: [{ports: [{port: serve-81-tcp}]}]\n");
  m.check("named port: only TCP 81 into x/a", [](auto, auto to, uint16_t port, bool udp) {
    return to != "x/a" || (port == 81 && !udp);
  });
  m.apply(std::string(kNp) + "metadata: {name: and, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n"
                             "  ingress: [{ports: [{port: 81, endPort: 90, protocol: UDP}]}]\n");
  m.check("endPort: only UDP 81-90 into x/a", [](auto, auto to, uint16_t port, bool udp) {
    return to != "x/a" || (port == 81 && udp);
  });
  m.apply(std::string(kNp) + "metadata: {name: and, namespace: x}\nspec: {podSelector: {}}\n", true);

  // Egress: x/a may only talk to z (replies to connections into x/a still pass through conntrack).
  auto egress = std::string(kNp) +
                "metadata: {name: egress, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n"
                "  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}]}]\n";
  m.apply(egress);
  m.check("egress from x/a only to z", [](auto from, auto to, uint16_t, bool) {
    return from != "x/a" || nsOf(to) == "z";
  });
  m.apply(egress, true);

  // CNP deny over allow: y/a takes everything except x/b.
  auto deny = std::string(kCnp) +
              "metadata: {name: deny-xb, namespace: y}\nspec:\n  endpointSelector: {matchLabels: {pod: a}}\n"
              "  ingress: [{fromEntities: [all]}]\n  ingressDeny:\n  - fromEndpoints:\n"
              "    - matchLabels: {pod: b, k8s:io.kubernetes.pod.namespace: x}\n";
  m.apply(deny);
  m.check("deny beats allow: x/b cannot reach y/a", [](auto from, auto to, uint16_t, bool) {
    return !(to == "y/a" && from == "x/b");
  });
  auto explain = node.cli({"policy", "explain", "--from", "x/b", "--to", "y/a", "--port", "80/tcp"});
  INFO(explain.out << explain.err);
  CHECK(explain.out.find("DENIED by CiliumNetworkPolicy y/deny-xb spec ingressDeny[0]") != std::string::npos);
  m.apply(deny, true);

  // CNP with toPorts UDP only: z/b takes UDP 80 from anyone and nothing else.
  auto udp = std::string(kCnp) +
             "metadata: {name: udp80, namespace: z}\nspec:\n  endpointSelector: {matchLabels: {pod: b}}\n"
             "  ingress: [{toPorts: [{ports: [{port: '80', protocol: UDP}]}]}]\n";
  m.apply(udp);
  m.check("CNP L4-only: z/b only UDP 80", [](auto, auto to, uint16_t port, bool is_udp) {
    return to != "z/b" || (port == 80 && is_udp);
  });
  m.apply(udp, true);

  // CCNP: every pod=c in any namespace takes traffic only from pod=a pods, in any namespace.
  auto ccnp = std::string("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\n") +
              "metadata: {name: c-from-a}\nspec:\n  endpointSelector: {matchLabels: {pod: c}}\n"
              "  ingress: [{fromEndpoints: [{matchLabels: {pod: a}}]}]\n";
  m.apply(ccnp);
  m.check("CCNP: */c only from */a", [](auto from, auto to, uint16_t, bool) {
    return to.substr(to.size() - 1) != "c" || from.substr(from.size() - 1) == "a";
  });
  m.apply(ccnp, true);
  m.check("all policies deleted: everything restored", all);
}

TEST_CASE("policy: ipBlock with except, and the host and world entities", "[netns][policy]") {
  std::string dev = uniqueName("vn");
  std::string peer = uniqueName("ve");
  Netns ext("ex");
  NodeFixture node("10.226.0.0/24", {}, [&](Netns& n) {
    REQUIRE(sh("ip link add " + dev + " netns " + n.name() + " type veth peer name " + peer + " netns " + ext.name())
                .exit_code == 0);
    n.exec("ip addr add 192.0.2.1/24 dev " + dev + " && ip link set " + dev + " up");
    // Two external addresses: one inside the except block, one outside it.
    ext.exec("ip addr add 192.0.2.2/24 dev " + peer + " && ip addr add 192.0.2.200/24 dev " + peer +
             " && ip link set " + peer + " up && ip route add 10.226.0.0/24 via 192.0.2.1");
  });
  Pod web = node.addPod("web", "x");
  std::string path = node.dir() + "/p.yaml";
  auto apply = [&](const std::string& yaml, bool remove = false) {
    std::ofstream(path) << yaml;
    auto r = node.cli({remove ? "delete" : "apply", "-f", path});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
  };
  apply("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: x, labels: {app: web}}\n");
  int lfd = tcpListen(web.netns->path(), 80).first;
  // Connect from a given source address in a namespace; true when the handshake completes.
  auto reaches = [&](const std::string& netns_path, const std::string& src) {
    int fd = socketInNetns(netns_path, SOCK_STREAM);
    if (!src.empty()) {
      auto s = ipv4Address(src, 0);
      REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof(s)) == 0);
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    auto a = ipv4Address(web.ip, 80);
    (void)connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    pollfd p{fd, POLLOUT, 0};
    bool ok = false;
    if (poll(&p, 1, 1500) == 1) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      ok = err == 0;
    }
    close(fd);
    int c = acceptWithin(lfd, std::chrono::milliseconds(50));
    if (c >= 0) {
      close(c);
    }
    return ok;
  };
  REQUIRE(reaches(ext.path(), "192.0.2.2"));
  REQUIRE(reaches(node.node().path(), ""));

  apply(std::string(kNp) + "metadata: {name: ext, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n"
                           "  - from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}]\n");
  CHECK(reaches(ext.path(), "192.0.2.2"));
  CHECK_FALSE(reaches(ext.path(), "192.0.2.200"));
  CHECK_FALSE(reaches(node.node().path(), ""));  // the node is not in the block
  auto ids = node.cliJson({"identity", "list"});
  bool cidr_identity = false;
  for (const auto& i : ids) {
    cidr_identity = cidr_identity || (i["scope"] == "local" && i["labels"].dump().find("192.0.2.128/25") !=
                                                                     std::string::npos);
  }
  CHECK(cidr_identity);
  apply(std::string(kNp) + "metadata: {name: ext, namespace: x}\nspec: {podSelector: {}}\n", true);

  apply(std::string(kCnp) + "metadata: {name: host, namespace: x}\nspec:\n  endpointSelector: {}\n"
                            "  ingress: [{fromEntities: [host]}]\n");
  CHECK(reaches(node.node().path(), ""));
  CHECK_FALSE(reaches(ext.path(), "192.0.2.2"));
  apply(std::string(kCnp) + "metadata: {name: host, namespace: x}\nspec:\n  endpointSelector: {}\n"
                            "  ingress: [{fromEntities: [world]}]\n");
  CHECK_FALSE(reaches(node.node().path(), ""));
  CHECK(reaches(ext.path(), "192.0.2.2"));
  CHECK(reaches(ext.path(), "192.0.2.200"));
  auto ep = node.cliJson({"endpoint", "get", "x/web"});
  CHECK(ep["policy"]["ingress_enforced"] == true);
  CHECK(ep["policy"]["entries"].dump().find("CiliumNetworkPolicy x/host spec ingress[0]") != std::string::npos);
  close(lfd);
}

TEST_CASE("policy: an invalid policy is refused with its reason and changes nothing", "[netns][policy]") {
  NodeFixture node("10.225.0.0/24");
  Pod a = node.addPod("a", "x");
  Pod b = node.addPod("b", "x");
  std::string path = node.dir() + "/p.yaml";
  std::ofstream(path) << "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {pod: a}}\n---\n"
                         "apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, labels: {pod: b}}\n";
  REQUIRE(node.cli({"apply", "-f", path}).exit_code == 0);
  // A valid policy: a only from b.
  std::ofstream(path) << kCnp << "metadata: {name: p, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {pod: a}}\n"
                         "  ingress: [{fromEndpoints: [{matchLabels: {pod: b}}]}]\n";
  REQUIRE(node.cli({"apply", "-f", path}).exit_code == 0);
  // An update that would be invalid (L7 rules) is refused; the previous version stays enforced.
  std::ofstream(path) << kCnp << "metadata: {name: p, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {pod: a}}\n"
                         "  ingress: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{method: GET}]}}]}]\n";
  auto r = node.cli({"apply", "-f", path});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("spec.ingress[0].toPorts[0].rules: not supported") != std::string::npos);
  auto pol = node.cliJson({"policy", "get"});
  INFO(pol.dump(2));
  REQUIRE(pol["policies"].size() == 1);
  CHECK(pol["policies"][0]["valid"] == true);
  CHECK(pol["policies"][0]["reason"].get<std::string>().find("update refused") != std::string::npos);
  // A new invalid policy is listed as invalid with the reason.
  std::ofstream(path) << kNp << "metadata: {name: bad, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: "
                                "[{port: 90, endPort: 80}]}]}\n";
  CHECK(node.cli({"apply", "-f", path}).exit_code != 0);
  pol = node.cliJson({"policy", "get"});
  REQUIRE(pol["policies"].size() == 2);
  CHECK(pol["policies"][0]["key"] == "CiliumNetworkPolicy x/p");
  CHECK(pol["policies"][1]["key"] == "NetworkPolicy x/bad");
  CHECK(pol["policies"][1]["valid"] == false);
  CHECK(pol["policies"][1]["reason"] == "spec.ingress[0].ports[0].endPort: must be within 1-65535 and >= port");
  // Enforcement unchanged: b reaches a, the host does not.
  requireTcpExchange(b, a, 80);
  auto ex = node.cli({"policy", "explain", "--from", "host", "--to", "x/a", "--port", "80/tcp"});
  CHECK(ex.out.rfind("DENIED", 0) == 0);
  auto bad = node.cli({"policy", "explain", "--from", "x/nope", "--to", "x/a", "--port", "80/tcp"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--from") != std::string::npos);
}

// ---- ICMP and policy changes (issue 13, items 1 and 4) ----

namespace {

// A real ping (iputils) running in a pod, one identifier for its whole life, its output in a file. Stopped (and
// reaped) on destruction, whatever the test did.
class BackgroundPing {
 public:
  BackgroundPing(const Pod& from, const std::string& to_ip, const std::string& out_path) : out_(out_path) {
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      // -O: a request without an answer by the next one is printed too, so every sequence number shows up.
      execlp("ip", "ip", "netns", "exec", from.netns->name().c_str(), "ping", "-n", "-O", "-i", "0.2", to_ip.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~BackgroundPing() {
    if (pid_ <= 0) {
      return;
    }
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  BackgroundPing(const BackgroundPing&) = delete;
  BackgroundPing& operator=(const BackgroundPing&) = delete;

  // Sequence number -> answered, for every request ping has reported so far.
  std::map<int, bool> seen() const {
    std::map<int, bool> out;
    std::ifstream in(out_);
    std::string line;
    while (std::getline(in, line)) {
      auto at = line.find("icmp_seq=");
      if (at == std::string::npos) {
        continue;
      }
      int seq = std::atoi(line.c_str() + at + 9);
      out[seq] = out[seq] || line.find("bytes from") != std::string::npos;
    }
    return out;
  }
  // Waits (bounded) until `pred(seen())` holds.
  bool waitFor(const std::function<bool(const std::map<int, bool>&)>& pred,
               std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred(seen())) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return pred(seen());
  }
  std::string text() const {
    std::ifstream in(out_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string out_;
  pid_t pid_ = -1;
};

// A new ping process: true when an echo reply came back.
bool pingOnce(const Pod& from, const std::string& to_ip) {
  return from.netns->exec("ping -n -c 2 -i 0.2 -W 1 " + to_ip).exit_code == 0;
}

int lastSeq(const std::map<int, bool>& s) { return s.empty() ? 0 : s.rbegin()->first; }

// A ping runs and is answered; `change` applies a policy; from then on the same ping process (its identifier is
// tracked in conntrack already) gets no answer, and neither does a new one.
void requirePingStopsAfter(const NodeFixture& node, const Pod& a, const Pod& b, const std::function<void()>& change) {
  BackgroundPing ping(a, b.ip, node.dir() + "/ping.out");
  REQUIRE(ping.waitFor([](const auto& s) { return std::count_if(s.begin(), s.end(), [](auto& e) { return e.second; }) >= 2; }));
  REQUIRE(pingOnce(a, b.ip));
  change();
  // Every request numbered past the last one reported when the policy was in place was sent after the change: the
  // one after it may have been on its way already.
  int boundary = lastSeq(ping.seen()) + 2;
  REQUIRE(ping.waitFor([&](const auto& s) { return lastSeq(s) >= boundary + 3; }));
  auto seen = ping.seen();
  INFO(ping.text());
  for (auto it = seen.lower_bound(boundary); it != seen.end(); ++it) {
    CHECK_FALSE(it->second);
  }
  CHECK_FALSE(pingOnce(a, b.ip));
}

std::string podYaml(const std::string& ns, const std::string& name) {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: " + ns + ", labels: {pod: " + name +
         "}}\n---\n";
}

void applyYaml(const NodeFixture& node, const std::string& yaml) {
  std::string path = node.dir() + "/" + uniqueName("m") + ".yaml";
  std::ofstream(path) << yaml;
  auto r = node.cli({"apply", "-f", path});
  INFO(yaml << "\n" << r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

bool tcpReaches(const Pod& from, const Pod& to, uint16_t port) {
  auto [lfd, bound] = tcpListen(to.netns->path(), port);
  REQUIRE(lfd >= 0);
  int cfd = tcpConnect(from.netns->path(), to.ip, bound, std::chrono::milliseconds(1500));
  bool ok = cfd >= 0;
  if (ok) {
    close(cfd);
    int afd = acceptWithin(lfd, std::chrono::milliseconds(500));
    if (afd >= 0) {
      close(afd);
    }
  }
  close(lfd);
  return ok;
}

}  // namespace

TEST_CASE("policy: an L3 deny stops a ping that was allowed, in the same process and a new one", "[netns][policy]") {
  NodeFixture node("10.221.0.0/24");
  Pod a = node.addPod("a", "x");
  Pod b = node.addPod("b", "x");
  applyYaml(node, podYaml("x", "a") + podYaml("x", "b"));
  requirePingStopsAfter(node, a, b, [&] {
    // Cilium's deny truth table, column "L3 deny": allow everything, deny the client pod.
    applyYaml(node, std::string(kCnp) +
                        "metadata: {name: deny-a, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {pod: b}}\n"
                        "  ingress: [{fromEntities: [all]}]\n"
                        "  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: a}}]}]\n");
  });
  auto flows = node.cli({"observe", "--verdict", "DROPPED", "--protocol", "ICMP", "--last", "100", "-o", "json"});
  CHECK(flows.out.find("POLICY_DENY") != std::string::npos);
}

TEST_CASE("policy: a new default deny stops a ping that was allowed, in the same process and a new one",
          "[netns][policy]") {
  NodeFixture node("10.220.0.0/24");
  Pod a = node.addPod("a", "x");
  Pod b = node.addPod("b", "x");
  applyYaml(node, podYaml("x", "a") + podYaml("x", "b"));
  requirePingStopsAfter(node, a, b, [&] {
    applyYaml(node, std::string(kNp) + "metadata: {name: isolate-b, namespace: x}\n"
                                       "spec: {podSelector: {matchLabels: {pod: b}}}\n");
  });
}

TEST_CASE("policy: CNP icmps allow echo and nothing else; the deny forms refuse it", "[netns][policy]") {
  NodeFixture node("10.219.0.0/24");
  Pod a = node.addPod("a", "x");
  Pod b = node.addPod("b", "x");
  Pod c = node.addPod("c", "x");
  applyYaml(node, podYaml("x", "a") + podYaml("x", "b") + podYaml("x", "c"));
  REQUIRE(pingOnce(a, b.ip));
  REQUIRE(tcpReaches(a, b, 0));

  // Ingress: b answers pings from a, and nothing else from anyone.
  applyYaml(node, std::string(kCnp) +
                      "metadata: {name: ping-only, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {pod: b}}\n"
                      "  ingress:\n  - fromEndpoints: [{matchLabels: {pod: a}}]\n"
                      "    icmps: [{fields: [{type: 8, family: IPv4}]}]\n");
  CHECK(pingOnce(a, b.ip));
  CHECK_FALSE(tcpReaches(a, b, 0));
  CHECK_FALSE(pingOnce(c, b.ip));
  auto ep = node.cliJson({"endpoint", "get", "x/b"});
  INFO(ep.dump(2));
  CHECK(ep["policy"]["entries"].dump().find("\"ICMP\"") != std::string::npos);
  auto ex = node.cli({"policy", "explain", "--from", "x/a", "--to", "x/b", "--port", "80/tcp"});
  CHECK(ex.out.find("DENIED") != std::string::npos);
  // explain takes an ICMP type: echo request allowed by the rule, echo reply (type 0) not.
  auto echo = node.cli({"policy", "explain", "--from", "x/a", "--to", "x/b", "--port", "8/icmp"});
  INFO("explain 8/icmp: " << echo.out << echo.err);
  CHECK(echo.out.rfind("ALLOWED", 0) == 0);
  CHECK(echo.out.find("ALLOWED by CiliumNetworkPolicy x/ping-only") != std::string::npos);
  auto reply = node.cli({"policy", "explain", "--from", "x/a", "--to", "x/b", "--port", "0/icmp"});
  CHECK(reply.out.rfind("DENIED", 0) == 0);
  CHECK(node.cli({"policy", "explain", "--from", "x/a", "--to", "x/b", "--port", "256/icmp"}).exit_code != 0);

  // Egress: a may only ping (by type name); b's ingress is open again.
  applyYaml(node, std::string(kCnp) +
                      "metadata: {name: ping-only, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {pod: a}}\n"
                      "  egress:\n  - toEndpoints: [{matchLabels: {pod: b}}]\n"
                      "    icmps: [{fields: [{type: EchoRequest}]}]\n");
  CHECK(pingOnce(a, b.ip));
  CHECK_FALSE(pingOnce(a, c.ip));
  CHECK_FALSE(tcpReaches(a, b, 0));
  CHECK(tcpReaches(c, b, 0));

  // The deny forms: everything allowed but echo requests.
  applyYaml(node, std::string(kCnp) +
                      "metadata: {name: ping-only, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {pod: b}}\n"
                      "  ingress: [{fromEntities: [all]}]\n"
                      "  ingressDeny: [{icmps: [{fields: [{type: EchoRequest}]}]}]\n");
  CHECK_FALSE(pingOnce(a, b.ip));
  CHECK(tcpReaches(a, b, 0));
  applyYaml(node, std::string(kCnp) +
                      "metadata: {name: ping-only, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {pod: a}}\n"
                      "  egress: [{toEntities: [all]}]\n"
                      "  egressDeny: [{icmps: [{fields: [{type: 8}]}]}]\n");
  CHECK(pingOnce(c, b.ip));
  CHECK_FALSE(pingOnce(a, b.ip));
  CHECK(tcpReaches(a, b, 0));
}

TEST_CASE("policy: a CNP whose endpointSelector names a namespace still isolates its subject in its own namespace",
          "[netns][policy]") {
  NodeFixture node("10.218.0.0/24");
  Pod a = node.addPod("a", "x");
  Pod b = node.addPod("b", "x");
  Pod c = node.addPod("c", "x");
  Pod yb = node.addPod("b", "y");
  applyYaml(node, podYaml("x", "a") + podYaml("x", "b") + podYaml("x", "c") + podYaml("y", "b"));
  REQUIRE(tcpReaches(a, b, 0));
  // The policy lives in x but its selector names y: Cilium applies it to x's pod=b, ignoring the namespace match.
  applyYaml(node, std::string(kCnp) + "metadata: {name: b-from-c, namespace: x}\nspec:\n"
                                      "  endpointSelector: {matchLabels: {pod: b, k8s:io.kubernetes.pod.namespace: y}}\n"
                                      "  ingress: [{fromEndpoints: [{matchLabels: {pod: c}}]}]\n");
  CHECK_FALSE(tcpReaches(a, b, 0));
  CHECK_FALSE(pingOnce(a, b.ip));
  CHECK(tcpReaches(c, b, 0));
  CHECK(tcpReaches(a, yb, 0));  // y's pod=b is not its subject
  auto pol = node.cliJson({"policy", "get"});
  INFO(pol.dump(2));
  REQUIRE(pol["policies"].size() == 1);
  CHECK(pol["policies"][0]["endpoints"].size() == 1);
  CHECK(node.agent().log().find("policy CiliumNetworkPolicy x/b-from-c: spec.endpointSelector: the match on "
                                "k8s:io.kubernetes.pod.namespace is ignored") != std::string::npos);
}

TEST_CASE("policy: enforcement modes always and never, and audit mode, on a live node", "[netns][policy][audit]") {
  const std::string deny_a = std::string(kCnp) +
                             "metadata: {name: deny-a, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {pod: b}}\n"
                             "  ingress: [{fromEntities: [all]}]\n"
                             "  ingressDeny: [{fromEndpoints: [{matchLabels: {pod: a}}]}]\n";
  SECTION("audit: a denied ping passes and is reported as AUDIT, not as a drop") {
    NodeFixture node("10.206.0.0/24", {"--policy-audit-mode", "true"});
    Pod a = node.addPod("a", "x");
    Pod b = node.addPod("b", "x");
    applyYaml(node, podYaml("x", "a") + podYaml("x", "b") + deny_a);
    CHECK(ping(*a.netns, b.ip));
    auto flows = node.cli({"observe", "--verdict", "AUDIT", "--last", "100", "-o", "json"});
    INFO(flows.out << flows.err);
    CHECK(flows.out.find("\"verdict\":\"AUDIT\"") != std::string::npos);
    CHECK(flows.out.find(b.ip) != std::string::npos);
    CHECK(node.cli({"observe", "--verdict", "DROPPED", "--last", "100", "-o", "json"}).out.find("POLICY_DENY") ==
          std::string::npos);
  }
  SECTION("always: a pod no policy selects is unreachable until a policy allows it") {
    NodeFixture node("10.205.0.0/24", {"--enable-policy", "always"});
    Pod a = node.addPod("a", "x");
    Pod b = node.addPod("b", "x");
    applyYaml(node, podYaml("x", "a") + podYaml("x", "b"));
    CHECK_FALSE(ping(*a.netns, b.ip));
    applyYaml(node, std::string(kCnp) + "metadata: {name: open, namespace: x}\nspec:\n  endpointSelector: {}\n"
                                        "  ingress: [{fromEntities: [all]}]\n  egress: [{toEntities: [all]}]\n");
    CHECK(ping(*a.netns, b.ip));
  }
  SECTION("never: a deny rule is not enforced") {
    NodeFixture node("10.204.0.0/24", {"--enable-policy", "never"});
    Pod a = node.addPod("a", "x");
    Pod b = node.addPod("b", "x");
    applyYaml(node, podYaml("x", "a") + podYaml("x", "b") + deny_a);
    CHECK(ping(*a.netns, b.ip));
  }
}
