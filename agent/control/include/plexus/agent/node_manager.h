#pragma once
// Other nodes and the pods they host. Node objects (Kubernetes, or `plexus apply` of v1 Node manifests in
// standalone mode) go into a node table; from it the manager keeps the kernel routes to other nodes' pod CIDRs
// (native routing with auto-direct-node-routes: via their InternalIP; tunnel mode: into the tunnel device) and
// the ipcache statements of source `node` (their addresses as remote-node, their pod CIDRs with the node as
// tunnel endpoint). Pods on other nodes (standalone: Pod manifests with spec.nodeName and status.podIP) become
// ipcache statements of source `remote-endpoint` with their identity and their node as tunnel endpoint, while
// that node is known. In Kubernetes mode the same comes from the PlexusEndpoint objects other agents publish.
// With cluster-pool IPAM a node's pod CIDRs come from its PlexusNode claim when its Node object has none
// (node::NodeTable merges the two). A deleted node, or a claim that changes or goes, moves its routes and entries
// in the same sync. Reconcile thread only.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/identity_manager.h"
#include "plexus/agent/ipcache_manager.h"
#include "plexus/agent/resource_state.h"
#include "plexus/node/endpoint.h"
#include "plexus/agent/seams.h"
#include "plexus/node/mtu.h"
#include "plexus/node/node_table.h"
#include "plexus/node/routes.h"

namespace plexus::agent {

struct NodeManagerConfig {
  std::string self;
  node::RoutingMode mode = node::RoutingMode::kTunnel;
  bool auto_direct_node_routes = false;  // native mode: routes via the other nodes' InternalIPs
  // The kinds whose first full listing completes the node table (Kubernetes: Node, and PlexusNode with
  // cluster-pool). Empty: the restored state is complete (standalone). Until then no route is taken away.
  std::set<ResourceKind> sync_kinds;
};

class NodeManager {
 public:
  // flows: remote pods are named in flows as local ones are (may be null).
  NodeManager(NodeManagerConfig config, IpcacheManager& ipcache, IdentityManager& identities,
              const ResourceState& resources, NodeRoutes* routes, FlowDirectory* flows)
      : config_(std::move(config)), table_(config_.self), ipcache_(ipcache), identities_(identities),
        resources_(resources), routes_(routes), flows_(flows), unsynced_(config_.sync_kinds) {}

  // Adopts the routes an earlier run left in the kernel: once the node table is complete (sync_kinds), those no
  // node wants any more are removed by sync(). Call before the restored resources are tracked.
  Status restore();
  // A Node, PlexusNode, Pod or PlexusEndpoint event, or the kSynced marker of a sync kind (others are ignored);
  // true when something changed.
  bool track(const ResourceEvent& e);
  // Writes routes and ipcache statements for what changed; failures stay pending for the next sync.
  Status sync();
  bool pending() const { return dirty_; }

  std::vector<node::Node> nodes() const { return table_.list(); }
  // Whether the node's pod CIDRs come from its PlexusNode claim.
  bool cidrsClaimed(const std::string& name) const { return table_.cidrsClaimed(name); }
  const std::string& self() const { return config_.self; }
  // Whether the pod is on another node (standalone Pod manifests name their node).
  bool isRemotePod(const nlohmann::json& pod) const;
  // A peer outside this node, for `policy explain`: a pod on another node by "namespace/name" (namespace
  // default when omitted) or address, or a node by an InternalIP (another node's: remote-node; this one's: host).
  struct RemotePeer {
    std::string name;  // "namespace/name" or "node <name>"
    std::string node;
    uint32_t identity = 0;
  };
  std::optional<RemotePeer> findRemote(const std::string& text) const;

 private:
  struct RemotePod {
    std::string node;
    Ipv4 ip;
    uint32_t identity = 0;
    std::vector<std::string> labels;
    bool owned = true;  // a reference this node took (standalone); false: the identity came with the object
  };
  bool trackClaim(const ResourceEvent& e);
  // Logs and marks dirty a change of the merged node; false for none.
  bool nodeChanged(const std::string& name, const std::optional<node::NodeChange>& change);
  void trackPod(const ResourceEvent& e);
  void trackEndpoint(const ResourceEvent& e);
  void forgetPod(const std::string& key);
  Status syncRoutes();
  Status syncIpcache();

  NodeManagerConfig config_;
  node::NodeTable table_;
  IpcacheManager& ipcache_;
  IdentityManager& identities_;
  const ResourceState& resources_;
  NodeRoutes* routes_;
  FlowDirectory* flows_;
  std::set<Ipv4> named_;  // remote pod addresses published to flows_
  std::map<std::string, RemotePod> remote_pods_;  // "ns/name"
  std::vector<node::RouteSpec> installed_routes_;
  std::set<Ipv4Prefix> adopted_routes_;  // an earlier run's, not yet wanted or removed
  std::set<ResourceKind> unsynced_;      // sync kinds not listed yet
  std::set<std::pair<Ipv4Prefix, std::string>> logged_conflicts_;  // (cidr, dropped node) warned about once
  bool dirty_ = false;
};

}  // namespace plexus::agent
