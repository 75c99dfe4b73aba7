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
  auto banana = parseNetConf(R"({"cniVersion":"1.0.0","name":"n","chaining-mode":"banana"})", "/s", &d);
  CHECK(banana->code == kInvalidConfig);
  CHECK(banana->msg.find("chaining-mode") != std::string::npos);
  auto big = parseNetConf(R"({"cniVersion":"1.0.0","name":"n","mtu":"big"})", "/s", &d);
  CHECK(big->code == kInvalidConfig);
  CHECK(big->msg.find("mtu") != std::string::npos);
  auto zero = parseNetConf(R"({"cniVersion":"1.0.0","name":"n","timeout-seconds":0})", "/s", &d);
  CHECK(zero->code == kInvalidConfig);
  CHECK(zero->msg.find("timeout-seconds") != std::string::npos);
  NetConf e;
  REQUIRE(parseNetConf(R"({"cniVersion":"0.4.0","name":"n","chaining-mode":"generic-veth","unknown-key":1})", "/s",
                       &e) == std::nullopt);
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
                                            {"CNI_NETNS", "/proc/self/ns/net"}, {"CNI_IFNAME", "plxunit0"},
                                            {"CNI_PATH", "/opt/cni/bin"}};
  auto down = runPlugin(envOf(env), R"({"cniVersion":"1.0.0","name":"n","type":"plexus-cni",
                                       "socket":"/nonexistent/plexus.sock"})");
  CHECK(down.exit_code != 0);
  auto j = nlohmann::json::parse(down.out);
  CHECK(j["code"] == kTryAgainLater);
  CHECK(j["msg"].get<std::string>().find("/nonexistent/plexus.sock") != std::string::npos);
  env["CNI_COMMAND"] = "STATUS";
  auto status = runPlugin(envOf(env), R"({"cniVersion":"1.1.0","name":"n","socket":"/nonexistent/plexus.sock"})");
  CHECK(nlohmann::json::parse(status.out)["code"] == kPluginNotAvailable);
  auto old = runPlugin(envOf(env), R"({"cniVersion":"1.0.0","name":"n","socket":"/nonexistent/plexus.sock"})");
  CHECK(nlohmann::json::parse(old.out)["code"] == kIncompatibleVersion);
}

namespace {
std::map<std::string, std::string> addEnv() {
  return {{"CNI_COMMAND", "ADD"}, {"CNI_CONTAINERID", "c1"}, {"CNI_NETNS", "/proc/self/ns/net"},
          {"CNI_IFNAME", "eth0"}, {"CNI_PATH", "/opt/cni/bin"}};
}

// readEnv with one variable replaced; the error it returns, if any.
std::optional<CniError> envWith(const std::string& command, const std::string& var, const std::string& value) {
  auto m = addEnv();
  m["CNI_COMMAND"] = command;
  m[var] = value;
  CniEnv env;
  return readEnv(envOf(m), &env);
}

std::optional<CniError> confWith(const nlohmann::json& name) {
  nlohmann::json j = {{"cniVersion", "1.0.0"}, {"type", "plexus-cni"}};
  if (!name.is_null()) {
    j["name"] = name;
  }
  NetConf c;
  return parseNetConf(j.dump(), "/s", &c);
}
}  // namespace

TEST_CASE("CNI_CONTAINERID: a letter or digit, then letters, digits, '_', '.', '-'; else error 4 naming it",
          "[unit][cni]") {
  const std::string sha256_hex(64, 'f');  // what containerd and CRI-O use
  for (const auto& ok : {std::string("a"), std::string("Z"), std::string("7"), std::string("abc_DEF.ghi-jkl"),
                         sha256_hex, std::string("a-"), std::string("a."), std::string("k8s_POD.1-x")}) {
    INFO(ok);
    CHECK(containerIdProblem(ok) == std::nullopt);
    CHECK(envWith("ADD", "CNI_CONTAINERID", ok) == std::nullopt);
  }
  for (const std::string bad : {"-a", "_a", ".a", "..", "a/b", "../x", "a b", " a", "a\t", "a:b", "a;b", "a=b", "a$",
                                "a@b", "a+b", "a\\b", "caf\xc3\xa9", "\xc3\xa9t\xc3\xa9", "a\nb"}) {
    INFO(bad);
    CHECK(containerIdProblem(bad).has_value());
    for (const char* command : {"ADD", "DEL", "CHECK"}) {
      INFO(command);
      auto e = envWith(command, "CNI_CONTAINERID", bad);
      REQUIRE(e.has_value());
      CHECK(e->code == kInvalidEnv);
      CHECK(e->msg.find("CNI_CONTAINERID") != std::string::npos);
    }
  }
  // Missing is reported as missing (it is required), not as malformed.
  auto missing = envWith("ADD", "CNI_CONTAINERID", "");
  REQUIRE(missing.has_value());
  CHECK(missing->code == kInvalidEnv);
  CHECK(missing->msg.find("missing") != std::string::npos);
  // Commands that take no container ignore it (libcni sends empty or dummy values).
  for (const char* command : {"VERSION", "STATUS", "GC"}) {
    INFO(command);
    CHECK(envWith(command, "CNI_CONTAINERID", "../dummy") == std::nullopt);
  }
}

