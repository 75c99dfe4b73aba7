#include <catch2/catch.hpp>

#include <netinet/in.h>

#include <prometheus/text_serializer.h>

#include "plexus/agent/hubble_metrics.h"
#include "plexus/events.h"
#include "plexus/identity.h"
#include "plexus/reasons.h"

using namespace plexus;
using namespace plexus::agent;

namespace {

std::vector<HubbleMetricSpec> enabled(const std::string& list) {
  auto plan = parseHubbleMetrics(list);
  REQUIRE(plan.ok());
  return plan->enabled;
}

std::string scrape(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

bool has(const std::string& text, const std::string& line) {
  INFO(text);
  return text.find(line + "\n") != std::string::npos;
}

// A pod-to-pod flow observed at the source pod's from-container: delivered to a local endpoint (to-endpoint).
FlowRecord podFlow(uint8_t verdict, uint8_t proto, uint16_t sport, uint16_t dport) {
  FlowRecord f;
  f.verdict = verdict;
  f.protocol = proto;
  f.direction = PLEXUS_DIR_EGRESS;
  f.observed_endpoint = 11;
  f.source.endpoint_id = 11;
  f.source.port = sport;
  f.destination.endpoint_id = 12;
  f.destination.port = dport;
  return f;
}

}  // namespace

TEST_CASE("--hubble-metrics takes Cilium's list, skips what Plexus cannot fill, refuses unknown names",
          "[unit][metrics][hubble]") {
  auto plan = parseHubbleMetrics(
      "dns drop tcp flow port-distribution icmp "
      "httpV2:exemplars=true;labelsContext=source_ip,source_namespace,destination_ip");
  REQUIRE(plan.ok());
  std::vector<std::string> names;
  for (const auto& s : plan->enabled) {
    names.push_back(s.name);
  }
  CHECK(names == std::vector<std::string>{"drop", "tcp", "flow", "port-distribution", "icmp"});
  REQUIRE(plan->skipped.size() == 2);
  CHECK(plan->skipped[0].rfind("dns: not provided", 0) == 0);
  CHECK(plan->skipped[1].rfind("httpV2: not provided", 0) == 0);

  // A YAML list in the config file arrives comma-joined.
  auto commas = parseHubbleMetrics("flow,drop");
  REQUIRE(commas.ok());
  CHECK(commas->enabled.size() == 2);
  CHECK(parseHubbleMetrics("")->enabled.empty());

  // Context options are Hubble's, but not built: the metric stays, the option is named as ignored.
  auto context = parseHubbleMetrics("flow:sourceContext=pod;destinationContext=pod");
  REQUIRE(context.ok());
  CHECK(context->enabled.size() == 1);
  REQUIRE(context->skipped.size() == 2);
  CHECK(context->skipped[0].find("destinationContext=pod ignored") != std::string::npos);

  auto unknown = parseHubbleMetrics("flow dorp");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message.find("\"dorp\"") != std::string::npos);
  CHECK_FALSE(parseHubbleMetrics("flow flow").ok());
  CHECK_FALSE(parseHubbleMetrics("flow:=pod").ok());

  // Handler options stay with their metric; a key without a value is an option too, as in Hubble.
  auto world = parseHubbleMetrics("flows-to-world:any-drop;port;sourceContext=namespace");
  REQUIRE(world.ok());
  REQUIRE(world->enabled.size() == 1);
  CHECK(world->enabled[0].options == std::map<std::string, std::string>{{"any-drop", ""}, {"port", ""}});
  REQUIRE(world->skipped.size() == 1);
  CHECK(world->skipped[0].find("sourceContext=namespace ignored") != std::string::npos);
}

