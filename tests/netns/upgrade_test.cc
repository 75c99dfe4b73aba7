// Upgrades and reconfiguration keep established connections: conntrack entries pinned by the previous agent are
// carried into this build's map (a retired layout, or another --ct-map-size) before the new programs are attached.
//
// The flow: pod a opens a TCP connection to pod b while a's ingress is isolated (a NetworkPolicy selecting a with no
// ingress rule). b's packets to a pass only as replies of a's connection, that is, only while conntrack has the
// connection's entries; a new connection from b to a is refused. After the restart b speaks first, so nothing
// re-creates the entries from a's side before b's packet reaches a's ingress: a lost entry is a lost connection.
#include <bpf/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <fstream>
#include <tuple>

#include "node_fixture.h"
#include "plexus/conntrack.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

void applyYaml(const NodeFixture& node, const std::string& yaml) {
  std::string path = node.dir() + "/" + uniqueName("m") + ".yaml";
  std::ofstream(path) << yaml;
  auto r = node.cli({"apply", "-f", path});
  INFO(yaml << "\n" << r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

bool pinned(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

// Two pods, a's ingress isolated, and a connection a -> b that carried data both ways.
struct IsolatedFlow {
  Pod a;
  Pod b;
  int listen_fd = -1;
  int a_fd = -1;  // a's end (the client)
  int b_fd = -1;  // b's end (the server)

  explicit IsolatedFlow(NodeFixture& node) : a(node.addPod("a", "x")), b(node.addPod("b", "x")) {
    applyYaml(node, "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {pod: a}}\n---\n"
                    "apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, labels: {pod: b}}\n---\n"
                    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                    "metadata: {name: isolate-a, namespace: x}\n"
                    "spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress]}\n");
    uint16_t port = 0;
    std::tie(listen_fd, port) = tcpListen(b.netns->path());
    REQUIRE(listen_fd >= 0);
    a_fd = tcpConnect(a.netns->path(), b.ip, port);
    REQUIRE(a_fd >= 0);
    b_fd = acceptWithin(listen_fd);
    REQUIRE(b_fd >= 0);
    REQUIRE(exchange(a_fd, b_fd, "request"));
    REQUIRE(exchange(b_fd, a_fd, "response"));
    // The policy is in force: b cannot open a connection to a, so b -> a passes only as a's connection's replies.
    auto [a_listen, a_port] = tcpListen(a.netns->path());
    REQUIRE(a_listen >= 0);
    int refused = tcpConnect(b.netns->path(), a.ip, a_port, std::chrono::milliseconds(1500));
    CHECK(refused < 0);
    if (refused >= 0) {
      close(refused);
    }
    close(a_listen);
  }
  ~IsolatedFlow() {
    for (int fd : {a_fd, b_fd, listen_fd}) {
      if (fd >= 0) {
        close(fd);
      }
    }
  }

  // b speaks first: its segment reaches a only if conntrack still knows a's connection.
  void requireAlive(const std::string& when) {
    INFO(when);
    CHECK(exchange(b_fd, a_fd, "b first, " + when));
    CHECK(exchange(a_fd, b_fd, "a answers, " + when));
  }
};

// What an older agent would have left: the live plexus_ct4_v2 entries written back as a plexus_ct4_v1 pin (the v1
// layout: no nat_port), and no v2 pin. The programs still attached keep the v2 map they hold. Returns the entries.
size_t downgradeConntrackToV1(const std::string& bpf_root) {
  datapath::UniqueFd v2(bpf_obj_get((bpf_root + "/plexus_ct4_v2").c_str()));
  REQUIRE(v2.valid());
  auto map = datapath::BpfMap<plexus_ct4_key, plexus_ct4_value>::fromFd(v2.get());
  REQUIRE(map.ok());
  auto entries = map->entries();
  REQUIRE(entries.ok());
  datapath::UniqueFd v1(bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "plexus_ct4_v1", sizeof(plexus_ct4_key),
                                       sizeof(plexus_ct4_value_v1), PLEXUS_CT4_DEFAULT_MAX, nullptr));
  REQUIRE(v1.valid());
  for (const auto& [k, v] : *entries) {
    REQUIRE(v.nat_port == 0);  // a pod-to-pod flow: nothing the v1 layout could not hold
    plexus_ct4_value_v1 old{};
    old.last_seen_ns = v.last_seen_ns;
    old.backend_id = v.backend_id;
    old.rev_nat_index = v.rev_nat_index;
    old.tx_flags = v.tx_flags;
    old.rx_flags = v.rx_flags;
    REQUIRE(bpf_map_update_elem(v1.get(), &k, &old, BPF_NOEXIST) == 0);
  }
  REQUIRE(bpf_obj_pin(v1.get(), (bpf_root + "/plexus_ct4_v1").c_str()) == 0);
  REQUIRE(unlink((bpf_root + "/plexus_ct4_v2").c_str()) == 0);
  return entries->size();
}

uint32_t ctMaxEntries(const NodeFixture& node) {
  datapath::UniqueFd fd(bpf_obj_get((node.bpfRoot() + "/plexus_ct4_v2").c_str()));
  REQUIRE(fd.valid());
  auto info = datapath::mapInfo(fd.get());
  REQUIRE(info.ok());
  return info->max_entries;
}

}  // namespace

TEST_CASE("upgrade: conntrack entries of a plexus_ct4_v1 pin are carried into v2; an established connection the "
          "policy would refuse as new keeps working",
          "[netns][upgrade]") {
  NodeFixture node("10.231.0.0/24");
  IsolatedFlow flow(node);
  REQUIRE(node.agent().stop() == 0);
  size_t entries = downgradeConntrackToV1(node.bpfRoot());
  REQUIRE(entries >= 2);  // at least a's EGRESS and b's INGRESS entry of the connection

  REQUIRE(node.agent().start());
  flow.requireAlive("after the upgrade from plexus_ct4_v1");
  CHECK_FALSE(pinned(node.bpfRoot() + "/plexus_ct4_v1"));
  std::string log = node.agent().log();
  INFO(log);
  CHECK(log.find("plexus_ct4_v1 -> plexus_ct4_v2: " + std::to_string(entries) + " of " + std::to_string(entries) +
                 " entries carried over") != std::string::npos);
}

TEST_CASE("upgrade: a restart with another --ct-map-size recreates the conntrack map with its entries; the "
          "connection keeps working",
          "[netns][upgrade]") {
  NodeFixture node("10.232.0.0/24", {"--ct-map-size", "65536"});
  IsolatedFlow flow(node);
  REQUIRE(ctMaxEntries(node) == 65536);

  REQUIRE(node.agent().stop() == 0);
  node.agent().setExtraArgs({"--ct-map-size", "4096"});
  // libbpf alone refuses the pin ("parameter mismatch"), and the agent would not start.
  if (!node.agent().start()) {
    FAIL(node.agent().log());
  }
  CHECK(ctMaxEntries(node) == 4096);
  flow.requireAlive("after shrinking the conntrack map");
  CHECK_FALSE(pinned(node.bpfRoot() + "/plexus_ct4_v2_old"));
  CHECK(node.agent().log().find("plexus_ct4_v2 (recreated, 65536 -> 4096 entries)") != std::string::npos);

  REQUIRE(node.agent().stop() == 0);
  node.agent().setExtraArgs({"--ct-map-size", "131072"});
  REQUIRE(node.agent().start());
  CHECK(ctMaxEntries(node) == 131072);
  flow.requireAlive("after growing the conntrack map");
}
