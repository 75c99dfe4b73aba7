// Node health probes, end to end: three standalone agents on the fabric (tests/netns/fabric.h). Each agent probes the
// others twice, as cilium-health does: an ICMP echo to the InternalIP and a TCP connect to the health port (4240).
// The probes are made to fail one at a time on node 3 with iptables rules in its own namespace (TCP to 4240 rejected,
// then ICMP echo requests dropped), and node 1 must report exactly that probe as failed, the other as ok, in
// `plexus node list` (-o json and the table), `plexus status` and /metrics. The rules go with node 3's namespace,
// so a failing check leaves nothing behind. Every wait is bounded.
#include <catch2/catch.hpp>

#include <chrono>
#include <regex>
#include <string>

#include "fabric.h"

using namespace plexus::testing;

namespace {

// The entry named `name` in a node list (fabric.h), copied; null when absent, so a missing node fails the checks
// that follow instead of dereferencing nothing.
nlohmann::json nodeEntry(const nlohmann::json& list, const std::string& name) {
  const nlohmann::json* n = findNode(list, name);
  return n != nullptr ? *n : nlohmann::json();
}

// The two probes of `name` as node `on` reports them: {icmp ok, tcp ok}, or nothing when not listed or not probed.
std::optional<std::pair<bool, bool>> probes(NodeFixture& on, const std::string& name) {
  auto n = nodeEntry(nodeList(on), name);
  if (!n.is_object() || !n.contains("icmp") || !n.contains("tcp")) {
    return std::nullopt;
  }
  return std::make_pair(n["icmp"].value("ok", false), n["tcp"].value("ok", false));
}

std::string metrics(NodeFixture& n) { return n.node().exec("curl -sf http://127.0.0.1:9962/metrics").out; }

// The value of one sample (`name{labels}` exactly as exposed), or -1 when absent.
double sample(const std::string& text, const std::string& series) {
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) {
    return -1;
  }
  return std::stod(text.substr(at + series.size() + 2));
}

}  // namespace

