#include <catch2/catch.hpp>

#include "plexus/cli/monitor_format.h"

using namespace plexus::cli;

namespace {

// A TCP flow from pod x/client (endpoint 12, identity 300) to 10.0.0.2:8080 (endpoint 34, identity 301).
flow::Flow tcpFlow(flow::Verdict verdict, flow::TrafficDirection dir, bool syn, bool ack) {
  flow::Flow f;
  f.mutable_time()->set_seconds(1700000000);
  f.set_verdict(verdict);
  f.set_traffic_direction(dir);
  f.mutable_ip()->set_source("10.0.0.1");
  f.mutable_ip()->set_destination("10.0.0.2");
  f.mutable_l4()->mutable_tcp()->set_source_port(40000);
  f.mutable_l4()->mutable_tcp()->set_destination_port(8080);
  f.mutable_l4()->mutable_tcp()->mutable_flags()->set_syn(syn);
  f.mutable_l4()->mutable_tcp()->mutable_flags()->set_ack(ack);
  f.mutable_source()->set_id(12);
  f.mutable_source()->set_identity(300);
  f.mutable_source()->set_namespace_("x");
  f.mutable_source()->set_pod_name("client");
  f.mutable_destination()->set_id(34);
  f.mutable_destination()->set_identity(301);
  f.mutable_interface()->set_index(7);
  f.mutable_interface()->set_name("lxc1a2b");
  f.mutable_is_reply()->set_value(false);
  f.set_node_name("n1");
  return f;
}

std::vector<std::string> types(const std::vector<MonitorEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) {
    out.emplace_back(monitorTypeName(e.type));
  }
  return out;
}

}  // namespace

TEST_CASE("monitor: --type names are cilium monitor's", "[unit][cli]") {
  MonitorType t;
  CHECK(parseMonitorType("drop", &t));
  CHECK(t == MonitorType::kDrop);
  CHECK(parseMonitorType("policy-verdict", &t));
  CHECK(t == MonitorType::kPolicyVerdict);
  CHECK(parseMonitorType("trace", &t));
  CHECK(t == MonitorType::kTrace);
  CHECK_FALSE(parseMonitorType("l7", &t));
  CHECK_FALSE(parseMonitorType("DROP", &t));
}

TEST_CASE("monitor: which events a flow stands for", "[unit][cli]") {
  // A policy drop: the verdict, then the drop.
  auto denied = tcpFlow(flow::DROPPED, flow::INGRESS, true, false);
  denied.set_drop_reason_desc(flow::POLICY_DENIED);
  CHECK(types(monitorEvents(denied)) == std::vector<std::string>{"policy-verdict", "drop"});
  CHECK(monitorEvents(denied)[0].action == "deny");
  auto deny_rule = denied;
  deny_rule.set_drop_reason_desc(flow::POLICY_DENY);
  CHECK(types(monitorEvents(deny_rule)) == std::vector<std::string>{"policy-verdict", "drop"});
  // Another drop is only a drop.
  auto spoofed = denied;
  spoofed.set_drop_reason_desc(flow::INVALID_SOURCE_IP);
  CHECK(types(monitorEvents(spoofed)) == std::vector<std::string>{"drop"});
  // Audit mode: a policy verdict only (the packet went on).
  auto audit = denied;
  audit.set_verdict(flow::AUDIT);
  CHECK(types(monitorEvents(audit)) == std::vector<std::string>{"policy-verdict"});
  CHECK(monitorEvents(audit)[0].action == "audit");
  // A new connection into a local endpoint: allowed there, then traced.
  auto syn_in = tcpFlow(flow::FORWARDED, flow::INGRESS, true, false);
  syn_in.set_trace_observation_point(flow::TO_ENDPOINT);
  CHECK(types(monitorEvents(syn_in)) == std::vector<std::string>{"policy-verdict", "trace"});
  CHECK(monitorEvents(syn_in)[0].action == "allow");
  // Out of a local endpoint too.
  auto syn_out = tcpFlow(flow::FORWARDED, flow::EGRESS, true, false);
  syn_out.set_trace_observation_point(flow::TO_STACK);
  CHECK(types(monitorEvents(syn_out)) == std::vector<std::string>{"policy-verdict", "trace"});
  // Later packets and replies ride on conntrack: traces only.
  auto ack = tcpFlow(flow::FORWARDED, flow::INGRESS, false, true);
  ack.set_trace_observation_point(flow::TO_ENDPOINT);
  CHECK(types(monitorEvents(ack)) == std::vector<std::string>{"trace"});
  auto reply = syn_in;
  reply.mutable_is_reply()->set_value(true);
  CHECK(types(monitorEvents(reply)) == std::vector<std::string>{"trace"});
  // Not at an enforcement point (from the network, no local endpoint): a trace.
  auto outside = tcpFlow(flow::FORWARDED, flow::INGRESS, true, false);
  outside.set_trace_observation_point(flow::FROM_NETWORK);
  outside.mutable_destination()->set_id(0);
  CHECK(types(monitorEvents(outside)) == std::vector<std::string>{"trace"});
}

