#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <thread>

#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/flow_store.h"
#include "plexus/events.h"
#include "plexus/reasons.h"

using namespace plexus;
using namespace plexus::agent;

namespace {
FlowRecord flow(const std::string& from_pod, const std::string& to_pod, uint8_t verdict, uint16_t dport,
                uint8_t proto = IPPROTO_TCP, int64_t t = 0) {
  FlowRecord f;
  f.time_unix_nano = t;
  f.verdict = verdict;
  f.protocol = proto;
  f.source.pod = std::make_shared<FlowPod>(FlowPod{"default", from_pod, {"app=" + from_pod}});
  f.source.ip = *Ipv4::parse("10.0.0.1");
  f.source.identity = 300;
  f.destination.pod = std::make_shared<FlowPod>(FlowPod{to_pod == "db" ? "data" : "default", to_pod, {}});
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

TEST_CASE("namespaces with flows are listed sorted, outlive the ring, and are forgotten an hour after their last",
          "[unit][flows]") {
  constexpr int64_t kMinute = 60'000'000'000;
  FlowStore store(2);
  store.add(flow("web", "db", PLEXUS_VERDICT_FORWARDED, 5432, IPPROTO_TCP, 1 * kMinute));  // default -> data
  FlowRecord world = flow("web", "x", PLEXUS_VERDICT_DROPPED, 80, IPPROTO_TCP, 2 * kMinute);
  world.source.pod = std::make_shared<FlowPod>(FlowPod{"shop", "web", {}});
  world.destination.pod = nullptr;  // a peer outside the cluster has no namespace
  store.add(world);
  store.add(flow("a", "b", PLEXUS_VERDICT_FORWARDED, 80, IPPROTO_TCP, 3 * kMinute));
  CHECK(store.size() == 2);  // the first flow left the ring; its namespaces stay
  CHECK(store.namespacesSince(0) == std::vector<std::string>{"data", "default", "shop"});
  CHECK(store.namespacesSince(2 * kMinute) == std::vector<std::string>{"default", "shop"});
  CHECK(store.namespacesSince(4 * kMinute).empty());

  // Past the hour, a namespace without new flows goes as flows keep arriving (checked every 4,096 flows).
  for (int i = 0; i < 4096; ++i) {  // at 62 minutes: data's last flow is 61 minutes old, shop's 60
    store.add(flow("a", "b", PLEXUS_VERDICT_FORWARDED, 80, IPPROTO_TCP, 62 * kMinute));
  }
  CHECK(store.namespacesSince(0) == std::vector<std::string>{"default", "shop"});
}

TEST_CASE("the flow rate is the last minute's flows per second, or over the full ring's span when it is shorter",
          "[unit][flows]") {
  constexpr int64_t kSecond = 1'000'000'000;
  const int64_t now = 1000 * kSecond;
  FlowStore empty(8);
  CHECK(empty.rate(now) == 0.0);
  FlowStore store(100);
  store.add(flow("a", "b", PLEXUS_VERDICT_FORWARDED, 80, IPPROTO_TCP, now - 90 * kSecond));  // before the minute
  for (int i = 0; i < 30; ++i) {
    store.add(flow("a", "b", PLEXUS_VERDICT_FORWARDED, 80, IPPROTO_TCP, now - 30 * kSecond + i * kSecond));
  }
  CHECK(store.rate(now) == Approx(0.5));  // 30 flows in 60 s
  // A full ring of 10 flows over the last 5 seconds: 10 flows in the 5 s since the oldest.
  FlowStore small(10);
  for (int i = 0; i < 10; ++i) {
    small.add(flow("a", "b", PLEXUS_VERDICT_FORWARDED, 80, IPPROTO_TCP, now - 5 * kSecond + i * kSecond / 2));
  }
  CHECK(small.rate(now) == Approx(2.0));
}

TEST_CASE("filters narrow by pod, direction, namespace, label, verdict, protocol, port, ip, identity, time",
          "[unit][flows]") {
  FlowStore store(100);
  store.add(flow("web", "api", PLEXUS_VERDICT_FORWARDED, 80, IPPROTO_TCP, 10));
  store.add(flow("web", "db", PLEXUS_VERDICT_DROPPED, 5432, IPPROTO_TCP, 20));
  store.add(flow("api", "db", PLEXUS_VERDICT_FORWARDED, 53, IPPROTO_UDP, 30));
  auto count = [&](const FlowFilterSpec& s) { return store.last(0, {.allow = {filter(s)}}).size(); };
  CHECK(count({}) == 3);
  CHECK(count({.either = {.pods = {"db"}}}) == 0);  // a bare name is in namespace default
  CHECK(count({.either = {.pods = {"data/db"}}}) == 2);
  CHECK(count({.either = {.pods = {"default/db"}}}) == 0);
  CHECK(count({.source = {.pods = {"web"}}}) == 2);
  CHECK(count({.destination = {.pods = {"api"}}}) == 1);
  CHECK(count({.either = {.namespaces = {"data"}}}) == 2);
  CHECK(count({.either = {.labels = {"app=api"}}}) == 1);
  CHECK(count({.either = {.labels = {"app"}}}) == 3);
  CHECK(count({.verdicts = {"dropped"}}) == 1);
  CHECK(count({.verdicts = {"DROPPED", "FORWARDED"}}) == 3);
  CHECK(count({.protocols = {"udp"}}) == 1);
  CHECK(count({.either = {.ports = {5432}}}) == 1);
  CHECK(count({.either = {.ips = {"10.0.0.2"}}}) == 3);
  CHECK(count({.either = {.identities = {400}}}) == 3);
  CHECK(count({.either = {.identities = {999}}}) == 0);
  CHECK(count({.since_unix_nano = 20}) == 2);
  CHECK(count({.source = {.pods = {"web"}}, .verdicts = {"FORWARDED"}}) == 1);  // fields AND
}

namespace {
// Two pods in "shop" and one in "default", labelled as the agent stores them (with the k8s: source).
FlowRecord shopFlow(const std::string& from, const std::string& to, uint16_t dport) {
  auto peer = [](const std::string& name, uint16_t port) {
    FlowPeer p;
    FlowPod pod{name == "client" ? "default" : "shop", name, {}};
    p.port = port;
    p.ip = *Ipv4::parse(name == "web-7f9c" ? "10.0.1.10" : name == "api-55d" ? "10.0.1.11" : "10.0.2.5");
    p.identity = name == "client" ? 300 : 400;
    pod.labels = {"k8s:app=" + name.substr(0, name.find('-')), "k8s:io.kubernetes.pod.namespace=" + pod.pod_namespace};
    if (name != "client") {
      pod.labels.push_back("k8s:tier=" + std::string(name == "web-7f9c" ? "front" : "back"));
    }
    p.pod = std::make_shared<FlowPod>(std::move(pod));
    return p;
  };
  FlowRecord f;
  f.verdict = PLEXUS_VERDICT_FORWARDED;
  f.protocol = IPPROTO_TCP;
  f.source = peer(from, 40000);
  f.destination = peer(to, dport);
  return f;
}

bool hit(const FlowRecord& f, const FlowFilterSpec& spec) { return matches(f, filter(spec)); }
}  // namespace

TEST_CASE("hubble filter table: one flow against the filters hubble observe builds", "[unit][flows]") {
  // client (default) -> web-7f9c (shop):8080
  FlowRecord f = shopFlow("client", "web-7f9c", 8080);
  f.tcp_flags = 0x02;  // SYN
  f.node_name = "kind-worker2";
  struct Case {
    const char* name;
    FlowFilterSpec spec;
    bool expected;
  };
  const Case cases[] = {
      {"-l app=web (stored as k8s:app=web)", {.either = {.labels = {"app=web"}}}, true},
      {"-l app=db", {.either = {.labels = {"app=db"}}}, false},
      {"-l 'tier in (front,back)'", {.either = {.labels = {"tier in (front,back)"}}}, true},
      {"-l 'tier notin (front)' (client has no tier)", {.either = {.labels = {"tier notin (front)"}}}, true},
      {"-l '!tier'", {.either = {.labels = {"!tier"}}}, true},
      {"-l 'app=web,tier=back'", {.either = {.labels = {"app=web,tier=back"}}}, false},
      {"-l k8s:app=web", {.either = {.labels = {"k8s:app=web"}}}, true},
      {"--from-label app=client", {.source = {.labels = {"app=client"}}}, true},
      {"--from-label app=web", {.source = {.labels = {"app=web"}}}, false},
      {"--to-label app=web", {.destination = {.labels = {"app=web"}}}, true},
      {"--pod shop/web (prefix)", {.either = {.pods = {"shop/web"}}}, true},
      {"--pod shop/ (whole namespace)", {.either = {.pods = {"shop/"}}}, true},
      {"--pod web (namespace default)", {.either = {.pods = {"web"}}}, false},
      {"--pod client", {.either = {.pods = {"client"}}}, true},
      {"--from-pod shop/web", {.source = {.pods = {"shop/web"}}}, false},
      {"--to-pod shop/web-7f9c", {.destination = {.pods = {"shop/web-7f9c"}}}, true},
      {"--namespace shop", {.either = {.namespaces = {"shop"}}}, true},
      {"--from-namespace shop", {.source = {.namespaces = {"shop"}}}, false},
      {"--to-namespace shop", {.destination = {.namespaces = {"shop"}}}, true},
      {"--ip 10.0.1.10", {.either = {.ips = {"10.0.1.10"}}}, true},
      {"--ip 10.0.1.0/24", {.either = {.ips = {"10.0.1.0/24"}}}, true},
      {"--from-ip 10.0.1.10", {.source = {.ips = {"10.0.1.10"}}}, false},
      {"--to-ip 10.0.1.10", {.destination = {.ips = {"10.0.1.10"}}}, true},
      {"--port 8080", {.either = {.ports = {8080}}}, true},
      {"--from-port 8080", {.source = {.ports = {8080}}}, false},
      {"--to-port 8080", {.destination = {.ports = {8080}}}, true},
      {"--ip 10.0.1.10 --port 8080 (same side)", {.either = {.ips = {"10.0.1.10"}, .ports = {8080}}}, true},
      {"--ip 10.0.2.5 --port 8080 (different sides)", {.either = {.ips = {"10.0.2.5"}, .ports = {8080}}}, false},
      {"--pod client --to-pod shop/web", {.either = {.pods = {"client"}}, .destination = {.pods = {"shop/web"}}}, true},
      {"--identity 300", {.either = {.identities = {300}}}, true},
      {"--from-identity 400", {.source = {.identities = {400}}}, false},
      {"--type trace", {.types = {"trace"}}, true},
      {"--type drop", {.types = {"drop"}}, false},
      {"--type policy-verdict", {.types = {"policy-verdict"}}, false},
      {"--type l7 (never emitted)", {.types = {"l7"}}, false},
      {"--type drop --type trace", {.types = {"drop", "trace"}}, true},
      {"--verdict FORWARDED", {.verdicts = {"FORWARDED"}}, true},
      {"--protocol tcp", {.protocols = {"tcp"}}, true},
      {"--protocol udp", {.protocols = {"udp"}}, false},
      {"--tcp-flags SYN", {.tcp_flags = {"SYN"}}, true},
      {"--tcp-flags SYN,ACK (all must be set)", {.tcp_flags = {"SYN,ACK"}}, false},
      {"--tcp-flags SYN,ACK --tcp-flags syn", {.tcp_flags = {"SYN,ACK", "syn"}}, true},
      {"--node-name kind-worker2", {.node_names = {"kind-worker2"}}, true},
      {"--node-name kind-*", {.node_names = {"kind-*"}}, true},
      {"--node-name cluster1/kind-worker*", {.node_names = {"cluster1/kind-worker*"}}, true},
      {"--node-name kind-control-plane", {.node_names = {"kind-control-plane"}}, false},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    CHECK(hit(f, c.spec) == c.expected);
  }
  // The reply direction: web-7f9c:8080 -> client.
  FlowRecord reply = shopFlow("web-7f9c", "client", 40000);
  reply.source.port = 8080;
  CHECK(hit(reply, {.source = {.labels = {"app=web"}}}));
  CHECK_FALSE(hit(reply, {.destination = {.labels = {"app=web"}}}));
  CHECK(hit(reply, {.either = {.ips = {"10.0.1.10"}, .ports = {8080}}}));
}

TEST_CASE("flow types: drops are drop, policy drops are policy-verdict too, forwards are trace", "[unit][flows]") {
  FlowRecord denied = shopFlow("client", "web-7f9c", 8081);
  denied.verdict = PLEXUS_VERDICT_DROPPED;
  denied.reason = PLEXUS_REASON_POLICY_DENIED;
  FlowRecord spoofed = denied;
  spoofed.reason = PLEXUS_REASON_INVALID_SOURCE_IP;
  FlowRecord translated = shopFlow("client", "web-7f9c", 8080);
  translated.verdict = PLEXUS_VERDICT_TRANSLATED;
  CHECK(hit(denied, {.types = {"drop"}}));
  CHECK(hit(denied, {.types = {"policy-verdict"}}));
  CHECK_FALSE(hit(denied, {.types = {"trace"}}));
  CHECK(hit(spoofed, {.types = {"DROP"}}));
  CHECK_FALSE(hit(spoofed, {.types = {"policy-verdict"}}));
  CHECK(hit(translated, {.types = {"trace"}}));
  // --tcp-flags never matches a non-TCP flow.
  FlowRecord udp = translated;
  udp.protocol = IPPROTO_UDP;
  udp.tcp_flags = 0x02;
  CHECK_FALSE(hit(udp, {.tcp_flags = {"SYN"}}));
}

TEST_CASE("queries: allow is an OR of filters, deny (--not) excludes, since and until bound the time",
          "[unit][flows]") {
  FlowStore store(100);
  for (int64_t t = 1; t <= 6; ++t) {
    auto f = shopFlow(t % 2 ? "client" : "api-55d", "web-7f9c", static_cast<uint16_t>(8000 + t));
    f.time_unix_nano = t * 100;
    store.add(f);
  }
  auto ports = [](const std::vector<FlowRecord>& flows) {
    std::vector<int> out;
    for (const auto& f : flows) {
      out.push_back(f.destination.port);
    }
    return out;
  };
  CHECK(ports(store.last(0, {})) == std::vector<int>{8001, 8002, 8003, 8004, 8005, 8006});
  CHECK(ports(store.last(2, {})) == std::vector<int>{8005, 8006});
  CHECK(ports(store.first(2, {})) == std::vector<int>{8001, 8002});
  CHECK(store.first(0, {}).size() == 6);
  // --not --from-pod client: only api's flows.
  FlowQuery not_client{.deny = {filter({.source = {.pods = {"client"}}})}};
  CHECK(ports(store.last(0, not_client)) == std::vector<int>{8002, 8004, 8006});
  // --to-port 8001 or --to-port 8006 as two allowed filters (Hubble's allow list).
  FlowQuery either{.allow = {filter({.destination = {.ports = {8001}}}), filter({.destination = {.ports = {8006}}})}};
  CHECK(ports(store.last(0, either)) == std::vector<int>{8001, 8006});
  // A deny beats an allow.
  either.deny.push_back(filter({.destination = {.ports = {8006}}}));
  CHECK(ports(store.last(0, either)) == std::vector<int>{8001});
  // --since and --until: inclusive bounds; with --first, the oldest of the window.
  FlowQuery window{.allow = {filter({.since_unix_nano = 200, .until_unix_nano = 500})}};
  CHECK(ports(store.last(0, window)) == std::vector<int>{8002, 8003, 8004, 8005});
  CHECK(ports(store.first(1, window)) == std::vector<int>{8002});
  CHECK(ports(store.last(1, window)) == std::vector<int>{8005});
  // Every matching flow, not a default count: 60 flows since the start.
  FlowStore big(1000);
  for (int i = 0; i < 60; ++i) {
    big.add(shopFlow("client", "web-7f9c", 8080));
  }
  CHECK(big.last(0, {.allow = {filter({.since_unix_nano = 0})}}).size() == 60);
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
  CHECK(got[0].source.podName() == "new");
}

TEST_CASE("decoded flows carry pod, labels and service, and keep them after the pod is gone", "[unit][flows]") {
  FlowDirectory dir;
  dir.upsertEndpoint(*Ipv4::parse("10.0.0.1"), {"default", "web", {"app=web"}, 3, "", 0});
  dir.setServices({{{*Ipv4::parse("10.96.0.10"), 80, 6}, "default/web-svc"}});
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
  CHECK(f.source.podName() == "web");
  CHECK(f.source.labels() == std::vector<std::string>{"app=web"});
  CHECK(f.source.port == 40000);
  CHECK(f.destination.port == 8080);
  CHECK(f.destination.podName().empty());
  CHECK(f.service == "default/web-svc");
  CHECK(f.service_frontend == "10.96.0.10:80");
}
