#include <catch2/catch.hpp>

#include "plexus/common/manifest.h"

using plexus::parseManifests;

TEST_CASE("multi-document YAML becomes JSON objects with core-schema scalars", "[unit][manifest]") {
  auto r = parseManifests(R"(
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports:
  - port: 80
    targetPort: "8080"
    name: http
  sessionAffinity: ClientIP
  publishNotReadyAddresses: false
  clusterIP: ~
---
# an empty document is skipped
---
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels: {env: "true", tier: '1'}
)");
  REQUIRE(r.ok());
  REQUIRE(r->size() == 2);
  const auto& svc = (*r)[0];
  CHECK(svc["spec"]["ports"][0]["port"] == 80);
  CHECK(svc["spec"]["ports"][0]["targetPort"] == "8080");  // quoted stays a string
  CHECK(svc["spec"]["publishNotReadyAddresses"] == false);
  CHECK(svc["spec"]["clusterIP"].is_null());
  CHECK((*r)[1]["metadata"]["labels"]["env"] == "true");
  CHECK((*r)[1]["metadata"]["labels"]["tier"] == "1");
  CHECK(plexus::describeObject(svc) == "Service default/web");
  CHECK(plexus::describeObject((*r)[1]) == "Namespace prod");
}

TEST_CASE("JSON manifests and Lists are accepted", "[unit][manifest]") {
  auto r = parseManifests(R"({"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod",
    "metadata":{"name":"a"}},{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"}}]})");
  REQUIRE(r.ok());
  REQUIRE(r->size() == 2);
  CHECK((*r)[1]["metadata"]["name"] == "b");
}

TEST_CASE("malformed manifests fail with the line, never crash", "[unit][manifest]") {
  auto bad = parseManifests("apiVersion: v1\nkind: [unclosed\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("line") != std::string::npos);
  CHECK_FALSE(parseManifests("- just\n- a list\n").ok());
  CHECK_FALSE(parseManifests("kind: List\nitems: 3\n").ok());
  auto empty = parseManifests("");
  REQUIRE(empty.ok());
  CHECK(empty->empty());
}