TEST_CASE("node health: ICMP and TCP probes are reported apart; a node that answers one of them is unreachable",
          "[netns][multinode][health]") {
  FabricOptions o;
  o.nodes = 3;
  o.cidr_base = 250;
  o.agent_args = {"--routing-mode", "native"};
  Fabric f(o);
  f.applyCluster();
  const std::string n2 = f.nodeName(1), n3 = f.nodeName(2);
  NodeFixture& n1 = f.node(0);
  Netns& third = f.node(2).node();

  // Everything answers: both probes ok for both other nodes, with round trips.
  bool healthy = waitUntil(
      [&] { return probes(n1, n2) == std::make_pair(true, true) && probes(n1, n3) == std::make_pair(true, true); },
      std::chrono::seconds(30));
  {
    INFO("node 1 node list: " << nodeList(n1).dump() << "\n" << f.logs());
    REQUIRE(healthy);
  }
  auto list = nodeList(n1);
  for (const auto& name : {n2, n3}) {
    auto n = nodeEntry(list, name);
    INFO(n.dump());
    CHECK(n.value("reachable", false));
    CHECK(n.value("health", "") == "ok");
    CHECK(n["icmp"].value("rtt_ms", 0.0) > 0);
    CHECK(n["tcp"].value("rtt_ms", 0.0) > 0);
  }
  CHECK_FALSE(nodeEntry(list, f.nodeName(0)).contains("icmp"));  // self is not probed
  CHECK(n1.cli({"status"}).out.find("3/3 reachable") != std::string::npos);
  {
    auto m = metrics(n1);
    INFO(m);
    CHECK(sample(m, "plexus_nodes") == 3);
    CHECK(sample(m, "plexus_nodes_reachable") == 2);
    CHECK(sample(m, "plexus_node_health_probe_ok{node=\"" + n3 + "\",protocol=\"icmp\"}") == 1);
    CHECK(sample(m, "plexus_node_health_probe_ok{node=\"" + n3 + "\",protocol=\"tcp\"}") == 1);
    CHECK(sample(m, "plexus_node_health_probe_seconds{node=\"" + n2 + "\",protocol=\"icmp\"}") > 0);
    CHECK(sample(m, "plexus_node_health_probe_seconds{node=\"" + n2 + "\",protocol=\"tcp\"}") > 0);
  }

  // Node 3's health port refuses connections; its host still answers pings.
  {
    auto r = third.exec("iptables -I INPUT -p tcp --dport 4240 -j REJECT --reject-with tcp-reset");
    INFO("iptables: " << r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }
  bool tcp_down = waitUntil([&] { return probes(n1, n3) == std::make_pair(true, false); }, std::chrono::seconds(15));
  list = nodeList(n1);
  {
    INFO("node 1 node list with node 3's TCP 4240 rejected (want icmp ok, tcp failed): " << list.dump());
    REQUIRE(tcp_down);
  }
  auto down = nodeEntry(list, n3);
  CHECK_FALSE(down.value("reachable", true));
  CHECK(down["tcp"].value("message", "").find(":4240") != std::string::npos);
  CHECK(down["icmp"].value("message", "") == "ok");
  CHECK(down.value("health", "").rfind("icmp ok, tcp: ", 0) == 0);
  CHECK(probes(n1, n2) == std::make_pair(true, true));  // the other node is unaffected
  CHECK(n1.cli({"status"}).out.find("2/3 reachable") != std::string::npos);
  {
    auto table = n1.cli({"node", "list"}).out;
    INFO(table);
    CHECK(table.find("ICMP") != std::string::npos);
    CHECK(std::regex_search(table, std::regex(n3 + ".* ok [0-9.]+ms +failed +no ")));
  }
  {
    auto m = metrics(n1);
    INFO(m);
    CHECK(sample(m, "plexus_nodes_reachable") == 1);
    CHECK(sample(m, "plexus_node_health_probe_ok{node=\"" + n3 + "\",protocol=\"icmp\"}") == 1);
    CHECK(sample(m, "plexus_node_health_probe_ok{node=\"" + n3 + "\",protocol=\"tcp\"}") == 0);
    CHECK(sample(m, "plexus_node_health_probe_seconds{node=\"" + n3 + "\",protocol=\"tcp\"}") == -1);
    CHECK(sample(m, "plexus_node_health_probe_seconds{node=\"" + n3 + "\",protocol=\"icmp\"}") > 0);
  }

  // The other way round: the health port answers again, but echo requests are dropped.
  {
    auto r = third.exec("iptables -D INPUT -p tcp --dport 4240 -j REJECT --reject-with tcp-reset && "
                        "iptables -I INPUT -p icmp --icmp-type echo-request -j DROP");
    INFO("iptables: " << r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }
  bool icmp_down = waitUntil([&] { return probes(n1, n3) == std::make_pair(false, true); }, std::chrono::seconds(15));
  list = nodeList(n1);
  {
    INFO("node 1 node list with node 3 dropping echo requests (want icmp failed, tcp ok): " << list.dump());
    REQUIRE(icmp_down);
  }
  down = nodeEntry(list, n3);
  CHECK_FALSE(down.value("reachable", true));
  CHECK(down["icmp"].value("message", "").find("no echo reply from " + Fabric::underlayIp(2)) != std::string::npos);
  CHECK(down.value("health", "").find(", tcp ok") != std::string::npos);
  {
    auto m = metrics(n1);
    INFO(m);
    CHECK(sample(m, "plexus_node_health_probe_ok{node=\"" + n3 + "\",protocol=\"icmp\"}") == 0);
    CHECK(sample(m, "plexus_node_health_probe_ok{node=\"" + n3 + "\",protocol=\"tcp\"}") == 1);
  }

  // Rules gone: reachable again.
  REQUIRE(third.exec("iptables -D INPUT -p icmp --icmp-type echo-request -j DROP").exit_code == 0);
  CHECK(waitUntil([&] { return probes(n1, n3) == std::make_pair(true, true); }, std::chrono::seconds(15)));
  CHECK(waitUntil([&] { return n1.cli({"status"}).out.find("3/3 reachable") != std::string::npos; },
                  std::chrono::seconds(10)));
}
