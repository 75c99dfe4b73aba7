#pragma once
// The reconcile thread's one entry point. Requests (CNI, `plexus apply`) and events (watchers, the cluster API
// worker) come in here, and the controller calls the managers in order; no manager calls another one back. A
// CNI ADD is wired at once, with the reserved init identity while the pod's labels (or its cluster-wide
// identity) are not known, and the endpoint is regenerated when they arrive. Failed map writes stay pending in
// their owner and tick() retries them. See docs/architecture.md for the sequences.

#include <map>
#include <set>
#include <string>
#include <vector>

#include "plexus/agent/agent_notifications.h"
#include "plexus/agent/endpoint_manager.h"
#include "plexus/agent/events.h"
#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/identity_manager.h"
#include "plexus/agent/ipcache_manager.h"
#include "plexus/agent/node_manager.h"
#include "plexus/agent/policy_manager.h"
#include "plexus/agent/resource_state.h"
#include "plexus/agent/seams.h"
#include "plexus/agent/service_sync.h"

namespace plexus::agent {

struct ControllerParts {
  ResourceState& resources;
  IdentityManager& identities;
  IpcacheManager& ipcache;
  EndpointManager& endpoints;
  PolicyManager& policies;
  ServiceSync* services;  // null when kube-proxy replacement is off: Services are refused
  FlowDirectory& flows;
  ClusterApi* api;        // null in standalone mode
  HostAddresses* host;    // null: no host addresses in the ipcache (tests)
  NodeManager* nodes;     // null: single node (Node objects are then refused)
  NotificationLog* notices = nullptr;  // agent events (policies, endpoints); null: none
};

class Controller {
 public:
  // node: this node's name, written into published endpoints.
  Controller(ControllerParts parts, std::string node = "");

  // Restores identities, objects and endpoints, then programs services, policies and the ipcache once, removing
  // what no source claims any more. Problems that do not stop the agent are returned in *problems.
  Status start(std::vector<std::string>* problems);

  void handle(const AgentEvent& event);
  // `plexus apply` / `plexus delete`; the objects are consumed group by group.
  std::vector<ApplyOutcome> apply(std::vector<nlohmann::json> objects);
  std::vector<ApplyOutcome> remove(std::vector<nlohmann::json> objects);
  // The same in two steps, so that a large request's objects are parsed and prepared on its own thread while the
  // earlier groups commit: prepare() is pure and thread-safe; commit() (reconcile thread) stores, journals and
  // hands the changes to the managers. Groups of kApplyGroup objects keep the transient heap small.
  static constexpr size_t kApplyGroup = 256;
  PreparedObject prepare(nlohmann::json object, bool remove) const {
    return p_.resources.prepare(std::move(object), remove);
  }
  std::vector<ApplyOutcome> commit(std::vector<PreparedObject> objects, bool remove);
  // Makes what the commits journaled durable; called once after a request's last commit, before it is answered.
  void flush() { p_.resources.flush(); }

  Result<EndpointRecord> addEndpoint(const AddRequest& req);
  Status deleteEndpoint(const std::string& container_id, const std::string& ifname);
  // Removes the endpoints whose owner is not valid; how many endpoints and leaked allocations were freed.
  uint32_t gcEndpoints(const std::set<std::string>& valid_owners);

  // Retries what failed (ipcache, policy, service writes) and refreshes the host addresses.
  void tick();
  // Something is waiting for a retry.
  bool pending() const;
  // What keeps the maps from the desired state now, one line per area ("services: map ... is full ..."), for
  // `plexus status`; empty when everything is installed.
  std::vector<std::string> problems() const;
  // Whether `area` (services, ipcache, nodes, policy) has a failure waiting for a retry.
  bool failing(const std::string& area) const { return problems_.count(area) > 0; }

 private:
  std::vector<ApplyOutcome> inGroups(std::vector<nlohmann::json> objects, bool remove);
  struct Resolved {
    uint32_t identity;
    std::vector<std::string> labels;
  };
  // The identity a pod's endpoint runs with now (one reference taken on a real identity).
  Resolved resolve(const std::string& ns, const std::string& pod);
  // Moves the endpoints `affected` selects to the identity their pod's labels give now.
  void reidentify(const std::function<bool(const EndpointRecord&)>& affected);
  void changed(const std::vector<ResourceEvent>& events);
  void endpointsChanged(const std::string& ns);
  void reportPolicies(const std::vector<ResourceEvent>& events);
  void syncHostAddresses();
  // Cluster mode: other nodes learn this node's endpoints (with a cluster identity) from what is published.
  void publish(const EndpointRecord& rec);
  void unpublish(const EndpointRecord& rec);
  void regenerate();
  // Records the outcome of programming one area (services, nodes, ipcache, policy): a new or changed failure is
  // logged once (retries repeat it every tick), and so is the recovery.
  void note(const std::string& area, const Status& outcome);
  void syncServices();
  void syncNodes();

  void notifyEndpoint(NotificationType type, const EndpointRecord& rec);

  ControllerParts p_;
  std::string node_;
  std::set<std::string> fetching_;  // "ns/pod" asked of the API server
  std::map<std::string, std::string> problems_;  // area -> current failure
};

}  // namespace plexus::agent
