// Our flows as Hubble's flow.Flow, and Hubble's filters matched by the flow store.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <limits>
#include <optional>
#include <set>

#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/flow_hubble.h"
#include "plexus/agent/hubble_flows.h"
#include "plexus/agent/reason_names.h"
#include "plexus/events.h"
#include "plexus/reasons.h"

using namespace plexus;
using namespace plexus::agent;

namespace {

// web (endpoint 3, identity 300) -> api (endpoint 4, identity 400) port 8080, seen at web's from-container.
FlowRecord podToPod(uint8_t verdict = PLEXUS_VERDICT_FORWARDED, uint8_t reason = PLEXUS_REASON_FORWARDED) {
  FlowRecord f;
  f.time_unix_nano = 1700000000123456789LL;
  f.verdict = verdict;
  f.reason = reason;
  f.direction = PLEXUS_DIR_EGRESS;
  f.protocol = IPPROTO_TCP;
  f.tcp_flags = 0x02;
  auto pod = [](const char* name, const char* label) {
    return std::make_shared<FlowPod>(FlowPod{"shop", name, {label}});
  };
  f.source = {*Ipv4::parse("10.0.0.1"), 40000, 300, pod("web-1", "k8s:app=web"), 3};
  f.destination = {*Ipv4::parse("10.0.0.2"), 8080, 400, pod("api-1", "k8s:app=api"), 4};
  f.observed_endpoint = 3;
  f.node_name = "node-a";
  f.uuid = flowUuid(7, 1);
  f.interface_name = "lxc1234";
  f.interface_index = 17;
  return f;
}

flow::Flow hubble(const FlowRecord& f) {
  flow::Flow out;
  toHubbleFlow(f, "fallback", "default", &out);
  return out;
}

bool hubbleMatches(const FlowRecord& f, const flow::FlowFilter& h) {
  auto parsed = flowFilterFromHubble(h);
  REQUIRE(parsed.ok());
  return matches(f, *parsed);
}

}  // namespace

TEST_CASE("a forwarded pod-to-pod flow becomes Hubble's L3_L4 trace to the endpoint", "[unit][hubble]") {
  flow::Flow h = hubble(podToPod());
  CHECK(h.time().seconds() == 1700000000);
  CHECK(h.time().nanos() == 123456789);
  CHECK(h.uuid() == flowUuid(7, 1));
  CHECK(h.verdict() == flow::FORWARDED);
  CHECK(h.drop_reason() == 0);
  CHECK(h.drop_reason_desc() == flow::DROP_REASON_UNKNOWN);
  CHECK(h.ip().source() == "10.0.0.1");
  CHECK(h.ip().destination() == "10.0.0.2");
  CHECK(h.ip().ipversion() == flow::IPv4);
  REQUIRE(h.l4().has_tcp());
  CHECK(h.l4().tcp().source_port() == 40000);
  CHECK(h.l4().tcp().destination_port() == 8080);
  CHECK(h.l4().tcp().flags().syn());
  CHECK_FALSE(h.l4().tcp().flags().ack());
  CHECK(h.source().id() == 3);
  CHECK(h.source().identity() == 300);
  CHECK(h.source().namespace_() == "shop");
  CHECK(h.source().pod_name() == "web-1");
  CHECK(h.source().labels(0) == "k8s:app=web");
  CHECK(h.destination().pod_name() == "api-1");
  CHECK(h.source().cluster_name() == "default");  // a pod's cluster
  CHECK(h.destination().cluster_name() == "default");
  FlowRecord to_world = podToPod();
  to_world.destination = {*Ipv4::parse("198.51.100.1"), 443, 2, nullptr, 0};
  CHECK(hubble(to_world).destination().cluster_name().empty());  // a peer outside the pods has none
  CHECK(h.type() == flow::L3_L4);
  CHECK(h.node_name() == "node-a");
  CHECK(h.event_type().type() == 4);      // Cilium's MessageTypeTrace
  CHECK(h.event_type().sub_type() == 0);  // TRACE_TO_LXC
  CHECK(h.trace_observation_point() == flow::TO_ENDPOINT);
  CHECK(h.traffic_direction() == flow::EGRESS);
  REQUIRE(h.has_is_reply());
  CHECK_FALSE(h.is_reply().value());
  CHECK(h.interface().name() == "lxc1234");
  CHECK(h.interface().index() == 17);
  CHECK(h.summary() == "TCP Flags: SYN");
}

