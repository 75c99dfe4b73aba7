#pragma once
// The inputs of the service maps: parsed Services and EndpointSlices, and for selector Services without slices
// the endpoints derived from pods (labels from the manifests, addresses from CNI), as the EndpointSlice
// controller would. Tracks which services an event touches, and programs them through the ServiceManager:
// incrementally, or in full after a restart, a resync or a failed write. Reconcile thread only.

#include <map>
#include <optional>
#include <set>
#include <string>
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
  // health: where the node's healthCheckNodePort listeners are published (null: none).
  ServiceSync(ServiceManager& manager, const ResourceState& resources, HealthCheckListeners* health = nullptr)
      : manager_(manager), resources_(resources), health_(health) {}

  // Keeps the parsed services and slices current and marks what the event changes; true if services may change.
  bool track(const ResourceEvent& e);
  // Selector services of a namespace derive their endpoints from its pods: a pod or an endpoint came or went.
  void podsChanged(const std::string& ns);
  // Nothing is programmed before this: services derived from pods need the restored endpoints' addresses, and
  // a sync without them would empty the services of a running node.
  void endpointsRestored() { endpoints_restored_ = true; }
  // Programs what changed since the last successful call (everything after a restore or a failed write).
  Status sync(const std::vector<EndpointRecord>& endpoints);
  bool pending() const { return endpoints_restored_ && (dirty_all_ || !dirty_.empty() || manager_.needsFullSync()); }

  std::vector<lb::Service> services() const;
  const ServiceManager& manager() const { return manager_; }
  // The health checks of the services programmed so far (what was last published).
  const std::map<std::string, lb::HealthCheck>& healthChecks() const { return health_checks_; }

 private:
  std::vector<lb::PodRecord> podRecords(const std::set<std::string>& namespaces,
                                        const std::vector<EndpointRecord>& endpoints) const;
  // After a successful programming: the health checks of the services in `keys`, from their slices; publishes the
  // whole set when it changed.
  void updateHealthChecks(const std::set<std::string>& keys,
                          const std::map<std::string, std::vector<lb::EndpointSlice>>& slices);
  // Logs (once per change of the spec) the loadBalancerSourceRanges entries of a service that are no CIDR.
  void reportSourceRanges(const lb::Service& svc);

  ServiceManager& manager_;
  const ResourceState& resources_;
  HealthCheckListeners* health_;
  std::map<std::string, lb::HealthCheck> health_checks_;
  std::map<std::string, lb::Service> parsed_services_;      // "ns/name" -> parsed Service
  std::map<ResourceKey, lb::EndpointSlice> parsed_slices_;  // applied slices
  std::set<std::string> dirty_;
  bool dirty_all_ = true;
  bool endpoints_restored_ = false;
};

}  // namespace plexus::agent
