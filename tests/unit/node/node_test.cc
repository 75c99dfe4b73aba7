#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

#include "plexus/node/node.h"

using namespace plexus;
using namespace plexus::node;
using nlohmann::json;

namespace {
json nodeJson() {
  return json::parse(R"({
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "worker-1", "labels": {"kubernetes.io/os": "linux"}, "uid": "abc"},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
             "providerID": "kind://docker/kind/worker-1"},
    "status": {"addresses": [
      {"type": "InternalIP", "address": "172.18.0.3"},
      {"type": "InternalIP", "address": "fc00:f853:ccd:e793::3"},
      {"type": "Hostname", "address": "worker-1"},
      {"type": "ExternalIP", "address": "203.0.113.7"}],
      "conditions": [{"type": "Ready", "status": "True"}]}
  })");
}

Ipv4 ip(const char* s) { return *Ipv4::parse(s); }
Ipv4Prefix cidr(const char* s) { return *Ipv4Prefix::parse(s); }

std::string errorOf(const json& j) {
  auto r = parseNode(j);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ErrorCode::kInvalidArgument);
  return r.error().message;
}
}  // namespace

TEST_CASE("A kind-style dual-stack Node parses to its IPv4 facts", "[unit][node]") {
  auto n = parseNode(nodeJson());
  REQUIRE(n.ok());
  CHECK(n->name == "worker-1");
  CHECK(n->internal_ips == std::vector<Ipv4>{ip("172.18.0.3")});
  CHECK(n->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.244.1.0/24")});
  CHECK(n->tunnelEndpoint() == ip("172.18.0.3"));
  CHECK(describe(*n) == "worker-1 (internal 172.18.0.3, pod CIDRs 10.244.1.0/24)");
}

TEST_CASE("podCIDR and podCIDRs are merged in order with duplicates folded", "[unit][node]") {
  auto j = nodeJson();
  j["spec"]["podCIDR"] = "10.244.9.0/24";
  j["spec"]["podCIDRs"] = {"10.244.1.0/24", "10.244.9.0/24", "10.244.1.0/24", "10.245.0.0/16"};
  auto n = parseNode(j);
  REQUIRE(n.ok());
  CHECK(n->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.244.9.0/24"), cidr("10.244.1.0/24"), cidr("10.245.0.0/16")});

  j["spec"].erase("podCIDR");
  n = parseNode(j);
  REQUIRE(n.ok());
  CHECK(n->pod_cidrs.front() == cidr("10.244.1.0/24"));

  j["spec"] = {{"podCIDR", "10.0.7.0/24"}};
  n = parseNode(j);
  REQUIRE(n.ok());
  CHECK(n->pod_cidrs == std::vector<Ipv4Prefix>{cidr("10.0.7.0/24")});
}

TEST_CASE("A Node before IPAM and before the kubelet reports addresses is valid but unreachable", "[unit][node]") {
  json j = {{"metadata", {{"name", "fresh"}}}};
  auto n = parseNode(j);
  REQUIRE(n.ok());
  CHECK(n->pod_cidrs.empty());
  CHECK(n->internal_ips.empty());
  CHECK_FALSE(n->tunnelEndpoint().has_value());
  CHECK(describe(*n) == "fresh (internal none, pod CIDRs none)");

  j["spec"] = {{"podCIDR", ""}, {"podCIDRs", nullptr}};
  j["status"] = {{"addresses", json::array()}};
  n = parseNode(j);
  REQUIRE(n.ok());
  CHECK(n->pod_cidrs.empty());

  // Only IPv6 InternalIPs: still no IPv4 tunnel endpoint.
  j["status"]["addresses"] = {{{"type", "InternalIP"}, {"address", "fd00::1"}}};
  n = parseNode(j);
  REQUIRE(n.ok());
  CHECK_FALSE(n->tunnelEndpoint().has_value());
}

TEST_CASE("The first InternalIP is the tunnel endpoint; duplicates are folded", "[unit][node]") {
  auto j = nodeJson();
  j["status"]["addresses"] = {{{"type", "InternalIP"}, {"address", "192.168.1.12"}},
                              {{"type", "InternalIP"}, {"address", "10.1.0.12"}},
                              {{"type", "InternalIP"}, {"address", "192.168.1.12"}}};
  auto n = parseNode(j);
  REQUIRE(n.ok());
  CHECK(n->internal_ips == std::vector<Ipv4>{ip("192.168.1.12"), ip("10.1.0.12")});
  CHECK(n->tunnelEndpoint() == ip("192.168.1.12"));
}

TEST_CASE("Each malformed field gives an error that names it", "[unit][node]") {
  struct Case {
    const char* label;
    std::function<void(json&)> mutate;
    const char* message;
  };
  std::vector<Case> cases = {
      {"not an object", [](json& j) { j = json::array(); }, "Node: manifest: must be an object"},
      {"kind", [](json& j) { j["kind"] = "Pod"; }, "Node: kind: must be Node"},
      {"kind type", [](json& j) { j["kind"] = 3; }, "Node: kind: must be Node"},
      {"apiVersion", [](json& j) { j["apiVersion"] = "v2"; }, "Node: apiVersion: must be v1"},
      {"no metadata", [](json& j) { j.erase("metadata"); }, "Node: metadata: must be an object"},
      {"metadata type", [](json& j) { j["metadata"] = "x"; }, "Node: metadata: must be an object"},
      {"no name", [](json& j) { j["metadata"].erase("name"); }, "Node: metadata.name: required"},
      {"name type", [](json& j) { j["metadata"]["name"] = 7; }, "Node: metadata.name: required"},
      {"name form", [](json& j) { j["metadata"]["name"] = "Worker_1"; },
       "Node: metadata.name: not a DNS-1123 subdomain: \"Worker_1\""},
      {"spec type", [](json& j) { j["spec"] = 1; }, "Node worker-1: spec: must be an object"},
      {"podCIDR type", [](json& j) { j["spec"]["podCIDR"] = 10; }, "Node worker-1: spec.podCIDR: must be a string"},
      {"podCIDR text", [](json& j) { j["spec"]["podCIDR"] = "10.244.1.0/33"; },
       "Node worker-1: spec.podCIDR: not a CIDR: \"10.244.1.0/33\""},
      {"podCIDR bare address", [](json& j) { j["spec"]["podCIDR"] = "10.244.1.0"; },
       "Node worker-1: spec.podCIDR: not a CIDR: \"10.244.1.0\""},
      {"podCIDRs type", [](json& j) { j["spec"]["podCIDRs"] = "10.244.1.0/24"; },
       "Node worker-1: spec.podCIDRs: must be a list"},
      {"podCIDRs entry", [](json& j) { j["spec"]["podCIDRs"] = {"10.244.1.0/24", "ten/8"}; },
       "Node worker-1: spec.podCIDRs[1]: not a CIDR: \"ten/8\""},
      {"podCIDRs bad IPv6", [](json& j) { j["spec"]["podCIDRs"] = {"10.244.1.0/24", "fd00::/129"}; },
       "Node worker-1: spec.podCIDRs[1]: not a CIDR: \"fd00::/129\""},
      {"podCIDRs entry type", [](json& j) { j["spec"]["podCIDRs"] = {json::object()}; },
       "Node worker-1: spec.podCIDRs[0]: must be a string"},
      {"status type", [](json& j) { j["status"] = json::array(); }, "Node worker-1: status: must be an object"},
      {"addresses type", [](json& j) { j["status"]["addresses"] = json::object(); },
       "Node worker-1: status.addresses: must be a list"},
      {"address entry type", [](json& j) { j["status"]["addresses"][2] = "x"; },
       "Node worker-1: status.addresses[2]: must be an object"},
      {"address type field", [](json& j) { j["status"]["addresses"][1].erase("type"); },
       "Node worker-1: status.addresses[1].type: must be a string"},
      {"address field type", [](json& j) { j["status"]["addresses"][3]["address"] = false; },
       "Node worker-1: status.addresses[3].address: must be a string"},
      {"InternalIP text", [](json& j) { j["status"]["addresses"][0]["address"] = "172.18.0.300"; },
       "Node worker-1: status.addresses[0].address: not an IP address: \"172.18.0.300\""},
  };
  for (const auto& c : cases) {
    INFO(c.label);
    auto j = nodeJson();
    c.mutate(j);
    CHECK(errorOf(j) == c.message);
  }
}

TEST_CASE("Unknown fields and non-InternalIP addresses are ignored", "[unit][node]") {
  auto j = nodeJson();
  j["spec"]["taints"] = {{{"key", "k"}, {"effect", "NoSchedule"}}};
  j["status"]["nodeInfo"] = {{"kubeletVersion", "v1.30.0"}};
  j["futureField"] = {1, 2, 3};
  // A Hostname is not an address, and an ExternalIP is not used: neither is validated.
  j["status"]["addresses"][3]["address"] = "not-an-ip";
  auto n = parseNode(j);
  REQUIRE(n.ok());
  CHECK(*n == *parseNode(nodeJson()));
}

// Property: no value of any JSON type at any field makes the parser throw; it returns a value or an error.
TEST_CASE("parseNode never throws, whatever type a field has", "[unit][node]") {
  const std::vector<json> values = {nullptr, true, 42, -1.5, "", "x", json::array(), json::array({1, "a"}),
                                    json::object(), json{{"k", "v"}}};
  const std::vector<json::json_pointer> paths = {
      json::json_pointer(""),
      json::json_pointer("/kind"),
      json::json_pointer("/apiVersion"),
      json::json_pointer("/metadata"),
      json::json_pointer("/metadata/name"),
      json::json_pointer("/spec"),
      json::json_pointer("/spec/podCIDR"),
      json::json_pointer("/spec/podCIDRs"),
      json::json_pointer("/spec/podCIDRs/0"),
      json::json_pointer("/status"),
      json::json_pointer("/status/addresses"),
      json::json_pointer("/status/addresses/0"),
      json::json_pointer("/status/addresses/0/type"),
      json::json_pointer("/status/addresses/0/address"),
      json::json_pointer("/status/addresses/2/address"),
  };
  int errors = 0;
  for (const auto& path : paths) {
    for (const auto& v : values) {
      auto j = nodeJson();
      j[path] = v;
      INFO(path.to_string() << " = " << v.dump());
      bool ok = false;
      CHECK_NOTHROW(ok = parseNode(j).ok());
      errors += ok ? 0 : 1;
    }
  }
  CHECK(errors > 0);  // the mutations did reach the parser
}
