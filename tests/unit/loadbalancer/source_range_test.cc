// spec.loadBalancerSourceRanges (parsed, planned into plexus_lb4_source_range_v1 and the SOURCE_RANGE flag) and
// kube-proxy's healthCheckNodePort answer.
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include "plexus/lb/health_check.h"
#include "plexus/lb/planner.h"
#include "plexus/lb/service.h"

using namespace plexus;
using namespace plexus::lb;

namespace {
Ipv4 ip(const char* s) { return *Ipv4::parse(s); }

// A LoadBalancer "web" (port 80 -> 8080, nodePort 30080) with status.loadBalancer.ingress 203.0.113.7.
nlohmann::json lbJson(const nlohmann::json& ranges = nullptr) {
  auto j = nlohmann::json::parse(R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"},
    "spec":{"type":"LoadBalancer","clusterIP":"10.96.0.10",
            "ports":[{"name":"http","port":80,"targetPort":8080,"nodePort":30080}]},
    "status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"}]}}})");
  if (!ranges.is_null()) {
    j["spec"]["loadBalancerSourceRanges"] = ranges;
  }
  return j;
}

Service parsed(const nlohmann::json& j) {
  auto s = parseService(j);
  REQUIRE(s.ok());
  return *s;
}

EndpointSlice slice(std::vector<EndpointAddress> eps) {
  EndpointSlice es;
  es.ns = "shop";
  es.name = "web-1";
  es.service = "web";
  es.ports = {{"http", 6, 8080}};
  es.endpoints = std::move(eps);
  return es;
}

PlannerConfig config() {
  PlannerConfig c;
  c.node_name = "n1";
  c.node_ips = {ip("192.168.1.10")};
  c.maglev = false;
  return c;
}

const plexus_lb4_service& masterOf(const MapState& st, const char* addr, uint16_t port) {
  return st.services.at(makeLbKey(ip(addr), port, 6, PLEXUS_LB_SCOPE_EXTERNAL, 0));
}

// The ranges the state holds for a frontend's reverse-NAT index, as "a.b.c.d/n".
std::set<std::string> rangesOf(const MapState& st, uint16_t rev_nat_index) {
  std::set<std::string> out;
  for (const auto& k : st.source_ranges) {
    if (k.rev_nat_index == rev_nat_index) {
      out.insert(Ipv4Prefix(Ipv4::fromNetwork(k.address), static_cast<int>(k.prefixlen) - 32).toString());
    }
  }
  return out;
}
}  // namespace

TEST_CASE("loadBalancerSourceRanges parse: CIDRs kept (masked, once), IPv6 ignored, malformed set aside",
          "[unit][service][source-range]") {
  auto s = parsed(lbJson({" 198.51.100.0/24 ", "10.1.2.3/16", "198.51.100.9/24", "2001:db8::/32", "10.0.0.300/8",
                          "nonsense", "192.0.2.1"}));
  CHECK(s.source_ranges_set);
  REQUIRE(s.source_ranges.size() == 2);
  CHECK(s.source_ranges[0].toString() == "198.51.100.0/24");
  CHECK(s.source_ranges[1].toString() == "10.1.0.0/16");
  // A bare address is no CIDR (the API server refuses it); IPv6 holds no IPv4 client and is not malformed.
  CHECK(s.invalid_source_ranges == std::vector<std::string>{"10.0.0.300/8", "nonsense", "192.0.2.1"});

  CHECK_FALSE(parsed(lbJson()).source_ranges_set);
  CHECK_FALSE(parsed(lbJson(nlohmann::json::array())).source_ranges_set);
  auto notAList = parseService(lbJson("10.0.0.0/8"));
  REQUIRE_FALSE(notAList.ok());
  CHECK(notAList.error().message == "Service shop/web: spec.loadBalancerSourceRanges: must be a list of CIDRs");

  bool v6 = false;
  CHECK_FALSE(parseSourceRange("fd00::/8", &v6));
  CHECK(v6);
  CHECK_FALSE(parseSourceRange("10.0.0.0/33", &v6));
  CHECK_FALSE(v6);
  CHECK(parseSourceRange("0.0.0.0/0", &v6)->length() == 0);
}