TEST_CASE(
    "drops carry Hubble's reason numbers and names, and event type 1 "
    "with the reason",
    "[unit][hubble]") {
  struct Case {
    uint8_t ours;
    flow::DropReason hubble;
    uint32_t number;
  };
  for (auto c : {Case{PLEXUS_REASON_POLICY_DENIED, flow::POLICY_DENIED, 133},
                 Case{PLEXUS_REASON_POLICY_DENY, flow::POLICY_DENY, 181},
                 Case{PLEXUS_REASON_INVALID_SOURCE_IP, flow::INVALID_SOURCE_IP, 132},
                 Case{PLEXUS_REASON_NO_SERVICE_BACKEND, flow::SERVICE_BACKEND_NOT_FOUND, 158},
                 Case{PLEXUS_REASON_CT_MAP_FULL, flow::CT_MAP_INSERTION_FAILED, 155},
                 Case{PLEXUS_REASON_NAT_NO_PORT, flow::NO_MAPPING_FOR_NAT_MASQUERADE, 167},
                 Case{PLEXUS_REASON_TTL_EXCEEDED, flow::TTL_EXCEEDED, 196},
                 Case{PLEXUS_REASON_UNSUPPORTED_L3, flow::UNSUPPORTED_L3_PROTOCOL, 139}}) {
    INFO(static_cast<int>(c.ours));
    flow::Flow h = hubble(podToPod(PLEXUS_VERDICT_DROPPED, c.ours));
    CHECK(h.verdict() == flow::DROPPED);
    CHECK(h.drop_reason() == c.number);
    CHECK(h.drop_reason_desc() == c.hubble);
    CHECK(flow::DropReason_Name(h.drop_reason_desc()) == hubbleReasonName(c.ours));
    CHECK(h.event_type().type() == 1);
    CHECK(h.event_type().sub_type() == static_cast<int32_t>(c.number));
    CHECK(h.trace_observation_point() == flow::UNKNOWN_POINT);
  }
}

TEST_CASE(
    "every drop reason has a Hubble number its name agrees with; "
    "forwards have none",
    "[unit][hubble]") {
  for (uint8_t r = 0; r < PLEXUS_REASON_MAX_; ++r) {
    INFO(reasonName(r));
    if (!isDropReason(r)) {
      CHECK(hubbleReasonCode(r) == 0);
      continue;
    }
    REQUIRE(flow::DropReason_IsValid(static_cast<int>(hubbleReasonCode(r))));
    CHECK(flow::DropReason_Name(static_cast<flow::DropReason>(hubbleReasonCode(r))) == hubbleReasonName(r));
  }
}

TEST_CASE("the observation point follows where the event was taken", "[unit][hubble]") {
  FlowRecord to_stack = podToPod();
  to_stack.destination = {*Ipv4::parse("1.1.1.1"), 443, 2, nullptr, 0};
  CHECK(hubble(to_stack).trace_observation_point() == flow::TO_STACK);
  CHECK(hubble(to_stack).event_type().sub_type() == 3);

  FlowRecord ingress = podToPod();
  ingress.direction = PLEXUS_DIR_INGRESS;
  ingress.observed_endpoint = 4;
  CHECK(hubble(ingress).trace_observation_point() == flow::TO_ENDPOINT);

  FlowRecord tunnel = to_stack;
  tunnel.reason = PLEXUS_REASON_FORWARDED_TUNNEL;
  CHECK(hubble(tunnel).trace_observation_point() == flow::TO_OVERLAY);

  FlowRecord fib = to_stack;
  fib.reason = PLEXUS_REASON_FORWARDED_FIB;
  CHECK(hubble(fib).trace_observation_point() == flow::TO_NETWORK);

  FlowRecord from_net = podToPod();
  from_net.observed_endpoint = 0;
  from_net.direction = PLEXUS_DIR_INGRESS;
  CHECK(hubble(from_net).trace_observation_point() == flow::FROM_NETWORK);
  CHECK(hubble(from_net).event_type().sub_type() == 10);
  from_net.direction = PLEXUS_DIR_EGRESS;
  CHECK(hubble(from_net).trace_observation_point() == flow::TO_NETWORK);
}

