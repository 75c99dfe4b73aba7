#include <catch2/catch.hpp>

#include <algorithm>

#include "fakes.h"
#include "plexus/agent/identity_manager.h"

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;

namespace {
identity::Labels labels(const std::string& app) {
  return {"k8s:app=" + app, "k8s:io.kubernetes.pod.namespace=default"};
}
ResourceEvent plexusIdentity(ResourceEventType type, uint32_t id, const std::string& app) {
  nlohmann::json o = {{"apiVersion", "cilium.io/v2"},
                      {"kind", "PlexusIdentity"},
                      {"metadata", {{"name", std::to_string(id)}}},
                      {"security-labels", {{"k8s:app", app}, {"k8s:io.kubernetes.pod.namespace", "default"}}}};
  return ResourceEvent{type, ResourceKey{ResourceKind::kNamespace, "", std::to_string(id)}, o};
}
}  // namespace

TEST_CASE("identities standalone: local allocation, equal labels share an id, release frees it",
          "[unit][identity-manager]") {
  FakeAgentStore store;
  IdentityManager ids(store, nullptr);
  REQUIRE(ids.restore().ok());
  CHECK(ids.acquire({}) == kIdentityInit);
  uint32_t web = ids.acquire(labels("web"));
  CHECK(web >= identity::kFirstClusterIdentity);
  CHECK(ids.acquire(labels("web")) == web);
  uint32_t db = ids.acquire(labels("db"));
  CHECK(db != web);
  auto web_labels = labels("web");
  CHECK(ids.all().at(web) == std::vector<std::string>(web_labels.begin(), web_labels.end()));
  REQUIRE(store.identities);  // persisted

  ids.release(web);
  CHECK(ids.all().count(web));  // one reference left
  ids.release(web);
  CHECK_FALSE(ids.all().count(web));
  CHECK(ids.all().count(db));

  // A new manager over the same store restores the allocator.
  IdentityManager again(store, nullptr);
  REQUIRE(again.restore().ok());
  CHECK(again.local().find(labels("db")) == db);
  // A corrupt file is an error.
  store.identities = nlohmann::json("garbage");
  IdentityManager broken(store, nullptr);
  CHECK_FALSE(broken.restore().ok());
}

TEST_CASE("identities property: equal label sets get equal identities, different ones different",
          "[unit][identity-manager][property]") {
  FakeAgentStore store;
  IdentityManager ids(store, nullptr);
  std::map<std::string, uint32_t> seen;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 50; ++i) {
      std::string app = "a" + std::to_string((i * 7 + round) % 23);
      uint32_t id = ids.acquire(labels(app));
      auto [it, fresh] = seen.emplace(app, id);
      CHECK(it->second == id);
    }
  }
  std::set<uint32_t> distinct;
  for (const auto& [app, id] : seen) {
    distinct.insert(id);
  }
  CHECK(distinct.size() == seen.size());
}

TEST_CASE("identities in cluster mode: init until the cluster answers, one request per label set",
          "[unit][identity-manager]") {
  FakeAgentStore store;
  FakeClusterApi api;
  IdentityManager ids(store, &api);
  CHECK(ids.acquire(labels("web")) == kIdentityInit);
  CHECK(ids.acquire(labels("web")) == kIdentityInit);
  REQUIRE(api.allocations.size() == 1);
  CHECK(api.allocations[0] == labels("web"));
  CHECK(ids.waiting(labels("web")));

  ids.allocated(labels("web"), 300);
  CHECK_FALSE(ids.waiting(labels("web")));
  CHECK(ids.acquire(labels("web")) == 300);
  CHECK(ids.acquire(labels("web")) == 300);  // now local: no new request
  CHECK(api.allocations.size() == 1);
  ids.settle(labels("web"));  // taken: nothing released
  CHECK(api.releases.empty());

  ids.release(300);
  CHECK(api.releases.empty());  // one local user left
  ids.release(300);
  CHECK(api.releases == std::vector<uint32_t>{300});

  // A failed allocation: the next acquire asks again.
  CHECK(ids.acquire(labels("db")) == kIdentityInit);
  ids.failed(labels("db"), "apiserver unavailable");
  CHECK(ids.acquire(labels("db")) == kIdentityInit);
  CHECK(std::count(api.allocations.begin(), api.allocations.end(), labels("db")) == 2);
}

TEST_CASE("identities in cluster mode: settle() gives back an answer nobody took", "[unit][identity-manager]") {
  FakeAgentStore store;
  FakeClusterApi api;
  IdentityManager ids(store, &api);
  CHECK(ids.acquire(labels("web")) == kIdentityInit);
  ids.allocated(labels("web"), 301);
  ids.settle(labels("web"));
  CHECK(api.releases == std::vector<uint32_t>{301});
  // Settled means forgotten: the next user asks again.
  CHECK(ids.acquire(labels("web")) == kIdentityInit);
  CHECK(api.allocations.size() == 2);
}

TEST_CASE("identities: other nodes' identities join all()", "[unit][identity-manager]") {
  FakeAgentStore store;
  FakeClusterApi api;
  IdentityManager ids(store, &api);
  ids.observeRemote({plexusIdentity(ResourceEventType::kUpsert, 4000, "remote"),
                     plexusIdentity(ResourceEventType::kUpsert, 4001, "other"),
                     ResourceEvent{ResourceEventType::kSynced, {}, nullptr}});
  auto all = ids.all();
  REQUIRE(all.count(4000));
  CHECK(std::find(all.at(4000).begin(), all.at(4000).end(), "k8s:app=remote") != all.at(4000).end());
  CHECK(all.count(4001));
  ids.observeRemote({plexusIdentity(ResourceEventType::kDelete, 4001, "other")});
  CHECK_FALSE(ids.all().count(4001));
  // Invalid objects are ignored.
  auto bad = plexusIdentity(ResourceEventType::kUpsert, 12, "x");  // below the cluster range
  ids.observeRemote({bad});
  CHECK_FALSE(ids.all().count(12));
  CHECK(parsePlexusIdentity(bad.object) == std::nullopt);
}

TEST_CASE("identities: deferred changes are persisted once, by flush() or the next durable change",
          "[unit][identity-manager]") {
  FakeAgentStore store;
  IdentityManager ids(store, nullptr);
  REQUIRE(ids.restore().ok());
  std::vector<uint32_t> got;
  for (int i = 0; i < 50; ++i) {
    got.push_back(ids.acquire(labels("remote" + std::to_string(i)), false));
  }
  ids.release(got[0], false);
  CHECK(store.identity_saves == 0);
  ids.flush();
  CHECK(store.identity_saves == 1);
  REQUIRE(store.identities);
  CHECK((*store.identities)["identities"].size() == 49);
  ids.flush();  // nothing new
  CHECK(store.identity_saves == 1);
  // A durable change writes everything, the deferred ones too.
  ids.acquire(labels("remote-late"), false);
  uint32_t local = ids.acquire(labels("local"));
  CHECK(store.identity_saves == 2);
  CHECK((*store.identities)["identities"].size() == 51);
  ids.flush();
  CHECK(store.identity_saves == 2);
  // A restart restores what was flushed.
  IdentityManager again(store, nullptr);
  REQUIRE(again.restore().ok());
  CHECK(again.acquire(labels("local")) == local);
}
