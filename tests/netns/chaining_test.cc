// plexus-cni inside conflists: first plugin before portmap and bandwidth, and generic-veth chaining after ptp.
#include <unistd.h>

#include <catch2/catch.hpp>

#include "node_fixture.h"

using namespace plexus::testing;

namespace {
nlohmann::json conflist(const std::string& name, nlohmann::json plugins) {
  return {{"cniVersion", "1.0.0"}, {"name", name}, {"plugins", std::move(plugins)}};
}

CniCall conflistCall(NodeFixture& node, const std::string& command, const Pod& pod, const std::string& pod_name) {
  CniCall c = node.call(command, pod);
  c.args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + pod_name + ";IgnoreUnknown=1";
  return c;
}

std::string firstIp(const nlohmann::json& result) {
  std::string cidr = result.at("ips").at(0).at("address");
  return cidr.substr(0, cidr.find('/'));
}
}  // namespace

TEST_CASE("plexus-cni as the first plugin, followed by portmap and bandwidth", "[netns][chaining]") {
  NodeFixture node("10.253.0.0/24");
  auto plexus = node.cniConfig();
  plexus.erase("cniVersion");
  plexus.erase("name");
  auto list = conflist("plexus-chain", {plexus,
                                        {{"type", "portmap"}, {"capabilities", {{"portMappings", true}}}},
                                        {{"type", "bandwidth"}, {"capabilities", {{"bandwidth", true}}}}});
  nlohmann::json runtime = {
      {"portMappings", {{{"hostPort", 18080}, {"containerPort", 8080}, {"protocol", "tcp"}}}},
      // Ingress shaping only: the plugin's egress shaping needs an `ingress` qdisc on the host veth, whose slot
      // our clsact qdisc holds (docs/cni.md, limits).
      {"bandwidth", {{"ingressRate", 100000000}, {"ingressBurst", 1000000}}}};

  Pod a;
  a.netns = std::make_unique<Netns>("pd");
  a.container_id = uniqueName("pm");
  auto add = runConflist(list, conflistCall(node, "ADD", a, "web"), runtime);
  INFO(add.error << "\nagent log:\n" << node.agent().log());
  REQUIRE(add.ok);
  a.ip = firstIp(add.result);
  // bandwidth passes our result through: the host veth is still the first interface.
  std::string host_veth = add.result.at("interfaces").at(0).at("name");
  CHECK(host_veth.rfind("lxc", 0) == 0);

  // bandwidth shaped the host veth, and our programs are still attached next to its qdisc.
  auto qdisc = node.node().exec("tc qdisc show dev " + host_veth);
  CHECK(qdisc.out.find("tbf") != std::string::npos);
  auto filters = node.node().exec("tc filter show dev " + host_veth + " ingress");
  CHECK(filters.out.find("plexus_from_con") != std::string::npos);

  // An external client reaches the pod through the node's hostPort (portmap's DNAT) and gets its replies
  // back through the reverse NAT (the pod's reply to a non-endpoint goes through the node's stack).
  Netns ext("ex");
  std::string v_node = uniqueName("vn");
  std::string v_ext = uniqueName("ve");
  REQUIRE(sh("ip link add " + v_node + " netns " + node.node().name() + " type veth peer name " + v_ext + " netns " +
             ext.name()).exit_code == 0);
  node.node().exec("ip addr add 192.0.2.1/24 dev " + v_node + " && ip link set " + v_node + " up");
  ext.exec("ip addr add 192.0.2.2/24 dev " + v_ext + " && ip link set " + v_ext + " up");

  auto [lfd, port] = tcpListen(a.netns->path(), 8080);
  REQUIRE(lfd >= 0);
  int cfd = tcpConnect(ext.path(), "192.0.2.1", 18080);
  REQUIRE(cfd >= 0);
  int afd = acceptWithin(lfd);
  REQUIRE(afd >= 0);
  CHECK(exchange(cfd, afd, "via hostPort"));
  CHECK(exchange(afd, cfd, "reply via hostPort"));
  close(cfd);
  close(afd);
  close(lfd);

  // DEL in reverse order with the cached result removes the DNAT rules and our endpoint.
  auto del = runConflist(list, conflistCall(node, "DEL", a, "web"), runtime, add.result);
  INFO(del.error);
  REQUIRE(del.ok);
  CHECK(node.node().exec("iptables-save -t nat").out.find("18080") == std::string::npos);
  CHECK_FALSE(node.endpointIfindex(a.ip).has_value());
  CHECK(node.hostLxcCount() == 0);
}

TEST_CASE("generic-veth chaining after ptp attaches our programs to ptp's veth", "[netns][chaining]") {
  NodeFixture node("10.244.0.0/24");
  auto plexus = node.cniConfig();
  plexus.erase("cniVersion");
  plexus.erase("name");
  plexus["chaining-mode"] = "generic-veth";
  auto list = conflist(
      "ptp-chain",
      {{{"type", "ptp"},
        {"ipam", {{"type", "host-local"},
                  {"ranges", {{{{"subnet", "10.99.0.0/24"}}}}},
                  {"dataDir", node.dir() + "/host-local"}}}},
       plexus});

  Pod a, b;
  nlohmann::json results[2];
  Pod* pods[] = {&a, &b};
  for (int i = 0; i < 2; ++i) {
    pods[i]->netns = std::make_unique<Netns>("pd");
    pods[i]->container_id = uniqueName("ptp");
    auto add = runConflist(list, conflistCall(node, "ADD", *pods[i], "ptp" + std::to_string(i)));
    INFO(add.error << "\nagent log:\n" << node.agent().log());
    REQUIRE(add.ok);
    results[i] = add.result;
    pods[i]->ip = firstIp(add.result);
    CHECK(pods[i]->ip.rfind("10.99.0.", 0) == 0);  // ptp's addresses, passed through
    for (const auto& itf : add.result.at("interfaces")) {
      if (!itf.contains("sandbox")) {
        pods[i]->host_veth = itf.at("name");
      }
    }
  }
  REQUIRE_FALSE(a.host_veth.empty());
  // Our programs sit on ptp's host veth and the endpoints are registered in the kernel's maps.
  auto filters = node.node().exec("tc filter show dev " + a.host_veth + " ingress");
  CHECK(filters.out.find("plexus_from_con") != std::string::npos);
  CHECK(node.endpointIfindex(a.ip).has_value());
  CHECK(node.endpointIfindex(b.ip).has_value());
  CHECK(node.cliJson({"endpoint", "list"}).size() == 2);

  CHECK(ping(*a.netns, b.ip));
  requireTcpExchange(a, b);

  // DEL: we unregister, ptp removes its veth.
  auto del = runConflist(list, conflistCall(node, "DEL", a, "ptp0"), {}, results[0]);
  INFO(del.error);
  REQUIRE(del.ok);
  CHECK_FALSE(node.endpointIfindex(a.ip).has_value());
  CHECK_FALSE(node.hostLinkExists(a.host_veth));
  CHECK(node.cliJson({"endpoint", "list"}).size() == 1);
}
