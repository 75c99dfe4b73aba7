// Bad input to plexus-cni against a live agent, executed exactly as a runtime does (env vars, config on stdin,
// result on stdout): each case gets the spec's error or a success, nothing is created for a refused call, and
// GC or a repeated ADD never takes a pod's network away.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

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

bool mentions(const nlohmann::json& error, const std::string& what) {
  return error.at("msg").get<std::string>().find(what) != std::string::npos;
}

CommandResult execRaw(const NodeFixture& node, const std::map<std::string, std::string>& env, const std::string& in) {
  return runCommand({"ip", "netns", "exec", const_cast<NodeFixture&>(node).node().name(), cniBinary()}, in, env);
}

int ipamUsed(NodeFixture& node) { return node.cliJson({"status"}).at("ipam").at("used").get<int>(); }

// Links inside a namespace, loopback included.
int linkCount(const Netns& ns) {
  auto r = ns.exec("ip -o link show | wc -l");
  return r.exit_code == 0 ? std::stoi(r.out) : -1;
}

std::set<std::string> endpointContainers(NodeFixture& node) {
  std::set<std::string> out;
  for (const auto& e : node.cliJson({"endpoint", "list"})) {
    out.insert(e.at("container_id").get<std::string>());
  }
  return out;
}

// GC as libcni issues it: no container, netns or interface; the list (if any) in the config.
CommandResult gc(const NodeFixture& node, const nlohmann::json& config) {
  CniCall c = node.call("GC", Pod{});
  c.ifname = "";
  return execPlugin(cniBinary(), c, config);
}

nlohmann::json attachments(const std::vector<const Pod*>& pods) {
  nlohmann::json list = nlohmann::json::array();
  for (const Pod* p : pods) {
    list.push_back({{"containerID", p->container_id}, {"ifname", p->ifname}});
  }
  return list;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The agent process that serves this node's socket: the one whose command line names it (a path unique to the test).
pid_t agentPid(const NodeFixture& node) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::string cmdline = readFile(entry.path().string() + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    bool agent = cmdline.find("plexus-agent") != std::string::npos;
    if (agent && cmdline.find(" " + node.socket() + " ") != std::string::npos) {
      return static_cast<pid_t>(std::stoi(name));
    }
  }
  return -1;
}

// Runs fn and returns how long it took.
template <typename Fn>
std::chrono::milliseconds timed(Fn&& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
}
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
  }
  SECTION("an invalid config value is invalid config") {
    auto cfg = node.cniConfig();
    cfg["chaining-mode"] = "banana";
    CHECK(errorOf(execRaw(node, env, cfg.dump()))["code"] == 7);
  }
  SECTION("a container id or interface name outside the spec's rules is invalid environment, naming it") {
    for (const std::string id : {"-lead", ".lead", "_lead", "a/b", "../up", "a b", "a:b", "a;b", "ctr$", "c\ttab",
                                 "c\xc3\xa9"}) {
      INFO("CNI_CONTAINERID=" << id);
      auto e = env;
      e["CNI_CONTAINERID"] = id;
      auto err = errorOf(execRaw(node, e, node.cniConfig().dump()));
      CHECK(err["code"] == 4);
      CHECK(mentions(err, "CNI_CONTAINERID"));
    }
    for (const std::string ifname : {"eth0/1", "a:b", "a b", "a\tb", ".", "..", "abcdefghijklmnop"}) {
      INFO("CNI_IFNAME=" << ifname);
      auto e = env;
      e["CNI_IFNAME"] = ifname;
      auto err = errorOf(execRaw(node, e, node.cniConfig().dump()));
      CHECK(err["code"] == 4);
      CHECK(mentions(err, "CNI_IFNAME"));
    }
  }
  SECTION("a network config without a valid name is invalid config") {
    std::vector<nlohmann::json> names = {nullptr, "", "-net", ".net", "my net", "net/1", "net:1", 42};
    for (const auto& name : names) {
      INFO("name " << name.dump());
      auto cfg = node.cniConfig();
      if (name.is_null()) {
        cfg.erase("name");
      } else {
        cfg["name"] = name;
      }
      auto err = errorOf(execRaw(node, env, cfg.dump()));
      CHECK(err["code"] == 7);
      CHECK(mentions(err, "name"));
    }
  }
  // Nothing was created for any refused call: no address, no endpoint, no host veth, no pod interface.
  CHECK(ipamUsed(node) == used);
  CHECK(node.cliJson({"endpoint", "list"}).empty());
  CHECK(node.hostLxcCount() == 0);
  CHECK(linkCount(*pod.netns) == 1);
}

