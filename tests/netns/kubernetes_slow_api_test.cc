// Kubernetes mode with a slow API server: a CNI ADD for a pod the agent's watch has not delivered yet must not
// stall the node. The agent wires that pod at once with the reserved init identity, fetches the pod off its
// reconcile thread, and regenerates the endpoint (real identity, labels) when the pod arrives; meanwhile CNI ADDs
// of other pods and Service updates go on. The test holds the agent's GET of the pod in the API server and asserts
// what was finished while it was still held (order), never how long anything took.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "apiserver.h"
#include "node_fixture.h"
#include "plexus/identity.h"

using namespace plexus::testing;

namespace {

constexpr const char* kToken = "node-token";
constexpr uint32_t kIdentityInit = PLEXUS_IDENTITY_INIT;  // Cilium's reserved "init" identity
// The issue's slow API server answers pod GETs after 5 s. The test releases the GET itself once it has seen the
// rest of the node's work finish; this is only the server's bound, so on a node that waits behind the GET the
// waiting ends (and the order assertions below report it) instead of hanging.
constexpr int kSlowPodGetSeconds = 5;
// The agent's pod watch stays held for the whole check: `late` must come from the agent's own GET, not the watch.
constexpr int kPodWatchHoldSeconds = 90;
constexpr const char* kServiceIp = "10.96.12.10";

bool eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 150; ++i) {  // bounded: 15 s
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::string pod(const std::string& name, const std::string& app) {
  return R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":")" + name + R"(","namespace":"x","labels":{"app":")" +
         app + R"("}},"spec":{"nodeName":"node-1","containers":[{"name":"c","ports":[{"name":"http","containerPort":80}]}]}})";
}

