// Bad input to plexus-cni against a live agent: each case gets the spec's error or a success, and nothing leaks.
#include <catch2/catch.hpp>

#include "node_fixture.h"

using namespace plexus::testing;

namespace {
nlohmann::json errorOf(const CommandResult& r) {
  INFO("stdout: " << r.out << " stderr: " << r.err);
  REQUIRE(r.exit_code != 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  REQUIRE(j.contains("code"));
  REQUIRE(j.contains("msg"));
  return j;
}

CommandResult execRaw(const NodeFixture& node, const std::map<std::string, std::string>& env, const std::string& in) {
  return runCommand({"ip", "netns", "exec", const_cast<NodeFixture&>(node).node().name(), cniBinary()}, in, env);
}

int ipamUsed(NodeFixture& node) { return node.cliJson({"status"}).at("ipam").at("used").get<int>(); }
}  // namespace

TEST_CASE("plexus-cni rejects bad input with the spec's codes and leaks nothing", "[netns][cni]") {
  NodeFixture node("10.250.0.0/24");
  Pod pod;
  pod.netns = std::make_unique<Netns>("pd");
  pod.container_id = uniqueName("bad");
  int used = ipamUsed(node);

  std::map<std::string, std::string> env = {{"CNI_COMMAND", "ADD"},
                                            {"CNI_CONTAINERID", pod.container_id},
                                            {"CNI_NETNS", pod.netns->path()},
                                            {"CNI_IFNAME", "eth0"},
                                            {"CNI_PATH", "/usr/lib/cni"}};

  SECTION("malformed JSON is a decoding failure") {
    auto err = errorOf(execRaw(node, env, "{\"cniVersion\": \"1.0.0\", \"name\": "));
    CHECK((err["code"] == 6 || err["code"] == 7));
  }
  SECTION("an unknown cniVersion is incompatible") {
    auto cfg = node.cniConfig();
    cfg["cniVersion"] = "9.9.9";
    CHECK(errorOf(execRaw(node, env, cfg.dump()))["code"] == 1);
  }
  SECTION("missing env vars are invalid environment") {
    for (const char* var : {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"}) {
      auto e = env;
      e.erase(var);
      INFO(var);
      CHECK(errorOf(execRaw(node, e, node.cniConfig().dump()))["code"] == 4);
    }
  }
  SECTION("a netns path that does not exist fails without leaking an address or a veth") {
    auto e = env;
    e["CNI_NETNS"] = "/run/netns/does-not-exist-" + pod.container_id;
    auto err = errorOf(execRaw(node, e, node.cniConfig().dump()));
    CHECK(err["code"].get<int>() != 0);
    CHECK(node.hostLxcCount() == 0);
  }
  SECTION("an invalid config value is invalid config") {
    auto cfg = node.cniConfig();
    cfg["chaining-mode"] = "banana";
    CHECK(errorOf(execRaw(node, env, cfg.dump()))["code"] == 7);
  }
  CHECK(ipamUsed(node) == used);
  CHECK(node.cliJson({"endpoint", "list"}).empty());
}

TEST_CASE("duplicate ADD returns the same pod, DEL of an unknown container succeeds", "[netns][cni]") {
  NodeFixture node("10.251.0.0/24");
  Pod a = node.addPod("a");
  auto again = node.cni("ADD", a, node.cniConfig());
  INFO(again.out << again.err);
  REQUIRE(again.exit_code == 0);
  auto j = nlohmann::json::parse(again.out);
  CHECK(j.at("ips").at(0).at("address").get<std::string>().rfind(a.ip + "/", 0) == 0);
  CHECK(node.cliJson({"endpoint", "list"}).size() == 1);
  CHECK(node.hostLxcCount() == 1);

  Pod ghost;
  ghost.container_id = uniqueName("ghost");
  CHECK(node.cni("DEL", ghost, node.cniConfig()).exit_code == 0);
  CHECK(node.cliJson({"endpoint", "list"}).size() == 1);
}

TEST_CASE("ADD and CHECK with the agent unreachable are 'try again later'", "[netns][cni]") {
  NodeFixture node("10.252.0.0/24");
  Pod pod;
  pod.netns = std::make_unique<Netns>("pd");
  pod.container_id = uniqueName("down");
  CHECK(node.agent().stop() == 0);
  CHECK(errorOf(node.cni("ADD", pod, node.cniConfig()))["code"] == 11);
  CHECK(errorOf(node.cni("CHECK", pod, node.cniConfig()))["code"] == 11);
  CHECK(pod.netns->exec("ip link show eth0").exit_code != 0);
}

TEST_CASE("VERSION answers as podman calls it, with dummy netns", "[netns][cni]") {
  auto r = runCommand({cniBinary()}, R"({"cniVersion":"1.0.0","name":"x","type":"plexus-cni"})",
                      {{"CNI_COMMAND", "VERSION"}, {"CNI_NETNS", "dummy"}, {"CNI_IFNAME", "dummy"},
                       {"CNI_PATH", "dummy"}});
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.out);
  auto versions = j.at("supportedVersions");
  for (const char* v : {"0.3.1", "0.4.0", "1.0.0", "1.1.0"}) {
    CHECK(std::find(versions.begin(), versions.end(), v) != versions.end());
  }
}

TEST_CASE("ADD honours a requested address from CNI_ARGS and from the ips capability", "[netns][cni]") {
  NodeFixture node("10.237.0.0/24");
  Pod a;
  a.netns = std::make_unique<Netns>("pd");
  a.container_id = uniqueName("ipa");
  CniCall c = node.call("ADD", a);
  c.args = "K8S_POD_NAME=a;IP=10.237.0.77;K8S_POD_NAMESPACE=default";
  auto r = execPlugin(cniBinary(), c, node.cniConfig());
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(nlohmann::json::parse(r.out)["ips"][0]["address"] == "10.237.0.77/32");

  Pod b;
  b.netns = std::make_unique<Netns>("pd");
  b.container_id = uniqueName("ipb");
  auto cfg = node.cniConfig();
  cfg["runtimeConfig"] = {{"ips", {"10.237.0.88/24"}}};
  auto rb = node.cni("ADD", b, cfg);
  INFO(rb.out << rb.err);
  REQUIRE(rb.exit_code == 0);
  CHECK(nlohmann::json::parse(rb.out)["ips"][0]["address"] == "10.237.0.88/32");

  // The same address for another pod is refused, and nothing leaks.
  Pod c2;
  c2.netns = std::make_unique<Netns>("pd");
  c2.container_id = uniqueName("ipc");
  CniCall cc = node.call("ADD", c2);
  cc.args = "IP=10.237.0.77";
  auto clash = execPlugin(cniBinary(), cc, node.cniConfig());
  CHECK(clash.exit_code != 0);
  CHECK(nlohmann::json::parse(clash.out)["msg"].get<std::string>().find("10.237.0.77") != std::string::npos);
  CHECK(node.hostLxcCount() == 2);
  CHECK(node.cliJson({"status"})["ipam"]["used"] == 2);
}
