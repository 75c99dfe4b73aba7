// Observability end to end: flows from real traffic through plexus observe, filters, follow, metrics on /metrics,
// and pod labels applied with plexus apply.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

#include "node_fixture.h"

using namespace plexus::testing;

namespace {
std::vector<nlohmann::json> flowsJson(NodeFixture& node, std::vector<std::string> args) {
  args.insert(args.begin(), "observe");
  args.push_back("-o");
  args.push_back("json");
  auto r = node.cli(args);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  std::vector<nlohmann::json> out;
  std::stringstream ss(r.out);
  std::string line;
  while (std::getline(ss, line)) {
    if (!line.empty()) {
      out.push_back(nlohmann::json::parse(line));
    }
  }
  return out;
}
}  // namespace

TEST_CASE("flows of real traffic appear in plexus observe with pods, ports and verdicts", "[netns][observe]") {
  NodeFixture node("10.240.0.0/24");
  Pod web = node.addPod("web");
  Pod api = node.addPod("api");
  requireTcpExchange(web, api, 8080);

  auto flows = flowsJson(node, {"--from-pod", "default/web", "--to-pod", "api", "--port", "8080", "--last", "50"});
  REQUIRE_FALSE(flows.empty());
  const auto& f = flows.front()["flow"];
  CHECK(f["verdict"] == "FORWARDED");
  CHECK(f["source"]["namespace"] == "default");
  CHECK(f["source"]["pod_name"] == "web");
  CHECK(f["destination"]["pod_name"] == "api");
  CHECK(f["l4"]["TCP"]["destination_port"] == 8080);
  CHECK(f["l4"]["TCP"]["flags"]["SYN"] == true);
  CHECK(f["traffic_direction"] == "EGRESS");
  CHECK(flows.front().contains("time"));

  // Filters narrow: nothing goes from api to web on a new connection, and no UDP happened.
  CHECK(flowsJson(node, {"--from-pod", "api", "--to-pod", "web", "--verdict", "DROPPED"}).empty());
  CHECK(flowsJson(node, {"--protocol", "udp"}).empty());
  CHECK_FALSE(flowsJson(node, {"--pod", "api"}).empty());
  CHECK_FALSE(flowsJson(node, {"--ip", api.ip}).empty());

  // A spoofed source is dropped, and the drop is a flow with its reason.
  REQUIRE(web.netns->exec("ip addr add 10.240.0.250/32 dev eth0").exit_code == 0);
  web.netns->exec("ping -c1 -W1 -I 10.240.0.250 " + api.ip);
  auto drops = flowsJson(node, {"--verdict", "DROPPED", "--last", "10"});
  REQUIRE_FALSE(drops.empty());
  CHECK(drops.back()["flow"]["drop_reason_desc"] == "INVALID_SOURCE_IP");
  CHECK(drops.back()["flow"]["IP"]["source"] == "10.240.0.250");
}

