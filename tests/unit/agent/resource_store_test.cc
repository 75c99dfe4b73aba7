#include <catch2/catch.hpp>

#include "plexus/agent/resource_store.h"
#include "plexus/common/manifest.h"

using namespace plexus;
using namespace plexus::agent;

namespace {
nlohmann::json svc(const std::string& name, int port) {
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", {{"name", name}}},
          {"spec", {{"ports", {{{"port", port}}}}}}};
}
}  // namespace

TEST_CASE("apply creates, configures and leaves unchanged, with events", "[unit][store]") {
  ResourceStore store;
  std::vector<ResourceEvent> events;
  auto out = store.apply({svc("web", 80)}, &events);
  REQUIRE(out.size() == 1);
  CHECK(out[0].action == ApplyAction::kCreated);
  CHECK(out[0].object == "Service default/web");  // namespace defaulted
  REQUIRE(events.size() == 1);
  CHECK(events[0].type == ResourceEventType::kUpsert);
  CHECK(events[0].key.namespace_name == "default");

  events.clear();
  CHECK(store.apply({svc("web", 80)}, &events)[0].action == ApplyAction::kUnchanged);
  CHECK(events.empty());
  CHECK(store.apply({svc("web", 81)}, &events)[0].action == ApplyAction::kConfigured);
  CHECK(events.size() == 1);
  auto stored = store.get({ResourceKind::kService, "default", "web"});
  REQUIRE(stored.has_value());
  CHECK((*stored)["metadata"]["generation"] == 2);

  events.clear();
  auto del = store.remove({svc("web", 0)}, &events);
  CHECK(del[0].action == ApplyAction::kDeleted);
  REQUIRE(events.size() == 1);
  CHECK(events[0].type == ResourceEventType::kDelete);
  CHECK(store.remove({svc("web", 0)}, &events)[0].action == ApplyAction::kNotFound);
}

TEST_CASE("invalid objects are rejected one by one with a message naming the object", "[unit][store]") {
  ResourceStore store;
  store.setValidator(ResourceKind::kService, [](const nlohmann::json& o) -> Status {
    int port = o["spec"]["ports"][0]["port"];
    if (port < 1 || port > 65535) {
      return makeError(ErrorCode::kInvalidArgument, "spec.ports[0].port: must be 1-65535");
    }
    return Status::Ok();
  });
  std::vector<ResourceEvent> events;
  nlohmann::json unknown = {{"apiVersion", "v1"}, {"kind", "Gizmo"}, {"metadata", {{"name", "g"}}}};
  nlohmann::json badname = svc("Bad_Name", 80);
  nlohmann::json badlabels = svc("lab", 80);
  badlabels["metadata"]["labels"] = {{"a", 1}};
  auto out = store.apply({svc("ok", 80), svc("bad", 0), unknown, badname, badlabels, nlohmann::json(3)}, &events);
  REQUIRE(out.size() == 6);
  CHECK(out[0].action == ApplyAction::kCreated);
  CHECK(out[1].action == ApplyAction::kRejected);
  CHECK(out[1].message == "Service default/bad: spec.ports[0].port: must be 1-65535");
  CHECK(out[2].message.find("Gizmo") != std::string::npos);
  CHECK(out[3].message.find("metadata.name") != std::string::npos);
  CHECK(out[4].message.find("metadata.labels.a") != std::string::npos);
  CHECK(out[5].action == ApplyAction::kRejected);
  CHECK(events.size() == 1);  // only the valid one reached the consumers
  CHECK(store.size() == 1);
}

TEST_CASE("cluster-scoped kinds drop the namespace; snapshots restore with a synced marker", "[unit][store]") {
  ResourceStore store;
  std::vector<ResourceEvent> events;
  nlohmann::json ns = {{"apiVersion", "v1"}, {"kind", "Namespace"},
                       {"metadata", {{"name", "prod"}, {"namespace", "x"}, {"labels", {{"env", "prod"}}}}}};
  nlohmann::json ccnp = {{"apiVersion", "cilium.io/v2"}, {"kind", "CiliumClusterwideNetworkPolicy"},
                         {"metadata", {{"name", "deny-all"}}}, {"spec", nlohmann::json::object()}};
  store.apply({ns, ccnp, svc("web", 80)}, &events);
  CHECK(store.get({ResourceKind::kNamespace, "", "prod"}).has_value());

  ResourceStore copy;
  auto replay = copy.restore(store.snapshot());
  REQUIRE(replay.ok());
  CHECK(replay->size() == 4);
  CHECK(replay->back().type == ResourceEventType::kSynced);
  CHECK(copy.list(ResourceKind::kService).size() == 1);
  // Re-applying what was restored changes nothing.
  std::vector<ResourceEvent> more;
  CHECK(copy.apply({svc("web", 80)}, &more)[0].action == ApplyAction::kUnchanged);
  CHECK_FALSE(copy.restore(nlohmann::json::array()).ok());
}

