#include <catch2/catch.hpp>

#include "plexus/agent/requests.h"

using namespace plexus;
using namespace plexus::agent;

TEST_CASE("Cni.Add requests: required fields, addresses and chaining", "[unit][requests]") {
  v1::CniAddRequest req;
  CHECK(addRequestFromProto(req).error().message == "container_id and ifname are required");
  req.set_container_id("c1");
  req.set_ifname("eth0");
  CHECK(addRequestFromProto(req).error().message == "netns is required");
  req.set_netns("/run/netns/p");
  req.add_requested_ips("10.0.0.256");
  auto bad_ip = addRequestFromProto(req);
  REQUIRE_FALSE(bad_ip.ok());
  CHECK(bad_ip.error().code == ErrorCode::kInvalidArgument);
  req.set_requested_ips(0, "10.0.0.7");
  req.set_requested_mac("zz");
  CHECK(addRequestFromProto(req).error().message.find("requested MAC") == 0);
  req.set_requested_mac("02:00:00:00:00:07");
  auto ok = addRequestFromProto(req);
  REQUIRE(ok.ok());
  CHECK(ok->requested_ip == Ipv4::parse("10.0.0.7"));
  CHECK(ok->requested_mac.has_value());

  v1::CniAddRequest chained;
  chained.set_container_id("c2");
  chained.set_ifname("eth0");
  chained.mutable_chained()->add_ips("10.99.0.5/24");
  CHECK(addRequestFromProto(chained).error().message == "chained ADD needs the host-side interface from prevResult");
  chained.mutable_chained()->set_host_ifname("veth1");
  chained.mutable_chained()->add_ips("fd00::5/64");
  auto c = addRequestFromProto(chained);
  REQUIRE(c.ok());
  REQUIRE(c->chained);
  CHECK(c->chained->addresses == std::vector<Ipv4>{*Ipv4::parse("10.99.0.5")});
  CHECK(c->chained->ips.size() == 1);
}

TEST_CASE("Cni.Del, Gc, GetEndpoint, Explain and the flow filter", "[unit][requests]") {
  v1::CniDelRequest del;
  CHECK_FALSE(delRequestFromProto(del).ok());
  del.set_container_id("c1");
  CHECK(delRequestFromProto(del)->ifname == "eth0");

  v1::CniGcRequest gc;
  auto* a = gc.add_valid_attachments();
  a->set_container_id("c1");
  auto* b = gc.add_valid_attachments();
  b->set_container_id("c2");
  b->set_ifname("net1");
  CHECK(gcOwnersFromProto(gc) == std::set<std::string>{"c1/eth0", "c2/net1"});

  CHECK_FALSE(endpointSelectorFromProto(v1::GetEndpointRequest{}).ok());

  v1::ExplainRequest ex;
  ex.set_protocol("gre");
  ex.set_port(80);
  CHECK(explainFromProto(ex).error().message.find("protocol \"gre\": must be TCP, UDP, SCTP") == 0);
  ex.set_protocol("udp");
  ex.set_port(70000);
  CHECK(explainFromProto(ex).error().message == "port: must be 1-65535");
  ex.set_port(53);
  CHECK(explainFromProto(ex)->port == 53);

  v1::FlowFilter f;
  f.add_verdict("MAYBE");
  CHECK(flowFilterFromProto(f).error().message.find("filter: verdict") == 0);
  v1::GetFlowsRequest flows;
  flows.add_deny()->add_to_label("tier in (a");
  CHECK(flowQueryFromProto(flows).error().message.find("deny[0]: filter: label selector") == 0);
  flows.clear_deny();
  auto* both = flows.mutable_filter();
  both->add_from_pod("shop/web");
  both->add_to_port(8080);
  both->add_event_type("drop");
  both->add_tcp_flags("SYN");
  both->add_node_name("kind-*");
  both->set_until_unix_nano(50);
  flows.add_allow()->add_label("app=web");
  auto q = flowQueryFromProto(flows);
  REQUIRE(q.ok());
  CHECK(q->filter.source.pods.at(0).prefix == "web");
  CHECK(q->filter.destination.ports == std::vector<uint16_t>{8080});
  CHECK(q->filter.types == std::vector<FlowType>{FlowType::kDrop});
  CHECK(q->filter.tcp_flags == std::vector<uint8_t>{0x02});
  CHECK(q->filter.node_names == std::vector<std::string>{"kind-*"});
  CHECK(q->filter.until_unix_nano == 50);
  REQUIRE(q->allow.size() == 1);
  CHECK(q->allow[0].either.labels.size() == 1);

}
