#pragma once
// One simulated node for [netns] tests: a node namespace running a real plexus-agent with private state,
// bpffs and socket, and pods (namespaces) wired by executing plexus-cni exactly as kubelet does.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <bpf/bpf.h>
#include <nlohmann/json.hpp>

#include "plexus/common/ipv4.h"
#include "plexus/datapath/bpf_map.h"
#include "support/testing.h"

namespace plexus::testing {

struct Pod {
  std::unique_ptr<Netns> netns;
  std::string container_id;
  std::string ifname = "eth0";
  std::string ip;        // without prefix
  std::string host_veth; // from the CNI result
  nlohmann::json result;
};

// Opens a TCP connection from one pod to a listener in the other (port 0: ephemeral), sends a message each way
// and closes; REQUIREs every step.
void requireTcpExchange(const Pod& from, const Pod& to, uint16_t port = 0);

// The before_start hook of a node whose external device `dev` (192.0.2.1/24) faces namespace `ext` (192.0.2.2/24),
// the "world" of a test: it has no route to the pods.
std::function<void(Netns&)> externalLink(const std::string& dev, const std::string& peer, Netns& ext);

class NodeFixture {
 public:
  // before_start runs in the node namespace's setup, before the agent starts (e.g. to create --devices).
  explicit NodeFixture(const std::string& pod_cidr = "10.244.0.0/24", std::vector<std::string> extra_args = {},
                       const std::function<void(Netns&)>& before_start = {});
  ~NodeFixture();

  Netns& node() { return *node_; }
  AgentProcess& agent() { return *agent_; }
  const std::string& socket() const { return socket_; }
  const std::string& bpfRoot() const { return bpf_root_; }
  const std::string& stateDir() const { return state_dir_; }
  const std::string& dir() const { return tmp_.path(); }

  // The plexus-cni network config (one conflist entry) for this node.
  nlohmann::json cniConfig(const std::string& version = "1.0.0") const;
  CniCall call(const std::string& command, const Pod& pod) const;

  // Creates a pod namespace and runs ADD; REQUIREs success.
  Pod addPod(const std::string& name, const std::string& pod_namespace = "default");
  // The same ADD, whatever its outcome: fills pod's namespace and container id, returns the plugin's result.
  CommandResult tryAddPod(Pod& pod, const std::string& name, const std::string& pod_namespace = "default");
  // `plexus apply -f` of the YAML (written to a file of its own); REQUIREs success.
  void apply(const std::string& yaml);
  CommandResult cni(const std::string& command, const Pod& pod, const nlohmann::json& config) const;
  CommandResult cli(const std::vector<std::string>& args) const;
  // `plexus <args> -o json`, parsed; REQUIREs success.
  nlohmann::json cliJson(const std::vector<std::string>& args) const;

  // A pinned map of this node by name, opened directly (the kernel's view, not the agent's); nullopt if absent.
  template <typename K, typename V>
  std::optional<datapath::BpfMap<K, V>> pinnedMap(const std::string& name) const {
    datapath::UniqueFd fd(bpf_obj_get((bpf_root_ + "/" + name).c_str()));
    auto m = datapath::BpfMap<K, V>::fromFd(fd.get());  // takes its own reference
    return fd.get() >= 0 && m.ok() ? std::optional<datapath::BpfMap<K, V>>(std::move(*m)) : std::nullopt;
  }
  // Reads the pinned maps directly.
  std::optional<uint32_t> endpointIfindex(const std::string& ip) const;
  bool ipcacheHas(const std::string& ip) const;
  bool hostLinkExists(const std::string& name) const;
  size_t hostLxcCount() const;

 private:
  TempDir tmp_;
  std::string state_dir_;
  std::string bpf_root_;
  std::string socket_;
  std::unique_ptr<BpffsMount> bpffs_;
  std::unique_ptr<Netns> node_;
  std::unique_ptr<AgentProcess> agent_;
};

}  // namespace plexus::testing
