// Full maps, end to end: an agent with small service and policy maps (--bpf-lb-map-max, --bpf-policy-map-max) is
// given more than they hold. It names the full map (plexus status, the log, map_pressure on /metrics), keeps what
// it installed before working, never opens a hole, and recovers once there is room.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "node_fixture.h"

using namespace plexus::testing;

namespace {
std::string pods(std::initializer_list<std::pair<const char*, const char*>> name_app) {
  std::string out;
  for (const auto& [name, app] : name_app) {
    out += std::string("---\napiVersion: v1\nkind: Pod\nmetadata: {name: ") + name + ", labels: {app: " + app +
           "}}\nspec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}\n";
  }
  return out;
}

std::string service(const std::string& name, const std::string& ip) {
  return "---\napiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec: {clusterIP: " + ip +
         ", selector: {app: web}, ports: [{port: 80, targetPort: http}]}\n";
}

// A CNP letting app=client reach app=server on the given TCP ports.
std::string allowPorts(int first, int count) {
  std::string ports;
  for (int p = first; p < first + count; ++p) {
    ports += (ports.empty() ? "" : ", ") + std::string("{port: \"") + std::to_string(p) + "\", protocol: TCP}";
  }
  return "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: server-ports}\nspec:\n"
         "  endpointSelector: {matchLabels: {app: server}}\n"
         "  ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [" + ports + "]}]}]\n";
}

// A TCP connection from one pod to ip:port is accepted by the listener (fd) within the timeout.
bool connects(const Pod& from, int listen_fd, const std::string& ip, uint16_t port) {
  int c = tcpConnect(from.netns->path(), ip, port, std::chrono::seconds(2));
  if (c < 0) {
    return false;
  }
  int a = acceptWithin(listen_fd, std::chrono::seconds(2));
  close(c);
  if (a >= 0) {
    close(a);
  }
  return a >= 0;
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// `plexus status -o json`'s problems, polled until `want(problems)` holds (bounded: 20 tries, 10 s).
nlohmann::json problemsUntil(NodeFixture& node, const std::function<bool(const nlohmann::json&)>& want) {
  nlohmann::json problems;
  for (int i = 0; i < 20; ++i) {
    auto status = node.cliJson({"status"});
    problems = status.value("problems", nlohmann::json::array());
    if (want(problems)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return problems;
}
}  // namespace

TEST_CASE("capacity: a full service map is named, the services installed before keep working, and room heals it; "
          "kube-proxy's /healthz says so", "[netns][capacity]") {
  NodeFixture node("10.229.0.0/24", {"--bpf-lb-map-max", "16", "--kube-proxy-replacement-healthz-bind-address",
                                     "127.0.0.1:10256", "--health-addr", "127.0.0.1:9879"});
  // kube-proxy's answer: the HTTP status, then the JSON body.
  auto healthz = [&] {
    return node.node().exec("curl -s -w '\\n%{http_code}' http://127.0.0.1:10256/healthz").out;
  };
  CHECK(node.node().exec("curl -sf http://127.0.0.1:9879/healthz").out == "ok\n");
  Pod web = node.addPod("web");
  Pod client = node.addPod("client");
  node.apply(pods({{"web", "web"}, {"client", "client"}}));
  node.apply(service("first", "10.96.9.10"));
  auto [listener, port] = tcpListen(web.netns->path(), 8080);
  REQUIRE(connects(client, listener, "10.96.9.10", 80));
  std::string h = healthz();
  INFO(h);
  CHECK(h.substr(h.rfind('\n') + 1) == "200");
  auto body = nlohmann::json::parse(h.substr(0, h.rfind('\n')));
  CHECK(body["nodeEligible"] == true);
  CHECK(std::string(body["lastUpdated"]).size() == std::string("2026-12-06T05:00:00.000Z").size());

  // Ten more services need 20 more entries of a 16-entry map (a master entry and a backend slot each).
  std::string more;
  for (int i = 0; i < 10; ++i) {
    more += service("more-" + std::to_string(i), "10.96.9." + std::to_string(20 + i));
  }
  node.apply(more);
  auto problems = problemsUntil(node, [](const nlohmann::json& p) { return !p.empty(); });
  INFO(problems.dump() << "\n" << node.agent().log());
  REQUIRE(problems.size() == 1);
  std::string problem = problems[0];
  CHECK(problem.rfind("services: ", 0) == 0);
  CHECK(problem.find("map plexus_lb4_services_v1 is full (16 entries)") != std::string::npos);
  auto text = node.cli({"status"});
  CHECK(text.out.find("Problem:                 services: ") != std::string::npos);
  auto metrics = node.node().exec("curl -sf http://127.0.0.1:9962/metrics").out;
  CHECK(metrics.find("plexus_bpf_map_pressure{map_name=\"plexus_lb4_services_v1\"} 1") != std::string::npos);
  h = healthz();
  CHECK(h.substr(h.rfind('\n') + 1) == "503");

  // The agent lives on, the first service still answers, and the log names the map once, not once per retry.
  std::this_thread::sleep_for(std::chrono::seconds(3));  // three retries
  REQUIRE(node.agent().running());
  CHECK(connects(client, listener, "10.96.9.10", 80));
  CHECK(count(node.agent().log(), "plexus_lb4_services_v1 is full") == 1);

  // Room again: the services are installed, the problem is gone and the recovery is logged.
  std::string fewer;
  for (int i = 0; i < 8; ++i) {
    fewer += service("more-" + std::to_string(i), "10.96.9." + std::to_string(20 + i));
  }
  std::string path = node.dir() + "/fewer.yaml";
  std::ofstream(path) << fewer;
  REQUIRE(node.cli({"delete", "-f", path}).exit_code == 0);
  problems = problemsUntil(node, [](const nlohmann::json& p) { return p.empty(); });
  CHECK(problems.empty());
  CHECK(connects(client, listener, "10.96.9.29", 80));
  CHECK(node.agent().log().find("services: recovered") != std::string::npos);
  h = healthz();
  CHECK(h.substr(h.rfind('\n') + 1) == "200");
  close(listener);
}

TEST_CASE("capacity: a policy too large for the policy map leaves the endpoint on its previous policy, not-ready, "
          "and refuses new pods it selects", "[netns][capacity][policy]") {
  NodeFixture node("10.228.0.0/24", {"--bpf-policy-map-max", "16"});
  node.apply(pods({{"server", "server"}, {"client", "client"}, {"server2", "server"}}));
  Pod server = node.addPod("server");
  Pod client = node.addPod("client");
  auto [l80, p80] = tcpListen(server.netns->path(), 8080);
  auto [l81, p81] = tcpListen(server.netns->path(), 8081);
  node.apply(allowPorts(8080, 1));
  REQUIRE(connects(client, l80, server.ip, 8080));
  REQUIRE_FALSE(connects(client, l81, server.ip, 8081));

  // 40 ports do not fit a 16-entry map: refused whole. 8081 (allowed by the new version) stays closed, 8080 open.
  node.apply(allowPorts(8080, 40));
  CHECK(connects(client, l80, server.ip, 8080));
  CHECK_FALSE(connects(client, l81, server.ip, 8081));
  nlohmann::json ep = node.cliJson({"endpoint", "get", server.ip});
  INFO(ep.dump() << "\n" << node.agent().log());
  CHECK(ep["state"] == "ENDPOINT_STATE_NOT_READY");
  std::string why = ep.value("status", "");
  CHECK(why.find("policy map of endpoint") != std::string::npos);
  CHECK(why.find("needs 41 entries, the map holds 16") != std::string::npos);
  CHECK(why.find("previous policy stays enforced") != std::string::npos);
  CHECK(node.cliJson({"endpoint", "get", client.ip})["state"] == "ENDPOINT_STATE_READY");
  // The same states under Cilium's endpoint state metric.
  auto states = node.node().exec("curl -sf http://127.0.0.1:9962/metrics").out;
  CHECK(metric(states, "cilium_endpoint_state{endpoint_state=\"not-ready\"}") == 1);
  CHECK(metric(states, "cilium_endpoint_state{endpoint_state=\"ready\"}") == 1);
  auto problems = node.cliJson({"status"}).value("problems", nlohmann::json::array());
  REQUIRE(problems.size() == 1);
  CHECK(std::string(problems[0]).rfind("policy: ", 0) == 0);
  CHECK(node.cli({"endpoint", "list"}).out.find("previous policy stays enforced") != std::string::npos);

  // A new pod the policy selects cannot get its policy: its ADD fails with the reason; nothing is left behind.
  Pod server2;
  auto add = node.tryAddPod(server2, "server2");
  INFO(add.out << add.err);
  CHECK(add.exit_code != 0);
  auto error = nlohmann::json::parse(add.out);
  CHECK(std::string(error.value("msg", "")).find("policy") != std::string::npos);
  CHECK(std::string(error.value("msg", "")).find("the map holds 16") != std::string::npos);
  CHECK(node.cliJson({"endpoint", "list"}).size() == 2);

  // A version that fits is installed: the endpoint is ready and 8081 opens.
  node.apply(allowPorts(8080, 2));
  CHECK(node.cliJson({"endpoint", "get", server.ip})["state"] == "ENDPOINT_STATE_READY");
  CHECK(connects(client, l81, server.ip, 8081));
  CHECK(node.cliJson({"status"}).value("problems", nlohmann::json::array()).empty());
  close(l80);
  close(l81);
}
