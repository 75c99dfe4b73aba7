#include "fabric.h"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace plexus::testing {

namespace {

std::string readFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// NodeFixture keeps the agent log in its temp dir, which is gone once its constructor fails (agent refused to
// start). Called from the before_start hook: NodeFixture mounted <tmp>/bpffs just before, and the agent appends to
// <tmp>/state.log, so the log is pre-created there and hard-linked to `keep` (same filesystem: both in $TMPDIR).
void keepAgentLog(const std::string& keep) {
  std::ifstream mounts("/proc/self/mounts");
  std::string line, dir;
  const std::string tmp = std::filesystem::temp_directory_path().string() + "/plexus-test-";
  for (int i = 0; i < 100000 && std::getline(mounts, line); ++i) {
    std::istringstream ls(line);
    std::string src, target, type;
    ls >> src >> target >> type;
    const std::string suffix = "/bpffs";
    if (type == "bpf" && target.rfind(tmp, 0) == 0 && target.size() > suffix.size() &&
        target.compare(target.size() - suffix.size(), suffix.size(), suffix) == 0) {
      dir = target.substr(0, target.size() - suffix.size());
    }
  }
  if (dir.empty()) {
    return;
  }
  std::string log = dir + "/state.log";
  { std::ofstream(log, std::ios::app); }
  (void)link(log.c_str(), keep.c_str());
}

}  // namespace

bool waitUntil(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (int i = 0; i < 100000; ++i) {  // bounded by the deadline; the count is a second bound
    if (pred()) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::vector<std::string> routingArgs(const std::string& mode) {
  if (mode == "native") {
    return {"--routing-mode", "native", "--auto-direct-node-routes=true"};
  }
  return {"--routing-mode", "tunnel", "--tunnel-protocol", "vxlan"};
}

bool tcpOk(const FabricPod& from, const FabricPod& to, std::chrono::milliseconds connect_timeout) {
  auto [lfd, port] = tcpListen(to.netns().path());
  if (lfd < 0) {
    return false;
  }
  bool ok = false;
  int cfd = tcpConnect(from.netns().path(), to.ip(), port, connect_timeout);
  if (cfd >= 0) {
    int afd = acceptWithin(lfd);
    if (afd >= 0) {
      ok = exchange(cfd, afd, "hello from " + from.name) && exchange(afd, cfd, "hello from " + to.name);
      close(afd);
    }
    close(cfd);
  }
  close(lfd);
  return ok;
}

uint64_t reasonCount(NodeFixture& n, const std::string& reason, const std::string& field,
                     const std::string& direction) {
  uint64_t total = 0;
  for (const auto& row : n.cliJson({"bpf", "metrics", "list"})) {
    if (row.value("reason", "") == reason && (direction.empty() || row.value("direction", "") == direction) &&
        row.contains(field)) {
      total += row[field].get<uint64_t>();
    }
  }
  return total;
}

bool pingOnce(const Netns& from, const std::string& ip) { return from.exec("ping -c 1 -W 1 " + ip).exit_code == 0; }

nlohmann::json nodeList(NodeFixture& n) {
  auto r = n.cli({"node", "list", "-o", "json"});
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return r.exit_code == 0 && j.is_array() ? j : nlohmann::json();
}

const nlohmann::json* findNode(const nlohmann::json& list, const std::string& name) {
  for (const auto& n : list) {
    if (n.is_object() && n.value("name", "") == name) {
      return &n;
    }
  }
  return nullptr;
}

std::vector<nlohmann::json> droppedFlows(NodeFixture& node) {
  auto r = node.cli({"observe", "--verdict", "DROPPED", "--last", "2000", "-o", "json"});
  std::vector<nlohmann::json> out;
  if (r.exit_code != 0) {
    return out;
  }
  std::stringstream ss(r.out);
  std::string line;
  for (int i = 0; i < 100000 && std::getline(ss, line); ++i) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) {
      out.push_back(j.contains("flow") ? j["flow"] : j);
    }
  }
  return out;
}