TEST_CASE("flows to reserved:world count as Hubble's flows-to-world handler does", "[unit][metrics][hubble]") {
  auto toWorld = [](uint8_t verdict, uint8_t proto, uint8_t flags) {
    FlowRecord f = podFlow(verdict, proto, 40000, 443);
    f.destination.endpoint_id = 0;
    f.destination.identity = PLEXUS_IDENTITY_WORLD;
    f.tcp_flags = flags;
    return f;
  };
  SECTION("defaults: forwarded and policy-denied flows, no replies") {
    prometheus::Registry registry;
    HubbleMetrics m(enabled("flows-to-world"), registry);
    m.process(toWorld(PLEXUS_VERDICT_FORWARDED, IPPROTO_TCP, 0x02));
    m.process(toWorld(PLEXUS_VERDICT_FORWARDED, IPPROTO_TCP, 0x10));
    FlowRecord reply = toWorld(PLEXUS_VERDICT_FORWARDED, IPPROTO_TCP, 0x12);
    reply.is_reply = true;
    m.process(reply);
    FlowRecord denied = toWorld(PLEXUS_VERDICT_DROPPED, IPPROTO_UDP, 0);
    denied.reason = PLEXUS_REASON_POLICY_DENIED;
    m.process(denied);
    FlowRecord no_route = toWorld(PLEXUS_VERDICT_DROPPED, IPPROTO_UDP, 0);
    no_route.reason = PLEXUS_REASON_FIB_LOOKUP_FAILED;
    m.process(no_route);
    m.process(podFlow(PLEXUS_VERDICT_FORWARDED, IPPROTO_TCP, 40000, 443));  // to a pod
    auto text = scrape(registry);
    CHECK(has(text, "hubble_flows_to_world_total{protocol=\"TCP\",verdict=\"FORWARDED\"} 2"));
    CHECK(has(text, "hubble_flows_to_world_total{protocol=\"UDP\",verdict=\"DROPPED\"} 1"));
    CHECK(text.find("port=") == std::string::npos);
  }
  SECTION("any-drop, port and syn-only") {
    prometheus::Registry registry;
    HubbleMetrics m(enabled("flows-to-world:any-drop;port;syn-only"), registry);
    m.process(toWorld(PLEXUS_VERDICT_FORWARDED, IPPROTO_TCP, 0x02));
    m.process(toWorld(PLEXUS_VERDICT_FORWARDED, IPPROTO_TCP, 0x10));  // not a SYN
    m.process(toWorld(PLEXUS_VERDICT_FORWARDED, IPPROTO_UDP, 0));     // not TCP
    FlowRecord no_route = toWorld(PLEXUS_VERDICT_DROPPED, IPPROTO_TCP, 0x02);
    no_route.reason = PLEXUS_REASON_FIB_LOOKUP_FAILED;
    m.process(no_route);
    auto text = scrape(registry);
    CHECK(has(text, "hubble_flows_to_world_total{port=\"443\",protocol=\"TCP\",verdict=\"FORWARDED\"} 1"));
    CHECK(has(text, "hubble_flows_to_world_total{port=\"443\",protocol=\"TCP\",verdict=\"DROPPED\"} 1"));
    CHECK(text.find("protocol=\"UDP\"") == std::string::npos);
  }
}