TEST_CASE(
    "outside peers carry reserved labels; replies, services, UDP and "
    "ICMP as Hubble shows them",
    "[unit][hubble]") {
  FlowRecord f = podToPod();
  f.destination = {*Ipv4::parse("1.1.1.1"), 53, 2, nullptr, 0};
  f.protocol = IPPROTO_UDP;
  f.is_reply = true;
  flow::Flow h = hubble(f);
  REQUIRE(h.destination().labels_size() == 1);
  CHECK(h.destination().labels(0) == "reserved:world");
  CHECK(h.destination().pod_name().empty());
  REQUIRE(h.l4().has_udp());
  CHECK(h.l4().udp().destination_port() == 53);
  CHECK(h.is_reply().value());
  CHECK(h.reply());
  CHECK(h.summary() == "UDP");

  f.destination.identity = 1;
  CHECK(hubble(f).destination().labels(0) == "reserved:host");

  f.protocol = IPPROTO_ICMP;
  CHECK(hubble(f).l4().has_icmpv4());
  CHECK(hubble(f).summary() == "ICMPv4");

  FlowRecord svc = podToPod(PLEXUS_VERDICT_TRANSLATED, PLEXUS_REASON_SERVICE_TRANSLATED);
  svc.service = "shop/api-svc";
  h = hubble(svc);
  CHECK(h.verdict() == flow::TRANSLATED);
  CHECK(h.destination_service().namespace_() == "shop");
  CHECK(h.destination_service().name() == "api-svc");

  FlowRecord unnamed = podToPod();
  unnamed.node_name.clear();
  CHECK(hubble(unnamed).node_name() == "fallback");
}

TEST_CASE("flow UUIDs are unique per flow and per store instance, and stable", "[unit][hubble]") {
  std::set<std::string> seen;
  for (uint64_t instance : {1ULL, 2ULL, 0xdeadbeefcafef00dULL}) {
    for (uint64_t seq = 1; seq < 200; ++seq) {
      std::string u = flowUuid(instance, seq);
      CHECK(u.size() == 36);
      CHECK(u[14] == '4');  // version 4 layout
      seen.insert(u);
    }
  }
  CHECK(seen.size() == 3 * 199);
  FlowStore store(4, 9);
  store.add(podToPod());
  store.add(podToPod());
  auto flows = store.last(0, {});
  REQUIRE(flows.size() == 2);
  CHECK(flows[0].uuid == flowUuid(9, 1));
  CHECK(flows[1].uuid == flowUuid(9, 2));
  // The store keeps sequence numbers and makes the UUIDs as it hands flows out: a query by UUID still finds its flow.
  FlowQuery by_uuid;
  by_uuid.filter.uuids = {flowUuid(9, 2)};
  auto found = store.first(0, by_uuid);
  REQUIRE(found.size() == 1);
  CHECK(found[0].uuid == flowUuid(9, 2));
  FlowQuery but_not;
  but_not.deny.push_back(by_uuid.filter);
  found = store.last(0, but_not);
  REQUIRE(found.size() == 1);
  CHECK(found[0].uuid == flowUuid(9, 1));
}