TEST_CASE("observe --follow streams a flow that happens after it starts", "[netns][observe]") {
  NodeFixture node("10.241.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  CommandResult followed;
  std::thread follower([&] {
    followed = runCommand({cliBinary(), "--socket", node.socket(), "observe", "-f", "--last", "0", "--to-pod", "b",
                           "--port", "9099", "-o", "json"},
                          "", {}, std::chrono::seconds(4));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  requireTcpExchange(a, b, 9099);
  follower.join();  // ends at its timeout: follow never ends on its own
  CHECK(followed.out.find("\"destination_port\":9099") != std::string::npos);
}

TEST_CASE("observe speaks hubble's filters: -l without the k8s: source, --pod ns/prefix, --not, -f new only",
          "[netns][observe]") {
  NodeFixture node("10.236.0.0/24");
  Pod web = node.addPod("web-7f9c", "shop");
  Pod api = node.addPod("api-55d", "shop");
  Pod client = node.addPod("client");
  std::string path = node.dir() + "/pods.yaml";
  std::ofstream(path) << R"(apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web-7f9c, namespace: shop, labels: {app: web, tier: front}}
---
apiVersion: v1
kind: Pod
metadata: {name: api-55d, namespace: shop, labels: {app: api, tier: back}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
)";
  auto applied = node.cli({"apply", "-f", path});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  requireTcpExchange(client, web, 8080);
  requireTcpExchange(client, api, 9090);
  // Every flow shown has a side that the filter names; `pods` collects the pod names seen on either side.
  auto pods = [](const std::vector<nlohmann::json>& flows) {
    std::set<std::string> out;
    for (const auto& f : flows) {
      for (const char* side : {"source", "destination"}) {
        if (f["flow"][side].contains("pod_name")) {
          out.insert(f["flow"][side]["pod_name"].get<std::string>());
        }
      }
    }
    return out;
  };
  auto touches = [](const nlohmann::json& f, const std::string& pod) {
    return f["flow"]["source"].value("pod_name", "") == pod || f["flow"]["destination"].value("pod_name", "") == pod;
  };

  auto by_label = flowsJson(node, {"-l", "app=web", "--all"});
  REQUIRE_FALSE(by_label.empty());
  for (const auto& f : by_label) {
    CHECK(touches(f, "web-7f9c"));
  }
  bool stored_with_source = false;  // the agent stores "k8s:app=web"; -l app=web matched it
  for (const auto& f : by_label) {
    const auto& labels = f["flow"]["destination"]["labels"];
    stored_with_source = stored_with_source || std::find(labels.begin(), labels.end(), "k8s:app=web") != labels.end();
  }
  CHECK(stored_with_source);
  CHECK(pods(flowsJson(node, {"-l", "tier in (front,back)", "--all"})).count("api-55d") == 1);
  auto not_front = flowsJson(node, {"--to-label", "tier notin (front)", "--all"});
  CHECK(pods(not_front).count("api-55d") == 1);
  for (const auto& f : not_front) {
    CHECK(f["flow"]["destination"].value("pod_name", "") != "web-7f9c");
  }
  CHECK(flowsJson(node, {"-l", "app=nothing", "--all"}).empty());

  auto by_prefix = flowsJson(node, {"--pod", "shop/web", "--all"});
  REQUIRE_FALSE(by_prefix.empty());
  for (const auto& f : by_prefix) {
    CHECK(touches(f, "web-7f9c"));
  }
  CHECK(flowsJson(node, {"--pod", "web", "--all"}).empty());  // no namespace: default, where no web runs
  CHECK(pods(flowsJson(node, {"--to-pod", "shop/", "--all"})).count("api-55d") == 1);
  CHECK(pods(flowsJson(node, {"--pod", "client", "--to-port", "9090", "--all"})) ==
        std::set<std::string>{"client", "api-55d"});
  for (const auto& f : flowsJson(node, {"--pod", "client", "--not", "--to-pod", "shop/web", "--all"})) {
    CHECK(f["flow"]["destination"].value("pod_name", "") != "web-7f9c");
  }
  CHECK_FALSE(flowsJson(node, {"--type", "trace", "--tcp-flags", "SYN", "--to-pod", "shop/api", "--all"}).empty());
  CHECK(flowsJson(node, {"--type", "drop", "--to-pod", "shop/", "--all"}).empty());
  CHECK_FALSE(flowsJson(node, {"--since", "1h", "--until", "2030-01-01T00:00:00Z", "--pod", "shop/web"}).empty());

  // -f alone shows only new flows: the old ones to api are not replayed, a new one to web arrives.
  CommandResult followed;
  std::thread follower([&] {
    followed = runCommand({cliBinary(), "--socket", node.socket(), "observe", "-f", "-n", "shop", "-o", "json"}, "",
                          {}, std::chrono::seconds(4));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  requireTcpExchange(client, web, 8081);
  follower.join();
  CHECK(followed.out.find("\"destination_port\":8081") != std::string::npos);
  CHECK(followed.out.find("\"destination_port\":9090") == std::string::npos);
  CHECK(followed.out.find("\"destination_port\":8080") == std::string::npos);
}

TEST_CASE("bad observe input gets a clear error from the CLI and the API", "[netns][observe]") {
  NodeFixture node("10.242.0.0/24");
  auto bad = node.cli({"observe", "--verdict", "EXPLODED"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("EXPLODED") != std::string::npos);
  auto since = node.cli({"observe", "--since", "yesterday-ish"});
  CHECK(since.exit_code != 0);
  CHECK(since.err.find("--since") != std::string::npos);
  CHECK(node.cli({"status"}).exit_code == 0);
}

TEST_CASE("metrics scraped from /metrics match the traffic and the CNI calls", "[netns][metrics]") {
  NodeFixture node("10.239.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  auto scrape = [&] { return node.node().exec("curl -sf http://127.0.0.1:9962/metrics").out; };
  std::string before = scrape();
  double fwd_before = metric(before, "plexus_forward_count_total{direction=\"EGRESS\",reason=\"FORWARDED\"}");
  for (int i = 0; i < 5; ++i) {
    REQUIRE(ping(*a.netns, b.ip));
  }
  std::string after = scrape();
  double fwd_after = metric(after, "plexus_forward_count_total{direction=\"EGRESS\",reason=\"FORWARDED\"}");
  // Ten echo packets at least (requests and replies, both from pods).
  CHECK(fwd_after - std::max(fwd_before, 0.0) >= 10);
  CHECK(metric(after, "plexus_cni_request_duration_seconds_count{command=\"ADD\"}") == 2);
  CHECK(metric(after, "plexus_endpoint{state=\"ready\"}") == 2);
  CHECK(metric(after, "plexus_ipam_addresses{state=\"used\"}") == 2);
  CHECK(metric(after, "plexus_hubble_lost_events_total{source=\"perf_event_ring_buffer\"}") == 0);
  CHECK(metric(after, "plexus_hubble_flows_processed_total") > 0);
  CHECK(after.find("plexus_bpf_map_pressure{map_name=\"plexus_endpoints_v1\"}") != std::string::npos);
  CHECK(after.find("plexus_agent_api_process_time_seconds_count{method=\"/plexus.v1.Cni/Add\",return_code=\"OK\"} 2") !=
        std::string::npos);
  CHECK(node.node().exec("curl -sf http://127.0.0.1:9962/healthz").out == "ok\n");
  CHECK(metric(after, "plexus_identity{type=\"cluster\"}") == 0);  // no Pod manifests applied
  CHECK(metric(after, "plexus_services") == 0);
}

TEST_CASE("plexus apply gives pods their labels and refuses bad manifests with the field named", "[netns][apply]") {
  NodeFixture node("10.238.0.0/24");
  Pod web = node.addPod("web", "shop");
  std::string manifest = node.dir() + "/pods.yaml";
  {
    std::ofstream(manifest) << "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n"
                               "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n"
                               "  labels: {app: web, tier: front}\nspec:\n  containers:\n  - name: c\n"
                               "    ports: [{containerPort: 8080, name: http}]\n";
  }
  auto applied = node.cli({"apply", "-f", manifest});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  CHECK(applied.out.find("Pod shop/web created") != std::string::npos);
  auto ep = node.cliJson({"endpoint", "get", "shop/web"});
  auto labels = ep["labels"];
  CHECK(std::find(labels.begin(), labels.end(), "k8s:app=web") != labels.end());
  CHECK(std::find(labels.begin(), labels.end(), "k8s:io.kubernetes.pod.namespace=shop") != labels.end());
  CHECK(node.cli({"apply", "-f", manifest}).out.find("unchanged") != std::string::npos);
  // From a pipe too (`-f -`).
  std::string text;
  {
    std::ifstream in(manifest);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto piped = runCommand({cliBinary(), "--socket", node.socket(), "apply", "-f", "-"}, text, {},
                          std::chrono::seconds(20));
  CHECK(piped.exit_code == 0);
  CHECK(piped.out.find("Pod shop/web unchanged") != std::string::npos);
  // The labels give the endpoint a cluster identity (from 256), in the endpoint map and the ipcache too.
  uint32_t id = ep["identity"];
  CHECK(id >= 256);
  bool in_ipcache = false;
  for (const auto& row : node.cliJson({"bpf", "ipcache", "list"})) {
    in_ipcache = in_ipcache || (row["prefix"] == web.ip + "/32" && row["identity"] == id);
  }
  CHECK(in_ipcache);
  // Changing the pod's labels moves it to another identity without a restart.
  {
    std::ofstream(manifest) << "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n"
                               "  labels: {app: web, tier: back}\n";
  }
  REQUIRE(node.cli({"apply", "-f", manifest}).exit_code == 0);
  uint32_t moved = node.cliJson({"endpoint", "get", "shop/web"})["identity"];
  CHECK(moved >= 256);
  CHECK(moved != id);

  std::string bad = node.dir() + "/bad.yaml";
  {
    std::ofstream(bad) << "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n"
                          "  - ports: [{containerPort: 70000}]\n";
  }
  auto rejected = node.cli({"apply", "-f", bad});
  CHECK(rejected.exit_code != 0);
  CHECK(rejected.err.find("Pod default/x: spec.containers[0].ports[0].containerPort") != std::string::npos);
  std::string broken = node.dir() + "/broken.yaml";
  { std::ofstream(broken) << "kind: [\n"; }
  auto parse = node.cli({"apply", "-f", broken});
  CHECK(parse.exit_code != 0);
  CHECK(parse.err.find("broken.yaml") != std::string::npos);
  // A malformed document later in a manifest: what comes before it is applied (and listed), nothing after it.
  {
    std::ofstream(broken) << "apiVersion: v1\nkind: Namespace\nmetadata: {name: early}\n---\n"
                             "apiVersion: v1\nkind: Pod\nmetadata: {name: p1, namespace: early}\n---\n"
                             "kind: [\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: late}\n";
  }
  auto partial = node.cli({"apply", "-f", broken});
  INFO(partial.out << partial.err);
  CHECK(partial.exit_code != 0);
  CHECK(partial.out.find("Namespace early created") != std::string::npos);
  CHECK(partial.out.find("Pod early/p1 created") != std::string::npos);
  CHECK(partial.err.find("broken.yaml: manifest: line 10") != std::string::npos);
  CHECK(partial.err.find("the 2 objects before it were applied, nothing after it") != std::string::npos);
  CHECK(partial.out.find("late") == std::string::npos);

  // The objects and the identities survive a restart of the agent, even with a journal line cut short by the
  // crash (it is the last line: ignored with a warning).
  node.agent().kill9();
  { std::ofstream(node.stateDir() + "/resources.log", std::ios::app) << "{\"op\": \"upsert\", \"obj"; }
  REQUIRE(node.agent().start());
  CHECK(node.cli({"apply", "-f", manifest}).out.find("unchanged") != std::string::npos);
  CHECK(node.cliJson({"endpoint", "get", "shop/web"})["identity"] == moved);
  CHECK(node.agent().log().find("is incomplete") != std::string::npos);
  // A journal damaged in the middle is not guessed at: the agent refuses to start and says why.
  node.agent().kill9();
  {
    std::ifstream in(node.stateDir() + "/resources.log");
    std::stringstream ss;
    ss << "garbage\n" << in.rdbuf();
    std::ofstream(node.stateDir() + "/resources.log") << ss.str() << "\n";
  }
  CHECK_FALSE(node.agent().start(std::chrono::seconds(5)));
  CHECK(node.agent().log().find("resources.log: entry 1: not JSON") != std::string::npos);
}

TEST_CASE("policy drops are DROPPED flows with pods, ports and the reason; metrics count them", "[netns][observe]") {
  NodeFixture node("10.238.0.0/24");
  Pod web = node.addPod("web", "x");
  Pod client = node.addPod("client", "x");
  std::string path = node.dir() + "/p.yaml";
  std::ofstream(path) << R"(apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, labels: {app: client}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "9090", protocol: UDP}]}]
)";
  auto applied = node.cli({"apply", "-f", path});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  requireTcpExchange(client, web, 8080);
  CHECK(tcpConnect(client.netns->path(), web.ip, 8081, std::chrono::milliseconds(500)) < 0);
  for (uint16_t port : {9090, 5353}) {
    int u = socketInNetns(client.netns->path(), SOCK_DGRAM);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, web.ip.c_str(), &a.sin_addr);
    (void)sendto(u, "x", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    close(u);
  }
  auto find = [&](const std::vector<nlohmann::json>& flows, const std::string& proto, int port) {
    for (const auto& f : flows) {
      const auto& fl = f["flow"];
      if (fl["l4"].contains(proto) && fl["l4"][proto]["destination_port"] == port) {
        return fl;
      }
    }
    return nlohmann::json();
  };
  auto fwd = flowsJson(node, {"--to-pod", "x/web", "--verdict", "FORWARDED", "--last", "100"});
  CHECK(find(fwd, "TCP", 8080)["source"]["pod_name"] == "client");
  // The policy that admitted or denied a flow is named, as Hubble's *_allowed_by / *_denied_by.
  auto allowed_by = find(fwd, "TCP", 8080)["ingress_allowed_by"];
  INFO(allowed_by.dump());
  REQUIRE(allowed_by.is_array());
  REQUIRE(allowed_by.size() == 1);
  CHECK(allowed_by[0]["name"] == "web");
  CHECK(allowed_by[0]["namespace"] == "x");
  CHECK(allowed_by[0]["kind"] == "CiliumNetworkPolicy");
  auto drops = flowsJson(node, {"--to-pod", "x/web", "--verdict", "DROPPED", "--last", "100"});
  auto tcp = find(drops, "TCP", 8081);
  CHECK(tcp["drop_reason_desc"] == "POLICY_DENIED");
  CHECK(tcp["source"]["pod_name"] == "client");
  CHECK(tcp["destination"]["pod_name"] == "web");
  CHECK(tcp["destination"]["namespace"] == "x");
  CHECK(tcp["traffic_direction"] == "INGRESS");
  CHECK(find(drops, "UDP", 9090)["drop_reason_desc"] == "POLICY_DENY");
  CHECK(find(drops, "UDP", 9090)["ingress_denied_by"][0]["name"] == "web");
  CHECK_FALSE(tcp.contains("ingress_denied_by"));  // default deny: no rule to name
  CHECK(find(drops, "UDP", 5353)["drop_reason_desc"] == "POLICY_DENIED");
  // As a Hubble user asks for it: a label selector without the k8s: source, and the verdict.
  auto by_label = flowsJson(node, {"-l", "app=web", "--verdict", "DROPPED"});
  CHECK(find(by_label, "TCP", 8081)["drop_reason_desc"] == "POLICY_DENIED");
  for (const auto& f : by_label) {
    CHECK(f["flow"]["verdict"] == "DROPPED");
  }
  // Filters narrow: UDP only.
  for (const auto& f : flowsJson(node, {"--to-pod", "x/web", "--verdict", "DROPPED", "--protocol", "udp"})) {
    CHECK(f["flow"]["l4"].contains("UDP"));
  }
  std::string m = node.node().exec("curl -sf http://127.0.0.1:9962/metrics").out;
  CHECK(metric(m, "plexus_drop_count_total{direction=\"INGRESS\",reason=\"POLICY_DENIED\"}") >= 2);
  CHECK(metric(m, "plexus_drop_count_total{direction=\"INGRESS\",reason=\"POLICY_DENY\"}") >= 1);
  CHECK(metric(m, "plexus_policy{valid=\"true\"}") == 1);
  // The pod goes away; the flows already stored keep its name and namespace.
  REQUIRE(node.cni("DEL", client, node.cniConfig()).exit_code == 0);
  auto after = flowsJson(node, {"--to-pod", "x/web", "--verdict", "DROPPED", "--last", "100"});
  CHECK(find(after, "TCP", 8081)["source"]["pod_name"] == "client");
  CHECK(find(after, "TCP", 8081)["source"]["namespace"] == "x");
}

TEST_CASE("a flood bigger than the event ring counts lost events and leaves the agent healthy", "[netns][observe]") {
  NodeFixture node("10.237.0.0/24", {"--events-ring-size", "4096", "--monitor-aggregation", "none"});
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  int srv = socketInNetns(b.netns->path(), SOCK_DGRAM);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(7777);
  REQUIRE(bind(srv, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  inet_pton(AF_INET, b.ip.c_str(), &sa.sin_addr);
  int u = socketInNetns(a.netns->path(), SOCK_DGRAM);
  // Bounded: 20,000 datagrams, far more events than a 4 KiB ring holds between two reads.
  for (int i = 0; i < 20000; ++i) {
    (void)sendto(u, "flood", 5, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  }
  close(u);
  close(srv);
  std::string m = node.node().exec("curl -sf http://127.0.0.1:9962/metrics").out;
  INFO(m);
  CHECK(metric(m, "plexus_hubble_lost_events_total{source=\"perf_event_ring_buffer\"}") > 0);
  CHECK(node.cli({"status"}).exit_code == 0);
  requireTcpExchange(a, b, 8080);
  CHECK(node.node().exec("curl -sf http://127.0.0.1:9962/healthz").out == "ok\n");
}