TEST_CASE("CNI_IFNAME: 1-15 bytes, not . or .., no '/', ':' or whitespace; else error 4 naming it", "[unit][cni]") {
  for (const std::string ok : {"eth0", "e", "abcdefghijklmno", "net1@x", "eth0.100", "a-b_c", "..a", "\xc3\xa9th0"}) {
    INFO(ok);
    CHECK(ifnameProblem(ok) == std::nullopt);
    CHECK(envWith("ADD", "CNI_IFNAME", ok) == std::nullopt);
  }
  struct Case {
    std::string ifname;
    std::string why;  // a word of the message
  };
  const Case bad[] = {{"abcdefghijklmnop", "15"},
                      {"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", "15"},  // 8 chars, 16 bytes
                      {".", "'.'"},
                      {"..", "'..'"},
                      {"eth0/1", "'/'"},
                      {"/", "'/'"},
                      {"a:b", "':'"},
                      {"a b", "whitespace"},
                      {" eth0", "whitespace"},
                      {"eth0 ", "whitespace"},
                      {"a\tb", "whitespace"},
                      {"a\nb", "whitespace"},
                      {"a\vb", "whitespace"},
                      {"a\fb", "whitespace"},
                      {"a\rb", "whitespace"},
                      {"a\xc2\xa0" "b", "whitespace"},        // U+00A0 no-break space
                      {"a\xc2\x85" "b", "whitespace"},        // U+0085 next line
                      {"a\xe2\x80\x83" "b", "whitespace"},    // U+2003 em space
                      {"a\xe2\x80\xa8" "b", "whitespace"},    // U+2028 line separator
                      {"a\xe3\x80\x80" "b", "whitespace"}};   // U+3000 ideographic space
  for (const auto& c : bad) {
    INFO(c.ifname);
    auto why = ifnameProblem(c.ifname);
    REQUIRE(why.has_value());
    CHECK(why->find(c.why) != std::string::npos);
    for (const char* command : {"ADD", "DEL", "CHECK"}) {
      INFO(command);
      auto e = envWith(command, "CNI_IFNAME", c.ifname);
      REQUIRE(e.has_value());
      CHECK(e->code == kInvalidEnv);
      CHECK(e->msg.find("CNI_IFNAME") != std::string::npos);
    }
  }
  CHECK(ifnameProblem("").has_value());
  auto missing = envWith("DEL", "CNI_IFNAME", "");
  REQUIRE(missing.has_value());
  CHECK(missing->msg.find("CNI_IFNAME") != std::string::npos);
  CHECK(envWith("GC", "CNI_IFNAME", "a/b") == std::nullopt);
}

TEST_CASE("network config: a valid name is required, else error 7 naming it", "[unit][cni]") {
  for (const std::string ok : {"plexus", "k8s-pod-network", "net_1.2", "0", "A"}) {
    INFO(ok);
    CHECK(networkNameProblem(ok) == std::nullopt);
    CHECK(confWith(ok) == std::nullopt);
  }
  std::vector<nlohmann::json> bad = {nullptr, "", "-net", "_net", ".net", "my net", "net/1", "net:1", "n\xc3\xa9t",
                                     42, nlohmann::json::array({"plexus"}), true};
  for (const auto& name : bad) {
    INFO(name.dump());
    auto e = confWith(name);
    REQUIRE(e.has_value());
    CHECK(e->code == kInvalidConfig);
    CHECK(e->msg.find("name") != std::string::npos);
  }
  NetConf c;
  REQUIRE(parseNetConf(R"({"cniVersion":"1.0.0","name":"plexus-1"})", "/s", &c) == std::nullopt);
  CHECK(c.name == "plexus-1");
}

