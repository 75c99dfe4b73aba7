#include <catch2/catch.hpp>

#include "plexus/common/manifest.h"

using plexus::parseManifests;
using plexus::ManifestStream;

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

TEST_CASE("a manifest stream gives the objects one at a time and stops at the first malformed document",
          "[unit][manifest]") {
  std::string text =
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\n"
      "apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Namespace, metadata: {name: b}},"
      " {apiVersion: v1, kind: Namespace, metadata: {name: c}}]\n---\n"
      "apiVersion: v1\nkind: [unclosed\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: d}\n";
  ManifestStream stream(text);
  std::vector<std::string> names;
  std::string error;
  for (int i = 0; i < 10; ++i) {
    auto next = stream.next();
    if (!next.ok()) {
      error = next.error().message;
      break;
    }
    REQUIRE(next->has_value());
    names.push_back((**next)["metadata"]["name"]);
  }
  CHECK(names == std::vector<std::string>{"a", "b", "c"});
  INFO(error);
  CHECK(error.find("line 12") != std::string::npos);
  // The stream ends at the error: nothing after it is read.
  auto after = stream.next();
  REQUIRE(after.ok());
  CHECK_FALSE(after->has_value());
  // The whole-manifest form refuses it all.
  CHECK_FALSE(parseManifests(text).ok());
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

TEST_CASE("anchors and aliases copy their node; an alias bomb, deep nesting and collection keys are refused",
          "[unit][manifest]") {
  auto r = parseManifests("kind: Pod\nmetadata:\n  labels: &l {app: web, tier: '1'}\n  annotations: *l\n"
                          "spec: {ports: [&p 80, *p], name: !!str 123, '8080': x, 1.50: y}\n");
  REQUIRE(r.ok());
  const auto& pod = (*r)[0];
  CHECK(pod["metadata"]["annotations"] == pod["metadata"]["labels"]);
  CHECK(pod["spec"]["ports"] == nlohmann::json::array({80, 80}));
  CHECK(pod["spec"]["name"] == "123");  // an explicit !!str tag keeps the text
  CHECK(pod["spec"]["8080"] == "x");
  CHECK(pod["spec"]["1.50"] == "y");  // a key is its text as written
  // Each level doubles the one before: 2^40 nodes if expanded.
  std::string bomb = "kind: Pod\na0: &a0 [x, x]\n";
  for (int i = 1; i <= 40; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" + std::to_string(i - 1) + ", *a" +
            std::to_string(i - 1) + "]\n";
  }
  auto refused = parseManifests(bomb);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("too many nodes") != std::string::npos);
  auto deep = parseManifests("kind: Pod\nx: " + std::string(2000, '[') + std::string(2000, ']') + "\n");
  REQUIRE_FALSE(deep.ok());
  CHECK(deep.error().message.find("nested too deeply") != std::string::npos);
  auto key = parseManifests("kind: Pod\n? {a: 1}\n: b\n");
  REQUIRE_FALSE(key.ok());
  CHECK(key.error().message.find("a key that is not text") != std::string::npos);
  CHECK_FALSE(parseManifests("kind: Pod\nx: *nowhere\n").ok());
}
