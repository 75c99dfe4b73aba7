#include "plexus/node/node_table.h"

namespace plexus::node {

std::optional<NodeChange> NodeTable::upsert(Node node) {
  auto it = nodes_.find(node.name);
  if (it == nodes_.end()) {
    NodeChange change{std::nullopt, node};
    nodes_.emplace(node.name, std::move(node));
    return change;
  }
  if (it->second == node) {
    return std::nullopt;
  }
  NodeChange change{it->second, node};
  it->second = std::move(node);
  return change;
}

std::optional<NodeChange> NodeTable::remove(const std::string& name) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return std::nullopt;
  }
  NodeChange change{std::move(it->second), std::nullopt};
  nodes_.erase(it);
  return change;
}

std::optional<Node> NodeTable::get(const std::string& name) const {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::vector<Node> NodeTable::list() const {
  std::vector<Node> out;
  out.reserve(nodes_.size());
  for (const auto& [name, node] : nodes_) {
    out.push_back(node);
  }
  return out;
}

std::vector<Node> NodeTable::others() const {
  std::vector<Node> out;
  for (const auto& [name, node] : nodes_) {
    if (name != self_) {
      out.push_back(node);
    }
  }
  return out;
}

}  // namespace plexus::node
