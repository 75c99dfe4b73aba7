// The foundation: real agent, pods wired by plexus-cni as kubelet runs it, traffic through bpf_lxc.
#include <unistd.h>

#include <catch2/catch.hpp>

#include "node_fixture.h"

using namespace plexus::testing;

namespace {
void requireConnectivity(const Pod& from, const Pod& to) {
  INFO("from " << from.ip << " to " << to.ip);
  CHECK(ping(*from.netns, to.ip));
  requireTcpExchange(from, to);
  CHECK(udpRoundTrip(from.netns->path(), to.netns->path(), to.ip));
}

uint64_t forwardedPackets(NodeFixture& node) {
  uint64_t total = 0;
  for (const auto& row : node.cliJson({"bpf", "metrics", "list"})) {
    if (row.value("reason", "") == "FORWARDED" && row.contains("packets")) {
      total += row["packets"].get<uint64_t>();
    }
  }
  return total;
}
}  // namespace

TEST_CASE("three pods get addresses and reach each other with ping, TCP and UDP both ways", "[netns]") {
  NodeFixture node("10.244.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  Pod c = node.addPod("c");
  CHECK(a.ip != b.ip);
  CHECK(b.ip != c.ip);
  CHECK(a.ip.rfind("10.244.0.", 0) == 0);

  // The result carries the host veth and the container interface with its MAC and sandbox.
  const auto& itfs = a.result.at("interfaces");
  REQUIRE(itfs.size() == 2);
  CHECK(itfs[0].at("name").get<std::string>().rfind("lxc", 0) == 0);
  CHECK(itfs[1].at("name") == "eth0");
  CHECK(itfs[1].at("sandbox") == a.netns->path());
  CHECK_FALSE(itfs[1].at("mac").get<std::string>().empty());
  CHECK(a.result.at("routes").size() >= 1);

  // The pod side is a /32 with a default route through the gateway.
  auto addr = a.netns->exec("ip -4 -o addr show dev eth0");
  CHECK(addr.out.find(a.ip + "/32") != std::string::npos);
  auto routes = a.netns->exec("ip -4 route show default");
  CHECK(routes.out.find("via 10.244.0.1") != std::string::npos);

  uint64_t before = forwardedPackets(node);
  const Pod* pods[] = {&a, &b, &c};
  for (const Pod* x : pods) {
    for (const Pod* y : pods) {
      if (x != y) {
        requireConnectivity(*x, *y);
      }
    }
  }
  // The traffic went through our programs: the forwarded counters moved.
  CHECK(forwardedPackets(node) > before);

  // The kernel's maps hold each pod on its host veth, and the CLI shows the same.
  for (const Pod* p : pods) {
    auto ifindex = node.endpointIfindex(p->ip);
    REQUIRE(ifindex.has_value());
    auto shown = node.node().exec("cat /sys/class/net/" + p->host_veth + "/ifindex");
    CHECK(std::to_string(*ifindex) == shown.out.substr(0, shown.out.find('\n')));
    CHECK(node.ipcacheHas(p->ip));
  }
  auto eps = node.cliJson({"endpoint", "list"});
  CHECK(eps.size() == 3);
}

TEST_CASE("pods reach the host and the host reaches pods", "[netns]") {
  NodeFixture node("10.245.0.0/24");
  Pod a = node.addPod("a");
  CHECK(ping(*a.netns, "10.245.0.1"));
  CHECK(node.node().exec("ping -c1 -W2 " + a.ip).exit_code == 0);
  // TCP from the pod to a listener on the node.
  auto [lfd, port] = tcpListen(node.node().path());
  REQUIRE(lfd >= 0);
  int cfd = tcpConnect(a.netns->path(), "10.245.0.1", port);
  REQUIRE(cfd >= 0);
  int afd = acceptWithin(lfd);
  REQUIRE(afd >= 0);
  CHECK(exchange(cfd, afd, "to host"));
  CHECK(exchange(afd, cfd, "from host"));
  close(cfd);
  close(afd);
  close(lfd);
}

TEST_CASE("DEL removes the veth, the map entries and the address, and is idempotent", "[netns]") {
  NodeFixture node("10.246.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  REQUIRE(node.hostLinkExists(a.host_veth));
  auto status = node.cliJson({"status"});
  auto used_before = status.at("ipam").at("used").get<int>();

  auto del = node.cni("DEL", a, node.cniConfig());
  INFO(del.out << del.err);
  REQUIRE(del.exit_code == 0);
  CHECK_FALSE(node.hostLinkExists(a.host_veth));
  CHECK_FALSE(node.endpointIfindex(a.ip).has_value());
  CHECK_FALSE(node.ipcacheHas(a.ip));
  CHECK(a.netns->exec("ip link show eth0").exit_code != 0);
  CHECK(node.cliJson({"status"}).at("ipam").at("used").get<int>() == used_before - 1);
  // b is untouched.
  CHECK(node.endpointIfindex(b.ip).has_value());

  // Repeated DELs, as containerd sends them: empty netns, no prevResult.
  Pod again;
  again.container_id = a.container_id;
  CHECK(node.cni("DEL", again, node.cniConfig()).exit_code == 0);
  CHECK(node.cni("DEL", a, node.cniConfig()).exit_code == 0);
  CHECK(node.cliJson({"endpoint", "list"}).size() == 1);
}

TEST_CASE("CHECK succeeds for a wired pod and fails once its interface is gone", "[netns]") {
  NodeFixture node("10.247.0.0/24");
  Pod a = node.addPod("a");
  auto cfg = node.cniConfig();
  cfg["prevResult"] = a.result;
  auto ok = node.cni("CHECK", a, cfg);
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  a.netns->exec("ip link del eth0");
  auto bad = node.cni("CHECK", a, cfg);
  CHECK(bad.exit_code != 0);
  auto err = nlohmann::json::parse(bad.out, nullptr, false);
  REQUIRE_FALSE(err.is_discarded());
  CHECK(err.contains("code"));
  CHECK(err.contains("msg"));
}

TEST_CASE("a TCP connection between pods survives kill -9 of the agent and its restart", "[netns]") {
  NodeFixture node("10.248.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  auto [lfd, port] = tcpListen(b.netns->path());
  REQUIRE(lfd >= 0);
  int cfd = tcpConnect(a.netns->path(), b.ip, port);
  REQUIRE(cfd >= 0);
  int afd = acceptWithin(lfd);
  REQUIRE(afd >= 0);
  CHECK(exchange(cfd, afd, "before"));

  node.agent().kill9();
  // The datapath keeps forwarding with no agent at all.
  CHECK(exchange(cfd, afd, "while down"));
  CHECK(exchange(afd, cfd, "reply while down"));
  CHECK(ping(*a.netns, b.ip));

  REQUIRE(node.agent().start());
  CHECK(exchange(cfd, afd, "after restart"));
  CHECK(exchange(afd, cfd, "reply after restart"));
  // The restarted agent restored both endpoints and still wires new pods without reusing addresses.
  CHECK(node.cliJson({"endpoint", "list"}).size() == 2);
  Pod c = node.addPod("c");
  CHECK(c.ip != a.ip);
  CHECK(c.ip != b.ip);
  requireConnectivity(c, a);
  close(cfd);
  close(afd);
  close(lfd);
}

TEST_CASE("graceful stop leaves programs and maps; DEL while the agent is down is finished at start", "[netns]") {
  NodeFixture node("10.249.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  CHECK(node.agent().stop() == 0);
  // Programs and pinned maps stay: traffic still flows.
  CHECK(ping(*a.netns, b.ip));
  CHECK(node.endpointIfindex(a.ip).has_value());

  // DEL with the agent down removes the pod interface and succeeds.
  auto del = node.cni("DEL", a, node.cniConfig());
  INFO(del.out << del.err);
  CHECK(del.exit_code == 0);
  CHECK(a.netns->exec("ip link show eth0").exit_code != 0);

  REQUIRE(node.agent().start());
  // The queued release was finished: a's endpoint is gone, its address free, b still works.
  auto eps = node.cliJson({"endpoint", "list"});
  CHECK(eps.size() == 1);
  CHECK_FALSE(node.endpointIfindex(a.ip).has_value());
  CHECK(node.endpointIfindex(b.ip).has_value());
  CHECK(node.hostLxcCount() == 1);
}

TEST_CASE("--devices attaches the NodePort program to the node's external device", "[netns]") {
  TempDir tmp;
  BpffsMount bpffs(tmp.path() + "/bpffs");
  Netns node("nd");
  std::string dev = uniqueName("ext");
  std::string peer = uniqueName("exp");
  REQUIRE(node.exec("ip link add " + dev + " type veth peer name " + peer + " && ip link set " + dev + " up")
              .exit_code == 0);
  AgentOptions opts;
  opts.pod_cidr = "10.236.0.0/24";
  opts.extra_args = {"--devices", dev};
  AgentProcess agent(node, tmp.path() + "/state", bpffs.path() + "/plexus", tmp.path() + "/plexus.sock", opts);
  REQUIRE(agent.start());
  auto filters = node.exec("tc filter show dev " + dev + " ingress");
  CHECK(filters.out.find("plexus_from_net") != std::string::npos);
  auto status = runCommand({cliBinary(), "--socket", agent.socket(), "status", "-o", "json"});
  CHECK(status.out.find("plexus_from_netdev") != std::string::npos);

  // A device that does not exist stops the agent with a message naming it.
  AgentOptions bad = opts;
  bad.extra_args = {"--devices", "nosuchdev0"};
  Netns node2("nd");
  AgentProcess broken(node2, tmp.path() + "/state2", bpffs.path() + "/plexus2", tmp.path() + "/p2.sock", bad);
  CHECK_FALSE(broken.start(std::chrono::seconds(10)));
  CHECK(broken.log().find("nosuchdev0") != std::string::npos);
}