TEST_CASE("a forwarded TCP flow counts in Hubble's flow, tcp and port-distribution metrics",
          "[unit][metrics][hubble]") {
  prometheus::Registry registry;
  HubbleMetrics m(enabled("flow drop tcp port-distribution icmp"), registry);
  FlowRecord syn = podFlow(PLEXUS_VERDICT_FORWARDED, IPPROTO_TCP, 40000, 8080);
  syn.tcp_flags = 0x02;
  m.process(syn);
  FlowRecord syn_ack = podFlow(PLEXUS_VERDICT_FORWARDED, IPPROTO_TCP, 8080, 40000);
  syn_ack.tcp_flags = 0x12;
  syn_ack.is_reply = true;
  m.process(syn_ack);
  FlowRecord fin = syn;
  fin.tcp_flags = 0x11;
  m.process(fin);

  auto text = scrape(registry);
  CHECK(has(text, "# TYPE hubble_flows_processed_total counter"));
  CHECK(has(text,
            "hubble_flows_processed_total{protocol=\"TCP\",subtype=\"to-endpoint\",type=\"Trace\","
            "verdict=\"FORWARDED\"} 3"));
  CHECK(has(text, "hubble_tcp_flags_total{family=\"IPv4\",flag=\"SYN\"} 1"));
  CHECK(has(text, "hubble_tcp_flags_total{family=\"IPv4\",flag=\"SYN-ACK\"} 1"));
  CHECK(has(text, "hubble_tcp_flags_total{family=\"IPv4\",flag=\"FIN\"} 1"));
  // The reply's destination port (the client's) is not a service port: Hubble skips replies.
  CHECK(has(text, "hubble_port_distribution_total{port=\"8080\",protocol=\"TCP\"} 2"));
  CHECK(text.find("port=\"40000\"") == std::string::npos);
  CHECK(text.find("hubble_drop_total{") == std::string::npos);
}

TEST_CASE("drops count with Hubble's reason names; flags and ports count only forwarded flows",
          "[unit][metrics][hubble]") {
  prometheus::Registry registry;
  HubbleMetrics m(enabled("flow drop tcp port-distribution"), registry);
  FlowRecord denied = podFlow(PLEXUS_VERDICT_DROPPED, IPPROTO_TCP, 40000, 8081);
  denied.direction = PLEXUS_DIR_INGRESS;
  denied.reason = PLEXUS_REASON_POLICY_DENIED;
  denied.tcp_flags = 0x02;
  m.process(denied);
  m.process(denied);
  FlowRecord deny = podFlow(PLEXUS_VERDICT_DROPPED, IPPROTO_UDP, 40000, 9090);
  deny.reason = PLEXUS_REASON_POLICY_DENY;
  m.process(deny);
  FlowRecord no_backend = podFlow(PLEXUS_VERDICT_DROPPED, IPPROTO_UDP, 40000, 53);
  no_backend.reason = PLEXUS_REASON_NO_SERVICE_BACKEND;
  m.process(no_backend);
  FlowRecord audit = podFlow(PLEXUS_VERDICT_AUDIT, IPPROTO_TCP, 40000, 8082);
  audit.reason = PLEXUS_REASON_POLICY_DENIED;
  m.process(audit);
  FlowRecord tunnel = podFlow(PLEXUS_VERDICT_FORWARDED, IPPROTO_UDP, 40000, 53);
  tunnel.reason = PLEXUS_REASON_FORWARDED_TUNNEL;
  m.process(tunnel);

  auto text = scrape(registry);
  CHECK(has(text, "hubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\"} 2"));
  CHECK(has(text, "hubble_drop_total{protocol=\"UDP\",reason=\"POLICY_DENY\"} 1"));
  CHECK(has(text, "hubble_drop_total{protocol=\"UDP\",reason=\"SERVICE_BACKEND_NOT_FOUND\"} 1"));
  CHECK(has(text, "hubble_flows_processed_total{protocol=\"TCP\",subtype=\"\",type=\"Drop\",verdict=\"DROPPED\"} 2"));
  CHECK(has(text, "hubble_flows_processed_total{protocol=\"UDP\",subtype=\"\",type=\"Drop\",verdict=\"DROPPED\"} 2"));
  CHECK(has(text,
            "hubble_flows_processed_total{protocol=\"TCP\",subtype=\"\",type=\"PolicyVerdict\",verdict=\"AUDIT\"} 1"));
  CHECK(has(text,
            "hubble_flows_processed_total{protocol=\"UDP\",subtype=\"to-overlay\",type=\"Trace\","
            "verdict=\"FORWARDED\"} 1"));
  CHECK(has(text, "hubble_port_distribution_total{port=\"53\",protocol=\"UDP\"} 1"));  // the forwarded one only
  CHECK(text.find("hubble_tcp_flags_total{") == std::string::npos);                    // no forwarded TCP
  CHECK(text.find("port=\"8081\"") == std::string::npos);
}

