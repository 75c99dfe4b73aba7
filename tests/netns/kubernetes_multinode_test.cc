// Multi-node in Kubernetes mode, end to end: two node namespaces on one bridge (tests/netns/fabric.h), one agent
// each, both watching the test API server (tests/k8s/apiserver.py) that runs in a third namespace linked to every
// node by its own veth (172.31.{i+1}.0/30). The cluster is described only through the API server:
//   - v1 Node objects, created before the agents start (--ipam-mode kubernetes: each agent takes its pod CIDR from
//     its Node's spec.podCIDR; the other Node gives the peer's InternalIP and CIDR: routes or tunnel, node list);
//   - v1 Pod objects (no status.podIP: a remote pod's address and identity come only from the PlexusEndpoint its
//     node publishes, as Cilium's CiliumEndpoint);
//   - a CiliumNetworkPolicy, enforced by the receiving node against the remote peer's identity.
// Checks, in order: PlexusEndpoint objects published (identity >= 256, ipv4, nodeName), node list, cross-node ICMP
// and TCP both ways, the policy (client admitted, db dropped and observed with the remote pod's name), and the
// PlexusEndpoint and remote ipcache entry removed after CNI DEL. A second case runs cluster-pool IPAM: Nodes without
// spec.podCIDRs, each agent claims its CIDR in a PlexusNode, and the other agent routes it from that claim.
// The API server serves the chart's CRDs (helm/plexus/crds) and enforces the chart's ClusterRole
// (helm/plexus/templates/rbac.yaml) on the agents' token; every case ends by checking that it denied nothing.
// Every wait is bounded; the fixtures clean up.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <memory>

#include "apiserver.h"
#include "fabric.h"
#include "plexus/common/ipv4.h"
#include "plexus/endpoint.h"

using namespace plexus::testing;

namespace {

constexpr const char* kToken = "node-token";  // the agents' (RBAC-checked)
constexpr const char* kAdmin = "admin-token";  // the test's own requests (not checked)
constexpr const char* kEndpoints = "/apis/plexus.io/v1alpha1/plexusendpoints";
constexpr const char* kPlexusNodes = "/apis/plexus.io/v1alpha1/plexusnodes";

enum class IpamMode { kKubernetes, kClusterPool };

// What node's ipcache answers for ip (the longest prefix: a remote pod's /32, else e.g. its node's pod CIDR).
struct IpcacheEntry {
  uint32_t identity = 0;
  std::string tunnel_endpoint;
};
std::optional<IpcacheEntry> ipcacheLookup(NodeFixture& node, const std::string& ip) {
  auto m = node.pinnedMap<plexus_ipcache_key, plexus_ipcache_value>("plexus_ipcache_v1");
  if (!m.has_value()) {
    return std::nullopt;
  }
  plexus_ipcache_key k{};
  k.prefixlen = 32;
  k.ip = plexus::Ipv4::parse(ip)->networkOrder();
  auto v = m->lookup(k);
  if (!v.ok() || !v->has_value()) {
    return std::nullopt;
  }
  IpcacheEntry e;
  e.identity = (*v)->identity;
  if ((*v)->tunnel_endpoint != 0) {
    unsigned char b[4];
    std::memcpy(b, &(*v)->tunnel_endpoint, 4);  // network order
    e.tunnel_endpoint = std::to_string(b[0]) + "." + std::to_string(b[1]) + "." + std::to_string(b[2]) + "." +
                        std::to_string(b[3]);
  }
  return e;
}

// The API server, then the fabric whose nodes link to it and find their Node objects at start. Members go in
// reverse order: pods and agents first, then the server, then its namespace.
struct KubeCluster {
  Netns api{"ap"};
  std::unique_ptr<TestApiServer> server;
  std::unique_ptr<Fabric> fabric;
  int cidr_base;
  IpamMode ipam;

