// LoadBalancer services from outside the cluster, on the multi-node fabric (tests/netns/fabric.h): the fabric
// namespace (172.30.0.1) and a second client namespace on the same bridge are outside clients; the LoadBalancer IP
// 203.0.113.7 is routed by the clients to the node the test wants (as an external load balancer would send it).
//  - externalTrafficPolicy: Local: the backend sees the client's own address; the node without a local backend refuses
//    (TCP RST), and its healthCheckNodePort answers 503 while the backend's node answers 200 with the count.
//  - loadBalancerSourceRanges: one client is admitted, the other dropped as NOT_IN_SRC_RANGE (counted, reported);
//    widening the ranges admits it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

#include "fabric.h"

using namespace plexus::testing;

namespace {

constexpr const char* kLbIp = "203.0.113.7";
constexpr const char* kClient2Ip = "172.30.0.200";

// A second outside client: its own namespace on the fabric's bridge. Removed with its namespace (the veth with it).
struct OutsideClient {
  std::unique_ptr<Netns> netns;
  explicit OutsideClient(Fabric& f) : netns(std::make_unique<Netns>("cl")) {
    std::string dev = uniqueName("cd");
    std::string port = uniqueName("cb");
    auto link = sh("ip link add " + dev + " netns " + netns->name() + " type veth peer name " + port + " netns " +
                   f.fabricNetns().name());
    INFO("client veth: " << link.out << link.err);
    REQUIRE(link.exit_code == 0);
    auto up = netns->exec("ip link set lo up && ip addr add " + std::string(kClient2Ip) + "/24 dev " + dev +
                          " && ip link set " + dev + " up");
    INFO(up.out << up.err);
    REQUIRE(up.exit_code == 0);
    auto br = f.fabricNetns().exec("ip link set " + port + " master " + f.bridge() + " && ip link set " + port + " up");
    INFO(br.out << br.err);
    REQUIRE(br.exit_code == 0);
    REQUIRE(waitUntil([&] { return netns->exec("ping -c 1 -W 1 172.30.0.1").exit_code == 0; }));
  }
};

// Sends the LoadBalancer IP from `client` to node i (replacing any earlier route).
void routeLbIp(const Netns& client, size_t node) {
  auto r = client.exec("ip route replace " + std::string(kLbIp) + "/32 via " + Fabric::underlayIp(node));
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

// Answers each connection on port 8080 with the address it came from (what the backend sees as the client).
struct PeerEcho {
  int fd = -1;
  std::atomic<bool> stop{false};
  std::thread t;
  explicit PeerEcho(const FabricPod& pod) {
    fd = tcpListen(pod.netns().path(), 8080).first;
    REQUIRE(fd >= 0);
    t = std::thread([this] {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      for (int i = 0; i < 5000 && !stop && std::chrono::steady_clock::now() < deadline; ++i) {
        sockaddr_in peer{};
        int c = acceptWithin(fd, std::chrono::milliseconds(100));
        socklen_t len = sizeof(peer);
        if (c >= 0) {
          getpeername(c, reinterpret_cast<sockaddr*>(&peer), &len);
          char buf[INET_ADDRSTRLEN] = {};
          inet_ntop(AF_INET, &peer.sin_addr, buf, sizeof(buf));
          std::string text(buf);
          (void)!write(c, text.data(), text.size());
          close(c);
        }
      }
    });
  }
  ~PeerEcho() {
    stop = true;
    t.join();
    close(fd);
  }
};

// One connection: the outcome of the connect ("ok", "refused", "timeout" or another errno text) and what the server
// wrote (up to 3 s).
struct Attempt {
  std::string outcome;
  std::string answer;
};
Attempt attempt(const Netns& from, const std::string& ip, uint16_t port,
                std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
  Attempt a;
  int fd = socketInNetns(from.path(), SOCK_STREAM);
  if (fd < 0) {
    a.outcome = "socket";
    return a;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  sockaddr_in addr = ipv4Address(ip, port);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = r == 0 ? 0 : errno;
  if (err == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
      close(fd);
      a.outcome = "timeout";
      return a;
    }
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  }
  a.outcome = err == 0 ? "ok" : err == ECONNREFUSED ? "refused" : strerror(err);
  if (err == 0) {
    char buf[256] = {};
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 3000) == 1) {
      ssize_t n = read(fd, buf, sizeof(buf));
      a.answer = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    }
  }
  close(fd);
  return a;
}