TEST_CASE("monitor: lines as cilium monitor prints them", "[unit][cli]") {
  auto denied = tcpFlow(flow::DROPPED, flow::INGRESS, true, false);
  denied.set_drop_reason_desc(flow::POLICY_DENIED);
  auto events = monitorEvents(denied);
  CHECK(monitorText(events[0], false) ==
        "Policy verdict log: local EP ID 34, remote ID 300, proto 6, ingress, action deny, match none, "
        "10.0.0.1:40000 -> 10.0.0.2:8080 tcp SYN\n");
  CHECK(monitorText(events[1], false) ==
        "xx drop (Policy denied) to endpoint 34, ifindex 7, identity 300->301: 10.0.0.1:40000 -> 10.0.0.2:8080 tcp "
        "SYN\n");
  auto syn_in = tcpFlow(flow::FORWARDED, flow::INGRESS, true, false);
  syn_in.set_trace_observation_point(flow::TO_ENDPOINT);
  CHECK(monitorText(monitorEvents(syn_in)[0], false).find("ingress, action allow, match unknown, ") !=
        std::string::npos);
  syn_in.set_policy_match_type(2);
  CHECK(monitorText(monitorEvents(syn_in)[0], false).find("action allow, match L3-L4, ") != std::string::npos);
  auto trace = monitorEvents(syn_in)[1];
  CHECK(monitorText(trace, false) ==
        "-> endpoint 34 identity 300->301 state new ifindex lxc1a2b: 10.0.0.1:40000 -> 10.0.0.2:8080 tcp SYN\n");
  auto v = monitorText(trace, true);
  CHECK(v.find("  time: 2023-11-14T22:13:20.000000000Z  node: n1  interface: lxc1a2b (7)\n") != std::string::npos);
  CHECK(v.find("  source: 10.0.0.1 pod x/client endpoint 12 identity 300") != std::string::npos);
  CHECK(v.find("  hubble: to-endpoint FORWARDED INGRESS") != std::string::npos);
  // The deciding policy, once flows carry it, is named in the match.
  auto named = denied;
  auto* p = named.add_ingress_denied_by();
  p->set_name("deny-db");
  p->set_namespace_("x");
  CHECK(monitorText(monitorEvents(named)[0], false).find("match none (x/deny-db)") != std::string::npos);
  // ICMP and UDP summaries.
  flow::Flow ping;
  ping.set_verdict(flow::FORWARDED);
  ping.mutable_ip()->set_source("10.0.0.1");
  ping.mutable_ip()->set_destination("10.0.0.2");
  ping.mutable_l4()->mutable_icmpv4()->set_type(8);
  ping.set_trace_observation_point(flow::TO_STACK);
  ping.mutable_is_reply()->set_value(false);
  CHECK(monitorText(monitorEvents(ping).back(), false).find(": 10.0.0.1 -> 10.0.0.2 EchoRequest") != std::string::npos);
}

TEST_CASE("monitor -o json: one object per event with its fields and the flow", "[unit][cli]") {
  auto denied = tcpFlow(flow::DROPPED, flow::INGRESS, true, false);
  denied.set_drop_reason_desc(flow::POLICY_DENIED);
  auto events = monitorEvents(denied);
  auto verdict = monitorJson(events[0]);
  CHECK(verdict["type"] == "policy-verdict");
  CHECK(verdict["action"] == "deny");
  CHECK(verdict["direction"] == "ingress");
  CHECK(verdict["local_endpoint"] == 34);
  CHECK(verdict["remote_identity"] == 300);
  auto drop = monitorJson(events[1]);
  CHECK(drop["type"] == "drop");
  CHECK(drop["reason"] == "Policy denied");
  CHECK(drop["reason_code"] == 133);
  CHECK(drop["source"]["pod"] == "x/client");
  CHECK(drop["destination"]["ip"] == "10.0.0.2");
  CHECK(drop["flow"]["drop_reason_desc"] == "POLICY_DENIED");
  CHECK(drop["summary"] == "10.0.0.1:40000 -> 10.0.0.2:8080 tcp SYN");
}
