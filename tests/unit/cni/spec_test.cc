#include <catch2/catch.hpp>

#include <map>

#include "plexus/cni/plugin.h"
#include "plexus/cni/spec.h"

using namespace plexus::cni;

namespace {
EnvLookup envOf(const std::map<std::string, std::string>& m) {
  return [m](const char* name) -> const char* {
    auto it = m.find(name);
    return it == m.end() ? nullptr : it->second.c_str();
  };
}
}  // namespace

TEST_CASE("env: each command needs its variables, missing ones are error 4", "[unit][cni]") {
  CniEnv env;
  CHECK(readEnv(envOf({{"CNI_COMMAND", "VERSION"}}), &env) == std::nullopt);
  auto add = readEnv(envOf({{"CNI_COMMAND", "ADD"}, {"CNI_CONTAINERID", "c"}, {"CNI_IFNAME", "eth0"}}), &env);
  REQUIRE(add.has_value());
  CHECK(add->code == kInvalidEnv);
  CHECK(add->msg.find("CNI_NETNS") != std::string::npos);
  CHECK(add->msg.find("CNI_PATH") != std::string::npos);
  // DEL may come with an empty netns (repeated DELs).
  CHECK(readEnv(envOf({{"CNI_COMMAND", "DEL"}, {"CNI_CONTAINERID", "c"}, {"CNI_IFNAME", "eth0"}}), &env) ==
        std::nullopt);
  CHECK(readEnv(envOf({}), &env)->code == kInvalidEnv);
  CHECK(readEnv(envOf({{"CNI_COMMAND", "FROB"}}), &env)->code == kInvalidEnv);
}

TEST_CASE("CNI_ARGS: any order, IgnoreUnknown, requested IP and MAC", "[unit][cni]") {
  CniArgs a;
  REQUIRE(parseArgs("K8S_POD_UID=u1;IgnoreUnknown=1;K8S_POD_NAME=web;FOO=bar;K8S_POD_NAMESPACE=prod;IP=10.1.0.9/24;"
                    "MAC=0a:00:00:00:00:01",
                    &a) == std::nullopt);
  CHECK(a.pod_name == "web");
  CHECK(a.pod_namespace == "prod");
  CHECK(a.pod_uid == "u1");
  CHECK(a.ip == "10.1.0.9");
  CHECK(a.mac == "0a:00:00:00:00:01");
  CniArgs b;
  auto unknown = parseArgs("K8S_POD_NAME=web;FOO=bar", &b);
  REQUIRE(unknown.has_value());
  CHECK(unknown->msg.find("FOO") != std::string::npos);
  CHECK(parseArgs("novalue", &b)->code == kInvalidEnv);
  CHECK(parseArgs("", &b) == std::nullopt);
}

TEST_CASE("network config: versions, chaining mode, bad values", "[unit][cni]") {
  NetConf c;
  REQUIRE(parseNetConf(R"({"cniVersion":"1.0.0","name":"n","type":"plexus-cni","mtu":1400,
      "runtimeConfig":{"ips":["10.0.0.5/24"],"mac":"0a:00:00:00:00:02"}})", "/run/x.sock", &c) == std::nullopt);
  CHECK(c.socket == "/run/x.sock");
  CHECK(c.mtu == 1400);
  CHECK(c.runtime_ips == std::vector<std::string>{"10.0.0.5"});
  CHECK(c.chaining == ChainingMode::kNone);
  NetConf d;
  CHECK(parseNetConf("{not json", "/s", &d)->code == kDecodeFailure);
  CHECK(parseNetConf(R"({"cniVersion":"9.9.9"})", "/s", &d)->code == kIncompatibleVersion);
  CHECK(parseNetConf(R"({"cniVersion":"1.0.0","chaining-mode":"banana"})", "/s", &d)->code == kInvalidConfig);
  CHECK(parseNetConf(R"({"cniVersion":"1.0.0","mtu":"big"})", "/s", &d)->code == kInvalidConfig);
  CHECK(parseNetConf(R"({"cniVersion":"1.0.0","timeout-seconds":0})", "/s", &d)->code == kInvalidConfig);
  NetConf e;
  REQUIRE(parseNetConf(R"({"cniVersion":"0.4.0","chaining-mode":"generic-veth","unknown-key":1})", "/s", &e) ==
          std::nullopt);
  CHECK(e.chaining == ChainingMode::kGenericVeth);
}

