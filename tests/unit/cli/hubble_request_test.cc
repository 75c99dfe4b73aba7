// plexus observe's flags as Hubble's filters, and Hubble's flows as plexus observe prints them.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "plexus/cli/hubble_request.h"

using namespace plexus;
using namespace plexus::cli;

namespace {
std::vector<flow::FlowFilter> filters(const v1::FlowFilter& f) {
  std::vector<flow::FlowFilter> out;
  std::string error;
  INFO(error);
  REQUIRE(hubbleFilters(f, &out, &error));
  return out;
}
}  // namespace

TEST_CASE("side flags fill one Hubble filter; sideless flags pair up on either side", "[unit][cli][hubble]") {
  v1::FlowFilter f;
  f.add_from_pod("default/web");
  f.add_to_pod("api");
  f.add_verdict("forwarded");
  f.add_verdict("audit");
  f.add_protocol("tcp");
  f.add_tcp_flags("SYN,ACK");
  f.add_event_type("trace");
  f.add_node_name("node-*");
  auto one = filters(f);
  REQUIRE(one.size() == 1);
  CHECK(one[0].source_pod(0) == "default/web");
  CHECK(one[0].destination_pod(0) == "api");
  CHECK(one[0].verdict(0) == flow::FORWARDED);
  CHECK(one[0].verdict(1) == flow::AUDIT);
  CHECK(one[0].protocol(0) == "tcp");
  CHECK(one[0].tcp_flags(0).syn());
  CHECK(one[0].tcp_flags(0).ack());
  CHECK_FALSE(one[0].tcp_flags(0).fin());
  CHECK(one[0].event_type(0).type() == 4);
  CHECK(one[0].node_name(0) == "node-*");

  f.add_port(8080);
  f.add_ip("10.0.0.0/24");
  auto two = filters(f);
  REQUIRE(two.size() == 2);
  CHECK(two[0].source_port(0) == "8080");
  CHECK(two[0].source_ip(0) == "10.0.0.0/24");
  CHECK(two[0].destination_port_size() == 0);
  CHECK(two[1].destination_port(0) == "8080");
  CHECK(two[1].destination_ip(0) == "10.0.0.0/24");
  for (const auto& h : two) {  // the side flags hold in both
    CHECK(h.source_pod(0) == "default/web");
    CHECK(h.destination_pod(0) == "api");
  }
}

TEST_CASE("namespaces become pod prefixes, combined with pods as hubble observe does", "[unit][cli][hubble]") {
  v1::FlowFilter f;
  f.add_namespace_("shop");
  auto ns = filters(f);
  REQUIRE(ns.size() == 2);
  CHECK(ns[0].source_pod(0) == "shop/");
  CHECK(ns[1].destination_pod(0) == "shop/");
  f.add_pod("web");
  f.add_pod("shop/api");
  f.add_pod("other/db");
  auto both = filters(f);
  REQUIRE(both[0].source_pod_size() == 2);
  CHECK(both[0].source_pod(0) == "shop/web");
  CHECK(both[0].source_pod(1) == "shop/api");
  v1::FlowFilter to;
  to.add_to_namespace("x");
  to.add_to_pod("web");
  CHECK(filters(to)[0].destination_pod(0) == "x/web");
}

TEST_CASE("flags that would share a Hubble field, and bad names, are refused with the flag named",
          "[unit][cli][hubble]") {
  auto refused = [](const v1::FlowFilter& f, const std::string& needle) {
    std::vector<flow::FlowFilter> out;
    std::string error;
    CHECK_FALSE(hubbleFilters(f, &out, &error));
    CHECK(error.find(needle) != std::string::npos);
  };
  v1::FlowFilter ip;
  ip.add_ip("10.0.0.1");
  ip.add_from_ip("10.0.0.2");
  refused(ip, "--from-/--to-");
  v1::FlowFilter verdict;
  verdict.add_verdict("EXPLODED");
  refused(verdict, "EXPLODED");
  v1::FlowFilter type;
  type.add_event_type("trace:to-endpoint");
  refused(type, "trace:to-endpoint");
  v1::FlowFilter flags;
  flags.add_tcp_flags("SYN,BOGUS");
  refused(flags, "BOGUS");
  v1::FlowFilter pods;
  pods.add_namespace_("a");
  pods.add_pod("b/web");
  refused(pods, "--namespace");
}

