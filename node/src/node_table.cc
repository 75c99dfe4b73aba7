#include "plexus/node/node_table.h"

namespace plexus::node {

std::optional<NodeChange> NodeTable::changeOf(const std::string& name, std::optional<Node> before) const {
  std::optional<Node> after = get(name);
  if (before == after) {
    return std::nullopt;
  }
  return NodeChange{std::move(before), std::move(after)};
}

std::optional<NodeChange> NodeTable::upsert(Node node) {
  std::string name = node.name;
  auto before = get(name);
  nodes_.insert_or_assign(name, std::move(node));
  return changeOf(name, std::move(before));
}

std::optional<NodeChange> NodeTable::remove(const std::string& name) {
  auto before = get(name);
  nodes_.erase(name);
  return changeOf(name, std::move(before));
}

std::optional<NodeChange> NodeTable::upsertClaim(PodCidrClaim claim) {
  auto before = get(claim.name);
  if (claim.pod_cidrs.empty()) {
    claims_.erase(claim.name);  // a PlexusNode that has not claimed yet
  } else {
    claims_.insert_or_assign(claim.name, std::move(claim.pod_cidrs));
  }
  return changeOf(claim.name, std::move(before));
}

std::optional<NodeChange> NodeTable::removeClaim(const std::string& name) {
  auto before = get(name);
  claims_.erase(name);
  return changeOf(name, std::move(before));
}

std::optional<Node> NodeTable::get(const std::string& name) const {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return std::nullopt;
  }
  Node n = it->second;
  if (n.pod_cidrs.empty()) {
    if (auto c = claims_.find(name); c != claims_.end()) {
      n.pod_cidrs = c->second;
    }
  }
  return n;
}

bool NodeTable::cidrsClaimed(const std::string& name) const {
  auto it = nodes_.find(name);
  return it != nodes_.end() && it->second.pod_cidrs.empty() && claims_.count(name) > 0;
}

std::vector<Node> NodeTable::list() const {
  std::vector<Node> out;
  out.reserve(nodes_.size());
  for (const auto& [name, node] : nodes_) {
    out.push_back(*get(name));
  }
  return out;
}

std::vector<Node> NodeTable::others() const {
  std::vector<Node> out;
  for (const auto& [name, node] : nodes_) {
    if (name != self_) {
      out.push_back(*get(name));
    }
  }
  return out;
}

}  // namespace plexus::node