TEST_CASE("Hubble's filter fields map onto the flow store's matching", "[unit][hubble]") {
  FlowRecord f = podToPod();
  flow::FlowFilter h;
  CHECK(hubbleMatches(f, h));  // empty: everything

  h = {};
  h.add_source_pod("shop/web");
  CHECK(hubbleMatches(f, h));
  h.add_destination_pod("shop/web");  // the destination is api
  CHECK_FALSE(hubbleMatches(f, h));

  h = {};
  h.add_source_ip("10.0.0.0/24");
  h.add_destination_ip("10.0.0.2");
  CHECK(hubbleMatches(f, h));
  h.set_destination_ip(0, "10.0.0.3");
  CHECK_FALSE(hubbleMatches(f, h));

  h = {};
  h.add_source_label("app in (web, db)");
  h.add_destination_label("app=api");  // matches "k8s:app=api"
  CHECK(hubbleMatches(f, h));
  h.add_destination_label("!app");  // OR within the field: still matches
  CHECK(hubbleMatches(f, h));
  h.clear_destination_label();
  h.add_destination_label("app=web");
  CHECK_FALSE(hubbleMatches(f, h));

  h = {};
  h.add_verdict(flow::FORWARDED);
  CHECK(hubbleMatches(f, h));
  h.set_verdict(0, flow::AUDIT);
  CHECK_FALSE(hubbleMatches(f, h));

  h = {};
  h.add_protocol("TCP");
  h.add_destination_port("8080");
  h.add_source_identity(300);
  h.add_traffic_direction(flow::EGRESS);
  h.add_reply(false);
  h.add_node_name("node-*");
  CHECK(hubbleMatches(f, h));
  h.add_reply(true);
  CHECK(hubbleMatches(f, h));
  h.clear_reply();
  h.add_reply(true);
  CHECK_FALSE(hubbleMatches(f, h));

  h = {};
  h.add_tcp_flags()->set_syn(true);
  CHECK(hubbleMatches(f, h));
  h.mutable_tcp_flags(0)->set_ack(true);  // SYN and ACK both: this SYN has no ACK
  CHECK_FALSE(hubbleMatches(f, h));

  h = {};
  h.add_uuid(f.uuid);
  CHECK(hubbleMatches(f, h));
  h.set_uuid(0, flowUuid(7, 2));
  CHECK_FALSE(hubbleMatches(f, h));
}

TEST_CASE(
    "Hubble's event_type filter matches the event type and sub-type the "
    "API shows",
    "[unit][hubble]") {
  FlowRecord fwd = podToPod();
  FlowRecord denied = podToPod(PLEXUS_VERDICT_DROPPED, PLEXUS_REASON_POLICY_DENIED);
  FlowRecord spoofed = podToPod(PLEXUS_VERDICT_DROPPED, PLEXUS_REASON_INVALID_SOURCE_IP);
  auto type = [](int32_t t, std::optional<int32_t> sub = std::nullopt) {
    flow::FlowFilter h;
    auto* e = h.add_event_type();
    e->set_type(t);
    if (sub) {
      e->set_match_sub_type(true);
      e->set_sub_type(*sub);
    }
    return h;
  };
  CHECK(hubbleMatches(fwd, type(4)));
  CHECK_FALSE(hubbleMatches(denied, type(4)));
  CHECK(hubbleMatches(denied, type(1)));
  CHECK(hubbleMatches(denied, type(1, 133)));
  CHECK_FALSE(hubbleMatches(spoofed, type(1, 133)));
  CHECK(hubbleMatches(fwd, type(4, 0)));        // TRACE_TO_LXC
  CHECK_FALSE(hubbleMatches(fwd, type(4, 3)));  // TRACE_TO_STACK
  CHECK(hubbleMatches(denied, type(5)));        // policy verdicts: our policy drops
  CHECK_FALSE(hubbleMatches(spoofed, type(5)));
  CHECK_FALSE(hubbleMatches(fwd, type(129)));  // L7: never
}

TEST_CASE(
    "filters on what our flows never carry match nothing; malformed "
    "values are errors",
    "[unit][hubble]") {
  FlowRecord f = podToPod();
  flow::FlowFilter h;
  h.add_source_fqdn("*.example.com");
  CHECK_FALSE(hubbleMatches(f, h));
  h = {};
  h.add_protocol("http");
  CHECK_FALSE(hubbleMatches(f, h));
  h.add_protocol("tcp");
  CHECK(hubbleMatches(f, h));
  h = {};
  h.add_ip_version(flow::IPv6);
  CHECK_FALSE(hubbleMatches(f, h));
  h.add_ip_version(flow::IPv4);
  CHECK(hubbleMatches(f, h));

  for (auto bad : {+[](flow::FlowFilter* x) { x->add_source_ip("10.0.0.300"); },
                   +[](flow::FlowFilter* x) { x->add_destination_port("http"); },
                   +[](flow::FlowFilter* x) { x->add_destination_port("70000"); },
                   +[](flow::FlowFilter* x) { x->add_source_pod("a/b/c"); },
                   +[](flow::FlowFilter* x) { x->add_source_label("app in (x"); },
                   +[](flow::FlowFilter* x) { x->add_protocol("gopher"); }}) {
    flow::FlowFilter b;
    bad(&b);
    auto r = flowFilterFromHubble(b);
    CHECK_FALSE(r.ok());
  }
}

