#pragma once
// The set of cluster nodes as the API server (or the embedded store) reports them, keyed by name. Each update
// returns the change it made, so callers recompute plans only when something moved. Pure: the table mirrors
// the watched objects (input state); what is installed in the kernel is tracked and diffed by the caller
// (routes.h), and only after an apply succeeds.

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

  // Adds or replaces the node with node.name. Returns none when the stored node is already equal.
  [[nodiscard]] std::optional<NodeChange> upsert(Node node);
  // Forgets the node. Returns none when it was not known.
  [[nodiscard]] std::optional<NodeChange> remove(const std::string& name);

  std::optional<Node> get(const std::string& name) const;
  // This node's record, if the source has reported it.
  std::optional<Node> selfNode() const { return get(self_); }
  // Every node, sorted by name.
  std::vector<Node> list() const;
  // Every node except self, sorted by name: the input for routes.h.
  std::vector<Node> others() const;
  size_t size() const { return nodes_.size(); }

 private:
  std::string self_;
  std::map<std::string, Node> nodes_;
};

}  // namespace plexus::node
