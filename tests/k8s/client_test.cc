// The Kubernetes client and informers against a test API server that speaks the real wire protocol (list with
// chunks, chunked watch streams, bookmarks, 410 Gone, dropped connections, RBAC denials), cross-checked with
// kubectl against the same server.
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <mutex>
#include <thread>

#include "apiserver.h"
#include "plexus/k8s/client.h"
#include "plexus/k8s/informer.h"

using namespace plexus;
using namespace plexus::k8s;
using namespace plexus::testing;

namespace {

struct Collector {
  std::mutex mu;
  std::vector<ResourceEvent> events;
  EventSink sink() {
    return [this](std::vector<ResourceEvent> batch) {
      std::lock_guard<std::mutex> lock(mu);
      for (auto& e : batch) {
        events.push_back(std::move(e));
      }
    };
  }
  // Bounded wait (10 s) for an event matching pred.
  bool waitFor(const std::function<bool(const ResourceEvent&)>& pred) {
    for (int i = 0; i < 200; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& e : events) {
          if (pred(e)) {
            return true;
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  size_t count(ResourceEventType type, const std::string& name) {
    std::lock_guard<std::mutex> lock(mu);
    return static_cast<size_t>(std::count_if(events.begin(), events.end(), [&](const ResourceEvent& e) {
      return e.type == type && e.key.name == name;
    }));
  }
};

bool waitUntil(const std::function<bool()>& pred) {
  for (int i = 0; i < 200; ++i) {  // bounded: 10 s
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

Client client(const TestApiServer& s) {
  auto cfg = fromKubeconfig(s.kubeconfig());
  REQUIRE(cfg.ok());
  return Client(*cfg);
}

void createNamespace(const Client& c, const std::string& name, const std::string& labels = "{}") {
  auto r = c.request("POST", "/api/v1/namespaces",
                     R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + name + R"(","labels":)" +
                         labels + "}}");
  REQUIRE(r.ok());
  REQUIRE(r->status == 201);
}

std::string label(const ResourceEvent& e, const std::string& key) {
  return e.object.value(nlohmann::json::json_pointer("/metadata/labels/" + key), std::string());
}

bool upserted(const ResourceEvent& e, const std::string& name) {
  return e.type == ResourceEventType::kUpsert && e.key.name == name;
}

const ResourceSpec kNamespaces{"/api/v1/namespaces", "v1", "Namespace", ""};
const InformerOptions kFast{std::chrono::milliseconds(50), std::chrono::milliseconds(400), 30, 3};

}  // namespace

TEST_CASE("informer: chunked list, watch events, kinds filled in, deletes", "[k8s]") {
  TestApiServer server;
  REQUIRE(server.port() > 0);
  Client c = client(server);
  for (int i = 0; i < 7; ++i) {
    createNamespace(c, "ns" + std::to_string(i));
  }
  Collector got;
  Informer inf(c, kNamespaces, got.sink(), kFast);  // chunks of 3: three pages
  inf.start();
  REQUIRE(got.waitFor([](const ResourceEvent& e) { return e.type == ResourceEventType::kSynced; }));
  for (int i = 0; i < 7; ++i) {
    CHECK(got.count(ResourceEventType::kUpsert, "ns" + std::to_string(i)) == 1);
  }
  {
    std::lock_guard<std::mutex> lock(got.mu);
    CHECK(got.events[0].object["kind"] == "Namespace");  // list items carry no kind; the informer adds it
    CHECK(got.events[0].object["apiVersion"] == "v1");
    CHECK(got.events[0].key.kind == ResourceKind::kNamespace);
  }
  createNamespace(c, "late", R"({"team":"blue"})");
  REQUIRE(got.waitFor([](const ResourceEvent& e) { return upserted(e, "late"); }));
  auto patched = c.request("PATCH", "/api/v1/namespaces/late", R"({"metadata":{"labels":{"team":"red"}}})",
                           "application/merge-patch+json");
  REQUIRE(patched.ok());
  REQUIRE(got.waitFor([](const ResourceEvent& e) {
    return upserted(e, "late") && label(e, "team") == "red";
  }));
  REQUIRE(c.request("DELETE", "/api/v1/namespaces/ns3")->status == 200);
  REQUIRE(got.waitFor([](const ResourceEvent& e) {
    return e.type == ResourceEventType::kDelete && e.key.name == "ns3";
  }));
  inf.stop();
  CHECK(inf.stats().lists == 1);
}

TEST_CASE("informer: bookmarks advance, dropped connections resume, 410 Gone re-lists and finds missed deletes",
          "[k8s]") {
  TestApiServer server;
  Client c = client(server);
  createNamespace(c, "keep");
  createNamespace(c, "doomed");
  REQUIRE(server.control("bookmarks?seconds=0.2"));
  Collector got;
  Informer inf(c, kNamespaces, got.sink(), kFast);
  inf.start();
  REQUIRE(got.waitFor([](const ResourceEvent& e) { return e.type == ResourceEventType::kSynced; }));
  REQUIRE(waitUntil([&] { return inf.stats().bookmarks >= 2; }));

  // A dropped connection: the informer re-watches from its version and misses nothing.
  REQUIRE(server.control("drop"));
  createNamespace(c, "after-drop");
  REQUIRE(got.waitFor([](const ResourceEvent& e) { return upserted(e, "after-drop"); }));
  CHECK(inf.stats().watches >= 2);
  CHECK(inf.stats().lists == 1);

  // History compacted while we are away (no bookmarks, the next watch held back by a slow server): the old
  // version is gone (410), so the informer re-lists, and the re-list reports the object deleted in between.
  REQUIRE(server.control("bookmarks?seconds=1000"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  REQUIRE(server.control("hold?seconds=1"));
  REQUIRE(server.control("drop"));
  REQUIRE(c.request("DELETE", "/api/v1/namespaces/doomed")->status == 200);
  REQUIRE(server.control("compact"));
  REQUIRE(waitUntil([&] { return inf.stats().gone >= 1 && inf.stats().lists >= 2; }));
  REQUIRE(got.waitFor([](const ResourceEvent& e) {
    return e.type == ResourceEventType::kDelete && e.key.name == "doomed";
  }));
  CHECK(got.count(ResourceEventType::kDelete, "keep") == 0);
  inf.stop();
}

TEST_CASE("informer: RBAC denial is reported and retried until allowed; auth failures are clear", "[k8s]") {
  TestApiServer server({"--token", "s3cret"});
  {
    auto bad = fromKubeconfig(server.kubeconfig("wrong"));
    REQUIRE(bad.ok());
    auto r = Client(*bad).get("/api/v1/namespaces");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::kPermissionDenied);
    CHECK(r.error().message.find("HTTP 401") != std::string::npos);
  }
  auto cfg = fromKubeconfig(server.kubeconfig("s3cret"));
  REQUIRE(cfg.ok());
  Client c(*cfg);
  createNamespace(c, "x");
  REQUIRE(server.control("deny?resource=namespaces"));
  Collector got;
  Informer inf(c, kNamespaces, got.sink(), kFast);
  inf.start();
  REQUIRE(waitUntil([&] { return inf.stats().errors >= 2; }));
  CHECK(inf.stats().last_error.find("namespaces is forbidden") != std::string::npos);
  CHECK_FALSE(inf.stats().synced);
  REQUIRE(server.control("allow?resource=namespaces"));
  REQUIRE(got.waitFor([](const ResourceEvent& e) { return upserted(e, "x"); }));
  inf.stop();
}

TEST_CASE("kubeconfig: token, client certificate over TLS, and errors", "[k8s]") {
  TempDir d;
  // A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
  std::string p = d.path();
  auto r = sh("cd " + p +
              " && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca "
              "2>/dev/null && openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 "
              "2>/dev/null && printf 'subjectAltName=IP:127.0.0.1' > ext && openssl x509 -req -in srv.csr -CA ca.crt "
              "-CAkey ca.key -CAcreateserial -out srv.crt -days 1 -extfile ext 2>/dev/null && openssl req -newkey "
              "rsa:2048 -nodes -keyout cli.key -out cli.csr -subj /CN=plexus 2>/dev/null && openssl x509 -req -in "
              "cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out cli.crt -days 1 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  TestApiServer server({"--token", "unused-by-this-client", "--tls-cert", p + "/srv.crt", "--tls-key", p + "/srv.key",
                        "--client-ca", p + "/ca.crt"});
  REQUIRE(server.port() > 0);
  std::string kc = p + "/kc";
  std::ofstream(kc) << "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: " << server.url("https")
                    << "\n    certificate-authority: ca.crt\nusers:\n- name: u\n  user:\n    client-certificate: cli.crt\n"
                       "    client-key: cli.key\ncontexts:\n- name: c\n  context: {cluster: t, user: u, namespace: "
                       "kube-system}\ncurrent-context: c\n";
  auto cfg = fromKubeconfig(kc);
  REQUIRE(cfg.ok());
  CHECK(cfg->ns == "kube-system");
  auto ok = Client(*cfg).get("/api/v1/namespaces");
  INFO((ok.ok() ? std::string() : ok.error().message));
  CHECK(ok.ok());
  // Without the client certificate the server refuses (401).
  RestConfig anon = *cfg;
  anon.client_cert_pem.clear();
  anon.client_key_pem.clear();
  auto denied = Client(anon).get("/api/v1/namespaces");
  REQUIRE_FALSE(denied.ok());
  CHECK(denied.error().code == ErrorCode::kPermissionDenied);
  // Wrong CA: TLS verification fails with a clear transport error.
  RestConfig wrong_ca = *cfg;
  wrong_ca.ca_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  CHECK_FALSE(Client(wrong_ca).get("/api/v1/namespaces").ok());

  // Overrides: k8sServiceHost/Port replace the server; in-cluster reads the service account files.
  std::ofstream(p + "/token") << "sa-token\n";
  std::ofstream(p + "/namespace") << "plexus-system";
  auto ic = inCluster({"10.0.0.1", 6443}, p);
  REQUIRE(ic.ok());
  CHECK(ic->server == "https://10.0.0.1:6443");
  CHECK(ic->token == "sa-token");
  CHECK(ic->ns == "plexus-system");
  auto no_sa = inCluster({"10.0.0.1", 6443}, p + "/missing");
  REQUIRE_FALSE(no_sa.ok());
  CHECK(no_sa.error().message.find("service account token") != std::string::npos);
  std::ofstream(p + "/broken") << "clusters: [oops";
  CHECK_FALSE(fromKubeconfig(p + "/broken").ok());
  CHECK_FALSE(fromKubeconfig(p + "/nope").ok());
}

TEST_CASE("kubectl and our client agree on the same server", "[k8s]") {
  if (sh("command -v kubectl").exit_code != 0) {
    WARN("kubectl is not installed: the cross-check with kubectl did not run");
    return;
  }
  TestApiServer server;
  Client c = client(server);
  std::string kc = server.kubeconfig();
  std::string env = "KUBECONFIG=" + kc + " KUBECACHEDIR=" + server.dir() + "/kcache ";
  // kubectl creates a CNP and labels a namespace; our informers see both.
  std::string manifest = server.dir() + "/m.yaml";
  std::ofstream(manifest) << "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: cilium.io/v2\n"
                             "kind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: x}\nspec:\n"
                             "  endpointSelector: {matchLabels: {app: web}}\n  ingress: [{fromEntities: [host]}]\n";
  auto created = sh(env + "timeout 30 kubectl create --validate=false -f " + manifest);
  INFO(created.out << created.err);
  REQUIRE(created.exit_code == 0);
  Collector ns_events, cnp_events;
  Informer ns_inf(c, kNamespaces, ns_events.sink(), kFast);
  Informer cnp_inf(c, {"/apis/cilium.io/v2/ciliumnetworkpolicies", "cilium.io/v2", "CiliumNetworkPolicy", ""},
                   cnp_events.sink(), kFast);
  ns_inf.start();
  cnp_inf.start();
  REQUIRE(cnp_events.waitFor([](const ResourceEvent& e) {
    return upserted(e, "web") && e.key.namespace_name == "x" && e.key.kind == ResourceKind::kCiliumNetworkPolicy &&
           e.object["spec"]["endpointSelector"]["matchLabels"]["app"] == "web";
  }));
  REQUIRE(ns_events.waitFor([](const ResourceEvent& e) { return e.type == ResourceEventType::kSynced; }));
  REQUIRE(sh(env + "timeout 30 kubectl label namespace x team=blue").exit_code == 0);
  REQUIRE(ns_events.waitFor([](const ResourceEvent& e) {
    return upserted(e, "x") && label(e, "team") == "blue";
  }));
  // Our client creates a pod; kubectl lists it with the field selector the agent uses.
  auto r = c.request("POST", "/api/v1/namespaces/x/pods",
                     R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"nodeName":"node-1"}})");
  REQUIRE(r->status == 201);
  auto listed = sh(env + "timeout 30 kubectl get pods -A --field-selector spec.nodeName=node-1 -o name");
  CHECK(listed.out == "pod/a\n");
  auto none = sh(env + "timeout 30 kubectl get pods -A --field-selector spec.nodeName=node-2 -o name");
  CHECK(none.out.empty());
  // An RBAC denial looks the same to kubectl.
  REQUIRE(server.control("deny?resource=pods"));
  auto forbidden = sh(env + "timeout 30 kubectl get pods -A -o name");
  CHECK(forbidden.exit_code != 0);
  CHECK(forbidden.err.find("forbidden") != std::string::npos);
  ns_inf.stop();
  cnp_inf.stop();
}