TEST_CASE(
    "GetFlowsRequest: whitelist minus blacklist, since/until, "
    "number/first/follow",
    "[unit][hubble]") {
  FlowStore store(10);
  FlowRecord a = podToPod();
  a.time_unix_nano = 1000000000;
  FlowRecord b = podToPod(PLEXUS_VERDICT_DROPPED, PLEXUS_REASON_POLICY_DENIED);
  b.time_unix_nano = 2000000000;
  FlowRecord c = podToPod();
  c.time_unix_nano = 3000000000;
  c.destination.port = 9090;
  for (const auto& f : {a, b, c}) {
    store.add(f);
  }
  observer::GetFlowsRequest req;
  req.add_whitelist()->add_source_pod("shop/");
  req.add_blacklist()->add_destination_port("9090");
  auto q = flowQueryFromHubble(req);
  REQUIRE(q.ok());
  CHECK(store.last(0, *q).size() == 2);
  req.mutable_since()->set_seconds(2);
  q = flowQueryFromHubble(req);
  REQUIRE(q.ok());
  auto since = store.last(0, *q);
  REQUIRE(since.size() == 1);
  CHECK(since[0].verdict == PLEXUS_VERDICT_DROPPED);
  req.mutable_until()->set_seconds(1);
  CHECK_FALSE(flowQueryFromHubble(req).ok());  // until before since

  observer::GetFlowsRequest sel;
  sel.set_number(5);
  CHECK(storedSelection(sel).count == 5);
  CHECK_FALSE(storedSelection(sel).oldest);
  sel.set_first(true);
  CHECK(storedSelection(sel).oldest);
  sel.set_follow(true);
  CHECK_FALSE(flowQueryFromHubble(sel).ok());  // first with follow
  observer::GetFlowsRequest follow;
  follow.set_follow(true);
  CHECK(storedSelection(follow).none);  // -f alone: only new flows
  follow.mutable_since()->set_seconds(1);
  CHECK_FALSE(storedSelection(follow).none);
  CHECK_FALSE(storedSelection(observer::GetFlowsRequest()).none);
}

TEST_CASE("decoded flows carry the observing endpoint's interface", "[unit][hubble]") {
  FlowDirectory dir;
  dir.upsertEndpoint(*Ipv4::parse("10.0.0.1"), {"shop", "web-1", {"k8s:app=web"}, 3, "lxcweb", 21});
  plexus_flow_event e{};
  e.verdict = PLEXUS_VERDICT_FORWARDED;
  e.direction = PLEXUS_DIR_EGRESS;
  e.proto = IPPROTO_UDP;
  e.endpoint_id = 3;
  e.saddr = Ipv4::parse("10.0.0.1")->networkOrder();
  e.daddr = Ipv4::parse("1.1.1.1")->networkOrder();
  e.dst_identity = 2;
  FlowRecord f = decodeFlow(e, 0, dir);
  CHECK(f.interface_name == "lxcweb");
  CHECK(f.interface_index == 21);
  flow::Flow h = hubble(f);
  CHECK(h.interface().name() == "lxcweb");
  CHECK(h.trace_observation_point() == flow::TO_STACK);
  CHECK(h.destination().labels(0) == "reserved:world");
  e.endpoint_id = 0;  // a host device: no endpoint interface
  CHECK(decodeFlow(e, 0, dir).interface_name.empty());
}

TEST_CASE("a filter field of a newer Hubble is refused rather than ignored", "[unit][hubble]") {
  flow::FlowFilter h;
  h.add_source_pod("shop/");
  std::string wire = h.SerializeAsString();
  wire += std::string("\xfa\x01\x03" "abc", 6);  // field 31, length-delimited: not in our flow.proto
  flow::FlowFilter newer;
  REQUIRE(newer.ParseFromString(wire));
  auto r = flowFilterFromHubble(newer);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("field 31") != std::string::npos);
}

