#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <thread>

#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/flow_store.h"
#include "plexus/events.h"

using namespace plexus;
using namespace plexus::agent;

namespace {
FlowRecord flow(const std::string& from_pod, const std::string& to_pod, uint8_t verdict, uint16_t dport,
                uint8_t proto = IPPROTO_TCP, int64_t t = 0) {
  FlowRecord f;
  f.time_unix_nano = t;
  f.verdict = verdict;
  f.protocol = proto;
  f.source.pod_namespace = "default";
  f.source.pod_name = from_pod;
  f.source.labels = {"app=" + from_pod};
  f.source.ip = *Ipv4::parse("10.0.0.1");
  f.source.identity = 300;
  f.destination.pod_namespace = to_pod == "db" ? "data" : "default";
  f.destination.pod_name = to_pod;
  f.destination.ip = *Ipv4::parse("10.0.0.2");
  f.destination.port = dport;
  f.destination.identity = 400;
  return f;
}

FlowFilter filter(const FlowFilterSpec& spec) {
  auto f = parseFlowFilter(spec);
  REQUIRE(f.ok());
  return *f;
}
}  // namespace

TEST_CASE("the flow ring keeps the newest flows up to its capacity", "[unit][flows]") {
  FlowStore store(3);
  for (uint16_t p = 1; p <= 5; ++p) {
    store.add(flow("a", "b", PLEXUS_VERDICT_FORWARDED, p));
  }
  CHECK(store.size() == 3);
  CHECK(store.seen() == 5);
  auto all = store.last(0, {});
  REQUIRE(all.size() == 3);
  CHECK(all.front().destination.port == 3);
  CHECK(all.back().destination.port == 5);
  auto two = store.last(2, {});
  REQUIRE(two.size() == 2);
  CHECK(two.front().destination.port == 4);
}

TEST_CASE("filters narrow by pod, direction, namespace, label, verdict, protocol, port, ip, identity, time",
          "[unit][flows]") {
  FlowStore store(100);
  store.add(flow("web", "api", PLEXUS_VERDICT_FORWARDED, 80, IPPROTO_TCP, 10));
  store.add(flow("web", "db", PLEXUS_VERDICT_DROPPED, 5432, IPPROTO_TCP, 20));
  store.add(flow("api", "db", PLEXUS_VERDICT_FORWARDED, 53, IPPROTO_UDP, 30));
  auto count = [&](const FlowFilterSpec& s) { return store.last(0, filter(s)).size(); };
  CHECK(count({}) == 3);
  CHECK(count({.pods = {"db"}}) == 2);
  CHECK(count({.pods = {"data/db"}}) == 2);
  CHECK(count({.pods = {"default/db"}}) == 0);
  CHECK(count({.from_pods = {"web"}}) == 2);
  CHECK(count({.to_pods = {"api"}}) == 1);
  CHECK(count({.namespaces = {"data"}}) == 2);
  CHECK(count({.labels = {"app=api"}}) == 1);
  CHECK(count({.labels = {"app"}}) == 3);
  CHECK(count({.verdicts = {"dropped"}}) == 1);
  CHECK(count({.verdicts = {"DROPPED", "FORWARDED"}}) == 3);
  CHECK(count({.protocols = {"udp"}}) == 1);
  CHECK(count({.ports = {5432}}) == 1);
  CHECK(count({.ips = {"10.0.0.2"}}) == 3);
  CHECK(count({.identities = {400}}) == 3);
  CHECK(count({.identities = {999}}) == 0);
  CHECK(count({.since_unix_nano = 20}) == 2);
  CHECK(count({.from_pods = {"web"}, .verdicts = {"FORWARDED"}}) == 1);  // fields AND
}

TEST_CASE("malformed filters are rejected with the bad value named", "[unit][flows]") {
  auto bad = parseFlowFilter({.verdicts = {"EXPLODED"}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("EXPLODED") != std::string::npos);
  CHECK_FALSE(parseFlowFilter({.protocols = {"QUIC"}}).ok());
  CHECK_FALSE(parseFlowFilter({.ips = {"10.0.0"}}).ok());
  CHECK_FALSE(parseFlowFilter({.ports = {70000}}).ok());
  CHECK_FALSE(parseFlowFilter({.labels = {"=x"}}).ok());
}

TEST_CASE("follow sees flows added after it started", "[unit][flows]") {
  FlowStore store(10);
  store.add(flow("old", "b", PLEXUS_VERDICT_FORWARDED, 1));
  uint64_t after = store.sequence();
  std::thread producer([&] { store.add(flow("new", "b", PLEXUS_VERDICT_FORWARDED, 2)); });
  std::vector<FlowRecord> got;
  for (int i = 0; i < 50 && got.empty(); ++i) {
    auto more = store.waitNewer(&after, {}, std::chrono::milliseconds(100));
    got.insert(got.end(), more.begin(), more.end());
  }
  producer.join();
  REQUIRE(got.size() == 1);
  CHECK(got[0].source.pod_name == "new");
}

TEST_CASE("decoded flows carry pod, labels and service, and keep them after the pod is gone", "[unit][flows]") {
  FlowDirectory dir;
  dir.upsertEndpoint(*Ipv4::parse("10.0.0.1"), {"default", "web", {"app=web"}, 3});
  dir.setServices({{"10.96.0.10:80/TCP", "default/web-svc"}});
  plexus_flow_event e{};
  e.timestamp_ns = 1000;
  e.verdict = PLEXUS_VERDICT_TRANSLATED;
  e.proto = IPPROTO_TCP;
  e.saddr = Ipv4::parse("10.0.0.1")->networkOrder();
  e.daddr = Ipv4::parse("10.0.0.9")->networkOrder();
  e.sport = htons(40000);
  e.dport = htons(8080);
  e.orig_daddr = Ipv4::parse("10.96.0.10")->networkOrder();
  e.orig_dport = htons(80);
  e.src_identity = 300;
  FlowStore store(10);
  store.add(decodeFlow(e, 5000, dir));
  dir.removeEndpoint(*Ipv4::parse("10.0.0.1"));
  auto flows = store.last(0, {});
  REQUIRE(flows.size() == 1);
  const auto& f = flows[0];
  CHECK(f.time_unix_nano == 6000);
  CHECK(f.source.pod_name == "web");
  CHECK(f.source.labels == std::vector<std::string>{"app=web"});
  CHECK(f.source.port == 40000);
  CHECK(f.destination.port == 8080);
  CHECK(f.destination.pod_name.empty());
  CHECK(f.service == "default/web-svc");
  CHECK(f.service_frontend == "10.96.0.10:80");
}