  // ipam kubernetes: each Node has its spec.podCIDR (10.{base+i}.0.0/24). cluster-pool: Nodes have none; the pool is
  // the same two /24 blocks, claimed in start order (node 0 first), so node i still gets 10.{base+i}.0.0/24.
  KubeCluster(const std::string& mode, int base, IpamMode ipam_mode = IpamMode::kKubernetes)
      : cidr_base(base), ipam(ipam_mode) {
    REQUIRE(api.exec("ip link set lo up").exit_code == 0);
    server = std::make_unique<TestApiServer>(
        std::vector<std::string>{"--token", kToken, "--admin-token", kAdmin, "--crds",
                                 PLEXUS_SOURCE_DIR "/helm/plexus/crds", "--rbac",
                                 PLEXUS_SOURCE_DIR "/helm/plexus/templates/rbac.yaml"},
        api.name());
    REQUIRE(server->port() > 0);
    post("/api/v1/namespaces", R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}})");
    FabricOptions o;
    o.nodes = 2;
    o.cidr_base = base;
    o.agent_args = routingArgs(mode);
    if (ipam == IpamMode::kKubernetes) {
      o.agent_args.insert(o.agent_args.end(), {"--ipam-mode", "kubernetes"});
    } else {
      o.agent_args.insert(o.agent_args.end(),
                          {"--ipam-mode", "cluster-pool", "--cluster-pool-ipv4-mask-size", "24",
                           "--cluster-pool-ipv4-cidr", cidr(0) + "," + cidr(1)});
    }
    o.node_args = [this](size_t i) {
      return std::vector<std::string>{"--k8s-kubeconfig-path", kubeconfig(i)};
    };
    o.before_start = [this](Netns& n, size_t i) {
      link(n, i);
      // The Node object before the agent starts (IPAM kubernetes reads spec.podCIDR); named as the agent's
      // --node-name. With cluster-pool it has no spec.podCIDR(s), as in a cluster without a node IPAM controller.
      std::string spec = ipam == IpamMode::kKubernetes
                             ? R"({"podCIDR":")" + cidr(i) + R"(","podCIDRs":[")" + cidr(i) + R"("]})"
                             : std::string("{}");
      post("/api/v1/nodes", R"({"apiVersion":"v1","kind":"Node","metadata":{"name":")" + n.name() +
                                R"("},"spec":)" + spec + R"(,"status":{"addresses":[{"type":"InternalIP","address":")" +
                                Fabric::underlayIp(i) + R"("},{"type":"Hostname","address":")" + n.name() + R"("}]}})");
    };
    fabric = std::make_unique<Fabric>(std::move(o));
  }
  ~KubeCluster() {
    fabric.reset();
    server.reset();
  }

  std::string cidr(size_t i) const { return "10." + std::to_string(cidr_base + static_cast<int>(i)) + ".0.0/24"; }
  std::string subnet(size_t i) const { return "172.31." + std::to_string(i + 1) + "."; }
  // A veth node <-> API server namespace, 172.31.{i+1}.2 (node) / .1 (server), reachable before the agent starts.
  void link(Netns& node, size_t i) {
    std::string a = uniqueName("ka"), b = uniqueName("kb");
    auto r = sh("ip link add " + a + " netns " + node.name() + " type veth peer name " + b + " netns " + api.name());
    INFO("API link: " << r.out << r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(node.exec("ip addr add " + subnet(i) + "2/30 dev " + a + " && ip link set " + a + " up").exit_code == 0);
    REQUIRE(api.exec("ip addr add " + subnet(i) + "1/30 dev " + b + " && ip link set " + b + " up").exit_code == 0);
    INFO("node " << i << " -> API server " << subnet(i) << "1");
    REQUIRE(waitUntil([&] { return node.exec("ping -c 1 -W 1 " + subnet(i) + "1").exit_code == 0; },
                      std::chrono::seconds(5)));
  }
  std::string kubeconfig(size_t i) const {
    std::string path = server->dir() + "/kc" + std::to_string(i);
    std::ofstream(path) << "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {server: \"http://"
                        << subnet(i) << "1:" << server->port() << "\"}\nusers:\n- name: u\n  user: {token: " << kToken
                        << "}\ncontexts:\n- name: c\n  context: {cluster: t, user: u}\ncurrent-context: c\n";
    return path;
  }
  void post(const std::string& path, const std::string& body) { send("POST", path, body); }
  void send(const std::string& method, const std::string& path, const std::string& body) {
    auto r = server->api(method, path, body, kAdmin);
    INFO(method << " " << path << ": " << r.out << r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(r.out.find("\"kind\": \"Status\"") == std::string::npos);
  }
  nlohmann::json get(const std::string& path) const {
    auto j = nlohmann::json::parse(server->api("GET", path, "", kAdmin).out, nullptr, false);
    return j.is_discarded() ? nlohmann::json() : j;
  }
  // What the server refused the agents under the chart's ClusterRole (RBAC), as "verb group/resource".
  std::vector<std::string> denied() const {
    auto j = nlohmann::json::parse(server->api("GET", "/__test/stats").out, nullptr, false);
    std::vector<std::string> out;
    if (!j.is_object() || !j.contains("denied") || !j["denied"].is_array()) {
      out.push_back("(no /__test/stats answer)");
      return out;
    }
    for (const auto& d : j["denied"]) {
      out.push_back(d.dump());
    }
    return out;
  }
  // Ends every case: the agents did everything they did with the chart's RBAC.
  void checkNothingDenied() const {
    auto d = denied();
    std::string list;
    for (const auto& x : d) {
      list += " " + x;
    }
    INFO("requests of the agents the chart's ClusterRole (helm/plexus/templates/rbac.yaml) refused:" << list << "\n"
         << fabric->logs());
    CHECK(d.empty());
  }
  // The Pod object first (labels, spec.nodeName; no podIP), then CNI ADD on its node.
  FabricPod& addPod(size_t node, const std::string& name, const std::string& app) {
    post("/api/v1/namespaces/x/pods", R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":")" + name +
                                          R"(","namespace":"x","labels":{"app":")" + app +
                                          R"("}},"spec":{"nodeName":")" + fabric->nodeName(node) +
                                          R"(","containers":[{"name":"c"}]}})");
    return fabric->addPod(node, name, {{"app", app}}, "x");
  }
  // The PlexusEndpoint x/<name> from the cluster-wide list (null when absent or the list fails).
  nlohmann::json endpointObject(const std::string& name) const {
    auto list = get(kEndpoints);
    for (const auto& o : list.value("items", nlohmann::json::array())) {
      if (o.value(nlohmann::json::json_pointer("/metadata/name"), "") == name &&
          o.value(nlohmann::json::json_pointer("/metadata/namespace"), "") == "x") {
        return o;
      }
    }
    return nullptr;
  }
  bool published(const FabricPod& p) const {
    auto o = endpointObject(p.name);
    if (!o.is_object() || !o.contains("status") || !o["status"].is_object()) {
      return false;
    }
    const auto& s = o["status"];
    return s.contains("identity") && s["identity"].is_number_unsigned() && s["identity"].get<uint64_t>() >= 256 &&
           s.value("ipv4", "") == p.ip() && s.value("nodeName", "") == fabric->nodeName(p.node);
  }
};

}  // namespace

