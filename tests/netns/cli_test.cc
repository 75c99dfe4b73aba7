// cilium-dbg habits end to end: plexus monitor (drops and policy verdicts of real traffic), plexus map list,
// plexus config, plexus status's Cilium lines, and -o yaml / -o jsonpath= on the commands that print JSON.
#include <yaml-cpp/yaml.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "node_fixture.h"

using namespace plexus::testing;

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string l;
  while (std::getline(ss, l)) {
    out.push_back(l);
  }
  return out;
}

// The line of `text` that starts with `prefix` ("" if none).
std::string lineStarting(const std::string& text, const std::string& prefix) {
  for (const auto& l : lines(text)) {
    if (l.rfind(prefix, 0) == 0) {
      return l;
    }
  }
  return "";
}

std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string w;
  while (ss >> w) {
    out.push_back(w);
  }
  return out;
}

// Pods web and client in namespace `ns`; web admits client on TCP 8080 only.
void applyWebPolicy(NodeFixture& node, const std::string& ns) {
  std::string path = node.dir() + "/policy.yaml";
  std::ofstream(path) << "apiVersion: v1\nkind: Namespace\nmetadata: {name: " << ns << "}\n---\n"
                      << "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: " << ns
                      << ", labels: {app: web}}\n---\n"
                      << "apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: " << ns
                      << ", labels: {app: client}}\n---\n"
                      << "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: " << ns
                      << "}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n"
                      << "  - fromEndpoints: [{matchLabels: {app: client}}]\n"
                      << "    toPorts: [{ports: [{port: \"8080\", protocol: TCP}]}]\n";
  auto applied = node.cli({"apply", "-f", path});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
}

}  // namespace