TEST_CASE("a second ADD for an attached container and interface fails and the first pod keeps working",
          "[netns][cni]") {
  NodeFixture node("10.251.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  REQUIRE(ping(*a.netns, b.ip));
  auto ifindex = node.endpointIfindex(a.ip);
  REQUIRE(ifindex.has_value());

  SECTION("into the same namespace: the interface is already there") {
    auto err = errorOf(node.cni("ADD", a, node.cniConfig()));
    CHECK(err["code"] == 101);
    CHECK(mentions(err, "eth0"));
  }
  SECTION("into another namespace: the agent already holds that container and interface") {
    Pod again;
    again.netns = std::make_unique<Netns>("pd");
    again.container_id = a.container_id;
    auto err = errorOf(node.cni("ADD", again, node.cniConfig()));
    CHECK(err["code"] == 101);
    CHECK(mentions(err, a.container_id));
    CHECK(linkCount(*again.netns) == 1);
  }
  // The first attachment is intact: its endpoint, address, veth, map entry, and real traffic both ways.
  CHECK(endpointContainers(node) == std::set<std::string>{a.container_id, b.container_id});
  CHECK(ipamUsed(node) == 2);
  CHECK(node.hostLxcCount() == 2);
  CHECK(node.hostLinkExists(a.host_veth));
  CHECK(node.endpointIfindex(a.ip) == ifindex);
  CHECK(ping(*a.netns, b.ip));
  CHECK(ping(*b.netns, a.ip));
  requireTcpExchange(b, a);
  auto check = node.cni("CHECK", a, node.cniConfig());
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);

  // DEL of a container the agent never saw succeeds and touches nothing else.
  Pod ghost;
  ghost.container_id = uniqueName("ghost");
  CHECK(node.cni("DEL", ghost, node.cniConfig()).exit_code == 0);
  CHECK(node.cliJson({"endpoint", "list"}).size() == 2);
}

TEST_CASE("GC keeps the attachments listed under either key and releases only the others", "[netns][cni]") {
  NodeFixture node("10.253.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  Pod c = node.addPod("c");
  auto cfg = node.cniConfig("1.1.0");

  SECTION("cni.dev/attachments alone (the CNI 1.1.0 key)") {
    cfg["cni.dev/attachments"] = attachments({&a, &b});
  }
  SECTION("both keys, as libcni sends them") {
    cfg["cni.dev/attachments"] = attachments({&a, &b});
    cfg["cni.dev/valid-attachments"] = attachments({&a, &b});
  }
  SECTION("cni.dev/valid-attachments alone") {
    cfg["cni.dev/valid-attachments"] = attachments({&a, &b});
  }
  auto r = gc(node, cfg);
  INFO(r.out << r.err << "\nagent log:\n" << node.agent().log());
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.empty());
  CHECK(endpointContainers(node) == std::set<std::string>{a.container_id, b.container_id});
  CHECK(ipamUsed(node) == 2);
  CHECK_FALSE(node.hostLinkExists(c.host_veth));
  CHECK_FALSE(node.endpointIfindex(c.ip).has_value());
  CHECK(node.hostLinkExists(a.host_veth));
  CHECK(ping(*a.netns, b.ip));
  requireTcpExchange(b, a);
}

