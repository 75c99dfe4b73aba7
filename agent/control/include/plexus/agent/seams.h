#pragma once
// The narrow interfaces the control layer depends on (STYLE.md rule 15): the kernel (pod network setup and one
// writer interface per map group), the state directory, and the cluster API. The daemon implements them with
// the kernel adapters (agent/datapath) and the Kubernetes client; the [unit] tests implement them with fakes.
// Nothing here blocks on the network: the cluster API is asynchronous and answers with events.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/agent/endpoint_record.h"
#include "plexus/agent/ipam.h"
#include "plexus/agent/map_encoding.h"
#include "plexus/common/ipv4.h"
#include "plexus/common/resource.h"
#include "plexus/common/result.h"
#include "plexus/identity/identity.h"
#include "plexus/lb/health_check.h"
#include "plexus/lb/planner.h"

namespace plexus::agent {

// A typed view of one kernel map: the only way the control layer reads or writes it.
template <typename K, typename V>
class MapWriter {
 public:
  virtual ~MapWriter() = default;
  // Absent is an empty optional, distinct from an error.
  [[nodiscard]] virtual Result<std::optional<V>> lookup(const K& key) const = 0;
  [[nodiscard]] virtual Status update(const K& key, const V& value) = 0;
  // Erasing an absent key is NotFound.
  [[nodiscard]] virtual Status erase(const K& key) = 0;
  [[nodiscard]] virtual Result<std::vector<std::pair<K, V>>> entries() const = 0;
};

using EndpointMap = MapWriter<plexus_endpoint_key, plexus_endpoint_value>;
using IpcacheMap = MapWriter<plexus_ipcache_key, plexus_ipcache_value>;

// The per-endpoint policy tries: set() swaps in a complete trie (never a half-written one).
class PolicyMap {
 public:
  virtual ~PolicyMap() = default;
  [[nodiscard]] virtual Status set(uint16_t endpoint_id, const PolicyEntries& entries) = 0;
  [[nodiscard]] virtual Status clear(uint16_t endpoint_id) = 0;
};

// The policy map's owner, as the endpoint manager sees it: installs an endpoint's first policy state before its
// endpoints map entry exists, and releases it.
class EndpointPolicyInstaller {
 public:
  virtual ~EndpointPolicyInstaller() = default;
  // `others`: the node's other endpoints (named ports of peers).
  [[nodiscard]] virtual Status install(const EndpointRecord& rec, const std::vector<EndpointRecord>& others) = 0;
  virtual void forget(uint16_t id) = 0;
};

// The service maps: applies a plan in dependency order, and reads back what a previous run installed.
class ServiceMaps {
 public:
  virtual ~ServiceMaps() = default;
  [[nodiscard]] virtual Status apply(const lb::Plan& plan) = 0;
  [[nodiscard]] virtual Result<lb::MapState> read() const = 0;
};

// The node's kube-proxy health check listeners (spec.healthCheckNodePort): takes the whole desired set, by service
// key, whenever it changes. Called on the reconcile thread, so it must not block: listeners open and close elsewhere.
class HealthCheckListeners {
 public:
  virtual ~HealthCheckListeners() = default;
  virtual void publish(std::map<std::string, lb::HealthCheck> checks) = 0;
};

struct PodLinkSpec {
  std::string netns;        // path of the pod's network namespace
  std::string ifname;       // interface inside the pod
  std::string host_ifname;  // host side of the veth pair
  int mtu = 0;
  std::optional<Mac> mac;
  Ipv4 ip;
  Ipv4 gateway;
};

struct PodLink {
  int host_ifindex = 0;
  Mac host_mac;
  Mac pod_mac;
};

// Netlink and tc for pods: veth pairs, addresses, routes, neighbour entries and the pod programs.
class PodNetwork {
 public:
  virtual ~PodNetwork() = default;
  // Forwarding on, the gateway device with the gateway address.
  [[nodiscard]] virtual Status prepareNode(Ipv4 gateway) = 0;
  // The veth pair, the pod's address and routes, the host route and neighbour entry, and the programs. On
  // failure nothing is left behind.
  [[nodiscard]] virtual Result<PodLink> createPod(const PodLinkSpec& spec) = 0;
  // Attaches the programs on an existing host veth (chaining, restart). NotFound when the veth is gone.
  [[nodiscard]] virtual Result<PodLink> attach(const std::string& host_ifname) = 0;
  // Deletes the veth pair (and with it the pod's addresses, routes and our filters). Absent is fine.
  virtual void removePod(const std::string& host_ifname) = 0;
  // Takes our programs off a veth another plugin owns.
  virtual void detach(const std::string& host_ifname) = 0;
  [[nodiscard]] virtual bool exists(const std::string& host_ifname) = 0;
  // Programs attached, pod interface up.
  [[nodiscard]] virtual Status check(const EndpointRecord& rec) = 0;
};

// The state directory.
class AgentStore {
 public:
  virtual ~AgentStore() = default;
  [[nodiscard]] virtual Status saveIpam(const IpamSnapshot& snapshot) = 0;
  [[nodiscard]] virtual Status saveEndpoint(const EndpointRecord& record) = 0;
  [[nodiscard]] virtual Status removeEndpoint(uint16_t id) = 0;
  // Unreadable records are reported in problems and skipped.
  virtual std::vector<EndpointRecord> loadEndpoints(std::vector<std::string>* problems) const = 0;
  [[nodiscard]] virtual Status saveIdentities(const nlohmann::json& snapshot) = 0;
  [[nodiscard]] virtual Result<std::optional<nlohmann::json>> loadIdentities() const = 0;
  // The resource journal: appends change entries, one JSON text line each ({op, key | object}); durably (one fsync
  // per call), or, when `durable` is false, left for syncJournal() to make durable with what follows.
  [[nodiscard]] virtual Status appendJournal(const std::string& lines, bool durable = true) = 0;
  [[nodiscard]] virtual Status syncJournal() = 0;
  // Replaces the snapshot and empties the journal.
  [[nodiscard]] virtual Status writeSnapshot(const nlohmann::json& snapshot) = 0;
  struct StoredResources {
    std::optional<nlohmann::json> snapshot;  // {resourceVersion, items}; absent on a fresh node
    std::string journal;                     // JSON lines since the snapshot
    std::string journal_name;                // where the journal lives, for messages
  };
  [[nodiscard]] virtual Result<StoredResources> loadResources() const = 0;
};

// The cluster (Kubernetes) API, asynchronous: each call queues work on the API worker and returns at once; the
// answer comes back as an event on the reconcile thread (see events.h). Absent in standalone mode.
class ClusterApi {
 public:
  virtual ~ClusterApi() = default;
  // GET the pod (a CNI ADD came before the watch delivered it); answered with a resource upsert, or nothing.
  virtual void fetchPod(const std::string& ns, const std::string& name) = 0;
  // A cluster-wide identity for these labels; answered with IdentityAllocated or IdentityFailed.
  virtual void allocateIdentity(const identity::Labels& labels) = 0;
  virtual void releaseIdentity(uint32_t id) = 0;
  // This node's endpoint, for the other nodes (a PlexusEndpoint object, as Cilium's CiliumEndpoint).
  virtual void publishEndpoint(const EndpointRecord& rec, const std::string& node) = 0;
  virtual void unpublishEndpoint(const std::string& ns, const std::string& pod) = 0;
  // This node's verdict on a policy, into its status.
  virtual void reportPolicy(const nlohmann::json& object, bool ok, const std::string& error) = 0;
};

// Kernel routes to other nodes' pod CIDRs: via the node's address (native routing), or into the tunnel device
// (tunnel mode, for the host's own traffic; pods' traffic is encapsulated by the programs).
class NodeRoutes {
 public:
  virtual ~NodeRoutes() = default;
  [[nodiscard]] virtual Status replace(Ipv4Prefix dst, Ipv4 via, bool tunnel) = 0;
  // Removes the agent's route to dst, whatever its next hop. Removing an absent route is fine.
  [[nodiscard]] virtual Status remove(Ipv4Prefix dst) = 0;
  // The destinations of the agent's routes in the kernel, this run's and any earlier run's.
  [[nodiscard]] virtual Result<std::vector<Ipv4Prefix>> installed() = 0;
};

// The node's own IPv4 addresses (host identity in the ipcache).
class HostAddresses {
 public:
  virtual ~HostAddresses() = default;
  virtual std::set<Ipv4> list() = 0;
};

}  // namespace plexus::agent
