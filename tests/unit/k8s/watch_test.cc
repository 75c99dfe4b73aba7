#include <catch2/catch.hpp>

#include "plexus/k8s/watch.h"

using namespace plexus;
using namespace plexus::k8s;

TEST_CASE("watch lines decode to typed events", "[unit][k8s]") {
  auto added = decodeWatchLine(
      R"({"type":"ADDED","object":{"metadata":{"name":"web","namespace":"default","resourceVersion":"7"}}})");
  REQUIRE(added.ok());
  CHECK(added->type == WatchEventType::kAdded);
  CHECK(added->resource_version == "7");
  auto e = objectEvent(ResourceKind::kPod, "v1", "Pod", ResourceEventType::kUpsert, added->object);
  CHECK(e.key.name == "web");
  CHECK(e.key.namespace_name == "default");
  CHECK(e.object["kind"] == "Pod");
  CHECK(e.object["apiVersion"] == "v1");

  auto bookmark = decodeWatchLine(R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"150"}}})");
  REQUIRE(bookmark.ok());
  CHECK(bookmark->type == WatchEventType::kBookmark);
  CHECK(bookmark->resource_version == "150");

  auto gone = decodeWatchLine(R"({"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}})");
  REQUIRE(gone.ok());
  CHECK(gone->type == WatchEventType::kError);
  CHECK(gone->code == 410);
  CHECK(gone->message == "too old");
}

TEST_CASE("fuzz: malformed watch lines are refused, not thrown", "[unit][k8s][fuzz]") {
  // Each of these threw a nlohmann::json type_error inside the informer's stream callback (the agent died):
  // a type that is not a string, metadata or resourceVersion of another type, an ERROR whose code is a string.
  for (const char* line : {
           R"({"type":1,"object":{}})",
           R"({"type":"ADDED","object":"x"})",
           R"({"type":"ADDED","object":{"metadata":[]}})",
           R"({"type":"MODIFIED","object":{"metadata":{"resourceVersion":5}}})",
           R"({"type":"DELETED","object":{"metadata":{"name":{"a":1}}}})",
           R"({"type":"ERROR","object":{"code":"410"}})",
           R"({"type":"WHATEVER","object":{}})",
           R"({"type":"ADDED"})",
           "[]",
           "not json",
       }) {
    INFO(line);
    auto ev = decodeWatchLine(line);
    if (ev.ok()) {
      // Only the string-coded ERROR is accepted, as an error that is not 410.
      CHECK(ev->type == WatchEventType::kError);
      CHECK(ev->code == 0);
    } else {
      CHECK(ev.error().code == ErrorCode::kInvalidArgument);
    }
  }
}

TEST_CASE("list pages decode; a malformed page is refused", "[unit][k8s][fuzz]") {
  auto page = decodeListPage(nlohmann::json::parse(
      R"({"metadata":{"resourceVersion":"200","continue":"abc"},"items":[{"metadata":{"name":"a"}}]})"));
  REQUIRE(page.ok());
  CHECK(page->resource_version == "200");
  CHECK(page->continue_token == "abc");
  CHECK(page->items.size() == 1);
  CHECK(decodeListPage(nlohmann::json::parse(R"({"items":{}})")).error().message == "list: items: must be a list");
  CHECK_FALSE(decodeListPage(nlohmann::json::parse(R"({"items":[1]})")).ok());
  CHECK_FALSE(decodeListPage(nlohmann::json::parse(R"({"metadata":{"continue":7}})")).ok());
  CHECK_FALSE(decodeListPage(nlohmann::json::parse("[]")).ok());
  CHECK(decodeListPage(nlohmann::json::parse("{}"))->items.empty());
}
