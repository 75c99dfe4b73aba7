#pragma once
// The set of cluster nodes as the API server (or the embedded store) reports them, keyed by name. Each update
// returns the change it made, so callers recompute plans only when something moved. Pure: the table mirrors
// the watched objects (input state); what is installed in the kernel is tracked and diffed by the caller
// (routes.h), and only after an apply succeeds.
//
// Two inputs per node: its v1 Node object (existence, InternalIPs, spec.podCIDR(s)) and, with cluster-pool
// IPAM, its PlexusNode claim (spec.ipam.podCIDRs). The table reports the merged node: the Node object with the
// claim's CIDRs when the Node object has none of its own (a Node's spec.podCIDRs always wins, as the node IPAM
// controller's assignment does in Cilium). A claim without a Node object is kept but is no node: the Node
// object says the node exists and how to reach it.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "plexus/node/node.h"

namespace plexus::node {

// before: the node as it was (none for an add); after: as it is now (none for a delete).
struct NodeChange {
  std::optional<Node> before;
  std::optional<Node> after;

  bool isAdd() const { return !before && after; }
  bool isDelete() const { return before && !after; }
  bool isUpdate() const { return before && after; }
  friend bool operator==(const NodeChange&, const NodeChange&) = default;
};

class NodeTable {
 public:
  // self_name: this node. It is stored like any other node but excluded from others().
  explicit NodeTable(std::string self_name) : self_(std::move(self_name)) {}

  const std::string& self() const { return self_; }

  // Adds or replaces the Node object with node.name. Returns the change of the merged node, none when it did not
  // change.
  [[nodiscard]] std::optional<NodeChange> upsert(Node node);
  // Forgets the Node object (its claim stays, for a node that comes back). Returns none when it was not known.
  [[nodiscard]] std::optional<NodeChange> remove(const std::string& name);
  // Adds or replaces the PlexusNode claim of claim.name; removeClaim forgets it. Both return the change of the
  // merged node: none when the node has no Node object, when the Node object's own CIDRs win, or when the
  // claimed CIDRs are equal.
  [[nodiscard]] std::optional<NodeChange> upsertClaim(PodCidrClaim claim);
  [[nodiscard]] std::optional<NodeChange> removeClaim(const std::string& name);

  // The merged node (see above); none without a Node object.
  std::optional<Node> get(const std::string& name) const;
  // Whether the node's pod CIDRs come from its PlexusNode claim (its Node object has none).
  bool cidrsClaimed(const std::string& name) const;
  // This node's record, if the source has reported it.
  std::optional<Node> selfNode() const { return get(self_); }
  // Every node, sorted by name.
  std::vector<Node> list() const;
  // Every node except self, sorted by name: the input for routes.h.
  std::vector<Node> others() const;
  size_t size() const { return nodes_.size(); }

 private:
  // The merged node and its change from `before`, or none when equal.
  std::optional<NodeChange> changeOf(const std::string& name, std::optional<Node> before) const;

  std::string self_;
  std::map<std::string, Node> nodes_;                          // Node objects, as reported
  std::map<std::string, std::vector<Ipv4Prefix>> claims_;      // PlexusNode claims (non-empty only)
};

}  // namespace plexus::node
