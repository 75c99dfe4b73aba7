#pragma once
// Netlink (libnl-route-3) adapters: veth pairs, addresses, routes, neighbours and network namespaces.
// They make no decisions; the endpoint manager says what to create. Each call opens its own netlink socket in
// the calling thread's network namespace, so the functions also work inside inNetns().

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/datapath/fd.h"

namespace plexus::datapath {

struct LinkInfo {
  int ifindex = 0;
  Mac mac;
  int mtu = 0;
  bool up = false;
};

struct VethSpec {
  std::string host_name;
  std::string peer_name;       // final name inside the peer namespace
  int peer_netns_fd = -1;      // borrowed; the peer is created directly inside this namespace
  int mtu = 0;                 // 0: kernel default
  std::optional<Mac> peer_mac;
};

// The route protocol (rtm_protocol) that marks the routes to other nodes' pod CIDRs as the agent's, so that a
// restart finds those an earlier run left (nodes deleted meanwhile, a changed routing mode). Unassigned in
// iproute2's rt_protos; `ip route` shows it as "proto 193".
inline constexpr uint8_t kNodeRouteProtocol = 193;

struct RouteSpec {
  Ipv4Prefix dst;
  std::optional<Ipv4> gateway;
  int ifindex = 0;
  bool scope_link = false;     // on-link route with no gateway
  uint8_t protocol = 4;        // RTPROT_STATIC; kNodeRouteProtocol for node routes
};

// Finds a link in the current network namespace. NotFound when absent.
Result<LinkInfo> linkByName(const std::string& name);
Result<LinkInfo> linkByIndex(int ifindex);
Result<std::string> linkNameByIndex(int ifindex);

Status createVeth(const VethSpec& spec);
// Creates the node's gateway device (a veth pair `name` <-> `peer_name`, like Cilium's cilium_host/cilium_net)
// if it does not exist yet, with the peer up; returns the info of `name` either way.
Result<LinkInfo> ensureHostDevice(const std::string& name, const std::string& peer_name);
// Deleting an absent link is NotFound.
Status deleteLink(const std::string& name);
Status setLinkUp(int ifindex);
Status addAddress(int ifindex, Ipv4 address, int prefix_len);
Status replaceRoute(const RouteSpec& route);
Status deleteRoute(const RouteSpec& route);
Status replacePermanentNeighbour(int ifindex, Ipv4 ip, const Mac& mac);

// Opens a network namespace by path (e.g. /run/netns/x or /proc/<pid>/ns/net).
Result<UniqueFd> openNetns(const std::string& path);

// Runs fn in a helper thread that has entered the given network namespace. The caller's thread never
// changes namespace, so a failure cannot leave the agent in the wrong one.
Status inNetns(int netns_fd, const std::function<Status()>& fn);

// Writes a sysctl under /proc/sys of the calling thread's network namespace, e.g. "net/ipv4/ip_forward".
Status writeSysctl(const std::string& key, const std::string& value);

// ---- nodes: devices, routes and the tunnel device ----

struct LinkDetails {
  std::string name;
  LinkInfo info;
  bool loopback = false;
  std::string kind;                 // "veth", "bridge", "vxlan", ... ("" for plain devices)
  std::vector<Ipv4Prefix> addresses;  // masked, with their prefix length
  std::vector<Ipv4> ips;              // the same addresses, unmasked
};
// Every link of the current network namespace with its IPv4 addresses.
Result<std::vector<LinkDetails>> listLinks();
// The unicast IPv4 routes of the main table (first nexthop only).
Result<std::vector<RouteSpec>> listRoutes();
// The VXLAN device in external (collect-metadata) mode on `port`, created and set up if missing.
Result<LinkInfo> ensureVxlanDevice(const std::string& name, uint16_t port);

}  // namespace plexus::datapath