std::optional<nlohmann::json> waitForDrop(NodeFixture& node, const std::string& source, const std::string& destination) {
  std::optional<nlohmann::json> drop;
  waitUntil(
      [&] {
        for (const auto& fl : droppedFlows(node)) {
          if (fl.value(nlohmann::json::json_pointer("/source/pod_name"), "") == source &&
              fl.value(nlohmann::json::json_pointer("/destination/pod_name"), "") == destination) {
            drop = fl;
            return true;
          }
        }
        return false;
      },
      std::chrono::seconds(10));
  return drop;
}

std::string droppedFlowsText(NodeFixture& node) {
  std::string out;
  for (const auto& fl : droppedFlows(node)) {
    out += fl.dump() + "\n";
  }
  return out;
}

Fabric::Fabric(FabricOptions options) : options_(std::move(options)) {
  REQUIRE(options_.nodes >= 1);
  REQUIRE(options_.nodes <= 200);
  REQUIRE(options_.cidr_base + static_cast<int>(options_.nodes) <= 255);
  fabric_ = std::make_unique<Netns>("fb");
  bridge_ = uniqueName("fbr");
  {
    auto r = fabric_->exec("ip link set lo up && ip link add " + bridge_ + " type bridge && ip link set " + bridge_ +
                           " up && ip addr add 172.30.0.1/24 dev " + bridge_);
    INFO("fabric bridge: " << r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }
  for (size_t i = 0; i < options_.nodes; ++i) {
    std::string dev = uniqueName("ul");
    std::string port = uniqueName("ub");
    underlay_dev_.push_back(dev);
    auto underlay = [this, i, dev, port](Netns& n) {
      auto link = sh("ip link add " + dev + " netns " + n.name() + " type veth peer name " + port + " netns " +
                     fabric_->name());
      INFO("underlay veth: " << link.out << link.err);
      REQUIRE(link.exit_code == 0);
      auto up = n.exec("ip link set lo up && ip addr add " + underlayIp(i) + "/24 dev " + dev + " && ip link set " +
                       dev + " up");
      INFO("node side: " << up.out << up.err);
      REQUIRE(up.exit_code == 0);
      auto br = fabric_->exec("ip link set " + port + " master " + bridge_ + " && ip link set " + port + " up");
      INFO("bridge side: " << br.out << br.err);
      REQUIRE(br.exit_code == 0);
      // Fabric sanity, before this node's agent starts: the bridge answers, and so does every earlier node
      // (theirs are running; a failure here is still a fabric problem unless the earlier agents broke the host).
      INFO("fabric sanity: node " << i << " (" << underlayIp(i) << " on " << dev << ") before its agent starts");
      bool bridge_ok = waitUntil([&] { return n.exec("ping -c 1 -W 1 172.30.0.1").exit_code == 0; },
                                 std::chrono::seconds(5));
      REQUIRE(bridge_ok);
      for (size_t j = 0; j < i; ++j) {
        INFO("underlay ping to node " << j << " at " << underlayIp(j));
        bool peer_ok = waitUntil([&] { return n.exec("ping -c 1 -W 1 " + underlayIp(j)).exit_code == 0; },
                                 std::chrono::seconds(5));
        REQUIRE(peer_ok);
      }
    };
    std::vector<std::string> args = options_.agent_args;
    if (options_.node_args) {
      for (auto& a : options_.node_args(i)) {
        args.push_back(std::move(a));
      }
    }
    if (!options_.detect_devices) {
      args.push_back("--devices");
      args.push_back(dev);
    }
    std::string kept_log = logs_dir_.path() + "/node" + std::to_string(i) + ".log";
    bool fabric_ok = false;
    try {
      nodes_.push_back(std::make_unique<NodeFixture>(podCidr(i), args, [&](Netns& n) {
        underlay(n);
        if (options_.before_start) {
          options_.before_start(n, i);
        }
        fabric_ok = true;
        keepAgentLog(kept_log);
      }));
    } catch (...) {
      if (!fabric_ok) {
        throw;  // the fabric itself failed; its REQUIRE said why
      }
      // Most likely the agent refused to start: say so with its log (the fabric checks above passed).
      std::string joined;
      for (const auto& a : args) {
        joined += " " + a;
      }
      FAIL_CHECK("node " << i << ": the agent did not start (args:" << joined << ")\nagent log:\n"
                         << readFile(kept_log));
      throw;
    }
  }
}

Fabric::~Fabric() {
  // Pods first (their agents still run), then nodes (agents, node namespaces with the veths), then the bridge.
  pods_.clear();
  nodes_.clear();
  fabric_.reset();
}

std::string Fabric::nodeName(size_t i) const { return nodes_.at(i)->node().name(); }

std::string Fabric::podCidr(size_t i) const {
  return "10." + std::to_string(options_.cidr_base + static_cast<int>(i)) + ".0.0/24";
}

FabricPod& Fabric::addPod(size_t node, const std::string& name, std::map<std::string, std::string> labels,
                          const std::string& pod_namespace) {
  REQUIRE(node < nodes_.size());
  FabricPod p;
  p.pod = nodes_[node]->addPod(name, pod_namespace);
  p.node = node;
  p.name = name;
  p.pod_namespace = pod_namespace;
  p.labels = std::move(labels);
  pods_.push_back(std::move(p));
  return pods_.back();
}

std::string Fabric::nodeManifest(size_t i) const {
  std::ostringstream y;
  y << "apiVersion: v1\nkind: Node\nmetadata:\n  name: " << nodeName(i) << "\n"
    << "spec:\n  podCIDR: " << podCidr(i) << "\n  podCIDRs: [" << podCidr(i) << "]\n"
    << "status:\n  addresses:\n  - {type: InternalIP, address: " << underlayIp(i) << "}\n"
    << "  - {type: Hostname, address: " << nodeName(i) << "}\n";
  return y.str();
}

std::string Fabric::podManifest(const FabricPod& pod) const {
  std::ostringstream y;
  y << "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " << pod.name << "\n  namespace: " << pod.pod_namespace << "\n";
  if (!pod.labels.empty()) {
    y << "  labels:\n";
    for (const auto& [k, v] : pod.labels) {
      y << "    " << k << ": \"" << v << "\"\n";
    }
  }
  y << "spec:\n  nodeName: " << nodeName(pod.node) << "\n  containers: [{name: c}]\n"
    << "status:\n  phase: Running\n  podIP: " << pod.ip() << "\n  podIPs: [{ip: " << pod.ip() << "}]\n";
  return y.str();
}

std::string Fabric::clusterManifest() const {
  std::string out;
  auto add = [&](const std::string& doc) {
    if (!out.empty()) {
      out += "---\n";
    }
    out += doc;
  };
  for (size_t i = 0; i < nodes_.size(); ++i) {
    add(nodeManifest(i));
  }
  for (const auto& p : pods_) {
    add(podManifest(p));
  }
  return out;
}

CommandResult Fabric::apply(size_t i, const std::string& yaml, const std::string& file, bool remove) {
  std::string path = nodes_.at(i)->dir() + "/" + file;
  {
    std::ofstream(path) << yaml;
  }
  return nodes_[i]->cli({remove ? "delete" : "apply", "-f", path});
}

void Fabric::applyEverywhere(const std::string& yaml, const std::string& file) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto r = apply(i, yaml, file);
    INFO("plexus apply -f " << file << " on node " << i << " (" << nodeName(i) << "): exit " << r.exit_code << "\n"
                            << r.out << r.err << "\nmanifest:\n"
                            << yaml << "\nagent log:\n"
                            << nodes_[i]->agent().log());
    REQUIRE(r.exit_code == 0);
  }
}

void Fabric::applyCluster() { applyEverywhere(clusterManifest(), "cluster.yaml"); }

CommandResult Fabric::exec(const FabricPod& pod, const std::string& command, std::chrono::milliseconds timeout) const {
  return pod.pod.netns->exec(command, timeout);
}

bool Fabric::underlayPing(size_t from, size_t to) const {
  return pingOnce(nodes_.at(from)->node(), underlayIp(to));
}

std::string Fabric::logs() const {
  std::string out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    out += "---- node " + std::to_string(i) + " (" + nodes_[i]->node().name() + ") agent log:\n" +
           nodes_[i]->agent().log() + "\n";
  }
  return out;
}

}  // namespace plexus::testing