TEST_CASE("GC without a list of valid attachments removes nothing and says so", "[netns][cni]") {
  NodeFixture node("10.254.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  auto cfg = node.cniConfig("1.1.0");
  std::string log_file = node.dir() + "/plexus-cni.log";
  cfg["log-file"] = log_file;

  SECTION("neither key") {}
  SECTION("a null list (a Go runtime's nil slice) is no list") {
    cfg["cni.dev/valid-attachments"] = nullptr;
    cfg["cni.dev/attachments"] = nullptr;
  }
  auto r = gc(node, cfg);
  INFO(r.out << r.err << "\nagent log:\n" << node.agent().log());
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.find("nothing removed") != std::string::npos);
  CHECK(readFile(log_file).find("nothing removed") != std::string::npos);
  CHECK(node.agent().log().find("nothing removed") != std::string::npos);
  CHECK(endpointContainers(node) == std::set<std::string>{a.container_id, b.container_id});
  CHECK(ipamUsed(node) == 2);
  CHECK(node.hostLxcCount() == 2);
  CHECK(ping(*a.netns, b.ip));

  // An explicitly empty list is the runtime saying no attachment is valid: everything goes.
  cfg["cni.dev/attachments"] = nlohmann::json::array();
  cfg["cni.dev/valid-attachments"] = nlohmann::json::array();
  REQUIRE(gc(node, cfg).exit_code == 0);
  CHECK(node.cliJson({"endpoint", "list"}).empty());
  CHECK(ipamUsed(node) == 0);
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

  // A DEL queued while the agent is down names a file after the container: an id that is not the spec's
  // is refused before anything is written (here it would climb out of cni-pending/).
  Pod escape;
  escape.netns = std::make_unique<Netns>("pd");
  escape.container_id = "../escape";
  auto err = errorOf(node.cni("DEL", escape, node.cniConfig()));
  CHECK(err["code"] == 4);
  CHECK(mentions(err, "CNI_CONTAINERID"));
  CHECK_FALSE(std::filesystem::exists(node.dir() + "/escape_eth0.json"));
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
  auto clash = errorOf(execPlugin(cniBinary(), cc, node.cniConfig()));
  CHECK(clash["code"] == 101);
  CHECK(mentions(clash, "10.237.0.77"));
  CHECK(node.hostLxcCount() == 2);
  CHECK(node.cliJson({"status"})["ipam"]["used"] == 2);
}

TEST_CASE("an agent that stops answering or dies with its socket left: calls fail in time, DEL is queued",
          "[netns][cni]") {
  NodeFixture node("10.209.0.0/24");
  Pod a = node.addPod("a");
  auto cfg = node.cniConfig();
  cfg["timeout-seconds"] = 1;

  // SIGSTOP: the socket still accepts connections (the kernel queues them) but nothing answers. The call ends at
  // the configured deadline with "try again later", never hangs.
  pid_t pid = agentPid(node);
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGSTOP) == 0);
  Pod late;
  late.netns = std::make_unique<Netns>("pd");
  late.container_id = uniqueName("late");
  nlohmann::json add_err, check_err;
  auto add_took = timed([&] { add_err = errorOf(node.cni("ADD", late, cfg)); });
  auto check_took = timed([&] { check_err = errorOf(node.cni("CHECK", a, cfg)); });
  REQUIRE(::kill(pid, SIGCONT) == 0);
  CHECK(add_err["code"] == 11);
  CHECK(mentions(add_err, node.socket()));
  CHECK(mentions(add_err, "Deadline"));
  CHECK(check_err["code"] == 11);
  CHECK(add_took >= std::chrono::milliseconds(900));
  CHECK(add_took < std::chrono::seconds(10));
  CHECK(check_took < std::chrono::seconds(10));
  // Answering again: the wired pod checks out.
  auto check = node.cni("CHECK", a, node.cniConfig());
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);

  // kill -9 leaves the socket file with nobody listening: refused at once (not after the 60 s default), and DEL
  // takes the pod's interface down and queues the rest for the agent's next start.
  node.agent().kill9();
  REQUIRE(std::filesystem::exists(node.socket()));
  Pod after;
  after.netns = std::make_unique<Netns>("pd");
  after.container_id = uniqueName("kill");
  nlohmann::json refused;
  auto refused_took = timed([&] { refused = errorOf(node.cni("ADD", after, node.cniConfig())); });
  CHECK(refused["code"] == 11);
  CHECK(mentions(refused, "refused"));
  CHECK(refused_took < std::chrono::seconds(10));
  auto del = node.cni("DEL", a, node.cniConfig());
  INFO(del.out << del.err);
  CHECK(del.exit_code == 0);
  CHECK(a.netns->exec("ip link show eth0").exit_code != 0);
  CHECK(std::filesystem::exists(std::filesystem::path(node.socket()).parent_path() / "cni-pending" /
                                (a.container_id + "_eth0.json")));
  REQUIRE(node.agent().start());
  CHECK(endpointContainers(node).count(a.container_id) == 0);
}
