#include "node_fixture.h"

#include <bpf/bpf.h>
#include <unistd.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "plexus/datapath/bpf_map.h"
#include "plexus/endpoint.h"

namespace plexus::testing {

void requireTcpExchange(const Pod& from, const Pod& to, uint16_t port) {
  auto [lfd, bound] = tcpListen(to.netns->path(), port);
  REQUIRE(lfd >= 0);
  int cfd = tcpConnect(from.netns->path(), to.ip, bound);
  REQUIRE(cfd >= 0);
  int afd = acceptWithin(lfd);
  REQUIRE(afd >= 0);
  CHECK(exchange(cfd, afd, "ping " + from.ip));
  CHECK(exchange(afd, cfd, "pong " + to.ip));
  close(cfd);
  close(afd);
  close(lfd);
}

NodeFixture::NodeFixture(const std::string& pod_cidr, std::vector<std::string> extra_args,
                         const std::function<void(Netns&)>& before_start)
    : state_dir_(tmp_.path() + "/state"), bpf_root_(tmp_.path() + "/bpffs/plexus"),
      socket_(tmp_.path() + "/plexus.sock") {
  bpffs_ = std::make_unique<BpffsMount>(tmp_.path() + "/bpffs");
  node_ = std::make_unique<Netns>("nd");
  if (before_start) {
    before_start(*node_);
  }
  AgentOptions opts;
  opts.pod_cidr = pod_cidr;
  opts.extra_args = std::move(extra_args);
  agent_ = std::make_unique<AgentProcess>(*node_, state_dir_, bpf_root_, socket_, opts);
  REQUIRE(agent_->start());
}

NodeFixture::~NodeFixture() {
  // Stop the agent before the namespaces and the bpffs go away.
  agent_.reset();
  node_.reset();
  bpffs_.reset();
}

nlohmann::json NodeFixture::cniConfig(const std::string& version) const {
  return {{"cniVersion", version}, {"name", "plexus"}, {"type", "plexus-cni"}, {"socket", socket_},
          {"timeout-seconds", 30}};
}

CniCall NodeFixture::call(const std::string& command, const Pod& pod) const {
  CniCall c;
  c.command = command;
  c.container_id = pod.container_id;
  c.netns = pod.netns ? pod.netns->path() : "";
  c.ifname = pod.ifname;
  c.runtime_netns = node_->name();
  return c;
}

CommandResult NodeFixture::cni(const std::string& command, const Pod& pod, const nlohmann::json& config) const {
  return execPlugin(cniBinary(), call(command, pod), config);
}

// The before_start hook of a node whose external device `dev` (192.0.2.1/24) faces namespace `ext` (192.0.2.2/24).
std::function<void(Netns&)> externalLink(const std::string& dev, const std::string& peer, Netns& ext) {
  return [dev, peer, &ext](Netns& n) {
    REQUIRE(sh("ip link add " + dev + " netns " + n.name() + " type veth peer name " + peer + " netns " + ext.name())
                .exit_code == 0);
    n.exec("ip addr add 192.0.2.1/24 dev " + dev + " && ip link set " + dev + " up");
    ext.exec("ip addr add 192.0.2.2/24 dev " + peer + " && ip link set " + peer + " up");
  };
}

CommandResult NodeFixture::tryAddPod(Pod& pod, const std::string& name, const std::string& pod_namespace) {
  pod.netns = std::make_unique<Netns>("pd");
  pod.container_id = uniqueName("ctr-" + name);
  CniCall c = call("ADD", pod);
  c.args = "K8S_POD_UID=uid-" + name + ";K8S_POD_NAMESPACE=" + pod_namespace + ";K8S_POD_NAME=" + name +
           ";K8S_POD_INFRA_CONTAINER_ID=" + pod.container_id;
  return execPlugin(cniBinary(), c, cniConfig());
}

void NodeFixture::apply(const std::string& yaml) {
  std::string path = tmp_.path() + "/" + uniqueName("apply") + ".yaml";
  std::ofstream(path) << yaml;
  auto r = cli({"apply", "-f", path});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

Pod NodeFixture::addPod(const std::string& name, const std::string& pod_namespace) {
  Pod pod;
  auto r = tryAddPod(pod, name, pod_namespace);
  INFO("plexus-cni ADD: " << r.out << r.err << "\nagent log:\n" << agent_->log());
  REQUIRE(r.exit_code == 0);
  pod.result = nlohmann::json::parse(r.out);
  std::string cidr = pod.result.at("ips").at(0).at("address");
  pod.ip = cidr.substr(0, cidr.find('/'));
  for (const auto& itf : pod.result.at("interfaces")) {
    if (!itf.contains("sandbox")) {
      pod.host_veth = itf.at("name");
    }
  }
  return pod;
}

CommandResult NodeFixture::cli(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {cliBinary(), "--socket", socket_};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv, "", {}, std::chrono::seconds(20));
}

nlohmann::json NodeFixture::cliJson(const std::vector<std::string>& args) const {
  auto argv = args;
  argv.push_back("-o");
  argv.push_back("json");
  auto r = cli(argv);
  INFO("plexus " << args.front() << ": " << r.out << r.err);
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

std::optional<uint32_t> NodeFixture::endpointIfindex(const std::string& ip) const {
  auto m = pinnedMap<plexus_endpoint_key, plexus_endpoint_value>("plexus_endpoints_v1");
  REQUIRE(m.has_value());
  plexus_endpoint_key k{};
  k.ip = Ipv4::parse(ip)->networkOrder();
  auto v = m->lookup(k);
  if (!v.ok() || !v->has_value()) {
    return std::nullopt;
  }
  return (*v)->ifindex;
}

bool NodeFixture::ipcacheHas(const std::string& ip) const {
  auto m = pinnedMap<plexus_ipcache_key, plexus_ipcache_value>("plexus_ipcache_v1");
  REQUIRE(m.has_value());
  plexus_ipcache_key k{};
  k.prefixlen = 32;
  k.ip = Ipv4::parse(ip)->networkOrder();
  auto v = m->lookup(k);
  return v.ok() && v->has_value();
}

bool NodeFixture::hostLinkExists(const std::string& name) const {
  return node_->exec("ip link show dev " + name).exit_code == 0;
}

size_t NodeFixture::hostLxcCount() const {
  auto r = node_->exec("ip -o link show | grep -c ' lxc' || true");
  return static_cast<size_t>(std::stoul(r.out.empty() ? "0" : r.out));
}

}  // namespace plexus::testing
