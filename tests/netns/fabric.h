#pragma once
// A multi-node cluster for [netns] tests: a "fabric" namespace holding a Linux bridge (the L2 underlay, with
// 172.30.0.1/24 on the bridge itself), and N node namespaces, each a NodeFixture (its own agent, bpffs, state and
// socket) joined to the bridge by a veth whose node side carries 172.30.0.{10+i}/24 and is the agent's --devices.
// Node i gets the pod CIDR 10.{cidr_base+i}.0.0/24. The node names are the node namespaces' names (the agent's
// default --node-name in NodeFixture).
//
// Standalone mode has no API server, so the cluster is described to every agent with `plexus apply`: one v1 Node
// manifest per node (name, spec.podCIDR(s), status.addresses InternalIP) and one v1 Pod manifest per pod created
// through the fabric (name, namespace, labels, spec.nodeName, status.podIP). The same manifests go to every node.
//
// Everything is removed by member destructors (pods, then nodes with their agents, then the fabric namespace with
// the bridge), so a failing REQUIRE in the constructor or in a test still cleans up. Every wait is bounded.

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "node_fixture.h"

namespace plexus::testing {

struct FabricOptions {
  size_t nodes = 3;
  int cidr_base = 220;                  // node i: 10.{cidr_base+i}.0.0/24
  std::vector<std::string> agent_args;  // routing flags etc. for every agent; --devices <underlay> is added
  bool detect_devices = false;          // leave --devices out: the agents detect the underlay themselves
  // Optional, per node i: agent arguments added after agent_args (e.g. a kubeconfig that differs per node).
  std::function<std::vector<std::string>(size_t)> node_args = {};
  // Optional, per node i: runs in the node's setup once its underlay link is up and checked, before its agent
  // starts (e.g. a second link, or API objects the agent must find at start; the node name is netns.name()).
  std::function<void(Netns&, size_t)> before_start = {};
};

// A pod created through the fabric: the CNI-wired Pod plus what its manifest says.
struct FabricPod {
  Pod pod;
  size_t node = 0;
  std::string name;
  std::string pod_namespace = "default";
  std::map<std::string, std::string> labels;

  const std::string& ip() const { return pod.ip; }
  Netns& netns() const { return *pod.netns; }
  std::string key() const { return pod_namespace + "/" + name; }
};

// Bounded poll: true as soon as pred() holds, false after `limit` (checked every 100 ms).
bool waitUntil(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(15));

// What the multi-node tests share beside the fabric itself.

// The agent flags of a routing mode: "native" (with auto-direct-node-routes) or, for anything else, tunnel (VXLAN).
std::vector<std::string> routingArgs(const std::string& mode);
// One TCP connection from `from` to a listener in `to` (ephemeral port), a message each way; false on any failure
// (bounded).
bool tcpOk(const FabricPod& from, const FabricPod& to,
           std::chrono::milliseconds connect_timeout = std::chrono::seconds(3));
// Packets (field "bytes": bytes) counted under one reason (plexus bpf metrics list), in one direction ("INGRESS",
// "EGRESS") or, with direction "", both.
uint64_t reasonCount(NodeFixture& n, const std::string& reason, const std::string& field = "packets",
                     const std::string& direction = "");
// One ICMP echo with a 1 s wait.
bool pingOnce(const Netns& from, const std::string& ip);
// `plexus node list -o json`, or null when the command fails or prints no JSON array.
nlohmann::json nodeList(NodeFixture& n);
// The entry named `name` in a node list, or nullptr.
const nlohmann::json* findNode(const nlohmann::json& list, const std::string& name);
// The flows of `plexus observe --verdict DROPPED` (the last 2000 events), each without its {"flow": ...} wrapper;
// empty when the command fails.
std::vector<nlohmann::json> droppedFlows(NodeFixture& node);
// Polls droppedFlows (bounded, 10 s) for one from the pod named `source` to the pod named `destination`.
std::optional<nlohmann::json> waitForDrop(NodeFixture& node, const std::string& source, const std::string& destination);
// droppedFlows, one per line, for INFO.
std::string droppedFlowsText(NodeFixture& node);

class Fabric {
 public:
  // Creates the fabric namespace and bridge, then each node: underlay veth (before its agent starts; REQUIREs that
  // the node reaches the bridge address 172.30.0.1 and every earlier node's underlay address), then the agent.
  explicit Fabric(FabricOptions options);
  ~Fabric();
  Fabric(const Fabric&) = delete;
  Fabric& operator=(const Fabric&) = delete;

  size_t size() const { return nodes_.size(); }
  NodeFixture& node(size_t i) { return *nodes_.at(i); }
  Netns& fabricNetns() { return *fabric_; }
  const std::string& bridge() const { return bridge_; }

  std::string nodeName(size_t i) const;                 // == node(i).node().name()
  const std::string& underlayDevice(size_t i) const { return underlay_dev_.at(i); }
  static std::string underlayIp(size_t i) { return "172.30.0." + std::to_string(10 + i); }
  std::string podCidr(size_t i) const;                  // 10.{cidr_base+i}.0.0/24

  // Creates a pod on node i through plexus-cni (NodeFixture::addPod) and records its manifest data.
  FabricPod& addPod(size_t node, const std::string& name, std::map<std::string, std::string> labels = {},
                    const std::string& pod_namespace = "default");
  const std::deque<FabricPod>& pods() const { return pods_; }

  // Manifests built from the nodes and the pods created so far.
  std::string nodeManifest(size_t i) const;
  std::string podManifest(const FabricPod& pod) const;
  std::string clusterManifest() const;  // every Node, then every Pod

  // `plexus apply|delete -f` of yaml (written into node i's temp dir as `file`) on node i.
  CommandResult apply(size_t i, const std::string& yaml, const std::string& file, bool remove = false);
  // apply() on every node; REQUIREs success on each (the CLI output and agent log are in the message).
  void applyEverywhere(const std::string& yaml, const std::string& file);
  // Every Node and Pod manifest to every node.
  void applyCluster();

  // A shell command inside a pod's namespace.
  CommandResult exec(const FabricPod& pod, const std::string& command,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;
  // One ICMP echo (1 s wait) from node i's namespace (the underlay, no agent involvement beyond its devices).
  bool underlayPing(size_t from, size_t to) const;

  // The agents' logs, for INFO.
  std::string logs() const;

 private:
  FabricOptions options_;
  TempDir logs_dir_;  // agent logs kept even when an agent fails to start
  std::unique_ptr<Netns> fabric_;
  std::string bridge_;
  std::vector<std::string> underlay_dev_;
  std::vector<std::unique_ptr<NodeFixture>> nodes_;
  std::deque<FabricPod> pods_;  // declared last: pods go first, while their agents still run
};

}  // namespace plexus::testing
