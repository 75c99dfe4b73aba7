// Inputs the fuzzers (fuzz/, docs/fuzzing.md) found crashing plexus-cni, kept as [unit] tests.
#include <catch2/catch.hpp>

#include "plexus/cni/plugin.h"
#include "plexus/cni/spec.h"

using namespace plexus::cni;

TEST_CASE("fuzz: bytes that are not UTF-8 in the environment are written, not thrown", "[unit][cni][fuzz]") {
  // fuzz_cni: CNI_COMMAND=A\xd0D made the error JSON's dump() throw type_error 316, and the plugin died.
  std::string bad = "A\xd0" "D";
  auto out = runPlugin([&](const char* name) -> const char* { return std::string(name) == "CNI_COMMAND" ? bad.c_str() : nullptr; },
                       R"({"cniVersion":"1.0.0","name":"n","type":"plexus-cni"})");
  CHECK(out.exit_code != 0);
  auto j = nlohmann::json::parse(out.out);
  CHECK(j["code"] == kInvalidEnv);
  CHECK(j["msg"].get<std::string>().find("A\xef\xbf\xbd" "D") != std::string::npos);
  CHECK(dumpJson(nlohmann::json{{"msg", bad}}) == "{\"msg\":\"A\xef\xbf\xbd" "D\"}");
}

TEST_CASE("fuzz: a prevResult of the wrong shape is refused for chaining, and passed on as it is", "[unit][cni][fuzz]") {
  // fuzz_cni: an interface that was not an object (or a name that was not a string) made value() throw
  // type_error 306/302 in chainedFromPrevResult, and an ips entry that was not an object did the same in
  // convertResult.
  CniEnv env;
  env.netns = "/run/netns/p";
  env.ifname = "eth0";
  for (const char* prev : {
           R"({"interfaces":["veth1"],"ips":[]})",
           R"({"interfaces":[{"name":7}],"ips":[]})",
           R"({"interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/p"}],"ips":[5]})",
           R"({"interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/p"}],"ips":[{"address":"10.0.0.5/24","interface":1e300}]})",
           R"({"interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/p"}],"ips":{}})",
       }) {
    INFO(prev);
    ChainedIface c;
    auto e = chainedFromPrevResult(nlohmann::json::parse(prev), env, &c);
    REQUIRE(e);
    CHECK(e->code == kInvalidConfig);
    CHECK(e->msg.find("prevResult.") == 0);
  }
  auto converted = convertResult(nlohmann::json::parse(R"({"ips":[5,{"address":"fd00::1/64"},{"address":7}]})"), "0.4.0");
  CHECK(converted["ips"][0] == 5);
  CHECK(converted["ips"][1]["version"] == "6");
  CHECK(converted["ips"][2]["version"] == "4");
}
