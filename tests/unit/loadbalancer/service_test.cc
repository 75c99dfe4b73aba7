#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <cstring>
#include <set>

#include "plexus/lb/planner.h"
#include "plexus/lb/service.h"

using namespace plexus;
using namespace plexus::lb;

namespace {
nlohmann::json svcJson(const std::string& name, const std::string& type = "ClusterIP") {
  return nlohmann::json::parse(R"({"apiVersion":"v1","kind":"Service","metadata":{"name":")" + name +
                               R"(","namespace":"default"},"spec":{"type":")" + type +
                               R"(","clusterIP":"10.96.0.10","selector":{"app":"web"},
      "ports":[{"name":"http","port":80,"targetPort":"http"}]}})");
}

Service svc(const std::string& name, const std::string& type = "ClusterIP") {
  auto s = parseService(svcJson(name, type));
  REQUIRE(s.ok());
  return *s;
}

PodRecord pod(const std::string& name, const std::string& ip, uint16_t http_port, bool ready = true,
              bool terminating = false) {
  PodRecord p;
  p.ns = "default";
  p.name = name;
  p.labels = {{"app", "web"}};
  p.ip = Ipv4::parse(ip);
  p.ready = ready;
  p.terminating = terminating;
  p.named_ports["http"] = {http_port, 6};
  return p;
}

PlannerConfig config() {
  PlannerConfig c;
  c.node_name = "n1";
  c.node_ips = {*Ipv4::parse("192.168.1.10")};
  c.maglev_m = 251;
  c.seed = *parseMaglevSeed(kDefaultMaglevSeed);
  return c;
}
}  // namespace

TEST_CASE("Service manifests parse, and bad fields are named", "[unit][service]") {
  auto s = svc("web");
  CHECK(s.cluster_ip == Ipv4::parse("10.96.0.10"));
  CHECK(s.ports[0].target_port == "http");
  auto bad = svcJson("web");
  bad["spec"]["ports"][0]["port"] = 70000;
  auto r = parseService(bad);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "Service default/web: spec.ports[0].port: must be 1-65535");
  bad = svcJson("web", "NodePort");
  bad["spec"]["ports"][0]["nodePort"] = 80;
  CHECK(parseService(bad).error().message.find("spec.ports[0].nodePort") != std::string::npos);
  bad = svcJson("web");
  bad["spec"]["ports"][0]["protocol"] = "ICMP";
  CHECK_FALSE(parseService(bad).ok());
  bad = svcJson("web");
  bad["spec"]["type"] = "ExternalName";
  CHECK_FALSE(parseService(bad).ok());
}

