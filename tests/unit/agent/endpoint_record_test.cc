#include <catch2/catch.hpp>

#include <cstring>

#include "plexus/agent/endpoint_record.h"
#include "plexus/agent/map_encoding.h"

using namespace plexus;
using namespace plexus::agent;

namespace {
EndpointRecord sample() {
  EndpointRecord r;
  r.id = 42;
  r.container_id = "abcdef";
  r.ifname = "eth0";
  r.netns = "/run/netns/x";
  r.pod_namespace = "default";
  r.pod_name = "web-0";
  r.ip = *Ipv4::parse("10.244.0.7");
  r.mac = *Mac::parse("0a:58:0a:f4:00:07");
  r.host_ifname = hostIfname(r.container_id, r.ifname);
  r.host_ifindex = 17;
  r.host_mac = *Mac::parse("aa:bb:cc:dd:ee:ff");
  r.identity = 1234;
  return r;
}
}  // namespace

TEST_CASE("endpoint records round-trip through JSON", "[unit][endpoint]") {
  auto r = sample();
  auto back = endpointFromJson(toJson(r));
  REQUIRE(back.ok());
  CHECK(back->id == r.id);
  CHECK(back->owner() == r.owner());
  CHECK(back->ip == r.ip);
  CHECK(back->mac == r.mac);
  CHECK(back->host_ifname == r.host_ifname);
  CHECK(back->pod_name == "web-0");
}

TEST_CASE("malformed endpoint records are rejected, not crashed on", "[unit][endpoint]") {
  CHECK_FALSE(endpointFromJson(nlohmann::json::array()).ok());
  CHECK_FALSE(endpointFromJson(nlohmann::json{{"id", "x"}}).ok());
  auto j = toJson(sample());
  j["ip"] = "300.1.1.1";
  CHECK_FALSE(endpointFromJson(j).ok());
  j = toJson(sample());
  j.erase("container_id");
  CHECK_FALSE(endpointFromJson(j).ok());
}

TEST_CASE("host interface names are lxc-prefixed, unique per attachment and fit IFNAMSIZ", "[unit][endpoint]") {
  auto a = hostIfname("abcdef", "eth0");
  CHECK(a.rfind("lxc", 0) == 0);
  CHECK(a.size() <= 15);
  CHECK(a == hostIfname("abcdef", "eth0"));
  CHECK(a != hostIfname("abcdef", "eth1"));
  CHECK(a != hostIfname("abcdeg", "eth0"));
}

TEST_CASE("endpoint map encoding matches the BPF layout", "[unit][encoding]") {
  auto r = sample();
  auto k = encodeEndpointKey(r.ip);
  const auto* kb = reinterpret_cast<const uint8_t*>(&k.ip);
  CHECK(kb[0] == 10);
  CHECK(kb[1] == 244);
  CHECK(kb[2] == 0);
  CHECK(kb[3] == 7);

  auto v = encodeEndpointValue(r);
  CHECK(v.ifindex == 17);
  CHECK(v.identity == 1234);
  CHECK(v.ep_id == 42);
  CHECK(v.flags == 0);
  CHECK(std::memcmp(v.pod_mac, r.mac.b, 6) == 0);
  CHECK(std::memcmp(v.node_mac, r.host_mac.b, 6) == 0);
  CHECK(v.pad[0] == 0);

  r.chained = true;
  CHECK(encodeEndpointValue(r).flags == PLEXUS_EP_F_CHAINED);
  auto host = encodeHostEndpointValue();
  CHECK(host.flags == PLEXUS_EP_F_HOST);
  CHECK(host.identity == kIdentityHost);
}

TEST_CASE("ipcache encoding uses LPM prefix length and network order", "[unit][encoding]") {
  auto k = encodeIpcacheKey(*Ipv4Prefix::parse("192.168.3.77/16"));
  CHECK(k.prefixlen == 16);
  const auto* b = reinterpret_cast<const uint8_t*>(&k.ip);
  CHECK(b[0] == 192);
  CHECK(b[1] == 168);
  CHECK(b[2] == 0);  // masked
  CHECK(b[3] == 0);
  auto v = encodeIpcacheValue(7, *Ipv4::parse("172.16.0.2"));
  CHECK(v.identity == 7);
  const auto* t = reinterpret_cast<const uint8_t*>(&v.tunnel_endpoint);
  CHECK(t[0] == 172);
  CHECK(t[3] == 2);
}
