#pragma once
// Kubernetes mode: the agent learns cluster state from the API server instead of `plexus apply`.
//   - Informers (list+watch) for this node's Pods, Namespaces, Nodes, Services, EndpointSlices, NetworkPolicies,
//     CNPs and CCNPs feed ClusterState through the reconcile thread: the same events the standalone store emits.
//   - Identities are allocated cluster-wide through PlexusIdentity objects (named by the numeric id, holding the
//     security labels), so every node agrees; each node marks the identities it uses and the last one to stop
//     using an identity deletes it.
//   - Policy status is written back into the CNP/CCNP status (status.nodes.<node>), as Cilium does.
//   - IPAM `kubernetes` reads Node.spec.podCIDR(s); `cluster-pool` claims a per-node CIDR in a PlexusNode.
// The datapath never depends on the API server being up: pinned maps keep forwarding, informers retry.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "plexus/agent/config.h"
#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/identity/identity.h"
#include "plexus/k8s/client.h"
#include "plexus/k8s/informer.h"

namespace plexus::agent {

class Reconciler;
class ClusterState;
class PolicyManager;

inline constexpr const char* kIdentityPath = "/apis/plexus.io/v1alpha1/plexusidentities";
inline constexpr const char* kPlexusNodePath = "/apis/plexus.io/v1alpha1/plexusnodes";

// Whether the config asks for the Kubernetes API (kubeconfig, k8sServiceHost, or running in a pod).
bool kubernetesMode(const AgentConfig& config);
Result<k8s::RestConfig> restConfig(const AgentConfig& config);

// This node's pod CIDR for IPAM modes kubernetes and cluster-pool (bounded retries while the API is down).
Result<Ipv4Prefix> podCidrFromApi(const k8s::Client& client, const AgentConfig& config);

// Cluster-wide identities backed by PlexusIdentity objects.
class ClusterIdentities {
 public:
  ClusterIdentities(const k8s::Client& client, std::string node);
  // The identity for these labels: an existing PlexusIdentity with equal labels, or a new one (the lowest free
  // id; a conflicting create means another node won the id, and we look again). Marks this node as a user.
  Result<uint32_t> allocate(const identity::Labels& labels);
  // This node no longer uses the identity; the last user deletes the object.
  void release(uint32_t id);
  // Informer sink for PlexusIdentity objects.
  void observe(const std::vector<ResourceEvent>& events);
  std::map<uint32_t, identity::Labels> all() const;

 private:
  static std::optional<std::pair<uint32_t, identity::Labels>> parse(const nlohmann::json& obj);
  void markUser(uint32_t id, bool use);

  const k8s::Client& client_;
  std::string node_;
  mutable std::mutex mu_;
  std::map<uint32_t, identity::Labels> known_;
};

class KubernetesSync {
 public:
  KubernetesSync(const AgentConfig& config, std::unique_ptr<k8s::Client> client, Reconciler& reconciler,
                 ClusterState& cluster, PolicyManager& policies);
  ~KubernetesSync();
  // Starts the informers (after the endpoint manager restored its endpoints).
  void start();
  void stop();
  const k8s::Client& client() const { return *client_; }
  ClusterIdentities& identities() { return identities_; }
  // GET one pod (CNI ADD before our watch has seen it): bounded retries.
  std::optional<nlohmann::json> fetchPod(const std::string& ns, const std::string& name);
  // Writes this node's verdict on a policy into its status, unless the status already says so.
  void reportPolicy(const nlohmann::json& object, bool ok, const std::string& error);
  std::vector<k8s::InformerStats> stats() const;

 private:
  AgentConfig config_;
  std::unique_ptr<k8s::Client> client_;
  Reconciler& reconciler_;
  ClusterState& cluster_;
  PolicyManager& policies_;
  ClusterIdentities identities_;
  std::vector<std::unique_ptr<k8s::Informer>> informers_;
};

}  // namespace plexus::agent
