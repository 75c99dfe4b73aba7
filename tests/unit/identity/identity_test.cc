#include <catch2/catch.hpp>

#include "plexus/identity/identity.h"

using namespace plexus::identity;

TEST_CASE("pod identity labels follow Cilium's names and the filter drops churning keys", "[unit][identity]") {
  PodIdentityInput in;
  in.ns = "shop";
  in.pod_labels = {{"app", "web"}, {"pod-template-hash", "5d8f9"}, {"controller-revision-hash", "abc"}};
  in.namespace_labels = {{"team", "blue"}};
  in.service_account = "web-sa";
  in.cluster = "prod";
  auto l = podIdentityLabels(in, LabelFilter::defaults());
  CHECK(l == Labels{"k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop",
                    "k8s:io.cilium.k8s.namespace.labels.team=blue", "k8s:io.cilium.k8s.policy.serviceaccount=web-sa",
                    "k8s:io.cilium.k8s.policy.cluster=prod"});
}

TEST_CASE("label filters: include lists, exclusions, bad patterns", "[unit][identity]") {
  auto f = LabelFilter::parse({"app", "tier", "!tier"});
  REQUIRE(f.ok());
  CHECK(f->keep("app"));
  CHECK_FALSE(f->keep("tier"));
  CHECK_FALSE(f->keep("version"));
  CHECK(f->keep("io.kubernetes.pod.namespace"));  // always kept
  CHECK_FALSE(LabelFilter::parse({"(unclosed"}).ok());
}

TEST_CASE("equal label sets share an identity whatever the order; unused identities are released",
          "[unit][identity]") {
  Allocator a;
  uint32_t x = a.acquire({"k8s:app=web", "k8s:io.kubernetes.pod.namespace=default"});
  uint32_t y = a.acquire({"k8s:io.kubernetes.pod.namespace=default", "k8s:app=web"});
  CHECK(x == y);
  CHECK(x >= kFirstClusterIdentity);
  CHECK(a.refcount(x) == 2);
  uint32_t z = a.acquire({"k8s:app=db", "k8s:io.kubernetes.pod.namespace=default"});
  CHECK(z != x);
  CHECK_FALSE(a.release(x));
  CHECK(a.release(x));
  CHECK_FALSE(a.labelsOf(x).has_value());
  // A freed identity is not handed out again at once.
  uint32_t w = a.acquire({"k8s:app=cache", "k8s:io.kubernetes.pod.namespace=default"});
  CHECK(w != x);
  CHECK_FALSE(a.release(kHost));
  CHECK(std::string(reservedName(kWorld)) == "world");
  CHECK(reservedName(300) == nullptr);
}

TEST_CASE("allocator snapshots keep identities stable across restarts", "[unit][identity]") {
  Allocator a;
  uint32_t x = a.acquire({"k8s:app=web"});
  Allocator b;
  REQUIRE(b.restore(a.snapshot()).ok());
  CHECK(b.acquire({"k8s:app=web"}) == x);
  CHECK(b.acquire({"k8s:app=new"}) != x);
  CHECK_FALSE(b.restore(nlohmann::json{{"identities", {{{"id", 7}, {"labels", {"x"}}}}}}).ok());
  CHECK_FALSE(b.restore(nlohmann::json::array()).ok());
}

TEST_CASE("identity types as Cilium's identity metric labels them; the reserved ones are counted, not assumed",
          "[unit][identity]") {
  CHECK(reservedIdentityCount() == 8);  // host, world, unmanaged, health, init, remote-node, kube-apiserver, ingress
  for (uint32_t id = 1; id <= 8; ++id) {
    INFO(id);
    CHECK(std::string(identityType(id)) == "reserved");
  }
  CHECK(std::string(identityType(kFirstClusterIdentity)) == "cluster_local");
  CHECK(std::string(identityType(kLastClusterIdentity)) == "cluster_local");
  CHECK(std::string(identityType(kFirstLocalIdentity)) == "node_local");
  CHECK(std::string(identityType(kFirstLocalIdentity + 7)) == "node_local");
  CHECK(identityType(0) == nullptr);
  CHECK(identityType(9) == nullptr);
  CHECK(identityType(kLastClusterIdentity + 1) == nullptr);
}