TEST_CASE("ICMP flows count by Hubble's type text; one without an ICMP header as Unknown", "[unit][metrics][hubble]") {
  prometheus::Registry registry;
  HubbleMetrics m(enabled("icmp port-distribution"), registry);
  auto icmp = [](uint8_t verdict, uint8_t type, uint8_t code) {
    FlowRecord f = podFlow(verdict, IPPROTO_ICMP, 0, 0);
    f.has_icmp = true;
    f.icmp_type = type;
    f.icmp_code = code;
    return f;
  };
  m.process(icmp(PLEXUS_VERDICT_FORWARDED, 8, 0));
  FlowRecord reply = icmp(PLEXUS_VERDICT_FORWARDED, 0, 0);
  reply.is_reply = true;
  m.process(reply);
  m.process(icmp(PLEXUS_VERDICT_DROPPED, 8, 0));
  m.process(icmp(PLEXUS_VERDICT_FORWARDED, 3, 3));
  m.process(podFlow(PLEXUS_VERDICT_FORWARDED, IPPROTO_ICMP, 0, 0));  // a later fragment: no ICMP header
  m.process(podFlow(PLEXUS_VERDICT_FORWARDED, IPPROTO_TCP, 1, 2));

  auto text = scrape(registry);
  CHECK(has(text, "hubble_icmp_total{family=\"IPv4\",type=\"EchoRequest\"} 2"));  // any verdict
  CHECK(has(text, "hubble_icmp_total{family=\"IPv4\",type=\"EchoReply\"} 1"));
  CHECK(has(text, "hubble_icmp_total{family=\"IPv4\",type=\"DestinationUnreachable(Port)\"} 1"));
  CHECK(has(text, "hubble_icmp_total{family=\"IPv4\",type=\"Unknown\"} 1"));
  CHECK(has(text, "hubble_port_distribution_total{port=\"0\",protocol=\"ICMPv4\"} 3"));  // forwarded, no reply
  CHECK(has(text, "hubble_port_distribution_total{port=\"2\",protocol=\"TCP\"} 1"));
  // Only the families asked for are registered.
  CHECK(text.find("hubble_flows_processed_total") == std::string::npos);
  CHECK(text.find("hubble_drop_total") == std::string::npos);
}

TEST_CASE("Hubble's label values for protocol, verdict, type and subtype", "[unit][metrics][hubble]") {
  FlowRecord f = podFlow(PLEXUS_VERDICT_FORWARDED, 47, 0, 0);  // GRE
  CHECK(hubbleFlowProtocol(f) == "Unknown L4");
  f.protocol = IPPROTO_ICMP;
  CHECK(hubbleFlowProtocol(f) == "ICMPv4");
  CHECK(hubbleVerdictName(PLEXUS_VERDICT_TRANSLATED) == "TRANSLATED");
  CHECK(hubbleVerdictName(0) == "VERDICT_UNKNOWN");
  // From-container towards something not local: to-stack; a host device's events: from-network / to-network.
  f.destination.endpoint_id = 0;
  CHECK(hubbleFlowSubtype(f) == "to-stack");
  f.observed_endpoint = 0;
  f.direction = PLEXUS_DIR_INGRESS;
  CHECK(hubbleFlowSubtype(f) == "from-network");
  f.direction = PLEXUS_DIR_EGRESS;
  CHECK(hubbleFlowSubtype(f) == "to-network");
  CHECK(hubbleFlowTypeName(f) == "Trace");
  f.verdict = PLEXUS_VERDICT_DROPPED;
  CHECK(hubbleFlowTypeName(f) == "Drop");
  CHECK(hubbleFlowSubtype(f).empty());
}