TEST_CASE("GC: either key lists the attachments to keep; no list is not an empty list", "[unit][cni]") {
  auto gcOf = [](const std::string& text) {
    NetConf c;
    auto perr = parseNetConf(text, "/s", &c);
    REQUIRE(perr == std::nullopt);
    std::optional<std::vector<GcAttachment>> keep;
    auto e = gcAttachments(c, &keep);
    return std::make_pair(e, keep);
  };
  using List = std::vector<GcAttachment>;
  SECTION("neither key, or null lists: no list at all") {
    for (const char* text : {R"({"cniVersion":"1.1.0","name":"n"})",
                             R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":null})",
                             R"({"cniVersion":"1.1.0","name":"n","cni.dev/attachments":null,
                                 "cni.dev/valid-attachments":null})"}) {
      INFO(text);
      auto [e, keep] = gcOf(text);
      CHECK(e == std::nullopt);
      CHECK_FALSE(keep.has_value());
    }
  }
  SECTION("the CNI 1.1.0 key alone") {
    auto [e, keep] = gcOf(R"({"cniVersion":"1.1.0","name":"n",
        "cni.dev/attachments":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"net1"}]})");
    CHECK(e == std::nullopt);
    REQUIRE(keep.has_value());
    CHECK(*keep == List{{"c1", "eth0"}, {"c2", "net1"}});
  }
  SECTION("libcni's key alone") {
    auto [e, keep] = gcOf(R"({"cniVersion":"1.1.0","name":"n",
        "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]})");
    CHECK(e == std::nullopt);
    REQUIRE(keep.has_value());
    CHECK(*keep == List{{"c1", "eth0"}});
  }
  SECTION("both keys: the union, each attachment once; a missing ifname is eth0") {
    auto [e, keep] = gcOf(R"({"cniVersion":"1.1.0","name":"n",
        "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c3"}],
        "cni.dev/attachments":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"eth0"}]})");
    CHECK(e == std::nullopt);
    REQUIRE(keep.has_value());
    CHECK(*keep == List{{"c1", "eth0"}, {"c2", "eth0"}, {"c3", "eth0"}});
  }
  SECTION("an empty list is a list: nothing is valid") {
    auto [e, keep] = gcOf(R"({"cniVersion":"1.1.0","name":"n","cni.dev/attachments":[]})");
    CHECK(e == std::nullopt);
    REQUIRE(keep.has_value());
    CHECK(keep->empty());
  }
  SECTION("a malformed list is error 7 naming the key") {
    for (const char* text :
         {R"({"cniVersion":"1.1.0","name":"n","cni.dev/attachments":"c1"})",
          R"({"cniVersion":"1.1.0","name":"n","cni.dev/attachments":[{"ifname":"eth0"}]})",
          R"({"cniVersion":"1.1.0","name":"n","cni.dev/attachments":[{"containerID":7}]})",
          R"({"cniVersion":"1.1.0","name":"n","cni.dev/attachments":[{"containerID":"c1","ifname":1}]})",
          R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[],"cni.dev/attachments":{}})"}) {
      INFO(text);
      auto [e, keep] = gcOf(text);
      REQUIRE(e.has_value());
      CHECK(e->code == kInvalidConfig);
      CHECK(e->msg.find("cni.dev/attachments") != std::string::npos);
      CHECK_FALSE(keep.has_value());
    }
    auto [e, keep] = gcOf(R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":{}})");
    REQUIRE(e.has_value());
    CHECK(e->msg.find("cni.dev/valid-attachments") != std::string::npos);
  }
}

TEST_CASE("the plugin validates before it contacts the agent or creates anything", "[unit][cni]") {
  const std::string conf = R"({"cniVersion":"1.0.0","name":"n","type":"plexus-cni",
                              "socket":"/nonexistent/plexus.sock"})";
  auto codeOf = [](const PluginOutput& out) {
    CHECK(out.exit_code != 0);
    return nlohmann::json::parse(out.out).at("code").get<int>();
  };
  // A valid request reaches for the agent (unreachable here: try again later)...
  auto env = addEnv();
  env["CNI_IFNAME"] = "plxunit0";
  CHECK(codeOf(runPlugin(envOf(env), conf)) == kTryAgainLater);
  // ...an invalid one is refused first, in the config's version.
  auto bad_id = env;
  bad_id["CNI_CONTAINERID"] = "-x";
  auto out = runPlugin(envOf(bad_id), conf);
  CHECK(codeOf(out) == kInvalidEnv);
  CHECK(nlohmann::json::parse(out.out)["cniVersion"] == "1.0.0");
  CHECK(nlohmann::json::parse(out.out)["msg"].get<std::string>().find("CNI_CONTAINERID") != std::string::npos);
  auto bad_if = env;
  bad_if["CNI_IFNAME"] = "a:b";
  CHECK(codeOf(runPlugin(envOf(bad_if), conf)) == kInvalidEnv);
  auto no_name = runPlugin(envOf(env), R"({"cniVersion":"1.0.0","type":"plexus-cni","socket":"/x"})");
  CHECK(codeOf(no_name) == kInvalidConfig);
  CHECK(nlohmann::json::parse(no_name.out)["cniVersion"] == "1.0.0");
  // DEL with the agent down queues a file named after the container: a bad id never gets that far.
  auto del = bad_id;
  del["CNI_COMMAND"] = "DEL";
  del["CNI_CONTAINERID"] = "../../x";
  CHECK(codeOf(runPlugin(envOf(del), conf)) == kInvalidEnv);
  // VERSION answers whatever the config lacks.
  auto v = runPlugin(envOf({{"CNI_COMMAND", "VERSION"}}), R"({"cniVersion":"0.4.0"})");
  CHECK(v.exit_code == 0);
  CHECK(nlohmann::json::parse(v.out)["cniVersion"] == "0.4.0");
  // GC with a malformed list is refused before the agent is asked.
  auto gc = runPlugin(envOf({{"CNI_COMMAND", "GC"}}),
                      R"({"cniVersion":"1.1.0","name":"n","socket":"/x","cni.dev/attachments":"all"})");
  CHECK(codeOf(gc) == kInvalidConfig);
}