// A bounded HTTP GET (HTTP/1.1, Connection: close) from a namespace: status, headers and body.
struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};
HttpReply httpGet(const Netns& from, const std::string& ip, uint16_t port, const std::string& path = "/healthz") {
  HttpReply out;
  int fd = tcpConnect(from.path(), ip, port);
  if (fd < 0) {
    return out;
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + ip + "\r\nConnection: close\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string raw;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (int i = 0; i < 1000 && std::chrono::steady_clock::now() < deadline; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 500) != 1) {
      continue;
    }
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) {
      break;
    }
    raw.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  auto split = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || split == std::string::npos) {
    return out;
  }
  out.status = std::atoi(raw.substr(9, 3).c_str());
  out.headers = raw.substr(0, split);
  out.body = raw.substr(split + 4);
  return out;
}

// A LoadBalancer "web" (80 -> 8080, nodePort 30093) with ingress IP kLbIp and one EndpointSlice holding `backend` on
// node `node_name`; `extra` is appended to its spec.
std::string lbService(const FabricPod& backend, const std::string& node_name, const std::string& extra) {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: LoadBalancer\n"
         "  clusterIP: 10.96.73.10\n  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30093}]\n" +
         extra + "status:\n  loadBalancer:\n    ingress: [{ip: " + kLbIp + "}]\n---\n"
         "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
         "metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\n"
         "addressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n"
         "- addresses: [" + backend.ip() + "]\n  conditions: {ready: true}\n  nodeName: " + node_name + "\n";
}

// Two nodes in native routing, pod CIDRs 10.{base}.0.0/24 and 10.{base+1}.0.0/24.
FabricOptions twoNodes(int cidr_base) {
  FabricOptions o;
  o.nodes = 2;
  o.cidr_base = cidr_base;
  o.agent_args = routingArgs("native");
  return o;
}

}  // namespace

TEST_CASE("multinode: externalTrafficPolicy Local keeps the client's address, the node without a local backend "
          "refuses, and healthCheckNodePort answers 200 with the count there and 503 elsewhere",
          "[netns][multinode][nodeport][etp-local]") {
  Fabric f(twoNodes(206));
  FabricPod& web = f.addPod(1, "web", {{"app", "web"}});
  f.applyCluster();
  f.applyEverywhere(lbService(web, f.nodeName(1), "  externalTrafficPolicy: Local\n  healthCheckNodePort: 31555\n"),
                    "svc.yaml");
  PeerEcho echo(web);

  // Through node 2 (the backend's): the backend sees the outside client itself, not a node address.
  Attempt a;
  bool reached = waitUntil([&] {
    a = attempt(f.fabricNetns(), Fabric::underlayIp(1), 30093);
    return a.answer == "172.30.0.1";
  });
  INFO("via node 2's NodePort: " << a.outcome << " [" << a.answer << "]\n" << f.logs());
  CHECK(reached);
  routeLbIp(f.fabricNetns(), 1);
  reached = waitUntil([&] {
    a = attempt(f.fabricNetns(), kLbIp, 80);
    return a.answer == "172.30.0.1";
  });
  INFO("via node 2's LoadBalancer IP: " << a.outcome << " [" << a.answer << "]");
  CHECK(reached);

  // Through node 1 (no local backend): refused at once, the NodePort and the LoadBalancer IP alike.
  Attempt refused = attempt(f.fabricNetns(), Fabric::underlayIp(0), 30093);
  INFO("via node 1's NodePort: " << refused.outcome << " [" << refused.answer << "]");
  CHECK(refused.outcome == "refused");
  routeLbIp(f.fabricNetns(), 0);
  refused = attempt(f.fabricNetns(), kLbIp, 80);
  INFO("via node 1's LoadBalancer IP: " << refused.outcome << " [" << refused.answer << "]");
  CHECK(refused.outcome == "refused");
  CHECK(reasonCount(f.node(0), "NO_SERVICE_BACKEND") >= 2);

  // The health checks, as a cloud load balancer probes them.
  HttpReply up;
  bool healthy = waitUntil([&] {
    up = httpGet(f.fabricNetns(), Fabric::underlayIp(1), 31555);
    return up.status == 200;
  });
  INFO("node 2 health: " << up.status << "\n" << up.headers << "\n" << up.body << "\n" << f.node(1).agent().log());
  REQUIRE(healthy);
  auto body = nlohmann::json::parse(up.body, nullptr, false);
  REQUIRE(body.is_object());
  CHECK(body["service"]["namespace"] == "default");
  CHECK(body["service"]["name"] == "web");
  CHECK(body["localEndpoints"] == 1);
  CHECK(body["serviceProxyHealthy"] == true);
  CHECK(up.headers.find("Content-Type: application/json") != std::string::npos);
  CHECK(up.headers.find("X-Content-Type-Options: nosniff") != std::string::npos);
  CHECK(f.node(1).cliJson({"service", "get", "web"})["service"]["health_check_node_port"] == 31555);
  CHECK(httpGet(f.fabricNetns(), Fabric::underlayIp(1), 31555, "/any/path").status == 200);

  HttpReply down;
  bool answered = waitUntil([&] {
    down = httpGet(f.fabricNetns(), Fabric::underlayIp(0), 31555);
    return down.status != 0;
  });
  INFO("node 1 health: " << down.status << "\n" << down.body << "\n" << f.node(0).agent().log());
  REQUIRE(answered);
  CHECK(down.status == 503);
  auto down_body = nlohmann::json::parse(down.body, nullptr, false);
  REQUIRE(down_body.is_object());
  CHECK(down_body["localEndpoints"] == 0);

  // The service goes: so do the listeners.
  f.apply(1, lbService(web, f.nodeName(1), "  externalTrafficPolicy: Local\n  healthCheckNodePort: 31555\n"),
          "svc.yaml", true);
  bool closed = waitUntil([&] { return httpGet(f.fabricNetns(), Fabric::underlayIp(1), 31555).status == 0; });
  INFO(f.node(1).agent().log());
  CHECK(closed);
}

