#pragma once
// The cluster node model (pure): what Plexus needs from a Kubernetes v1 Node to reach the pods it hosts.
// Parsing never throws; a malformed field gives an InvalidArgument error naming the field.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"

namespace plexus::node {

struct Node {
  std::string name;
  // status.addresses[type=InternalIP], IPv4 only, manifest order, duplicates folded. The first one is the
  // node's tunnel endpoint and its next hop for autoDirectNodeRoutes.
  std::vector<Ipv4> internal_ips;
  // spec.podCIDR then spec.podCIDRs, IPv4 only, first-seen order, duplicates folded.
  std::vector<Ipv4Prefix> pod_cidrs;

  // The address other nodes encapsulate to (and route via). None when the node has no IPv4 InternalIP yet:
  // such a node is valid but unreachable, so it contributes no routes, tunnel entries or ipcache entries.
  std::optional<Ipv4> tunnelEndpoint() const;

  friend bool operator==(const Node&, const Node&) = default;
};

// Parses a v1 Node manifest. Reads metadata.name (required, a DNS-1123 subdomain), spec.podCIDR and
// spec.podCIDRs (optional; IPv6 entries are validated and ignored), status.addresses (optional; InternalIP
// entries with an IPv4 address are kept, IPv6 ones ignored, other types ignored). Unknown fields are ignored.
// Errors read like "Node n1: spec.podCIDRs[1]: not a CIDR".
[[nodiscard]] Result<Node> parseNode(const nlohmann::json& manifest);

// "n1 (internal 192.168.1.11, pod CIDRs 10.0.1.0/24)", for logs.
std::string describe(const Node& node);

// A node's pod CIDR claim in its PlexusNode object (plexus.io/v1alpha1, cluster scoped, named after the node):
// what an agent with cluster-pool IPAM claimed for itself (spec.ipam.podCIDRs). The node table uses it for a
// node whose Node object has no spec.podCIDR(s) (docs/nodes.md).
struct PodCidrClaim {
  std::string name;                    // the node's name
  std::vector<Ipv4Prefix> pod_cidrs;   // IPv4 only, first-seen order, duplicates folded; empty: no claim yet
  friend bool operator==(const PodCidrClaim&, const PodCidrClaim&) = default;
};

// Parses a PlexusNode. Reads metadata.name (required, a DNS-1123 subdomain) and spec.ipam.podCIDRs (optional;
// IPv6 entries are validated and ignored). kind and apiVersion, when present, must be PlexusNode and
// plexus.io/v1alpha1. status and unknown fields are ignored. Errors read like
// "PlexusNode n1: spec.ipam.podCIDRs[0]: not a CIDR".
[[nodiscard]] Result<PodCidrClaim> parsePlexusNode(const nlohmann::json& object);

}  // namespace plexus::node