TEST_CASE("source ranges guard the LoadBalancer frontends only, keyed by their reverse-NAT index",
          "[unit][planner][source-range]") {
  Planner planner(config());
  auto s = parsed(lbJson({"198.51.100.0/24", "10.1.0.0/16"}));
  auto st = planner.compute({s}, {slice({{ip("10.0.0.5"), true, true, false, "n1"}})});
  const auto& lb = masterOf(st, "203.0.113.7", 80);
  CHECK(lb.flags & PLEXUS_SVC_F_LOADBALANCER);
  CHECK(lb.flags & PLEXUS_SVC_F_SOURCE_RANGE);
  CHECK(rangesOf(st, lb.rev_nat_index) == std::set<std::string>{"198.51.100.0/24", "10.1.0.0/16"});
  CHECK(st.source_ranges.size() == 2);
  for (const auto& k : st.source_ranges) {
    CHECK(k.pad == 0);
  }
  // kube-proxy and Cilium leave the NodePort and the clusterIP open.
  CHECK_FALSE(masterOf(st, "192.168.1.10", 30080).flags & PLEXUS_SVC_F_SOURCE_RANGE);
  CHECK_FALSE(masterOf(st, "10.96.0.10", 80).flags & PLEXUS_SVC_F_SOURCE_RANGE);
  // Backend slots never carry the flag.
  CHECK_FALSE(st.services.at(makeLbKey(ip("203.0.113.7"), 80, 6, PLEXUS_LB_SCOPE_EXTERNAL, 1)).flags &
              PLEXUS_SVC_F_SOURCE_RANGE);

  // Without ranges: no flag, no entries.
  Planner open(config());
  auto st2 = open.compute({parsed(lbJson())}, {});
  CHECK_FALSE(masterOf(st2, "203.0.113.7", 80).flags & PLEXUS_SVC_F_SOURCE_RANGE);
  CHECK(st2.source_ranges.empty());
}

TEST_CASE("only malformed ranges close the service (flag without entries), never open it",
          "[unit][planner][source-range]") {
  Planner planner(config());
  auto s = parsed(lbJson({"10.0.0/8", "bogus"}));
  CHECK(s.source_ranges.empty());
  auto st = planner.compute({s}, {});
  CHECK(masterOf(st, "203.0.113.7", 80).flags & PLEXUS_SVC_F_SOURCE_RANGE);
  CHECK(st.source_ranges.empty());
}

TEST_CASE("changing the ranges plans the difference: new entries before the masters, old ones deleted",
          "[unit][planner][source-range]") {
  Planner planner(config());
  auto before = planner.compute({parsed(lbJson({"198.51.100.0/24", "10.1.0.0/16"}))}, {});
  uint16_t rid = masterOf(before, "203.0.113.7", 80).rev_nat_index;

  // Incremental: one range replaced.
  std::map<std::string, std::optional<Service>> changed{{"shop/web", parsed(lbJson({"198.51.100.0/24", "172.16.0.0/12"}))}};
  auto change = planner.update(changed, {});
  auto plan = planner.plan(change);
  REQUIRE(plan.source_range_upserts.size() == 1);
  CHECK(plan.source_range_upserts[0].rev_nat_index == rid);
  CHECK(plan.source_range_upserts[0].prefixlen == 32 + 12);
  CHECK(plan.source_range_upserts[0].address == ip("172.16.0.0").networkOrder());
  REQUIRE(plan.source_range_deletes.size() == 1);
  CHECK(plan.source_range_deletes[0].address == ip("10.1.0.0").networkOrder());
  CHECK(plan.service_upserts.empty());  // the master is unchanged
  MapState installed = before;
  applyPlan(&installed, plan);
  CHECK(rangesOf(installed, rid) == std::set<std::string>{"198.51.100.0/24", "172.16.0.0/12"});

  // The field removed: the flag goes and every entry with it.
  changed["shop/web"] = parsed(lbJson());
  auto change2 = planner.update(changed, {});
  auto plan2 = planner.plan(change2);
  CHECK(plan2.source_range_deletes.size() == 2);
  REQUIRE(plan2.service_upserts.size() == 1);
  CHECK_FALSE(plan2.service_upserts[0].second.flags & PLEXUS_SVC_F_SOURCE_RANGE);
  applyPlan(&installed, plan2);
  CHECK(installed.source_ranges.empty());

  // The service deleted with its ranges: everything goes, and a full computation agrees.
  changed["shop/web"] = parsed(lbJson({"198.51.100.0/24"}));
  auto change3 = planner.update(changed, {});
  applyPlan(&installed, planner.plan(change3));
  changed["shop/web"] = std::nullopt;
  auto change4 = planner.update(changed, {});
  auto plan4 = planner.plan(change4);
  CHECK(plan4.source_range_deletes.size() == 1);
  applyPlan(&installed, plan4);
  CHECK(installed.source_ranges.empty());
  CHECK(installed.services.empty());
}