TEST_CASE("kubernetes multinode: Node objects and PlexusEndpoints join two nodes; a CNP judges the remote peer by "
          "its labels",
          "[netns][kubernetes][multinode]") {
  std::string mode = GENERATE(as<std::string>{}, "tunnel", "native");
  INFO("routing mode " << mode);
  KubeCluster c(mode, mode == "tunnel" ? 180 : 184);
  Fabric& f = *c.fabric;
  FabricPod& web = c.addPod(1, "web", "web");
  FabricPod& client = c.addPod(0, "client", "client");
  FabricPod& db = c.addPod(0, "db", "db");
  INFO("pods: web " << web.ip() << " (node 2), client " << client.ip() << ", db " << db.ip() << " (node 1)");
  // IPAM kubernetes: each node's pods come from its Node's spec.podCIDR.
  CHECK(web.ip().rfind("10." + std::to_string(c.cidr_base + 1) + ".0.", 0) == 0);
  CHECK(client.ip().rfind("10." + std::to_string(c.cidr_base) + ".0.", 0) == 0);

  // Each agent publishes its endpoints once they have their cluster identity.
  bool all_published = waitUntil([&] { return c.published(web) && c.published(client) && c.published(db); },
                                 std::chrono::seconds(20));
  {
    auto r = c.server->api("GET", kEndpoints, "", kAdmin);
    INFO("missing feature? the agents publish PlexusEndpoint objects (" << kEndpoints << ") with status {identity "
         ">= 256, ipv4, nodeName, labels}.\nGET " << kEndpoints << ": " << r.out << r.err << "\n" << f.logs());
    CHECK(c.published(web));
    CHECK(c.published(client));
    CHECK(c.published(db));
    REQUIRE(all_published);
  }
  // The published identity is the endpoint's own, and the labels are there.
  for (const auto* p : {&web, &client, &db}) {
    auto ep = f.node(p->node).cliJson({"endpoint", "get", p->key()});
    auto o = c.endpointObject(p->name);
    INFO(p->name << ": endpoint get " << ep.dump() << "\nPlexusEndpoint " << o.dump());
    CHECK(o["status"]["identity"] == ep["identity"]);
    CHECK(o["status"].value("labels", nlohmann::json()).dump().find("app") != std::string::npos);
    // The namespaced object itself (list items carry no kind, as in Kubernetes).
    auto one = c.get("/apis/plexus.io/v1alpha1/namespaces/x/plexusendpoints/" + p->name);
    INFO("GET namespaces/x/plexusendpoints/" << p->name << ": " << one.dump());
    CHECK(one.value("apiVersion", "") == "plexus.io/v1alpha1");
    CHECK(one.value("kind", "") == "PlexusEndpoint");
    CHECK(one.value(nlohmann::json::json_pointer("/status/ipv4"), "") == p->ip());
  }
  auto identityOf = [&](const FabricPod& p) {
    return c.endpointObject(p.name)["status"]["identity"].get<uint32_t>();
  };
  const uint32_t db_id = identityOf(db);

  // Both nodes know both nodes from the Node objects.
  for (size_t i = 0; i < f.size(); ++i) {
    nlohmann::json list;
    bool both = waitUntil(
        [&] {
          list = nodeList(f.node(i));
          return list.is_array() && list.size() == f.size();
        },
        std::chrono::seconds(15));
    INFO("node " << i << " node list: " << list.dump() << "\n" << f.logs());
    CHECK(both);
    for (size_t j = 0; j < f.size(); ++j) {
      const auto* n = findNode(list, f.nodeName(j));
      INFO("entry for node " << j << " (" << f.nodeName(j) << ")");
      REQUIRE(n != nullptr);
      CHECK(n->value("pod_cidrs", nlohmann::json::array()) == nlohmann::json::array({f.podCidr(j)}));
      CHECK(n->value("addresses", nlohmann::json()).dump().find("\"" + Fabric::underlayIp(j) + "\"") !=
            std::string::npos);
    }
  }
  if (mode == "native") {
    for (size_t i = 0; i < f.size(); ++i) {
      size_t j = 1 - i;
      auto r = f.node(i).node().exec("ip -4 route show " + f.podCidr(j));
      INFO("node " << i << " route to " << f.podCidr(j) << ": " << r.out);
      CHECK(r.out.find("via " + Fabric::underlayIp(j)) != std::string::npos);
    }
  }

  // Remote pods in each node's ipcache (from the PlexusEndpoints): their identity, their node's InternalIP as the
  // tunnel endpoint. Then traffic both ways.
  for (const auto* p : {&web, &client, &db}) {
    NodeFixture& other = f.node(1 - p->node);
    const uint32_t want = identityOf(*p);
    bool learnt = waitUntil(
        [&] {
          auto e = ipcacheLookup(other, p->ip());
          return e && e->identity == want && e->tunnel_endpoint == Fabric::underlayIp(p->node);
        },
        std::chrono::seconds(10));
    auto e = ipcacheLookup(other, p->ip());
    INFO("ipcache of node " << (2 - p->node) << " for " << p->name << " " << p->ip() << ": "
                            << (e ? std::to_string(e->identity) + " via " + e->tunnel_endpoint : "none")
                            << "; want identity " << want << " via " << Fabric::underlayIp(p->node) << "\n"
                            << f.logs());
    CHECK(learnt);
  }
  {
    INFO("convergence: client (node 1) -> web (node 2)\n" << f.logs());
    REQUIRE(waitUntil([&] { return pingOnce(client.netns(), web.ip()); }, std::chrono::seconds(20)));
  }
  CHECK(pingOnce(web.netns(), client.ip()));
  CHECK(tcpOk(client, web));
  CHECK(tcpOk(web, client));
  // Before the policy db reaches web too, so a later failure is the policy's doing.
  REQUIRE(tcpOk(db, web));

  // One CNP through the API: web admits only app=client.
  c.post("/apis/cilium.io/v2/namespaces/x/ciliumnetworkpolicies", R"({"apiVersion":"cilium.io/v2",
    "kind":"CiliumNetworkPolicy","metadata":{"name":"web","namespace":"x"},"spec":{
    "endpointSelector":{"matchLabels":{"app":"web"}},
    "ingress":[{"fromEndpoints":[{"matchLabels":{"app":"client"}}]}]}})");
  bool enforced = waitUntil(
      [&] {
        auto j = nlohmann::json::parse(f.node(1).cli({"policy", "get", "-o", "json"}).out, nullptr, false);
        if (!j.is_object()) {
          return false;
        }
        for (const auto& p : j.value("policies", nlohmann::json::array())) {
          if (p.value("key", "") == "CiliumNetworkPolicy x/web" && p.value("valid", false) &&
              !p.value("endpoints", nlohmann::json::array()).empty()) {
            return true;
          }
        }
        return false;
      },
      std::chrono::seconds(15));
  INFO("node 2 policy get: " << f.node(1).cli({"policy", "get"}).out << "\n" << f.logs());
  REQUIRE(enforced);
  bool dropped = waitUntil([&] { return !tcpOk(db, web, std::chrono::milliseconds(700)); }, std::chrono::seconds(15));
  CHECK(dropped);
  CHECK_FALSE(tcpOk(db, web, std::chrono::milliseconds(700)));
  CHECK(tcpOk(client, web));
  CHECK(pingOnce(client.netns(), web.ip()));

  // Node 2 names the remote source of the drop (learnt from db's PlexusEndpoint).
  auto observed = waitForDrop(f.node(1), "db", "web");
  {
    INFO("DROPPED flows on node 2 (the source must be named db, namespace x, from its PlexusEndpoint):\n"
         << droppedFlowsText(f.node(1)));
    REQUIRE(observed.has_value());
  }
  nlohmann::json drop = *observed;  // a copy: operator[] below may add what is missing
  CHECK(drop["source"].value("namespace", "") == "x");
  CHECK(drop["destination"].value("namespace", "") == "x");
  CHECK(drop.dump().find("\"" + db.ip() + "\"") != std::string::npos);
  CHECK(drop.value("drop_reason_desc", "") == "POLICY_DENIED");
  CHECK(drop.value("traffic_direction", "") == "INGRESS");

  // CNI DEL of db on node 1: its PlexusEndpoint goes, and with it node 2's ipcache entry.
  REQUIRE(ipcacheLookup(f.node(1), db.ip()).value_or(IpcacheEntry{}).identity == db_id);
  auto del = f.node(0).cni("DEL", db.pod, f.node(0).cniConfig());
  INFO("plexus-cni DEL db: " << del.out << del.err);
  REQUIRE(del.exit_code == 0);
  bool gone = waitUntil([&] { return c.endpointObject("db").is_null(); }, std::chrono::seconds(15));
  INFO("GET " << kEndpoints << ": " << c.server->api("GET", kEndpoints, "", kAdmin).out << "\n" << f.logs());
  CHECK(gone);
  // The ipcache is an LPM trie: after db's /32 goes, its address may still match node 1's pod CIDR, never db's
  // identity.
  CHECK(waitUntil([&] { return ipcacheLookup(f.node(1), db.ip()).value_or(IpcacheEntry{}).identity != db_id; },
                  std::chrono::seconds(15)));
  // The others are untouched.
  CHECK_FALSE(c.endpointObject("client").is_null());
  CHECK(ipcacheLookup(f.node(1), client.ip()).value_or(IpcacheEntry{}).identity == identityOf(client));
  CHECK(tcpOk(client, web));
  c.checkNothingDenied();
}