TEST_CASE("results follow each version's format", "[unit][cni]") {
  Result r;
  r.interfaces = {{"lxc0123", "aa:bb:cc:dd:ee:ff", ""}, {"eth0", "0a:58:0a:f4:00:07", "/run/netns/p"}};
  r.ips = {{"10.244.0.7/32", "10.244.0.1", 1}};
  r.routes = {{"0.0.0.0/0", "10.244.0.1"}};
  auto v1 = resultJson(r, "1.0.0");
  CHECK(v1 == nlohmann::json::parse(R"({"cniVersion":"1.0.0",
      "interfaces":[{"name":"lxc0123","mac":"aa:bb:cc:dd:ee:ff"},
                    {"name":"eth0","mac":"0a:58:0a:f4:00:07","sandbox":"/run/netns/p"}],
      "ips":[{"address":"10.244.0.7/32","gateway":"10.244.0.1","interface":1}],
      "routes":[{"dst":"0.0.0.0/0","gw":"10.244.0.1"}],"dns":{}})"));
  auto v031 = resultJson(r, "0.3.1");
  CHECK(v031["cniVersion"] == "0.3.1");
  CHECK(v031["ips"][0]["version"] == "4");
  // Conversion both ways.
  CHECK_FALSE(convertResult(v031, "1.1.0")["ips"][0].contains("version"));
  CHECK(convertResult(v1, "0.4.0")["ips"][0]["version"] == "4");
}

TEST_CASE("errors and VERSION answers are the spec's JSON", "[unit][cni]") {
  auto e = errorJson({kTryAgainLater, "agent down", "ADD"}, "1.0.0");
  CHECK(e == nlohmann::json{{"cniVersion", "1.0.0"}, {"code", 11}, {"msg", "agent down"}, {"details", "ADD"}});
  auto v = versionJson("0.4.0");
  CHECK(v["cniVersion"] == "0.4.0");
  auto versions = v["supportedVersions"];
  for (const char* want : {"0.3.1", "0.4.0", "1.0.0", "1.1.0"}) {
    CHECK(std::find(versions.begin(), versions.end(), want) != versions.end());
  }
}

TEST_CASE("generic-veth chaining reads the previous plugin's interfaces and addresses", "[unit][cni]") {
  auto prev = nlohmann::json::parse(R"({"cniVersion":"1.0.0",
      "interfaces":[{"name":"veth1234","mac":"aa:aa:aa:aa:aa:aa"},
                    {"name":"eth0","mac":"bb:bb:bb:bb:bb:bb","sandbox":"/run/netns/p"}],
      "ips":[{"address":"10.99.0.5/24","gateway":"10.99.0.1","interface":1}]})");
  CniEnv env;
  env.netns = "/run/netns/p";
  env.ifname = "eth0";
  ChainedIface c;
  REQUIRE(chainedFromPrevResult(prev, env, &c) == std::nullopt);
  CHECK(c.host_ifname == "veth1234");
  CHECK(c.container_ifname == "eth0");
  CHECK(c.container_mac == "bb:bb:bb:bb:bb:bb");
  CHECK(c.ips == std::vector<std::string>{"10.99.0.5/24"});
  ChainedIface none;
  CHECK(chainedFromPrevResult(nullptr, env, &none)->code == kInvalidConfig);
  auto no_ips = prev;
  no_ips["ips"] = nlohmann::json::array();
  ChainedIface x;
  CHECK(chainedFromPrevResult(no_ips, env, &x)->code == kInvalidConfig);
}

TEST_CASE("the plugin answers without an agent: VERSION, bad input, and try-again-later", "[unit][cni]") {
  auto v = runPlugin(envOf({{"CNI_COMMAND", "VERSION"}, {"CNI_NETNS", "dummy"}}), R"({"cniVersion":"1.0.0"})");
  CHECK(v.exit_code == 0);
  CHECK(nlohmann::json::parse(v.out)["cniVersion"] == "1.0.0");
  auto bad = runPlugin(envOf({{"CNI_COMMAND", "ADD"}}), "{");
  CHECK(bad.exit_code != 0);
  CHECK(nlohmann::json::parse(bad.out)["code"] == kDecodeFailure);
  std::map<std::string, std::string> env = {{"CNI_COMMAND", "ADD"}, {"CNI_CONTAINERID", "c1"},
                                            {"CNI_NETNS", "/proc/self/ns/net"}, {"CNI_IFNAME", "eth0"},
                                            {"CNI_PATH", "/opt/cni/bin"}};
  auto down = runPlugin(envOf(env), R"({"cniVersion":"1.0.0","name":"n","type":"plexus-cni",
                                       "socket":"/nonexistent/plexus.sock"})");
  CHECK(down.exit_code != 0);
  auto j = nlohmann::json::parse(down.out);
  CHECK(j["code"] == kTryAgainLater);
  CHECK(j["msg"].get<std::string>().find("/nonexistent/plexus.sock") != std::string::npos);
  env["CNI_COMMAND"] = "STATUS";
  auto status = runPlugin(envOf(env), R"({"cniVersion":"1.1.0","socket":"/nonexistent/plexus.sock"})");
  CHECK(nlohmann::json::parse(status.out)["code"] == kPluginNotAvailable);
  auto old = runPlugin(envOf(env), R"({"cniVersion":"1.0.0","socket":"/nonexistent/plexus.sock"})");
  CHECK(nlohmann::json::parse(old.out)["code"] == kIncompatibleVersion);
}