TEST_CASE("policy audit mode: an audited flow is Hubble's AUDIT policy verdict with the would-be reason",
          "[unit][hubble]") {
  FlowRecord f = podToPod(PLEXUS_VERDICT_AUDIT, PLEXUS_REASON_POLICY_DENIED);
  flow::Flow h = hubble(f);
  CHECK(h.verdict() == flow::AUDIT);
  CHECK(h.drop_reason_desc() == flow::POLICY_DENIED);
  CHECK(h.event_type().type() == 5);
  CHECK(h.trace_observation_point() == flow::UNKNOWN_POINT);
  flow::FlowFilter audit;
  audit.add_verdict(flow::AUDIT);
  CHECK(hubbleMatches(f, audit));
  CHECK_FALSE(hubbleMatches(podToPod(), audit));
  flow::FlowFilter verdicts;
  verdicts.add_event_type()->set_type(5);
  CHECK(hubbleMatches(f, verdicts));
  verdicts.mutable_event_type(0)->set_type(1);
  CHECK_FALSE(hubbleMatches(f, verdicts));  // not a drop: it passed
}

TEST_CASE("decoded flows name the policy of their rule, and Hubble's *_allowed_by/*_denied_by carry it",
          "[unit][hubble]") {
  FlowDirectory dir;
  dir.setPolicyRules("CiliumNetworkPolicy shop/api", {"CiliumNetworkPolicy", "shop", "api"},
                     {{11, true, 2}, {12, false, 1}});
  dir.setPolicyRules("CiliumClusterwideNetworkPolicy /lockdown", {"CiliumClusterwideNetworkPolicy", "", "lockdown"},
                     {{13, true, 3}});
  plexus_flow_event e{};
  e.verdict = PLEXUS_VERDICT_FORWARDED;
  e.direction = PLEXUS_DIR_EGRESS;
  e.proto = IPPROTO_TCP;
  e.saddr = Ipv4::parse("10.0.0.1")->networkOrder();
  e.daddr = Ipv4::parse("10.0.0.2")->networkOrder();
  e.rule_id = 11;
  FlowRecord f = decodeFlow(e, 0, dir);
  CHECK(f.rule_id == 11);
  REQUIRE(f.policy);
  CHECK(*f.policy == FlowPolicy{"CiliumNetworkPolicy", "shop", "api", true, 2});
  flow::Flow h = hubble(f);
  // The rule is an ingress rule of the destination, whatever direction the event was taken in.
  REQUIRE(h.ingress_allowed_by_size() == 1);
  CHECK(h.egress_allowed_by_size() == 0);
  CHECK(h.ingress_allowed_by(0).kind() == "CiliumNetworkPolicy");
  CHECK(h.ingress_allowed_by(0).namespace_() == "shop");
  CHECK(h.ingress_allowed_by(0).name() == "api");
  CHECK(h.ingress_allowed_by(0).labels_size() == 3);
  CHECK(h.policy_match_type() == 2);  // L3-L4

  e.rule_id = 12;
  h = hubble(decodeFlow(e, 0, dir));
  REQUIRE(h.egress_allowed_by_size() == 1);
  CHECK(h.egress_allowed_by(0).name() == "api");

  e.verdict = PLEXUS_VERDICT_DROPPED;
  e.reason = PLEXUS_REASON_POLICY_DENY;
  e.direction = PLEXUS_DIR_INGRESS;
  e.rule_id = 13;
  h = hubble(decodeFlow(e, 0, dir));
  REQUIRE(h.ingress_denied_by_size() == 1);
  CHECK(h.ingress_allowed_by_size() == 0);
  CHECK(h.ingress_denied_by(0).kind() == "CiliumClusterwideNetworkPolicy");
  CHECK(h.ingress_denied_by(0).namespace_().empty());
  CHECK(h.ingress_denied_by(0).labels_size() == 2);
  CHECK(h.policy_match_type() == 3);  // L4-only

  // A policy replaced or deleted takes its rules with it.
  dir.setPolicyRules("CiliumNetworkPolicy shop/api", {"CiliumNetworkPolicy", "shop", "api"}, {{14, true, 1}});
  CHECK_FALSE(dir.lookupRule(11));
  CHECK(dir.lookupRule(14));
  dir.setPolicyRules("CiliumClusterwideNetworkPolicy /lockdown", {}, {});
  h = hubble(decodeFlow(e, 0, dir));
  CHECK(h.ingress_denied_by_size() == 0);
  e.rule_id = 0;  // no rule decided (default deny): no policy named
  CHECK_FALSE(decodeFlow(e, 0, dir).policy);
}

