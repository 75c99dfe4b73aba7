#pragma once
// Kubernetes mode: the agent learns cluster state from the API server instead of `plexus apply`.
//   - Informers (list+watch) for this node's Pods, Namespaces, Nodes, Services, EndpointSlices, NetworkPolicies,
//     CNPs, CCNPs, PlexusEndpoints and (cluster-pool IPAM) PlexusNodes post the same typed events the standalone
//     store produces into the reconcile queue.
//   - Everything else that talks to the API server on the agent's behalf (a pod a CNI ADD needs, identity
//     allocation and release, policy status) runs on this class's own worker thread, never on the reconcile
//     thread; answers come back as events.
//   - Identities are allocated cluster-wide through PlexusIdentity objects (named by the numeric id, holding the
//     security labels), so every node agrees; each node marks the identities it uses and the last one to stop
//     using an identity deletes it.
//   - Policy status is written back into the CNP/CCNP status (status.nodes.<node>), as Cilium does.
//   - IPAM `kubernetes` reads Node.spec.podCIDR(s); `cluster-pool` claims a per-node CIDR in a PlexusNode.
// The datapath never depends on the API server being up: pinned maps keep forwarding, informers retry.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <thread>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "plexus/agent/config.h"
#include "plexus/agent/events.h"
#include "plexus/agent/seams.h"
#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/identity/identity.h"
#include "plexus/k8s/client.h"
#include "plexus/k8s/informer.h"

namespace plexus::agent {

inline constexpr const char* kIdentityPath = "/apis/plexus.io/v1alpha1/plexusidentities";
inline constexpr const char* kPlexusNodePath = "/apis/plexus.io/v1alpha1/plexusnodes";
inline constexpr const char* kPlexusEndpointPath = "/apis/plexus.io/v1alpha1/plexusendpoints";

// Whether the config asks for the Kubernetes API (kubeconfig, k8sServiceHost, or running in a pod).
bool kubernetesMode(const AgentConfig& config);
Result<k8s::RestConfig> restConfig(const AgentConfig& config);

// This node's pod CIDR for IPAM modes kubernetes and cluster-pool (bounded retries while the API is down).
Result<Ipv4Prefix> podCidrFromApi(const k8s::Client& client, const AgentConfig& config);

// Cluster-wide identities backed by PlexusIdentity objects. Blocking calls: the worker thread's only.
class ClusterIdentities {
 public:
  ClusterIdentities(const k8s::Client& client, std::string node);
  // The identity for these labels: an existing PlexusIdentity with equal labels, or a new one (the lowest free
  // id; a conflicting create means another node won the id, and we look again). Marks this node as a user.
  Result<uint32_t> allocate(const identity::Labels& labels);
  // This node no longer uses the identity; the last user deletes the object.
  void release(uint32_t id);

 private:
  void markUser(uint32_t id, bool use);

  const k8s::Client& client_;
  std::string node_;
};

// One thread running queued jobs in order; stop() drops what is still queued.
class WorkQueue {
 public:
  explicit WorkQueue(std::string name) : name_(std::move(name)) {}
  ~WorkQueue() { stop(); }
  void start();
  void stop();
  void push(std::function<void()> job);
  // Sleeps up to `d` unless stop() is called meanwhile; false when stopping.
  bool sleep(std::chrono::milliseconds d);

 private:
  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

class KubernetesSync final : public ClusterApi {
 public:
  KubernetesSync(const AgentConfig& config, std::unique_ptr<k8s::Client> client, EventSink& sink);
  ~KubernetesSync() override;
  // Starts the informers (after the endpoint manager restored its endpoints) and the worker.
  void start();
  // Stops informers and the worker; queued requests are dropped (they are asked again after a restart).
  void stop();
  const k8s::Client& client() const { return *client_; }
  std::vector<k8s::InformerStats> stats() const;

  // ClusterApi: queued for the worker; each returns at once.
  void fetchPod(const std::string& ns, const std::string& name) override;
  void allocateIdentity(const identity::Labels& labels) override;
  void releaseIdentity(uint32_t id) override;
  void publishEndpoint(const EndpointRecord& rec, const std::string& node) override;
  void unpublishEndpoint(const std::string& ns, const std::string& pod) override;
  void reportPolicy(const nlohmann::json& object, bool ok, const std::string& error) override;

 private:
  // GET one pod, bounded retries while it is not visible yet.
  std::optional<nlohmann::json> getPod(const std::string& ns, const std::string& name);
  void writePolicyStatus(const nlohmann::json& object, bool ok, const std::string& error);

  AgentConfig config_;
  std::unique_ptr<k8s::Client> client_;
  EventSink& sink_;
  ClusterIdentities identities_;
  std::vector<std::unique_ptr<k8s::Informer>> informers_;
  // Two lanes, so that a pod the API server is slow to return never holds up identities or status writes.
  WorkQueue fetches_{"pod fetches"};
  WorkQueue writes_{"identities and status"};
};

}  // namespace plexus::agent
