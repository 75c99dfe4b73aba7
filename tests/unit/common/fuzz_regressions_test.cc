// Manifests the fuzzers (fuzz/, docs/fuzzing.md) found crashing the agent, kept as [unit] tests.
#include <catch2/catch.hpp>

#include "plexus/common/manifest.h"

using plexus::parseManifests;

TEST_CASE("fuzz: manifest text that is not UTF-8 is refused, naming the document", "[unit][manifest][fuzz]") {
  // fuzz_manifest: a key with bytes D0 E3 was accepted, and the state journal's dump() threw type_error 316
  // inside the reconcile thread (the agent died on `plexus apply`).
  auto r = parseManifests("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namesp\xd0\xe3" "e: default}\n");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "manifest document 1: text that is not UTF-8");
  // In a value, in a quoted value, and in the second document.
  CHECK_FALSE(parseManifests("kind: Pod\nmetadata: {name: \"w\xff\"}\n").ok());
  auto second = parseManifests("kind: Namespace\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: b\xc0\xaf}\n");
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().message.find("manifest document 2") == 0);
  // Overlong forms and surrogates are not UTF-8 either; real multi-byte text is.
  CHECK_FALSE(parseManifests("kind: Pod\nmetadata: {name: \"\xed\xa0\x80\"}\n").ok());
  auto ok = parseManifests("kind: Pod\nmetadata: {name: caf\xc3\xa9, labels: {emoji: \"\xf0\x9f\x99\x82\"}}\n");
  REQUIRE(ok.ok());
  CHECK((*ok)[0]["metadata"]["name"] == "caf\xc3\xa9");
}

TEST_CASE("fuzz: out-of-range floats and odd kinds do not throw", "[unit][manifest][fuzz]") {
  // std::stod threw out_of_range on 1e999 (a plain scalar that looks like a float): keep the text.
  auto r = parseManifests("kind: Service\nspec: {x: 1e999, y: 2.5}\n");
  REQUIRE(r.ok());
  CHECK((*r)[0]["spec"]["x"] == "1e999");
  CHECK((*r)[0]["spec"]["y"] == 2.5);
  // A kind that is not a string: value("kind", "") threw type_error 302.
  auto k = parseManifests("kind: [List]\nitems: []\n");
  REQUIRE(k.ok());
  CHECK(k->size() == 1);
}

TEST_CASE("fuzz: a top-level ',' that would hang yaml-cpp is refused with its line", "[unit][manifest][fuzz]") {
  // yaml-cpp 0.7's LoadAll() never returns on these (fuzz_grpc_requests and fuzz_manifest timed out): the
  // agent's Apply handler spun forever.
  for (const char* text : {",", " ,", "{a: 1},", "[a], b", "&x ,", "!t ,", "\"x\",", "---\n,",
                           "kind: Pod\n---\n{a: 1}, {b: 2}\n", "# comment\n{\"kind\": \"Pod\"},\n",
                           // A directive line ends the document before it (fuzz_grpc_requests).
                           "a: 1\n% x\n,", "kind: Pod\n%YAML 1.2\n ,ports: []\n"}) {
    INFO(text);
    auto r = parseManifests(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("',' outside a flow collection") != std::string::npos);
  }
  CHECK(parseManifests("kind: Pod\n---\n{a: 1}, {b: 2}\n").error().message.find("line 3") != std::string::npos);
  // Commas where YAML allows them still parse.
  for (const char* text : {"kind: Pod\nmetadata: {name: a, labels: {x: \"1,2\", y: 'a, b'}}\n",
                           "{\"kind\": \"List\",\n \"items\": [\n  {\"kind\": \"Pod\"},\n  {\"kind\": \"Namespace\"}]}\n",
                           "kind: ConfigMap\ndata:\n  k: |\n    a, b\n    ,c\n  l: a, b  # note, here\n",
                           "- a\n- b, c\n", "? a\n: b, c\n"}) {
    INFO(text);
    auto r = parseManifests(text);
    if (!r.ok()) {
      CHECK(r.error().message.find("',' outside") == std::string::npos);
    }
  }
  CHECK(parseManifests("{\"kind\": \"List\",\n \"items\": [\n  {\"kind\": \"Pod\"},\n  {\"kind\": \"Namespace\"}]}\n")->size() == 2);
}
