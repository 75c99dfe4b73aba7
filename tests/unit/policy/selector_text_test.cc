#include <catch2/catch.hpp>

#include "plexus/policy/selector.h"

using namespace plexus::policy;

namespace {
bool selects(const std::string& selector, const std::vector<std::string>& labels) {
  auto s = Selector::parseText(selector);
  INFO(selector);
  REQUIRE(s.ok());
  return s->matches(parseLabels(labels));
}
}  // namespace

TEST_CASE("label selector text: kubectl -l forms, keys without a source match any source", "[unit][policy]") {
  const std::vector<std::string> web = {"k8s:app=web", "k8s:tier=front", "k8s:io.kubernetes.pod.namespace=shop"};
  const std::vector<std::string> bare = {"app=web", "tier=front"};
  struct Case {
    const char* selector;
    bool on_web;
  };
  const Case cases[] = {
      {"app=web", true},          {"app==web", true},           {"app=api", false},
      {"app!=api", true},         {"app!=web", false},          {"app", true},
      {"!app", false},            {"!color", true},             {"color!=red", true},  // absent key: not red
      {"tier in (front,back)", true}, {"tier in (back)", false}, {"tier notin (back, side)", true},
      {"tier notin (front)", false},  {"app=web,tier=front", true}, {"app=web, tier=back", false},
      {"k8s:app=web", true},      {"reserved:host", false},     {"io.kubernetes.pod.namespace=shop", true},
      {" app = web ", true},      {"tier in (a,b),app", false},
  };
  for (const auto& c : cases) {
    INFO(c.selector);
    CHECK(selects(c.selector, web) == c.on_web);
  }
  // Labels stored without a source are matched the same way.
  CHECK(selects("app=web", bare));
  CHECK(selects("tier in (front)", bare));
  CHECK_FALSE(selects("!tier", bare));
}

TEST_CASE("label selector text: malformed selectors are refused with the selector named", "[unit][policy]") {
  for (const char* bad : {"", "=web", "app=web,", ",app", "tier in (a,b", "tier in a,b)", "app=w eb", "!", "a b=c",
                          "tier in ((a))", "app=(x)"}) {
    INFO(bad);
    auto s = Selector::parseText(bad);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message.find("label selector") == 0);
  }
  // An empty value is a value (Kubernetes allows "key=").
  CHECK(Selector::parseText("app=").ok());
  CHECK(Selector::parseText("app!=").ok());
}
