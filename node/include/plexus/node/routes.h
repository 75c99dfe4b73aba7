#pragma once
// What other nodes require of this one, as plans (pure). Native routing with autoDirectNodeRoutes wants a kernel
// route per remote pod CIDR via the owning node's first InternalIP; tunnel mode wants a tunnel-map entry per
// remote pod CIDR with that node as endpoint; both modes want the ipcache to know remote nodes and their pod
// CIDRs. Desired sets are sorted; diffs are sorted; equal inputs give equal outputs regardless of input order.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "plexus/common/ipv4.h"
#include "plexus/node/node.h"

namespace plexus::node {

// A kernel route: dst via a next hop on a directly connected network (nodes share an L2 segment).
struct RouteSpec {
  Ipv4Prefix dst;
  Ipv4 via;
  friend bool operator==(const RouteSpec&, const RouteSpec&) = default;
  friend auto operator<=>(const RouteSpec&, const RouteSpec&) = default;
};

// Routes are compared as (dst, via) pairs: a changed next hop is a remove of the old pair plus an add of the
// new one. Apply remove before add (the kernel refuses a second route to the same dst), or replace the route
// for a dst found in both lists and skip its remove.
struct RoutePlan {
  std::vector<RouteSpec> add;
  std::vector<RouteSpec> remove;
  bool empty() const { return add.empty() && remove.empty(); }
};

// A tunnel-map entry: pod_cidr is reached by encapsulating to endpoint.
struct TunnelEntry {
  Ipv4Prefix pod_cidr;
  Ipv4 endpoint;
  friend bool operator==(const TunnelEntry&, const TunnelEntry&) = default;
  friend auto operator<=>(const TunnelEntry&, const TunnelEntry&) = default;
};

// Tunnel entries live in a map keyed by pod_cidr, where an update overwrites. So `add` holds entries that are
// new or whose endpoint changed (apply as map updates), and `remove` holds installed entries whose pod_cidr is
// no longer wanted at all (apply as deletes). The two never share a key, so they apply in any order.
struct TunnelPlan {
  std::vector<TunnelEntry> add;
  std::vector<TunnelEntry> remove;
  bool empty() const { return add.empty() && remove.empty(); }
};

// Two nodes claim the same pod CIDR (a misconfiguration, or a node replaced under a new name before the old
// object is deleted). Only `kept` gets the route or tunnel entry. Self always wins; otherwise the smaller name.
struct CidrConflict {
  Ipv4Prefix cidr;
  std::string kept;
  std::string dropped;
  friend bool operator==(const CidrConflict&, const CidrConflict&) = default;
};

// An ipcache entry a node contributes: prefix -> identity, plus where to send traffic for it in tunnel mode.
struct IpcacheContribution {
  Ipv4Prefix prefix;
  uint32_t identity = 0;
  std::optional<Ipv4> tunnel_endpoint;  // none: not encapsulated (the encoder writes 0)
  friend bool operator==(const IpcacheContribution&, const IpcacheContribution&) = default;
};

// nodes: the cluster's nodes in any order, possibly including self (whose pod CIDRs are never routed away).
// Precondition: names are unique (NodeTable::list() or others()). Nodes without an InternalIP are skipped.
std::vector<RouteSpec> desiredRoutes(const std::vector<Node>& nodes, const std::string& self);
std::vector<TunnelEntry> desiredTunnelEntries(const std::vector<Node>& nodes, const std::string& self);
// The claims desiredRoutes/desiredTunnelEntries dropped, sorted by cidr, for logging.
std::vector<CidrConflict> podCidrConflicts(const std::vector<Node>& nodes, const std::string& self);

// installed and desired are sets (order and duplicates do not matter). Outputs are sorted.
RoutePlan diffRoutes(const std::vector<RouteSpec>& installed, const std::vector<RouteSpec>& desired);
TunnelPlan diffTunnelEntries(const std::vector<TunnelEntry>& installed, const std::vector<TunnelEntry>& desired);
// The installed set after a plan has been applied in full: for the caller's model, once the apply succeeded.
std::vector<RouteSpec> applyRoutePlan(const std::vector<RouteSpec>& installed, const RoutePlan& plan);
std::vector<TunnelEntry> applyTunnelPlan(const std::vector<TunnelEntry>& installed, const TunnelPlan& plan);

// A remote node's ipcache entries, sorted by prefix: each InternalIP as a /32 with identity remote-node and no
// tunnel endpoint (the node address is reachable on the underlay itself), and each pod CIDR with identity
// unknown (0) and the node's tunnel endpoint, so traffic to a remote pod whose CiliumEndpoint-style entry has
// not arrived yet still goes to the right node (the /32 pod entries, more specific, carry the real identity).
// A node without an InternalIP contributes nothing.
std::vector<IpcacheContribution> nodeIpcacheEntries(const Node& node);

std::string toString(const RouteSpec& r);    // "10.0.1.0/24 via 192.168.1.11"
std::string toString(const TunnelEntry& t);  // "10.0.1.0/24 -> 192.168.1.11"

}  // namespace plexus::node
