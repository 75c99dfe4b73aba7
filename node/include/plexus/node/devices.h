#pragma once
// Native device auto-detection (pure), after Cilium's: from the host's links and routes (read by an adapter),
// pick the devices that carry traffic to the world or to other nodes, i.e. where the host/NodePort programs
// attach and whose MTU bounds the pod MTU.

#include <optional>
#include <string>
#include <vector>

#include "plexus/common/ipv4.h"

namespace plexus::node {

struct LinkInfo {
  std::string name;
  int ifindex = 0;
  bool up = false;
  bool loopback = false;
  std::string kind;  // rtnetlink IFLA_INFO_KIND: "veth", "bridge", "vxlan", "geneve", ...; "" for physical
  // Assigned IPv4 addresses. Ipv4Prefix keeps only the masked network, which is enough for the range checks
  // here (loopback, link-local, multicast and reserved ranges are all at least a /16).
  std::vector<Ipv4Prefix> addresses;
};

struct RouteInfo {
  Ipv4Prefix dst;  // 0.0.0.0/0 for a default route
  int ifindex = 0;
  std::optional<Ipv4> gateway;
};

// Why a link was or was not picked, for one log line per link.
struct DeviceDecision {
  std::string name;
  int ifindex = 0;
  bool selected = false;
  std::string reason;  // e.g. "carries the default route", "kind bridge is excluded"
};

// A link is selected when it is up, not loopback, not a Plexus device (name "lxc*" or "plexus_*"), not of kind
// bridge/vxlan/geneve, has a global unicast IPv4 address (not 0/8, 127/8, 169.254/16, 224/4 or 240/4), and
// carries a default route or the most specific route to one of other_node_ips. One decision per link, sorted
// by name then ifindex.
std::vector<DeviceDecision> explainDevices(const std::vector<LinkInfo>& links, const std::vector<RouteInfo>& routes,
                                           const std::vector<Ipv4>& other_node_ips);

// The selected links' names, sorted and unique.
std::vector<std::string> detectDevices(const std::vector<LinkInfo>& links, const std::vector<RouteInfo>& routes,
                                       const std::vector<Ipv4>& other_node_ips);

// Whether an address (or the network of an assigned prefix) is global unicast in the sense above.
bool isGlobalUnicast(Ipv4 ip);

}  // namespace plexus::node