TEST_CASE("kubernetes multinode, cluster-pool: Nodes without podCIDRs get their CIDRs from the PlexusNode claims; "
          "pods on the two nodes reach each other; a changed or deleted claim moves the routes and entries",
          "[netns][kubernetes][multinode]") {
  std::string mode = GENERATE(as<std::string>{}, "tunnel", "native");
  INFO("routing mode " << mode);
  KubeCluster c(mode, mode == "tunnel" ? 188 : 192, IpamMode::kClusterPool);
  Fabric& f = *c.fabric;
  auto claimOf = [&](size_t i) {
    return c.get(std::string(kPlexusNodes) + "/" + f.nodeName(i))
        .value(nlohmann::json::json_pointer("/spec/ipam/podCIDRs"), nlohmann::json());
  };
  // Each agent claimed a block of the pool in its PlexusNode, in start order; the Nodes have no podCIDRs.
  for (size_t i = 0; i < f.size(); ++i) {
    INFO("PlexusNode " << f.nodeName(i) << ": " << c.get(std::string(kPlexusNodes) + "/" + f.nodeName(i)).dump());
    CHECK(claimOf(i) == nlohmann::json::array({c.cidr(i)}));
    CHECK(c.get("/api/v1/nodes/" + f.nodeName(i)).value(nlohmann::json::json_pointer("/spec/podCIDRs"),
                                                        nlohmann::json()).is_null());
  }
  FabricPod& a = c.addPod(0, "a", "a");
  FabricPod& b = c.addPod(1, "b", "b");
  INFO("pods: a " << a.ip() << " (node 1), b " << b.ip() << " (node 2)");
  CHECK(plexus::Ipv4Prefix::parse(c.cidr(0))->contains(*plexus::Ipv4::parse(a.ip())));
  CHECK(plexus::Ipv4Prefix::parse(c.cidr(1))->contains(*plexus::Ipv4::parse(b.ip())));

  // The node table: both nodes with the claimed CIDRs, marked as coming from the PlexusNode.
  for (size_t i = 0; i < f.size(); ++i) {
    nlohmann::json list;
    bool claimed = waitUntil(
        [&] {
          list = nodeList(f.node(i));
          for (size_t j = 0; j < f.size(); ++j) {
            const auto* n = findNode(list, f.nodeName(j));
            if (n == nullptr || n->value("pod_cidrs", nlohmann::json()) != nlohmann::json::array({c.cidr(j)}) ||
                n->value("pod_cidrs_source", "") != "PlexusNode") {
              return false;
            }
          }
          return true;
        },
        std::chrono::seconds(15));
    INFO("node " << i << " node list (each node's pod_cidrs must be its claim, source PlexusNode): " << list.dump()
                 << "\n" << f.logs());
    CHECK(claimed);
  }
  // Routes and ipcache of each node for the other's claimed CIDR: via its InternalIP (native) or into the tunnel,
  // and the CIDR's entry with the other node as tunnel endpoint (an address of it no pod has yet: .200).
  auto routeTo = [&](size_t on, const std::string& cidr) {
    return f.node(on).node().exec("ip -4 route show " + cidr).out;
  };
  auto routed = [&](size_t on, const std::string& cidr, size_t to) {
    std::string r = routeTo(on, cidr);
    return mode == "native" ? r.find("via " + Fabric::underlayIp(to)) != std::string::npos
                            : r.find("dev plexus_vxlan") != std::string::npos;
  };
  auto unusedIn = [&](const std::string& cidr) { return cidr.substr(0, cidr.size() - 4) + "200"; };
  auto tunnelsTo = [&](size_t on, const std::string& ip, size_t to) {
    auto e = ipcacheLookup(f.node(on), ip);
    return e && e->identity == 0 && e->tunnel_endpoint == Fabric::underlayIp(to);
  };
  for (size_t i = 0; i < f.size(); ++i) {
    size_t j = 1 - i;
    bool ok = waitUntil([&] { return routed(i, c.cidr(j), j) && tunnelsTo(i, unusedIn(c.cidr(j)), j); },
                        std::chrono::seconds(10));
    INFO("node " << i << " route to " << c.cidr(j) << ": " << routeTo(i, c.cidr(j)) << "\n" << f.logs());
    CHECK(ok);
  }

  // Traffic both ways, pod to pod and host to remote pod (the host's packets follow the claimed CIDR's route).
  {
    INFO("convergence: a (node 1) -> b (node 2)\n" << f.logs());
    REQUIRE(waitUntil([&] { return pingOnce(a.netns(), b.ip()); }, std::chrono::seconds(20)));
  }
  CHECK(pingOnce(b.netns(), a.ip()));
  CHECK(tcpOk(a, b));
  CHECK(tcpOk(b, a));
  CHECK(waitUntil([&] { return pingOnce(f.node(0).node(), b.ip()); }, std::chrono::seconds(10)));
  CHECK(waitUntil([&] { return pingOnce(f.node(1).node(), a.ip()); }, std::chrono::seconds(10)));

  // A changed claim: node 1 moves node 2's route and tunnel entry to the new CIDR in one sync.
  const std::string moved = "10." + std::to_string(c.cidr_base + 2) + ".0.0/24";
  const std::string node2 = std::string(kPlexusNodes) + "/" + f.nodeName(1);
  c.send("PATCH", node2, R"({"spec":{"ipam":{"podCIDRs":[")" + moved + R"("]}}})");
  bool followed = waitUntil(
      [&] {
        return routed(0, moved, 1) && routeTo(0, c.cidr(1)).empty() && tunnelsTo(0, unusedIn(moved), 1) &&
               !tunnelsTo(0, unusedIn(c.cidr(1)), 1);
      },
      std::chrono::seconds(10));
  {
    INFO("node 1 after node 2's claim moved to " << moved << ": route " << routeTo(0, moved) << ", old route "
                                                 << routeTo(0, c.cidr(1)) << ", node list " << nodeList(f.node(0)).dump()
                                                 << "\n" << f.logs());
    CHECK(followed);
  }
  // A deleted claim: node 2 stays a node (remote-node address), without pod CIDRs, routes or CIDR entry.
  c.send("DELETE", node2, "");
  bool dropped = waitUntil(
      [&] {
        auto list = nodeList(f.node(0));
        const auto* n = findNode(list, f.nodeName(1));
        return n != nullptr && n->value("pod_cidrs", nlohmann::json()).empty() && routeTo(0, moved).empty() &&
               !tunnelsTo(0, unusedIn(moved), 1);
      },
      std::chrono::seconds(10));
  {
    INFO("node 1 after node 2's PlexusNode was deleted: " << nodeList(f.node(0)).dump() << "\n" << f.logs());
    CHECK(dropped);
  }
  auto node_entry = ipcacheLookup(f.node(0), Fabric::underlayIp(1));
  CHECK(node_entry.value_or(IpcacheEntry{}).identity == 6u);  // remote-node
  // The claim back as it was: the route, the entry and the traffic return.
  c.post(kPlexusNodes, R"({"apiVersion":"plexus.io/v1alpha1","kind":"PlexusNode","metadata":{"name":")" +
                           f.nodeName(1) + R"("},"spec":{"ipam":{"podCIDRs":[")" + c.cidr(1) + R"("]}}})");
  bool back = waitUntil([&] { return routed(0, c.cidr(1), 1) && tunnelsTo(0, unusedIn(c.cidr(1)), 1); },
                        std::chrono::seconds(10));
  INFO("node 1 after the claim came back: route " << routeTo(0, c.cidr(1)) << "\n" << f.logs());
  CHECK(back);
  CHECK(waitUntil([&] { return pingOnce(f.node(0).node(), b.ip()); }, std::chrono::seconds(10)));
  CHECK(tcpOk(a, b));
  c.checkNothingDenied();
}