TEST_CASE("-o json is Hubble's: proto field names, enum names, RFC 3339 time; compact names the point",
          "[unit][cli][hubble]") {
  observer::GetFlowsResponse r;
  auto* f = r.mutable_flow();
  f->mutable_time()->set_seconds(1700000000);
  f->mutable_time()->set_nanos(5000000);
  f->set_verdict(flow::DROPPED);
  f->set_drop_reason(133);
  f->set_drop_reason_desc(flow::POLICY_DENIED);
  f->mutable_ip()->set_source("10.0.0.1");
  f->mutable_ip()->set_destination("10.0.0.2");
  f->mutable_ip()->set_ipversion(flow::IPv4);
  f->mutable_l4()->mutable_tcp()->set_destination_port(8080);
  f->mutable_l4()->mutable_tcp()->mutable_flags()->set_syn(true);
  f->mutable_source()->set_pod_name("client");
  f->mutable_source()->set_namespace_("x");
  f->mutable_source()->set_identity(300);
  f->mutable_destination()->add_labels("reserved:world");
  f->set_type(flow::L3_L4);
  f->mutable_event_type()->set_type(1);
  f->mutable_event_type()->set_sub_type(133);
  f->set_traffic_direction(flow::INGRESS);
  f->mutable_is_reply()->set_value(false);
  f->set_summary("TCP Flags: SYN");
  r.set_node_name("n1");
  *r.mutable_time() = f->time();
  auto j = nlohmann::json::parse(jsonText(r, true));
  CHECK(j["node_name"] == "n1");
  CHECK(j["time"] == "2023-11-14T22:13:20.005Z");
  const auto& fl = j["flow"];
  CHECK(fl["verdict"] == "DROPPED");
  CHECK(fl["drop_reason"] == 133);
  CHECK(fl["drop_reason_desc"] == "POLICY_DENIED");
  CHECK(fl["IP"]["source"] == "10.0.0.1");
  CHECK(fl["IP"]["ipVersion"] == "IPv4");
  CHECK(fl["l4"]["TCP"]["destination_port"] == 8080);
  CHECK(fl["l4"]["TCP"]["flags"]["SYN"] == true);
  CHECK(fl["Type"] == "L3_L4");
  CHECK(fl["event_type"]["type"] == 1);
  CHECK(fl["event_type"]["sub_type"] == 133);
  CHECK(fl["traffic_direction"] == "INGRESS");
  CHECK(fl["is_reply"] == false);
  CHECK(fl["Summary"] == "TCP Flags: SYN");
  CHECK(fl["source"]["pod_name"] == "client");
  auto pb = nlohmann::json::parse(jsonText(r, false));
  CHECK(pb["nodeName"] == "n1");
  CHECK(pb["flow"]["dropReasonDesc"] == "POLICY_DENIED");

  std::string line = compactText(*f);
  CHECK(line.find("x/client (ID:300) -> 10.0.0.2:8080 (world) Policy denied DROPPED (TCP Flags: SYN)") !=
        std::string::npos);
  // -o dict and -o table speak the same words.
  CHECK(dictText(*f) == "  TIMESTAMP: Nov 14 22:13:20.005\n     SOURCE: x/client\nDESTINATION: 10.0.0.2:8080\n"
                       "       TYPE: Policy denied\n    VERDICT: DROPPED\n    SUMMARY: TCP Flags: SYN\n");
  CHECK(tableRow(*f) == std::vector<std::string>{"Nov 14 22:13:20.005", "x/client", "10.0.0.2:8080", "Policy denied",
                                                 "DROPPED", "TCP Flags: SYN"});
  f->set_verdict(flow::AUDIT);
  CHECK(compactText(*f).find("policy-verdict:none INGRESS AUDIT") != std::string::npos);
  f->set_verdict(flow::FORWARDED);
  f->set_trace_observation_point(flow::TO_ENDPOINT);
  CHECK(compactText(*f).find("to-endpoint FORWARDED") != std::string::npos);
  f->mutable_is_reply()->set_value(true);
  CHECK(compactText(*f).find("10.0.0.2:8080 (world) <- x/client (ID:300)") != std::string::npos);
}
