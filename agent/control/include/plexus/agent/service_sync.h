#pragma once
// The inputs of the service maps: Services and EndpointSlices, and in standalone mode, for selector Services without
// slices, the endpoints derived from pods (labels from the manifests, addresses from CNI), as the EndpointSlice
// controller would. In Kubernetes mode that controller runs in the cluster and its slices are the only endpoints, as
// for kube-proxy and Cilium: a selector service whose slices have not arrived (or are being listed again) has no
// backends, never every pod its labels match (ready or not). Tracks which services an event touches, and programs
// them through the ServiceManager: incrementally, or in full after a restart, a resync or a failed write. The
// objects themselves stay in the resource store, once: a sync parses the ones it needs (the events' own objects while
// they are pending). Of each Pod it keeps the few facts a selector service derives endpoints from, so that a sync does
// not decode every pod of the namespace from the store.
// Reconcile thread only.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "plexus/agent/endpoint_record.h"
#include "plexus/agent/resource_state.h"
#include "plexus/agent/seams.h"
#include "plexus/agent/service_manager.h"
#include "plexus/lb/health_check.h"
#include "plexus/lb/service.h"

namespace plexus::agent {

class ServiceSync {
 public:
  // How a selector service without EndpointSlices gets endpoints.
  enum class Endpoints {
    kDeriveFromPods,  // standalone: from the pods its selector matches
    kSlicesOnly,      // Kubernetes: none (the cluster's EndpointSlice controller writes them)
  };
  // health: where the node's healthCheckNodePort listeners are published (null: none).
  ServiceSync(ServiceManager& manager, const ResourceState& resources, HealthCheckListeners* health = nullptr,
              Endpoints endpoints = Endpoints::kDeriveFromPods)
      : manager_(manager), resources_(resources), health_(health), derive_(endpoints == Endpoints::kDeriveFromPods) {}

  // Keeps the index of services and slices current and marks what the event changes; true if services may change.
  bool track(const ResourceEvent& e);
  // Selector services of a namespace derive their endpoints from its pods: a pod or an endpoint came or went (nothing
  // to do with kSlicesOnly).
  void podsChanged(const std::string& ns);
  // Nothing is programmed before this: services derived from pods need the restored endpoints' addresses, and
  // a sync without them would empty the services of a running node.
  void endpointsRestored() { endpoints_restored_ = true; }
  // Programs what changed since the last successful call (everything after a restore or a failed write).
  Status sync(const std::vector<EndpointRecord>& endpoints);
  bool pending() const { return endpoints_restored_ && (dirty_all_ || !dirty_.empty() || manager_.needsFullSync()); }

  // Every valid Service, parsed from the store.
  std::vector<lb::Service> services() const;
  const ServiceManager& manager() const { return manager_; }
  // The health checks of the services programmed so far (what was last published).
  const std::map<std::string, lb::HealthCheck>& healthChecks() const { return health_checks_; }

 private:
  // The pods of some namespaces by label, and the addresses CNI gave pods, for deriving selector services' slices.
  struct PodIndex {
    std::unordered_map<std::string, std::vector<const lb::PodRecord*>> by_label;  // "ns\0key=value" -> pods
    std::map<std::pair<std::string, std::string>, Ipv4> ips;                       // (ns, name) -> address
  };
  PodIndex podIndex(const std::set<std::string>& namespaces, const std::vector<EndpointRecord>& endpoints) const;
  // The pods a selector service may select, with their addresses (a superset: deriveSlices() matches them).
  static std::vector<lb::PodRecord> selectable(const lb::Service& svc, const PodIndex& index);
  // A service ("ns/name") or a slice: pending from an event, else parsed from the store (nullopt: gone or invalid).
  std::optional<lb::Service> service(const std::string& key) const;
  std::optional<lb::EndpointSlice> slice(const ResourceKey& key) const;
  // After a successful programming: the health checks of the services in `changed`, from their slices; publishes
  // the whole set when it changed.
  void updateHealthChecks(const std::map<std::string, std::optional<lb::Service>>& changed,
                          const std::map<std::string, std::vector<lb::EndpointSlice>>& slices);
  // Logs (once per change of the spec) the loadBalancerSourceRanges entries of a service that are no CIDR.
  void reportSourceRanges(const lb::Service& svc);

  ServiceManager& manager_;
  const ResourceState& resources_;
  HealthCheckListeners* health_;
  const bool derive_;  // Endpoints::kDeriveFromPods
  std::map<std::string, lb::HealthCheck> health_checks_;
  std::map<std::string, bool> services_;             // "ns/name" of each valid Service -> it has a selector
  std::map<ResourceKey, std::string> slice_owners_;  // each valid EndpointSlice -> its service's "ns/name"
  // The other way: a service's "ns/name" -> the names of its slices (in its namespace), sorted; so that a sync of a
  // few services does not walk every slice.
  std::map<std::string, std::vector<std::string>> owned_slices_;
  // Logged loadBalancerSourceRanges entries that are no CIDR, by service (only services with some).
  std::map<std::string, std::vector<std::string>> invalid_ranges_;
  // Objects parsed from events since the last sync (it would parse them again from the store otherwise).
  std::map<std::string, lb::Service> pending_services_;
  std::map<ResourceKey, lb::EndpointSlice> pending_slices_;
  // Each Pod's labels, named ports, node, phase and status.podIP, by namespace and name (the address from CNI is
  // added at a sync); from the Pod events.
  std::map<std::string, std::map<std::string, lb::PodRecord>> pods_;
  std::set<std::string> dirty_;
  bool dirty_all_ = true;
  bool endpoints_restored_ = false;
};

}  // namespace plexus::agent