TEST_CASE("healthCheckNodePort: parsed for ETP=Local LoadBalancers, local ready endpoints counted",
          "[unit][service][health-check]") {
  auto j = lbJson();
  j["spec"]["externalTrafficPolicy"] = "Local";
  j["spec"]["healthCheckNodePort"] = 31999;
  auto s = parsed(j);
  CHECK(s.health_check_node_port == 31999);
  // Cluster policy: the API server drops the field, so do we.
  auto cluster = lbJson();
  cluster["spec"]["healthCheckNodePort"] = 31999;
  CHECK(parsed(cluster).health_check_node_port == 0);
  CHECK_FALSE(healthCheckOf(parsed(cluster), {}, "n1"));
  auto badPort = j;
  badPort["spec"]["healthCheckNodePort"] = "x";
  CHECK_FALSE(parseService(badPort).ok());

  auto none = healthCheckOf(s, {}, "n1");
  REQUIRE(none);
  CHECK(none->port == 31999);
  CHECK(none->local_endpoints == 0);
  auto es = slice({{ip("10.0.0.5"), true, true, false, "n1"},
                   {ip("10.0.0.6"), true, true, false, "n2"},    // another node's
                   {ip("10.0.0.7"), false, true, true, "n1"},    // terminating
                   {ip("10.0.0.8"), false, false, false, "n1"},  // not ready
                   {ip("10.0.0.9"), true, true, false, ""}});    // no nodeName: local, as the planner takes it
  auto other = es;
  other.name = "web-2";
  other.endpoints = {{ip("10.0.0.5"), true, true, false, "n1"}};  // the same address twice counts once
  auto hc = healthCheckOf(s, {es, other}, "n1");
  REQUIRE(hc);
  CHECK(hc->local_endpoints == 2);
  CHECK(hc->ns == "shop");
  CHECK(hc->name == "web");
  CHECK(healthCheckOf(s, {es}, "n2")->local_endpoints == 2);  // 10.0.0.6 and the one without a node
}

TEST_CASE("health check answers are kube-proxy's: 200 with the count, 503 with none or an unhealthy proxy",
          "[unit][health-check]") {
  HealthCheck hc{"shop", "web", 31999, 2};
  auto ok = healthCheckAnswer(hc, true);
  CHECK(ok.status == 200);
  CHECK(ok.body ==
        "{\n\t\"service\": {\n\t\t\"namespace\": \"shop\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n"
        "\t\"serviceProxyHealthy\": true\n}");
  auto j = nlohmann::json::parse(ok.body);
  CHECK(j["service"]["namespace"] == "shop");
  CHECK(j["localEndpoints"] == 2);

  hc.local_endpoints = 0;
  auto none = healthCheckAnswer(hc, true);
  CHECK(none.status == 503);
  CHECK(nlohmann::json::parse(none.body)["localEndpoints"] == 0);

  hc.local_endpoints = 3;
  auto sick = healthCheckAnswer(hc, false);
  CHECK(sick.status == 503);
  CHECK(nlohmann::json::parse(sick.body)["serviceProxyHealthy"] == false);
}
