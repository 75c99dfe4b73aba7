// Objects the fuzzers (fuzz/, docs/fuzzing.md) found crashing the agent, kept as [unit] tests.
#include <catch2/catch.hpp>

#include "plexus/lb/service.h"

using namespace plexus;
using namespace plexus::lb;

namespace {
nlohmann::json slice(nlohmann::json conditions) {
  return {{"apiVersion", "discovery.k8s.io/v1"},
          {"kind", "EndpointSlice"},
          {"metadata", {{"name", "web-abc"}, {"namespace", "default"}, {"labels", {{"kubernetes.io/service-name", "web"}}}}},
          {"addressType", "IPv4"},
          {"ports", {{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}}},
          {"endpoints", {{{"addresses", {"10.0.0.5"}}, {"conditions", conditions}}}}};
}
}  // namespace

TEST_CASE("fuzz: EndpointSlice conditions of the wrong type are refused, naming the field", "[unit][lb][fuzz]") {
  // fuzz_manifest: `conditions: {ready: falsa}` made value("ready", true) throw type_error 302 on the
  // reconcile thread.
  auto r = parseEndpointSlice(slice({{"ready", "falsa"}}));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "EndpointSlice default/web-abc: endpoints[0].conditions.ready: must be true or false");
  CHECK(parseEndpointSlice(slice({{"terminating", 1}})).error().message.find("conditions.terminating") !=
        std::string::npos);
  CHECK(parseEndpointSlice(slice("ready")).error().message.find("endpoints[0].conditions: must be a map") !=
        std::string::npos);
  // Defaults and null still mean what the API says.
  auto ok = parseEndpointSlice(slice({{"ready", false}, {"serving", nullptr}}));
  REQUIRE(ok.ok());
  CHECK_FALSE(ok->endpoints[0].ready);
  CHECK_FALSE(ok->endpoints[0].serving);
  CHECK_FALSE(ok->endpoints[0].terminating);
}

TEST_CASE("fuzz: any other field of the wrong type is refused, not thrown", "[unit][lb][fuzz]") {
  nlohmann::json svc = {{"apiVersion", "v1"},
                        {"kind", "Service"},
                        {"metadata", {{"name", "web"}, {"namespace", "default"}}},
                        {"spec", {{"type", 7}, {"ports", {{{"port", 80}}}}}}};
  auto r = parseService(svc);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ErrorCode::kInvalidArgument);
  CHECK(r.error().message.find("Service default/web") == 0);
  auto s = slice({});
  s["metadata"]["labels"]["kubernetes.io/service-name"] = 5;
  CHECK_FALSE(parseEndpointSlice(s).ok());
}

TEST_CASE("EndpointSlice errors name the port or address that is wrong", "[unit][lb]") {
  auto s = slice(nlohmann::json::object());
  s["endpoints"].push_back({{"addresses", {"10.0.0.6", "10.0.0.x"}}});
  CHECK(parseEndpointSlice(s).error().message ==
        "EndpointSlice default/web-abc: endpoints[1].addresses[1]: must be an IPv4 address");
  s = slice(nlohmann::json::object());
  s["ports"].push_back({{"port", 0}});
  CHECK(parseEndpointSlice(s).error().message == "EndpointSlice default/web-abc: ports[1].port: must be 1-65535");
  s = slice(nlohmann::json::object());
  s["ports"][0]["protocol"] = "ICMP";
  CHECK(parseEndpointSlice(s).error().message ==
        "EndpointSlice default/web-abc: ports[0].protocol: must be TCP or UDP");
  s = slice(nlohmann::json::object());
  s["endpoints"].push_back({{"addresses", nlohmann::json::array()}});
  CHECK(parseEndpointSlice(s).error().message ==
        "EndpointSlice default/web-abc: endpoints[1].addresses: at least one address is required");
}