TEST_CASE("resource store: object names are DNS-1123 subdomains", "[unit][store]") {
  ResourceStore store;
  std::vector<ResourceEvent> events;
  auto named = [](const std::string& name) {
    return nlohmann::json{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}};
  };
  for (const std::string& ok : std::vector<std::string>{"a", "web-1", "a.b-c.d", "0x", std::string(253, 'a')}) {
    INFO(ok);
    CHECK(store.apply({named(ok)}, &events)[0].action == ApplyAction::kCreated);
  }
  for (const std::string& bad : std::vector<std::string>{"", "-a", "a-", "a..b", ".a", "a.", "A", "a_b", "a.-b", std::string(254, 'a')}) {
    INFO(bad);
    CHECK(store.apply({named(bad)}, &events)[0].action == ApplyAction::kRejected);
  }
}

TEST_CASE("resource store: prepare is pure; commit stores in order and tells the verdict hook", "[unit][store]") {
  ResourceStore store;
  std::vector<std::pair<std::string, bool>> heard;
  store.setValidator(
      ResourceKind::kService,
      [](const nlohmann::json& o) -> Status {
        return o["spec"]["ports"][0]["port"] == 0 ? Status(makeError(ErrorCode::kInvalidArgument, "port 0"))
                                                  : Status::Ok();
      },
      [&](const ResourceKey& key, const Status& verdict) { heard.emplace_back(key.name, verdict.ok()); });
  auto good = store.prepare(svc("web", 80), false);
  auto bad = store.prepare(svc("web", 0), false);
  auto unnamed = store.prepare(nlohmann::json{{"apiVersion", "v1"}, {"kind", "Service"}}, false);
  CHECK(good.accepted);
  CHECK(good.object["metadata"]["namespace"] == "default");
  CHECK_FALSE(bad.accepted);
  CHECK(bad.outcome.message == "Service default/web: port 0");
  CHECK_FALSE(unnamed.accepted);
  CHECK_FALSE(unnamed.verdict.has_value());  // refused before the kind's validator
  // Nothing is stored and nobody hears anything until the objects commit.
  CHECK(store.size() == 0);
  CHECK(heard.empty());
  std::vector<PreparedObject> group;
  group.push_back(std::move(good));
  group.push_back(std::move(bad));
  group.push_back(std::move(unnamed));
  std::vector<ResourceEvent> events;
  auto out = store.commit(std::move(group), false, &events);
  REQUIRE(out.size() == 3);
  CHECK(out[0].action == ApplyAction::kCreated);
  CHECK(out[1].action == ApplyAction::kRejected);
  CHECK(out[2].action == ApplyAction::kRejected);
  CHECK(heard == std::vector<std::pair<std::string, bool>>{{"web", true}, {"web", false}});
  REQUIRE(events.size() == 1);
  // The previous version stays: the refused update changed nothing.
  CHECK(store.get({ResourceKind::kService, "default", "web"}).value()["spec"]["ports"][0]["port"] == 80);
  // A delete is prepared without the kind's validator (an object that would not validate can still be deleted).
  std::vector<PreparedObject> del;
  del.push_back(store.prepare(svc("web", 0), true));
  CHECK(store.commit(std::move(del), true, &events)[0].action == ApplyAction::kDeleted);
  CHECK(heard.size() == 2);
  CHECK(store.size() == 0);
}

TEST_CASE("resource store: a decoder's product rides in the upsert event", "[unit][store]") {
  ResourceStore store;
  int decodes = 0;
  store.setDecoder(ResourceKind::kService, [&](const nlohmann::json& o) -> Result<std::any> {
    ++decodes;
    int port = o["spec"]["ports"][0]["port"];
    if (port == 0) {
      return makeError(ErrorCode::kInvalidArgument, "port 0");
    }
    return std::any(port);
  });
  std::vector<ResourceEvent> events;
  auto out = store.apply({svc("web", 80), svc("bad", 0)}, &events);
  CHECK(out[0].action == ApplyAction::kCreated);
  CHECK(out[1].message == "Service default/bad: port 0");
  REQUIRE(events.size() == 1);
  REQUIRE(std::any_cast<int>(&events[0].decoded));
  CHECK(std::any_cast<int>(events[0].decoded) == 80);
  CHECK(decodes == 2);
  // A plain validator hands on nothing.
  store.setValidator(ResourceKind::kNamespace, [](const nlohmann::json&) { return Status::Ok(); });
  events.clear();
  store.apply({nlohmann::json{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "n"}}}}}, &events);
  REQUIRE(events.size() == 1);
  CHECK_FALSE(events[0].decoded.has_value());
}