TEST_CASE("plexus monitor shows a policy drop and its verdict, by --type, as text and as JSON", "[netns][cli]") {
  NodeFixture node("10.181.0.0/24");
  Pod web = node.addPod("web", "mon");
  Pod client = node.addPod("client", "mon");
  applyWebPolicy(node, "mon");
  requireTcpExchange(client, web, 8080);

  // The monitors follow until their timeouts (monitor never ends on its own); meanwhile the client keeps trying a
  // denied port and an allowed one, so whenever a monitor's stream begins, later attempts reach it.
  const auto window = std::chrono::seconds(8);
  CommandResult drops, verdicts, all_json;
  auto run = [&](CommandResult* out, std::vector<std::string> args) {
    std::vector<std::string> argv = {cliBinary(), "--socket", node.socket(), "monitor"};
    argv.insert(argv.end(), args.begin(), args.end());
    *out = runCommand(argv, "", {}, window);
  };
  std::thread t1(run, &drops, std::vector<std::string>{"--type", "drop"});
  std::thread t2(run, &verdicts, std::vector<std::string>{"--type", "policy-verdict", "-v"});
  std::thread t3(run, &all_json, std::vector<std::string>{"-o", "json"});
  for (int i = 0; i < 12; ++i) {  // bounded: about 12 x (500 ms denied connect + an exchange)
    CHECK(tcpConnect(client.netns->path(), web.ip, 8081, std::chrono::milliseconds(500)) < 0);
    requireTcpExchange(client, web, 8080);
  }
  t1.join();
  t2.join();
  t3.join();
  INFO("--type drop:\n" << drops.out << drops.err << "\n--type policy-verdict:\n" << verdicts.out << verdicts.err);

  // --type drop: the policy drop, and no other kind of event (the allowed exchanges were traced, not shown).
  CHECK(drops.out.rfind("Listening for events on " + node.socket(), 0) == 0);
  std::string drop = lineStarting(drops.out, "xx drop (Policy denied)");
  REQUIRE_FALSE(drop.empty());
  CHECK(drop.find("-> " + web.ip + ":8081 tcp SYN") != std::string::npos);
  for (const auto& l : lines(drops.out)) {
    CHECK(l.rfind("-> ", 0) != 0);
    CHECK(l.rfind("Policy verdict log:", 0) != 0);
  }
  // --type policy-verdict: the deny on ingress into web and the allow of the 8080 connections, with -v details.
  std::string deny, allow;
  for (const auto& l : lines(verdicts.out)) {
    if (l.find("action deny") != std::string::npos && l.find(web.ip + ":8081") != std::string::npos) {
      deny = l;
    }
    if (l.find("action allow") != std::string::npos && l.find(web.ip + ":8080") != std::string::npos) {
      allow = l;
    }
    CHECK(l.rfind("xx drop", 0) != 0);
  }
  CHECK(deny.rfind("Policy verdict log: local EP ID ", 0) == 0);
  CHECK(deny.find(", ingress, ") != std::string::npos);
  CHECK(deny.find(", proto 6, ") != std::string::npos);
  CHECK_FALSE(allow.empty());
  CHECK(verdicts.out.find("  destination: " + web.ip + " pod mon/web") != std::string::npos);

  // -o json: one object per line, the drop among them with its reason and pods.
  bool found = false;
  for (const auto& l : lines(all_json.out)) {
    auto j = nlohmann::json::parse(l, nullptr, false);
    INFO(l);
    REQUIRE_FALSE(j.is_discarded());
    if (j["type"] == "drop" && j["destination"]["pod"] == "mon/web") {
      found = true;
      CHECK(j["reason"] == "Policy denied");
      CHECK(j["reason_code"] == 133);
      CHECK(j["source"]["pod"] == "mon/client");
      CHECK(j["flow"]["verdict"] == "DROPPED");
    }
  }
  CHECK(found);

  // A --type monitor does not know is refused before it connects.
  auto bad = node.cli({"monitor", "--type", "l7"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("l7") != std::string::npos);
}

TEST_CASE("plexus map list, config, status lines, and -o yaml / -o jsonpath= on the JSON commands", "[netns][cli]") {
  NodeFixture node("10.182.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  requireTcpExchange(a, b, 8080);

  // map list: cilium-dbg's columns; the endpoints map holds the two pods and is the agent's; conntrack is not.
  auto maps = node.cli({"map", "list"});
  INFO(maps.out << maps.err);
  REQUIRE(maps.exit_code == 0);
  CHECK(words(lines(maps.out).at(0)) == std::vector<std::string>{"Name", "Num", "entries", "Max", "entries", "Usage",
                                                                 "Num", "errors", "Cache", "enabled"});
  auto ep = words(lineStarting(maps.out, "plexus_endpoints_v1 "));
  REQUIRE(ep.size() == 6);
  CHECK(std::stoul(ep[1]) >= 2);  // the two pods (and whatever else the node keeps there)
  CHECK(ep[4] == "0");
  CHECK(ep[5] == "true");
  auto ct = words(lineStarting(maps.out, "plexus_ct4_v2 "));
  REQUIRE(ct.size() == 6);
  CHECK(ct[5] == "false");
  CHECK(std::stoul(ct[1]) > 0);  // the exchange's connection
  auto maps_json = node.cliJson({"map", "list"});
  REQUIRE(maps_json.is_array());
  bool endpoints_seen = false;
  for (const auto& m : maps_json) {
    if (m["name"] == "plexus_endpoints_v1") {
      endpoints_seen = true;
      CHECK(std::to_string(m["entries"].get<uint32_t>()) == ep[1]);
      CHECK(m["cache_enabled"] == true);
      CHECK(m["errors"] == 0);
      CHECK(m["pin_path"] == node.bpfRoot() + "/plexus_endpoints_v1");
    }
  }
  CHECK(endpoints_seen);

  // config: what the agent runs with, by flag name, sorted.
  auto config = node.cliJson({"config"});
  CHECK(config["pod-cidr"] == "10.182.0.0/24");
  CHECK(config["socket"] == node.socket());
  CHECK(config["bpf-root"] == node.bpfRoot());
  CHECK(config["hubble-flow-buffer-size"].is_number());
  CHECK(config["kube-proxy-replacement"].is_boolean());
  auto config_text = node.cli({"config"});
  REQUIRE(config_text.exit_code == 0);
  auto pod_cidr = words(lineStarting(config_text.out, "pod-cidr "));
  CHECK(pod_cidr == std::vector<std::string>{"pod-cidr", ":", "10.182.0.0/24"});
  std::vector<std::string> keys;
  for (const auto& l : lines(config_text.out)) {
    keys.push_back(words(l).at(0));
  }
  CHECK(keys.size() == config.size());
  CHECK(std::is_sorted(keys.begin(), keys.end()));

  // status: cilium-dbg status's lines, agreeing with status -o json and the configuration.
  auto status = node.cli({"status", "--verbose"});
  INFO(status.out << status.err);
  REQUIRE(status.exit_code == 0);
  auto st = node.cliJson({"status"});
  bool kpr = config["kube-proxy-replacement"].get<bool>();
  CHECK(st["kube_proxy_replacement"]["enabled"] == kpr);
  CHECK(lineStarting(status.out, "KubeProxyReplacement:    " + std::string(kpr ? "True" : "False")) != "");
  CHECK(lineStarting(status.out, "KubeProxyReplacement Details:") != "");
  std::string routing = config["routing-mode"] == "tunnel" ? "Network: Tunnel [vxlan]" : "Network: Native";
  CHECK(lineStarting(status.out, "Routing:                 " + routing) != "");
  CHECK(lineStarting(status.out, "Kubernetes:              Disabled") != "");
  CHECK(st["kubernetes"]["enabled"] == false);
  std::string hubble = lineStarting(status.out, "Hubble:                  Ok   Current/Max Flows: ");
  CHECK(hubble.find("/" + std::to_string(config["hubble-flow-buffer-size"].get<int>()) + " (") != std::string::npos);
  // uint64 fields are JSON strings (proto3 JSON)
  CHECK(st["hubble"]["max_flows"] == std::to_string(config["hubble-flow-buffer-size"].get<int>()));
  CHECK(std::stoul(st["hubble"]["current_flows"].get<std::string>()) > 0);
  CHECK(lineStarting(status.out,
                     "IPAM:                    IPv4: " + std::to_string(st["ipam"]["used"].get<int>()) + "/") != "");

  // -o yaml and -o jsonpath= on one command, agreeing with -o json.
  auto yaml = node.cli({"endpoint", "list", "-o", "yaml"});
  INFO(yaml.out << yaml.err);
  REQUIRE(yaml.exit_code == 0);
  YAML::Node y = YAML::Load(yaml.out);
  REQUIRE(y.IsSequence());
  REQUIRE(y.size() == 2);
  std::set<std::string> ips = {y[0]["ipv4"].as<std::string>(), y[1]["ipv4"].as<std::string>()};
  CHECK(ips == std::set<std::string>{a.ip, b.ip});
  auto path = node.cli({"endpoint", "list", "-o", "jsonpath={range .items[*]}{.pod_name}={.ipv4}{\"\\n\"}{end}"});
  INFO(path.out << path.err);
  REQUIRE(path.exit_code == 0);
  auto got = lines(path.out);
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"a=" + a.ip, "b=" + b.ip});
  auto one = node.cli({"status", "-o", "jsonpath={.ipam.cidr}"});
  CHECK(one.out == "10.182.0.0/24\n");
  auto map_yaml = node.cli({"map", "list", "-o", "yaml"});
  CHECK(YAML::Load(map_yaml.out).IsSequence());

  // observe speaks hubble's -o dict (and yaml).
  auto dict = node.cli({"observe", "--to-pod", "b", "-o", "dict"});
  INFO(dict.out << dict.err);
  REQUIRE(dict.exit_code == 0);
  CHECK(dict.out.find("       TYPE: ") != std::string::npos);
  CHECK(dict.out.find("DESTINATION: default/b:8080") != std::string::npos);
  auto observed_yaml = node.cli({"observe", "--to-pod", "b", "--last", "1", "-o", "yaml"});
  CHECK(YAML::Load(observed_yaml.out)["flow"]["destination"]["pod_name"].as<std::string>() == "b");

  // Bad -o values are refused naming what is accepted, before any output.
  auto unknown = node.cli({"status", "-o", "xml"});
  CHECK(unknown.exit_code != 0);
  CHECK(unknown.err.find("table, json, yaml or jsonpath=EXPR") != std::string::npos);
  auto observe_unknown = node.cli({"observe", "-o", "wide"});
  CHECK(observe_unknown.exit_code != 0);
  CHECK(observe_unknown.err.find("compact, dict, jsonpb, table, json, yaml or jsonpath=EXPR") != std::string::npos);
  auto malformed = node.cli({"endpoint", "list", "-o", "jsonpath={.items[x]}"});
  CHECK(malformed.exit_code != 0);
  CHECK(malformed.err.find("bad index [x]") != std::string::npos);
  CHECK(malformed.out.empty());
}