TEST_CASE("EndpointSlice conditions and derived endpoints with named ports", "[unit][service]") {
  auto es = parseEndpointSlice(nlohmann::json::parse(R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
    "metadata":{"name":"web-abc","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},
    "addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],
    "endpoints":[{"addresses":["10.0.0.1"]},
                 {"addresses":["10.0.0.2"],"conditions":{"ready":false,"serving":true,"terminating":true}}]})"));
  REQUIRE(es.ok());
  CHECK(es->endpoints[0].ready);
  CHECK(es->endpoints[1].terminating);
  CHECK_FALSE(parseEndpointSlice(nlohmann::json::parse(
                  R"({"metadata":{"name":"x","namespace":"default"},"endpoints":[]})"))
                  .ok());

  auto derived = deriveSlices(svc("web"), {pod("a", "10.0.0.5", 8080), pod("b", "10.0.0.6", 9090)});
  size_t n = 0;
  for (const auto& d : derived) {
    n += d.endpoints.size();
  }
  CHECK(n == 2);
  PodRecord other = pod("c", "10.0.0.7", 8080);
  other.labels = {{"app", "db"}};
  PodRecord noname = pod("d", "10.0.0.8", 8080);
  noname.named_ports.clear();
  CHECK(deriveSlices(svc("web"), {other, noname}).empty());
}

TEST_CASE("the planner writes frontends, slots, backends and reverse NAT; terminating backends stay out of slots",
          "[unit][planner]") {
  Planner planner(config());
  auto s = svc("web");
  auto slices = deriveSlices(s, {pod("a", "10.0.0.5", 8080), pod("b", "10.0.0.6", 8080, true, true)});
  auto st = planner.compute({s}, slices);
  auto master = st.services.at(makeLbKey(*Ipv4::parse("10.96.0.10"), 80, 6, PLEXUS_LB_SCOPE_EXTERNAL, 0));
  CHECK(master.count == 1);
  CHECK(master.flags & PLEXUS_SVC_F_CLUSTERIP);
  CHECK_FALSE(master.flags & PLEXUS_SVC_F_MAGLEV);  // ClusterIP: east-west, no Maglev table
  CHECK(st.backends.size() == 2);                    // the terminating one stays for its existing flows
  auto slot = st.services.at(makeLbKey(*Ipv4::parse("10.96.0.10"), 80, 6, PLEXUS_LB_SCOPE_EXTERNAL, 1));
  CHECK(st.backends.at(slot.backend_id).state == PLEXUS_BACKEND_ACTIVE);
  CHECK(ntohs(st.backends.at(slot.backend_id).port) == 8080);
  CHECK(st.revnat.count(master.rev_nat_index) == 1);
  CHECK(st.maglev.empty());
}

TEST_CASE("NodePort gets an allocated port in range, node frontends and a Maglev table", "[unit][planner]") {
  Planner planner(config());
  auto s = svc("web", "NodePort");
  auto st = planner.compute({s}, deriveSlices(s, {pod("a", "10.0.0.5", 8080), pod("b", "10.0.0.6", 8080)}));
  uint16_t np = planner.nodePort(s.key(), s.ports[0]);
  CHECK(np >= 30000);
  CHECK(np <= 32767);
  auto master = st.services.at(makeLbKey(*Ipv4::parse("192.168.1.10"), np, 6, PLEXUS_LB_SCOPE_EXTERNAL, 0));
  CHECK(master.flags & PLEXUS_SVC_F_NODEPORT);
  CHECK(master.flags & PLEXUS_SVC_F_MAGLEV);
  REQUIRE(st.maglev.count(master.rev_nat_index));
  CHECK(st.maglev.at(master.rev_nat_index).slots.size() == 251);
  // Recomputing keeps the port and the ids.
  auto again = planner.compute({s}, deriveSlices(s, {pod("a", "10.0.0.5", 8080), pod("b", "10.0.0.6", 8080)}));
  CHECK(planner.nodePort(s.key(), s.ports[0]) == np);
  CHECK(Planner::diff(st, again).size() == 0);
}

TEST_CASE("the planner keeps Maglev digests only; a plan writes a whole table when its backends change",
          "[unit][planner]") {
  Planner planner(config());
  auto s = svc("web", "NodePort");
  auto two = deriveSlices(s, {pod("a", "10.0.0.5", 8080), pod("b", "10.0.0.6", 8080)});
  auto st = planner.compute({s}, two);
  REQUIRE(st.maglev.size() == 1);
  auto [rid, table] = *st.maglev.begin();
  REQUIRE(table.slots.size() == 251);
  CHECK(table.digest == MaglevTable::of(table.slots).digest);
  // Between changes the planner holds the digest, not the slots.
  auto held = planner.current();
  REQUIRE(held.maglev.count(rid));
  CHECK(held.maglev.at(rid).slots.empty());
  CHECK(held.maglev.at(rid) == table);
  // The same backends again: nothing to write.
  auto same = planner.update({{s.key(), s}}, {{s.key(), two}});
  CHECK(planner.plan(same).maglev_upserts.empty());
  // A third backend: the table is written whole, and differs.
  auto three = deriveSlices(s, {pod("a", "10.0.0.5", 8080), pod("b", "10.0.0.6", 8080), pod("c", "10.0.0.7", 8080)});
  auto grown = planner.update({{s.key(), s}}, {{s.key(), three}});
  auto plan = planner.plan(grown);
  REQUIRE(plan.maglev_upserts.size() == 1);
  CHECK(plan.maglev_upserts[0].first == rid);
  CHECK(plan.maglev_upserts[0].second.size() == 251);
  CHECK(MaglevTable::of(plan.maglev_upserts[0].second).digest != table.digest);
  // The views name the frontends and their backends from the flat state.
  auto views = planner.frontends(s.key());
  REQUIRE(views.size() == 2);  // the ClusterIP and the NodePort on the node's address
  for (const auto& v : views) {
    CHECK(v.service == s.key());
    CHECK(v.backends.size() == 3);
    CHECK((v.type == "ClusterIP" || v.type == "NodePort"));
    CHECK(v.maglev == (v.type == "NodePort"));
  }
  CHECK(planner.counts().services == 1);
  CHECK(planner.counts().frontends == 2);
  CHECK(planner.counts().backends == 3);
}

TEST_CASE("no backends is a master entry with count 0 (the datapath refuses)", "[unit][planner]") {
  Planner planner(config());
  auto st = planner.compute({svc("web")}, {});
  auto master = st.services.at(makeLbKey(*Ipv4::parse("10.96.0.10"), 80, 6, PLEXUS_LB_SCOPE_EXTERNAL, 0));
  CHECK(master.count == 0);
  CHECK(st.services.size() == 1);
}

TEST_CASE("adding one service to thousands produces only that service's operations", "[unit][planner]") {
  Planner planner(config());
  std::vector<Service> services;
  std::vector<EndpointSlice> slices;
  for (int i = 0; i < 2000; ++i) {
    Service s = svc("svc" + std::to_string(i));
    s.cluster_ip = Ipv4(Ipv4::parse("10.96.0.0")->hostOrder() + 1 + static_cast<uint32_t>(i));
    s.ports[0].target_port = "8080";
    services.push_back(s);
    EndpointSlice es;
    es.ns = "default";
    es.name = s.name;
    es.service = s.name;
    es.ports = {{"http", 6, 8080}};
    es.endpoints = {{Ipv4(Ipv4::parse("10.1.0.0")->hostOrder() + 1 + static_cast<uint32_t>(i)), true, true, false, ""}};
    slices.push_back(es);
  }
  auto before = planner.compute(services, slices);
  Service extra = svc("extra");
  extra.cluster_ip = Ipv4::parse("10.97.0.1");
  services.push_back(extra);
  auto after = planner.compute(services, slices);
  auto plan = Planner::diff(before, after);
  CHECK(plan.service_upserts.size() == 1);  // the new master, no backends
  CHECK(plan.revnat_upserts.size() == 1);
  CHECK(plan.backend_upserts.empty());
  CHECK(plan.service_deletes.empty());
}

TEST_CASE("internalTrafficPolicy Local adds an internal entry with local backends, announced by TWO_SCOPES",
          "[unit][planner]") {
  Planner planner(config());
  auto j = svcJson("web");
  j["spec"]["internalTrafficPolicy"] = "Local";
  auto s = parseService(j);
  REQUIRE(s.ok());
  EndpointSlice es;
  es.ns = "default";
  es.name = "web-1";
  es.service = "web";
  es.ports = {{"http", 6, 8080}};
  es.endpoints = {{*Ipv4::parse("10.0.0.5"), true, true, false, "n1"}, {*Ipv4::parse("10.0.0.6"), true, true, false, "n2"}};
  auto st = planner.compute({*s}, {es});
  auto ext = st.services.at(makeLbKey(*Ipv4::parse("10.96.0.10"), 80, 6, PLEXUS_LB_SCOPE_EXTERNAL, 0));
  auto in = st.services.at(makeLbKey(*Ipv4::parse("10.96.0.10"), 80, 6, PLEXUS_LB_SCOPE_INTERNAL, 0));
  CHECK(ext.count == 2);
  CHECK(ext.flags & PLEXUS_SVC_F_TWO_SCOPES);
  CHECK(in.count == 1);  // only the backend on this node (n1)
  // A plain service has one scope and no flag.
  Planner plain(config());
  auto st2 = plain.compute({svc("web")}, {es});
  CHECK_FALSE(st2.services.at(makeLbKey(*Ipv4::parse("10.96.0.10"), 80, 6, PLEXUS_LB_SCOPE_EXTERNAL, 0)).flags &
              PLEXUS_SVC_F_TWO_SCOPES);
}

TEST_CASE("incremental updates keep the installed state equal to a full computation", "[unit][planner]") {
  // Services s0..s19 with distinct ClusterIPs; backends shared between services (same pods), so a backend may only
  // go when its last user goes.
  auto service = [](int i, const std::string& type = "ClusterIP") {
    auto j = svcJson("s" + std::to_string(i), type);
    j["spec"]["clusterIP"] = "10.96.1." + std::to_string(i + 1);
    auto s = parseService(j);
    REQUIRE(s.ok());
    return *s;
  };
  auto slicesFor = [](const Service& s, const std::vector<PodRecord>& pods) {
    return std::vector<EndpointSlice>(deriveSlices(s, pods));
  };
  std::vector<PodRecord> pods_a = {pod("a", "10.0.0.5", 8080), pod("b", "10.0.0.6", 8080)};
  std::vector<PodRecord> pods_b = {pod("b", "10.0.0.6", 8080), pod("c", "10.0.0.7", 8080)};

  Planner inc(config());
  MapState installed;
  std::map<std::string, Service> live;
  std::map<std::string, std::vector<EndpointSlice>> live_slices;
  auto step = [&](std::map<std::string, std::optional<Service>> changed,
                  std::map<std::string, std::vector<EndpointSlice>> slices) {
    auto c = inc.update(changed, slices);
    // What ServiceManager does: the change's plan, written into the maps.
    applyPlan(&installed, inc.plan(c));
    for (const auto& [key, s] : changed) {
      if (s) {
        live[key] = *s;
        live_slices[key] = slices[key];
      } else {
        live.erase(key);
        live_slices.erase(key);
      }
    }
    // The incremental state equals what the planner would compute from everything, byte for byte.
    auto full = inc.current();
    CHECK(Planner::diff(installed, full).size() == 0);
    CHECK(installed.backends.size() == full.backends.size());
    CHECK(installed.services.size() == full.services.size());
  };
  for (int i = 0; i < 20; ++i) {
    auto s = service(i, i % 5 == 0 ? "NodePort" : "ClusterIP");
    step({{s.key(), s}}, {{s.key(), slicesFor(s, pods_a)}});
  }
  auto full_before = inc.current();
  uint16_t rid_s3 = 0;
  for (const auto& [k, v] : full_before.services) {
    if (k.address == Ipv4::parse("10.96.1.4")->networkOrder() && k.backend_slot == 0) {
      rid_s3 = v.rev_nat_index;
    }
  }
  REQUIRE(rid_s3 != 0);
  CHECK(full_before.backends.size() == 2);  // a and b, shared by all twenty
  // s1 moves to pods b and c: backend c appears, a stays (others use it).
  auto s1 = service(1);
  step({{s1.key(), s1}}, {{s1.key(), slicesFor(s1, pods_b)}});
  CHECK(inc.current().backends.size() == 3);
  // Every other service moves to b and c as well: a goes when its last user goes.
  for (int i = 0; i < 20; ++i) {
    auto s = service(i, i % 5 == 0 ? "NodePort" : "ClusterIP");
    step({{s.key(), s}}, {{s.key(), slicesFor(s, pods_b)}});
  }
  CHECK(inc.current().backends.size() == 2);
  // Deleting services frees their entries; an unchanged service keeps its reverse-NAT index throughout.
  step({{"default/s0", std::nullopt}, {"default/s2", std::nullopt}}, {});
  for (const auto& [k, v] : inc.current().services) {
    if (k.address == Ipv4::parse("10.96.1.4")->networkOrder() && k.backend_slot == 0) {
      CHECK(v.rev_nat_index == rid_s3);
    }
    CHECK(k.address != Ipv4::parse("10.96.1.1")->networkOrder());
  }
  // A full computation from the same inputs on a fresh planner has the same shape.
  std::vector<Service> all;
  std::vector<EndpointSlice> all_slices;
  for (const auto& [k, s] : live) {
    all.push_back(s);
    all_slices.insert(all_slices.end(), live_slices[k].begin(), live_slices[k].end());
  }
  Planner fresh(config());
  auto f = fresh.compute(all, all_slices);
  CHECK(f.services.size() == installed.services.size());
  CHECK(f.backends.size() == installed.backends.size());
  CHECK(f.frontends.size() == inc.current().frontends.size());
}

TEST_CASE("a restarted planner adopts the installed ids, writes nothing for unchanged services and removes stale ones",
          "[unit][planner]") {
  // Services and their one backend each: ClusterIP 10.96.0.<i>, backend 10.1.0.<i>:8080.
  auto make = [](int i) {
    Service s = svc("svc" + std::to_string(i), i == 3 ? "NodePort" : "ClusterIP");
    s.cluster_ip = Ipv4(Ipv4::parse("10.96.0.0")->hostOrder() + static_cast<uint32_t>(i));
    s.ports[0].target_port = "8080";
    EndpointSlice es;
    es.ns = "default";
    es.name = s.name;
    es.service = s.name;
    es.ports = {{"http", 6, 8080}};
    es.endpoints = {{Ipv4(Ipv4::parse("10.1.0.0")->hostOrder() + static_cast<uint32_t>(i)), true, true, false, ""}};
    return std::make_pair(s, es);
  };
  // The first run learns the services in an order unlike a full computation's (sorted by name): reverse-NAT
  // indexes 1, 2-3 (ClusterIP and NodePort), 4 and 5 go to svc4, svc3, svc2 and svc1.
  Planner first(config());
  MapState installed;
  for (int i : {4, 3, 2, 1}) {
    auto [s, es] = make(i);
    auto change = first.update({{s.key(), s}}, {{s.key(), {es}}});
    applyPlan(&installed, first.plan(change));
  }
  auto revnat = [](const MapState& st, int i) {
    auto k = makeLbKey(Ipv4(Ipv4::parse("10.96.0.0")->hostOrder() + static_cast<uint32_t>(i)), 80, 6,
                       PLEXUS_LB_SCOPE_EXTERNAL, 0);
    return st.services.at(k).rev_nat_index;
  };
  REQUIRE(revnat(installed, 4) == 1);
  REQUIRE(revnat(installed, 1) == 5);

  // The restart: svc1 was deleted meanwhile and svc5 added. A fresh planner given the maps' contents keeps
  // every survivor's ids; the diff writes only svc5 and removes svc1.
  Planner second(config());
  second.restore(installed);
  std::vector<Service> services;
  std::vector<EndpointSlice> slices;
  for (int i : {2, 3, 4, 5}) {
    auto [s, es] = make(i);
    services.push_back(s);
    slices.push_back(es);
  }
  auto desired = second.compute(services, slices);
  for (int i : {2, 3, 4}) {
    CHECK(revnat(desired, i) == revnat(installed, i));
  }
  CHECK(revnat(desired, 5) > 5);  // a new service never takes an adopted index, even svc1's during the restore
  size_t kept = 0;
  for (const auto& [id, b] : desired.backends) {
    auto it = installed.backends.find(id);
    kept += it != installed.backends.end() && std::memcmp(&it->second, &b, sizeof(b)) == 0;
  }
  CHECK(kept == 3);  // svc2-4's backends keep their ids
  auto plan = Planner::diff(installed, desired);
  std::set<uint16_t> upserted_revnat;
  for (const auto& [id, r] : plan.revnat_upserts) {
    upserted_revnat.insert(id);
  }
  CHECK(upserted_revnat == std::set<uint16_t>{revnat(desired, 5)});
  CHECK(plan.revnat_deletes == std::vector<uint16_t>{revnat(installed, 1)});
  CHECK(plan.backend_upserts.size() == 1);  // svc5's backend
  CHECK(plan.backend_deletes.size() == 1);  // svc1's backend
  for (const auto& [k, v] : plan.service_upserts) {
    CHECK(v.rev_nat_index == revnat(desired, 5));
  }
  // The NodePort service's Maglev table has the same backend ids as before, hence the same table.
  CHECK(desired.maglev == installed.maglev);
  // Once the restore is over, the ids nobody claimed (svc1's) are free for later services.
  auto [s6, es6] = make(6);
  auto change = second.update({{s6.key(), s6}}, {{s6.key(), {es6}}});
  std::set<uint16_t> in_use;
  for (const auto& [id, r] : desired.revnat) {
    in_use.insert(id);
  }
  REQUIRE(change.after.revnat.size() == 1);
  CHECK_FALSE(in_use.count(change.after.revnat.begin()->first));
}