TEST_CASE("ICMPv4 types and codes in Hubble's (gopacket's) words", "[unit][hubble]") {
  CHECK(icmpV4TypeCode(8, 0) == "EchoRequest");
  CHECK(icmpV4TypeCode(0, 0) == "EchoReply");
  CHECK(icmpV4TypeCode(3, 3) == "DestinationUnreachable(Port)");
  CHECK(icmpV4TypeCode(11, 0) == "TimeExceeded(TTLExceeded)");
  CHECK(icmpV4TypeCode(5, 9) == "Redirect(Code: 9)");
  CHECK(icmpV4TypeCode(8, 1) == "EchoRequest(Code: 1)");
  CHECK(icmpV4TypeCode(42, 0) == "42(0)");
}

TEST_CASE("ICMP flows carry the message's type and code, and the summary names the type", "[unit][hubble]") {
  FlowDirectory dir;
  plexus_flow_event e{};
  e.verdict = PLEXUS_VERDICT_FORWARDED;
  e.direction = PLEXUS_DIR_EGRESS;
  e.proto = IPPROTO_ICMP;
  e.saddr = Ipv4::parse("10.0.0.1")->networkOrder();
  e.daddr = Ipv4::parse("10.0.0.2")->networkOrder();
  e.icmp_type = 3;
  e.icmp_code = 4;
  e.flags = PLEXUS_EVENT_F_ICMP;
  flow::Flow h = hubble(decodeFlow(e, 0, dir));
  REQUIRE(h.l4().has_icmpv4());
  CHECK(h.l4().icmpv4().type() == 3);
  CHECK(h.l4().icmpv4().code() == 4);
  CHECK(h.summary() == "ICMPv4 DestinationUnreachable(FragmentationNeeded)");
  e.icmp_type = 8;
  e.icmp_code = 0;
  CHECK(hubble(decodeFlow(e, 0, dir)).summary() == "ICMPv4 EchoRequest");
  // Without the flag (a later fragment, or a 48-byte event of an older program) the fields are not the packet's.
  e.flags = 0;
  h = hubble(decodeFlow(e, 0, dir));
  CHECK(h.l4().icmpv4().type() == 0);
  CHECK(h.summary() == "ICMPv4");
}

TEST_CASE("since and until: a timestamp outside Timestamp's range is refused, one past int64 nanoseconds saturates",
          "[unit][hubble][fuzz]") {
  observer::GetFlowsRequest r;
  r.mutable_since()->set_seconds(9753063042);  // year 2279: found by fuzz_hubble_request (the product overflowed)
  auto q = flowQueryFromHubble(r);
  REQUIRE(q.ok());
  CHECK(q->filter.since_unix_nano == std::numeric_limits<int64_t>::max());
  r.mutable_until()->set_seconds(-9753063042);
  q = flowQueryFromHubble(r);
  REQUIRE_FALSE(q.ok());  // until before since
  r.clear_until();
  r.mutable_since()->set_seconds(253402300800);  // 10000-01-01: past Timestamp's range
  q = flowQueryFromHubble(r);
  REQUIRE_FALSE(q.ok());
  CHECK(q.error().code == ErrorCode::kInvalidArgument);
  CHECK(q.error().message.find("since") != std::string::npos);
  r.mutable_since()->set_seconds(1700000000);
  r.mutable_since()->set_nanos(-1);
  CHECK_FALSE(flowQueryFromHubble(r).ok());
  r.mutable_since()->set_nanos(5);
  q = flowQueryFromHubble(r);
  REQUIRE(q.ok());
  CHECK(q->filter.since_unix_nano == 1700000000000000005LL);
}