bool hasLabel(const nlohmann::json& endpoint, const std::string& label) {
  const auto& labels = endpoint.value("labels", nlohmann::json::array());
  return std::find(labels.begin(), labels.end(), label) != labels.end();
}

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_CASE("a CNI ADD whose pod GET is slow gets init at once; other ADDs and services do not wait for it",
          "[netns][kubernetes]") {
  Netns api("ap");
  REQUIRE(api.exec("ip link set lo up").exit_code == 0);
  TestApiServer server({"--token", kToken}, api.name());
  REQUIRE(server.port() > 0);
  // The server's /__test/stats. Its own curl, not TestApiServer::api (which shares one body file between calls):
  // the ADD thread reads it too.
  auto stats = [&]() -> nlohmann::json {
    auto r = sh("ip netns exec " + api.name() + " curl -sf '" + server.url() + "/__test/stats'");
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_object() ? j : nlohmann::json::object();
  };
  auto count = [](const nlohmann::json& s, const std::string& field, const std::string& resource = "") {
    const auto& v = resource.empty() ? s.value(field, nlohmann::json(0))
                                     : s.value(field, nlohmann::json::object()).value(resource, nlohmann::json(0));
    return v.is_number() ? v.get<int>() : 0;
  };
  auto post = [&](const std::string& path, const std::string& body) {
    auto r = server.api("POST", path, body, kToken);
    INFO(path << ": " << r.out << r.err);
    REQUIRE(r.out.find("\"kind\": \"Status\"") == std::string::npos);
  };
  post("/api/v1/namespaces", R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x","labels":{"team":"a"}}})");
  post("/api/v1/namespaces/x/pods", pod("web1", "web"));
  post("/api/v1/namespaces/x/pods", pod("client1", "client"));

  std::string kc = server.dir() + "/kc";
  std::ofstream(kc) << "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {server: \"http://172.31.12.1:"
                    << server.port() << "\"}\nusers:\n- name: u\n  user: {token: " << kToken
                    << "}\ncontexts:\n- name: c\n  context: {cluster: t, user: u}\ncurrent-context: c\n";
  NodeFixture node("10.212.0.0/24",
                   {"--k8s-kubeconfig-path", kc, "--node-name", "node-1", "--kube-proxy-replacement", "true"},
                   [&](Netns& n) {
                     std::string a = uniqueName("ka"), b = uniqueName("kb");
                     REQUIRE(sh("ip link add " + a + " netns " + n.name() + " type veth peer name " + b + " netns " +
                                api.name()).exit_code == 0);
                     n.exec("ip addr add 172.31.12.2/30 dev " + a + " && ip link set " + a + " up");
                     api.exec("ip addr add 172.31.12.1/30 dev " + b + " && ip link set " + b + " up");
                   });

  // The agent has listed pods (so web1 and client1 are known) and watches pods and services: an informer opens
  // its watch only after its list.
  REQUIRE(eventually([&] {
    auto s = stats();
    return count(s, "watches", "pods") >= 1 && count(s, "watches", "services") >= 1 &&
           count(s, "watches", "endpointslices") >= 1;
  }));

  // The agent's pod watch lags (dropped, and its new watch held); every other watch resumes at once. `late` is
  // created now, so the agent can learn of it only by asking for it, and that GET is held.
  REQUIRE(server.control("hold?seconds=" + std::to_string(kPodWatchHoldSeconds) + "&resource=pods"));
  REQUIRE(server.control("drop"));
  REQUIRE(eventually([&] { return count(stats(), "held_watches", "pods") >= 1; }));
  post("/api/v1/namespaces/x/pods", pod("late", "web"));
  REQUIRE(server.control("slowpods?seconds=" + std::to_string(kSlowPodGetSeconds)));
  const int gets_before = count(stats(), "pod_gets");

  // CNI ADD of `late` on its own thread, as kubelet would run it; it notes how many pod GETs the server had
  // answered when the ADD returned.
  Pod late;
  late.netns = std::make_unique<Netns>("pd");
  late.container_id = uniqueName("ctr-late");
  CniCall late_call = node.call("ADD", late);
  late_call.args = "K8S_POD_UID=uid-late;K8S_POD_NAMESPACE=x;K8S_POD_NAME=late;K8S_POD_INFRA_CONTAINER_ID=" +
                   late.container_id;
  const auto t0 = std::chrono::steady_clock::now();
  struct LateAdd {
    CommandResult result;
    int pod_gets_at_return = -1;
    double seconds = 0;
  };
  // Declared after everything it uses: on a failed REQUIRE it is joined (bounded by the plugin's timeout) first.
  std::future<LateAdd> late_add = std::async(std::launch::async, [&] {
    LateAdd a;
    a.result = execPlugin(cniBinary(), late_call, node.cniConfig());
    a.pod_gets_at_return = count(stats(), "pod_gets");
    a.seconds = secondsSince(t0);
    return a;
  });

  // The agent asks the API server for `late`, and the server holds the GET.
  REQUIRE(eventually([&] { return count(stats(), "held_pod_gets") >= 1; }));

  // While that GET is held: CNI ADDs of two known pods finish and their endpoints get their real identities...
  const auto t1 = std::chrono::steady_clock::now();
  Pod web1 = node.addPod("web1", "x");
  Pod client1 = node.addPod("client1", "x");
  const double adds_seconds = secondsSince(t1);
  nlohmann::json endpoints;
  auto endpointOf = [&](const std::string& name) {
    for (const auto& e : endpoints) {
      if (e.value("pod_namespace", "") == "x" && e.value("pod_name", "") == name) {
        return e;
      }
    }
    return nlohmann::json::object();
  };
  // Their identities follow the pod and namespace watches the test dropped, which resume at once but, under load, not
  // within the ADD: bounded wait for them (the held GET of `late` must not be what they wait for).
  eventually([&] {
    endpoints = node.cliJson({"endpoint", "list"});
    return endpointOf("web1").value("identity", 0u) >= 256 && endpointOf("client1").value("identity", 0u) >= 256;
  });
  INFO("endpoints: " << endpoints.dump());
  CHECK(secondsSince(t1) < kSlowPodGetSeconds);  // before the held GET of `late` was answered
  const uint32_t web_id = endpointOf("web1").value("identity", 0u);
  CHECK(web_id >= 256);
  CHECK(hasLabel(endpointOf("web1"), "k8s:app=web"));
  CHECK(endpointOf("client1").value("identity", 0u) >= 256);
  CHECK(endpointOf("client1").value("identity", 0u) != web_id);
  CHECK(hasLabel(endpointOf("client1"), "k8s:app=client"));

  // ...and a Service applied through the API server is programmed.
  const auto t2 = std::chrono::steady_clock::now();
  post("/api/v1/namespaces/x/services", std::string(R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"web",
    "namespace":"x"},"spec":{"type":"ClusterIP","clusterIP":")") + kServiceIp +
                                            R"(","clusterIPs":[")" + kServiceIp + R"("],
    "selector":{"app":"web"},"ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":80}]}})");
  post("/apis/discovery.k8s.io/v1/namespaces/x/endpointslices", R"({"apiVersion":"discovery.k8s.io/v1",
    "kind":"EndpointSlice","metadata":{"name":"web-1","namespace":"x","labels":{"kubernetes.io/service-name":"web"}},
    "addressType":"IPv4","ports":[{"name":"http","port":80,"protocol":"TCP"}],
    "endpoints":[{"addresses":[")" + web1.ip + R"("],"conditions":{"ready":true}}]})");
  auto serviceProgrammed = [&] {
    auto r = node.cli({"service", "list", "-o", "json"});
    auto list = nlohmann::json::parse(r.out, nullptr, false);
    if (!list.is_array()) {
      return false;
    }
    for (const auto& svc : list) {
      for (const auto& fe : svc.value("frontends", nlohmann::json::array())) {
        const auto& backends = fe.value("backends", nlohmann::json::array());
        if (fe.value("address", "") == kServiceIp && backends.size() == 1 &&
            backends[0].dump().find(web1.ip) != std::string::npos) {
          return true;
        }
      }
    }
    return false;
  };
  CHECK(eventually(serviceProgrammed));
  const double service_seconds = secondsSince(t2);

  // The order: all of the above finished before the server answered a single pod GET.
  auto held = stats();
  INFO("API server stats after the other ADDs and the service: " << held.dump() << "\nagent log:\n"
                                                                 << node.agent().log());
  CHECK(count(held, "held_pod_gets") >= 1);
  CHECK(count(held, "pod_gets") == gets_before);

  // `late`'s own ADD returned without waiting for its pod, and its endpoint is wired with init meanwhile.
  REQUIRE(late_add.wait_for(std::chrono::seconds(40)) == std::future_status::ready);
  LateAdd added = late_add.get();
  INFO("plexus-cni ADD late: " << added.result.out << added.result.err);
  REQUIRE(added.result.exit_code == 0);
  CHECK(added.pod_gets_at_return == gets_before);
  auto late_ep = node.cliJson({"endpoint", "get", "x/late"});
  held = stats();
  INFO("late before its pod arrived: " << late_ep.dump() << "\nAPI server stats then: " << held.dump());
  CHECK(late_ep.value("identity", 0u) == kIdentityInit);
  CHECK(count(held, "held_pod_gets") >= 1);
  CHECK(count(held, "pod_gets") == gets_before);
  WARN("for information: late ADD returned after " << added.seconds << " s, the two other ADDs took "
                                                   << adds_seconds << " s, the service " << service_seconds
                                                   << " s; pod GETs held up to " << kSlowPodGetSeconds << " s");

  // The pod arrives (the held GET is answered; the pod watch is still held): the endpoint is regenerated with
  // its real identity, the one web1 has for the same labels.
  REQUIRE(server.control("release"));
  nlohmann::json regenerated;
  bool regenerated_ok = eventually([&] {
    regenerated = node.cliJson({"endpoint", "get", "x/late"});
    return regenerated.value("identity", 0u) == web_id && hasLabel(regenerated, "k8s:app=web");
  });
  INFO("late after its pod arrived: " << regenerated.dump() << "\nagent log then:\n" << node.agent().log());
  CHECK(regenerated_ok);
  CHECK(count(stats(), "held_watches", "pods") >= 1);  // it came from the agent's GET, not from the watch

  // The wiring is real: known pods talk directly and through the service, and `late` is reachable.
  REQUIRE(server.control("hold?seconds=0&resource=pods"));
  CHECK(ping(*client1.netns, web1.ip));
  CHECK(ping(*web1.netns, client1.ip));
  requireTcpExchange(client1, web1);
  {
    auto [lfd, port] = tcpListen(web1.netns->path(), 80);
    REQUIRE(lfd >= 0);
    int cfd = tcpConnect(client1.netns->path(), kServiceIp, port);
    CHECK(cfd >= 0);
    int afd = cfd >= 0 ? acceptWithin(lfd) : -1;
    CHECK(afd >= 0);
    if (cfd >= 0 && afd >= 0) {
      CHECK(exchange(cfd, afd, "via service"));
    }
    for (int fd : {cfd, afd, lfd}) {
      if (fd >= 0) {
        close(fd);
      }
    }
  }
  auto late_result = nlohmann::json::parse(added.result.out, nullptr, false);
  std::string cidr = late_result.value(nlohmann::json::json_pointer("/ips/0/address"), std::string());
  late.ip = cidr.substr(0, cidr.find('/'));
  CHECK(ping(*client1.netns, late.ip));
}