TEST_CASE(
    "plexus monitor: in policy audit mode a denied connection is a policy verdict with action audit, not a "
    "drop",
    "[netns][cli]") {
  NodeFixture node("10.183.0.0/24", {"--policy-audit-mode", "true"});
  Pod web = node.addPod("web", "aud");
  Pod client = node.addPod("client", "aud");
  applyWebPolicy(node, "aud");
  CHECK(node.cliJson({"config"})["policy-audit-mode"] == true);

  CommandResult verdicts;
  std::thread t([&] {
    verdicts =
        runCommand({cliBinary(), "--socket", node.socket(), "monitor", "--type", "policy-verdict", "--type", "drop",
                    "-o", "jsonpath={.type} {.action} {.destination.pod}:{.flow.l4.TCP.destination_port}"},
                   "", {}, std::chrono::seconds(6));
  });
  for (int i = 0; i < 10; ++i) {  // bounded: the denied port, answered by a reset (nobody listens), ~10 x 500 ms
    (void)tcpConnect(client.netns->path(), web.ip, 8081, std::chrono::milliseconds(500));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  t.join();
  INFO(verdicts.out << verdicts.err);
  auto got = lines(verdicts.out);
  CHECK(std::find(got.begin(), got.end(), "policy-verdict audit aud/web:8081") != got.end());
  for (const auto& l : got) {
    CHECK(l.rfind("drop ", 0) != 0);  // audit mode forwards what policy would drop
  }
}