TEST_CASE("multinode: loadBalancerSourceRanges admit a client inside them and drop one outside (NOT_IN_SRC_RANGE); "
          "a change of the ranges takes effect",
          "[netns][multinode][nodeport][source-range]") {
  Fabric f(twoNodes(204));
  FabricPod& web = f.addPod(1, "web", {{"app", "web"}});
  f.applyCluster();
  OutsideClient other(f);
  // Both clients send the LoadBalancer IP to node 1, which forwards to the backend on node 2.
  routeLbIp(f.fabricNetns(), 0);
  routeLbIp(*other.netns, 0);
  // "not-a-cidr" is logged and admits nobody; the valid range still admits its client.
  f.applyEverywhere(lbService(web, f.nodeName(1), "  loadBalancerSourceRanges: [\"172.30.0.1/32\", \"not-a-cidr\"]\n"),
                    "svc.yaml");
  PeerEcho echo(web);

  Attempt a;
  bool admitted = waitUntil([&] {
    a = attempt(f.fabricNetns(), kLbIp, 80);
    return a.outcome == "ok" && !a.answer.empty();
  });
  INFO("inside the ranges: " << a.outcome << " [" << a.answer << "]\n" << f.logs());
  CHECK(admitted);

  Attempt b = attempt(*other.netns, kLbIp, 80);
  INFO("outside the ranges: " << b.outcome << " [" << b.answer << "]");
  CHECK(b.outcome == "timeout");  // dropped, not refused
  CHECK(reasonCount(f.node(0), "NOT_IN_SRC_RANGE") >= 1);
  bool reported = false;
  waitUntil([&] {
    for (const auto& fl : droppedFlows(f.node(0))) {
      reported = reported || (fl.value("drop_reason_desc", "") == "DENIED_BY_LB_SRC_RANGE_CHECK" &&
                              fl.dump().find(kClient2Ip) != std::string::npos);
    }
    return reported;
  });
  INFO(droppedFlowsText(f.node(0)));
  CHECK(reported);
  CHECK(f.node(0).agent().log().find("service default/web: spec.loadBalancerSourceRanges: \"not-a-cidr\"") !=
        std::string::npos);
  auto svc = f.node(0).cliJson({"service", "get", "web"});
  INFO(svc.dump());
  CHECK(svc["service"]["load_balancer_source_ranges"] == nlohmann::json::array({"172.30.0.1/32"}));
  CHECK(svc["service"]["source_ranges_set"] == true);
  auto ranges = f.node(0).cliJson({"bpf", "lb-source-range", "list"});
  INFO(ranges.dump());
  REQUIRE(ranges.size() == 1);
  CHECK(ranges[0].value("source_range", "") == "172.30.0.1/32");
  CHECK(ranges[0].value("frontend", "") == std::string(kLbIp) + ":80");

  // Widened to the whole underlay: the other client gets in too.
  f.applyEverywhere(lbService(web, f.nodeName(1), "  loadBalancerSourceRanges: [\"172.30.0.0/24\"]\n"), "svc.yaml");
  Attempt c;
  admitted = waitUntil([&] {
    c = attempt(*other.netns, kLbIp, 80);
    return c.outcome == "ok" && !c.answer.empty();
  });
  INFO("after widening: " << c.outcome << " [" << c.answer << "]\n" << f.node(0).agent().log());
  CHECK(admitted);
  ranges = f.node(0).cliJson({"bpf", "lb-source-range", "list"});
  REQUIRE(ranges.size() == 1);
  CHECK(ranges[0].value("source_range", "") == "172.30.0.0/24");
}
