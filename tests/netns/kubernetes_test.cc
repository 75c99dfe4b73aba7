// Kubernetes mode end to end: two agents, each a "node" in its own namespace with its own bpffs root and cgroup,
// watching one test API server (which speaks the real wire protocol) in a third namespace. They claim distinct
// pod CIDRs (cluster-pool), agree on identities, enforce a policy applied once through the API, report it in the
// policy's status, skip a malformed policy, and keep forwarding when the API server goes away.
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <functional>
#include <thread>

#include "apiserver.h"
#include "node_fixture.h"

using namespace plexus::testing;

namespace {

constexpr const char* kToken = "node-token";

bool eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 150; ++i) {  // bounded: 15 s
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::string pod(const std::string& name, const std::string& node, const std::string& app) {
  return R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":")" + name + R"(","namespace":"x","labels":{"app":")" +
         app + R"("}},"spec":{"nodeName":")" + node + R"(","containers":[{"name":"c","ports":[{"name":"http","containerPort":80}]}]}})";
}

}  // namespace

TEST_CASE("two agents share one API server: identities, CIDRs, policy, status, bad input, outage",
          "[netns][kubernetes]") {
  Netns api("ap");
  REQUIRE(api.exec("ip link set lo up").exit_code == 0);
  TestApiServer server({"--token", kToken}, api.name());
  REQUIRE(server.port() > 0);
  auto link = [&](Netns& node, int i) {
    std::string a = uniqueName("ka"), b = uniqueName("kb");
    REQUIRE(sh("ip link add " + a + " netns " + node.name() + " type veth peer name " + b + " netns " + api.name())
                .exit_code == 0);
    node.exec("ip addr add 172.31." + std::to_string(i) + ".2/30 dev " + a + " && ip link set " + a + " up");
    api.exec("ip addr add 172.31." + std::to_string(i) + ".1/30 dev " + b + " && ip link set " + b + " up");
  };
  auto kubeconfig = [&](int i) {
    std::string path = server.dir() + "/kc" + std::to_string(i);
    std::ofstream(path) << "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {server: \"http://172.31."
                        << i << ".1:" << server.port() << "\"}\nusers:\n- name: u\n  user: {token: " << kToken
                        << "}\ncontexts:\n- name: c\n  context: {cluster: t, user: u}\ncurrent-context: c\n";
    return path;
  };
  auto post = [&](const std::string& path, const std::string& body) {
    auto r = server.api("POST", path, body, kToken);
    INFO(path << ": " << r.out << r.err);
    REQUIRE(r.out.find("\"kind\": \"Status\"") == std::string::npos);
  };
  post("/api/v1/namespaces", R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x","labels":{"team":"a"}}})");
  for (const auto& [name, node, app] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"web1", "node-1", "web"}, {"client1", "node-1", "client"}, {"other1", "node-1", "other"},
           {"web2", "node-2", "web"}, {"client2", "node-2", "client"}, {"other2", "node-2", "other"}}) {
    post("/api/v1/namespaces/x/pods", pod(name, node, app));
  }
  auto args = [&](int i) {
    return std::vector<std::string>{"--k8s-kubeconfig-path", kubeconfig(i), "--node-name", "node-" + std::to_string(i),
                                    "--ipam-mode", "cluster-pool", "--cluster-pool-ipv4-cidr", "10.210.0.0/16",
                                    "--cluster-pool-ipv4-mask-size", "24"};
  };
  NodeFixture n1("10.210.0.0/24", args(1), [&](Netns& n) { link(n, 1); });
  NodeFixture n2("10.210.0.0/24", args(2), [&](Netns& n) { link(n, 2); });
  Pod web1 = n1.addPod("web1", "x"), client1 = n1.addPod("client1", "x"), other1 = n1.addPod("other1", "x");
  Pod web2 = n2.addPod("web2", "x"), client2 = n2.addPod("client2", "x"), other2 = n2.addPod("other2", "x");
  INFO("node-1 log:\n" << n1.agent().log() << "\nnode-2 log:\n" << n2.agent().log());

  // Distinct CIDRs from the pool, claimed in PlexusNode objects.
  auto prefix = [](const std::string& ip) { return ip.substr(0, ip.rfind('.')); };
  CHECK(prefix(web1.ip) != prefix(web2.ip));
  CHECK(web1.ip.rfind("10.210.", 0) == 0);
  auto nodes = nlohmann::json::parse(server.api("GET", "/apis/plexus.io/v1alpha1/plexusnodes", "", kToken).out);
  CHECK(nodes["items"].size() == 2);

  // The same labels get the same identity on both nodes; different labels differ.
  auto identityOf = [](NodeFixture& n, const std::string& pod) {
    return n.cliJson({"endpoint", "get", pod})["identity"].get<uint32_t>();
  };
  // Identities are allocated cluster-wide off the reconcile thread: the endpoints run as init until they arrive.
  CHECK(eventually([&] {
    for (auto* n : {&n1, &n2}) {
      for (const auto& e : n->cliJson({"endpoint", "list"})) {
        if (e.value("identity", 0u) < 256) {
          return false;
        }
      }
    }
    return true;
  }));
  uint32_t web_id = identityOf(n1, "x/web1");
  CHECK(web_id >= 256);
  CHECK(identityOf(n2, "x/web2") == web_id);
  CHECK(identityOf(n2, "x/client2") == identityOf(n1, "x/client1"));
  CHECK(identityOf(n1, "x/client1") != web_id);
  auto ids = nlohmann::json::parse(server.api("GET", "/apis/plexus.io/v1alpha1/plexusidentities", "", kToken).out);
  CHECK(ids["items"].size() == 3);

  // One policy through the API, enforced on both nodes.
  post("/apis/cilium.io/v2/namespaces/x/ciliumnetworkpolicies", R"({"apiVersion":"cilium.io/v2",
    "kind":"CiliumNetworkPolicy","metadata":{"name":"web","namespace":"x"},"spec":{
    "endpointSelector":{"matchLabels":{"app":"web"}},
    "ingress":[{"fromEndpoints":[{"matchLabels":{"app":"client"}}],"toPorts":[{"ports":[{"port":"80","protocol":"TCP"}]}]}]}})");
  auto enforced = [](NodeFixture& n) {
    return eventually([&] {
      auto r = n.cli({"policy", "get", "-o", "json"});
      auto j = nlohmann::json::parse(r.out, nullptr, false);
      if (!j.is_object()) {
        return false;
      }
      for (const auto& p : j.value("policies", nlohmann::json::array())) {
        if (p["key"] == "CiliumNetworkPolicy x/web" && p["valid"] == true && !p["endpoints"].empty()) {
          return true;
        }
      }
      return false;
    });
  };
  REQUIRE(enforced(n1));
  REQUIRE(enforced(n2));
  requireTcpExchange(client1, web1, 80);
  requireTcpExchange(client2, web2, 80);
  CHECK(tcpConnect(other1.netns->path(), web1.ip, 80, std::chrono::milliseconds(700)) < 0);
  CHECK(tcpConnect(other2.netns->path(), web2.ip, 80, std::chrono::milliseconds(700)) < 0);

  // Each node reports its verdict in the policy's status, as Cilium does.
  auto status = [&] {
    return nlohmann::json::parse(
        server.api("GET", "/apis/cilium.io/v2/namespaces/x/ciliumnetworkpolicies/web", "", kToken).out);
  };
  CHECK(eventually([&] {
    auto s = status();
    return s.value(nlohmann::json::json_pointer("/status/nodes/node-1/enforcing"), false) &&
           s.value(nlohmann::json::json_pointer("/status/nodes/node-2/ok"), false);
  }));

  // A malformed CNP from the API server: reported (policy get, status) and skipped; enforcement unchanged.
  post("/apis/cilium.io/v2/namespaces/x/ciliumnetworkpolicies", R"({"apiVersion":"cilium.io/v2",
    "kind":"CiliumNetworkPolicy","metadata":{"name":"bad","namespace":"x"},"spec":{
    "endpointSelector":{"matchLabels":{"app":"web"}},"ingress":[{"fromEntities":["everything"]}]}})");
  CHECK(eventually([&] {
    return n2.cli({"policy", "get", "bad"}).out.find("unknown entity \"everything\"") != std::string::npos;
  }));
  CHECK(eventually([&] {
    auto s = nlohmann::json::parse(
        server.api("GET", "/apis/cilium.io/v2/namespaces/x/ciliumnetworkpolicies/bad", "", kToken).out);
    return s.value(nlohmann::json::json_pointer("/status/nodes/node-1/ok"), true) == false;
  }));
  CHECK(n1.agent().log().find("CiliumNetworkPolicy x/bad: rejected, skipped") != std::string::npos);
  requireTcpExchange(client1, web1, 80);

  // CNI ADD before the agent's watch has seen the pod (watches held back by a slow server): the agent wires it at
  // once with the init identity, asks the API server for the pod off the reconcile thread, and moves it to its
  // real identity when the answer arrives.
  REQUIRE(server.control("hold?seconds=4"));
  REQUIRE(server.control("drop"));
  post("/api/v1/namespaces/x/pods", pod("late1", "node-1", "web"));
  Pod late1 = n1.addPod("late1", "x");
  // Wired at once (init while the watch or the agent's own GET brings the labels), then regenerated.
  CHECK(eventually([&] { return identityOf(n1, "x/late1") == web_id; }));
  requireTcpExchange(client1, late1, 80);

  // `plexus apply` is refused in Kubernetes mode, with the reason.
  std::string m = n1.dir() + "/m.yaml";
  std::ofstream(m) << "apiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n";
  auto refused = n1.cli({"apply", "-f", m});
  CHECK(refused.exit_code != 0);
  CHECK(refused.err.find("use kubectl apply") != std::string::npos);

  // Identity garbage collection: the identity of a pod that left one node stays while the other node still uses
  // it, and is deleted with its last user.
  auto identityExists = [&](uint32_t id) {
    return server.api("GET", "/apis/plexus.io/v1alpha1/plexusidentities/" + std::to_string(id), "", kToken)
               .out.find("\"security-labels\"") != std::string::npos;
  };
  uint32_t other_id = identityOf(n1, "x/other1");
  REQUIRE(n1.cni("DEL", other1, n1.cniConfig()).exit_code == 0);
  CHECK(identityExists(other_id));
  REQUIRE(n2.cni("DEL", other2, n2.cniConfig()).exit_code == 0);
  CHECK(eventually([&] { return !identityExists(other_id); }));
  CHECK(identityExists(web_id));

  // plexus status's Kubernetes line (cilium-dbg's): the API server, and every watch synced.
  auto kube_status = n1.cliJson({"status"});
  CHECK(kube_status["mode"] == "kubernetes");
  CHECK(kube_status["kubernetes"]["enabled"] == true);
  CHECK(eventually([&] { return n1.cli({"status"}).out.find("Kubernetes:              Ok   ") != std::string::npos; }));

  // API server outage: the datapath keeps forwarding and enforcing, the agents stay healthy and retry.
  server.stop();
  requireTcpExchange(client1, web1, 80);
  requireTcpExchange(client2, web2, 80);
  CHECK(n1.cli({"status"}).exit_code == 0);
  CHECK(eventually([&] { return n2.agent().log().find("(retrying)") != std::string::npos; }));
  CHECK(n2.cli({"status"}).exit_code == 0);
}

