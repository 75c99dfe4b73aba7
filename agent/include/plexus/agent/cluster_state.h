#pragma once
// Standalone cluster state: the objects `plexus apply` stores (ResourceStore), persisted in the state dir,
// and what the agent derives from them. Pods give their endpoints labels (matched by K8S_POD_NAMESPACE and
// K8S_POD_NAME from CNI) and, with Services and EndpointSlices, the service maps (through the ServiceManager);
// namespaces are kept for the identity labels; policies go to the PolicyManager, which is told to regenerate
// whenever policies or identities change. Kinds without a consumer in this build (Node) are refused with a
// message rather than accepted and ignored. Runs on the reconcile thread.

#include <map>
#include <set>
#include <string>
#include <vector>

#include "plexus/agent/endpoint_manager.h"
#include "plexus/agent/kubernetes.h"
#include "plexus/agent/policy_manager.h"
#include "plexus/agent/resource_store.h"
#include "plexus/agent/service_manager.h"
#include "plexus/common/result.h"
#include "plexus/identity/identity.h"

namespace plexus::agent {

class ClusterState {
 public:
  // services may be null (kube-proxy replacement off): Services are then refused.
  ClusterState(EndpointManager& endpoints, ServiceManager* services, std::string state_dir);

  // Policies are refused until this is set (before restore()).
  void setPolicyManager(PolicyManager* policies) { policies_ = policies; }
  // Kubernetes mode: objects come from informers (ingest), identities are allocated cluster-wide, pods missing at
  // CNI ADD are fetched, and policy verdicts are reported into the policies' status.
  void setKubernetes(KubernetesSync* kube);
  // Informer events (upserts validated like `plexus apply`; an invalid object is logged by name and skipped).
  void ingest(const std::vector<ResourceEvent>& events);
  // Reloads the persisted objects (a corrupt file is reported, never guessed at).
  Status restore();
  std::vector<ApplyOutcome> apply(const std::vector<nlohmann::json>& objects);
  std::vector<ApplyOutcome> remove(const std::vector<nlohmann::json>& objects);

  // Fills an endpoint's identity and identity labels from its pod and namespace (init while the pod is unknown).
  // Takes one reference on the identity; endpointRemoved() gives it back.
  void resolve(EndpointRecord* rec);
  void endpointRemoved(const EndpointRecord& rec);
  const identity::Allocator& identities() const { return identities_; }
  const ResourceStore& store() const { return store_; }
  // Programs the services whose inputs changed since the last call (all of them after a restore or a failed
  // write). podsChanged() marks the selector services of a namespace (a pod or an endpoint came or went).
  // Nothing is programmed before endpointsRestored(): services derived from pods need the restored endpoints'
  // addresses, and a sync without them would empty the services of a running node.
  void syncServices();
  void endpointsRestored();
  void podsChanged(const std::string& ns);
  std::vector<lb::Service> services() const;
  // The named container ports of an endpoint's pod: name -> (port, protocol).
  std::multimap<std::string, std::pair<uint16_t, uint8_t>> namedPorts(const EndpointRecord& rec) const;

 private:
  void handle(const std::vector<ResourceEvent>& events);
  Status persist(const std::vector<ResourceEvent>& events);
  // The identity labels the endpoint's pod has now (empty when the pod is unknown).
  identity::Labels identityLabels(const EndpointRecord& rec) const;
  void persistIdentities() const;
  // Keeps the parsed services and slices current and marks what the event changes; true if services may change.
  bool trackServiceInputs(const ResourceEvent& e);
  std::vector<lb::PodRecord> podRecords(const std::set<std::string>& namespaces) const;
  void reportPolicies(const std::vector<ResourceEvent>& events);

  EndpointManager& endpoints_;
  ServiceManager* services_;
  PolicyManager* policies_ = nullptr;
  KubernetesSync* kube_ = nullptr;
  std::string path_;     // snapshot of the store
  std::string journal_;  // changes since the snapshot, one JSON line each
  size_t journal_entries_ = 0;
  std::string identities_path_;
  ResourceStore store_;
  identity::Allocator identities_;
  identity::LabelFilter filter_ = identity::LabelFilter::defaults();
  std::string cluster_name_ = "default";
  std::map<std::string, lb::Service> parsed_services_;     // "ns/name" -> parsed Service
  std::map<ResourceKey, lb::EndpointSlice> parsed_slices_;  // applied slices
  std::set<std::string> dirty_services_;
  bool dirty_all_ = true;
  bool endpoints_restored_ = false;
};

// "k8s:key=value" labels of a pod, plus its namespace label, as Cilium names them.
std::vector<std::string> podLabels(const nlohmann::json& pod);

}  // namespace plexus::agent
