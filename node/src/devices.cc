#include "plexus/node/devices.h"

#include <algorithm>
#include <array>
#include <string_view>

#include <fmt/format.h>

namespace plexus::node {

namespace {

// Names the agent creates itself: pod veths (host side) and its own host/tunnel devices.
constexpr std::array<std::string_view, 2> kOwnPrefixes = {"lxc", "plexus_"};
// Virtual kinds that never carry the node's own traffic to the underlay: bridges aggregate other ports, and
// tunnel devices ride on top of a native device (the one we want).
constexpr std::array<std::string_view, 3> kExcludedKinds = {"bridge", "vxlan", "geneve"};

Ipv4Prefix cidr(const char* text) { return *Ipv4Prefix::parse(text); }

// The routes the kernel would pick for ip: all routes sharing the longest matching prefix (ECMP-like ties).
std::vector<const RouteInfo*> bestRoutes(const std::vector<RouteInfo>& routes, Ipv4 ip) {
  std::vector<const RouteInfo*> best;
  int best_len = -1;
  for (const auto& r : routes) {
    if (!r.dst.contains(ip) || r.dst.length() < best_len) {
      continue;
    }
    if (r.dst.length() > best_len) {
      best.clear();
      best_len = r.dst.length();
    }
    best.push_back(&r);
  }
  return best;
}

// Empty when the link passes every static check, else why not.
std::string staticExclusion(const LinkInfo& link) {
  if (!link.up) {
    return "down";
  }
  if (link.loopback) {
    return "loopback";
  }
  for (auto prefix : kOwnPrefixes) {
    if (std::string_view(link.name).substr(0, prefix.size()) == prefix) {
      return fmt::format("Plexus device (name starts with {:?})", prefix);
    }
  }
  for (auto kind : kExcludedKinds) {
    if (link.kind == kind) {
      return fmt::format("kind {} is excluded", kind);
    }
  }
  bool global = std::any_of(link.addresses.begin(), link.addresses.end(),
                            [](const Ipv4Prefix& a) { return isGlobalUnicast(a.network()); });
  if (!global) {
    return "no global unicast IPv4 address";
  }
  return "";
}

DeviceDecision decide(const LinkInfo& link, const std::vector<RouteInfo>& routes,
                      const std::vector<Ipv4>& other_node_ips) {
  DeviceDecision d{link.name, link.ifindex, false, staticExclusion(link)};
  if (!d.reason.empty()) {
    return d;
  }
  for (const auto& r : routes) {
    if (r.dst.length() == 0 && r.ifindex == link.ifindex) {
      d.selected = true;
      d.reason = "carries the default route";
      return d;
    }
  }
  for (const auto& ip : other_node_ips) {
    for (const RouteInfo* r : bestRoutes(routes, ip)) {
      if (r->ifindex == link.ifindex) {
        d.selected = true;
        d.reason = fmt::format("route {} reaches node {}", r->dst.toString(), ip.toString());
        return d;
      }
    }
  }
  d.reason = "carries neither the default route nor the route to another node";
  return d;
}

}  // namespace

bool isGlobalUnicast(Ipv4 ip) {
  static const std::array<Ipv4Prefix, 5> kNotGlobal = {cidr("0.0.0.0/8"), cidr("127.0.0.0/8"),
                                                       cidr("169.254.0.0/16"), cidr("224.0.0.0/4"),
                                                       cidr("240.0.0.0/4")};
  return std::none_of(kNotGlobal.begin(), kNotGlobal.end(), [&](const Ipv4Prefix& p) { return p.contains(ip); });
}

std::vector<DeviceDecision> explainDevices(const std::vector<LinkInfo>& links, const std::vector<RouteInfo>& routes,
                                           const std::vector<Ipv4>& other_node_ips) {
  std::vector<DeviceDecision> out;
  out.reserve(links.size());
  for (const auto& link : links) {
    out.push_back(decide(link, routes, other_node_ips));
  }
  std::sort(out.begin(), out.end(), [](const DeviceDecision& a, const DeviceDecision& b) {
    return a.name != b.name ? a.name < b.name : a.ifindex < b.ifindex;
  });
  return out;
}

std::vector<std::string> detectDevices(const std::vector<LinkInfo>& links, const std::vector<RouteInfo>& routes,
                                       const std::vector<Ipv4>& other_node_ips) {
  std::vector<std::string> out;
  for (const auto& d : explainDevices(links, routes, other_node_ips)) {
    if (d.selected) {
      out.push_back(d.name);
    }
  }
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace plexus::node