TEST_CASE("IPAM kubernetes: the pod CIDR comes from Node.spec.podCIDR", "[netns][kubernetes]") {
  Netns api("ap");
  REQUIRE(api.exec("ip link set lo up").exit_code == 0);
  TestApiServer server({"--token", kToken}, api.name());
  REQUIRE(server.port() > 0);
  REQUIRE(server.api("POST", "/api/v1/nodes", R"({"apiVersion":"v1","kind":"Node","metadata":{"name":"node-k"},
    "spec":{"podCIDR":"10.211.7.0/24","podCIDRs":["10.211.7.0/24"]}})", kToken).exit_code == 0);
  std::string kc = server.dir() + "/kc";
  std::ofstream(kc) << "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {server: \"http://172.31.9.1:"
                    << server.port() << "\"}\nusers:\n- name: u\n  user: {token: " << kToken
                    << "}\ncontexts:\n- name: c\n  context: {cluster: t, user: u}\ncurrent-context: c\n";
  NodeFixture node("10.244.0.0/24", {"--k8s-kubeconfig-path", kc, "--node-name", "node-k", "--ipam-mode", "kubernetes"},
                   [&](Netns& n) {
                     std::string a = uniqueName("ka"), b = uniqueName("kb");
                     REQUIRE(sh("ip link add " + a + " netns " + n.name() + " type veth peer name " + b + " netns " +
                                api.name()).exit_code == 0);
                     n.exec("ip addr add 172.31.9.2/30 dev " + a + " && ip link set " + a + " up");
                     api.exec("ip addr add 172.31.9.1/30 dev " + b + " && ip link set " + b + " up");
                   });
  Pod p = node.addPod("p", "default");
  INFO(node.agent().log());
  CHECK(p.ip.rfind("10.211.7.", 0) == 0);
}
