#include "plexus/node/routes.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "plexus/identity.h"

namespace plexus::node {

namespace {

// Who gets each remote pod CIDR: the single owner per CIDR after conflict resolution, and what was dropped.
struct Ownership {
  std::map<Ipv4Prefix, std::pair<std::string, Ipv4>> owner;  // cidr -> (node name, tunnel endpoint)
  std::vector<CidrConflict> conflicts;
};

Ownership resolve(const std::vector<Node>& nodes, const std::string& self) {
  Ownership out;
  std::set<Ipv4Prefix> self_cidrs;
  std::vector<const Node*> remote;
  for (const auto& n : nodes) {
    if (n.name == self) {
      self_cidrs.insert(n.pod_cidrs.begin(), n.pod_cidrs.end());
    } else if (n.tunnelEndpoint()) {
      remote.push_back(&n);
    }
  }
  // Visiting in name order makes "the smaller name wins" independent of the input order.
  std::sort(remote.begin(), remote.end(), [](const Node* a, const Node* b) { return a->name < b->name; });
  for (const Node* n : remote) {
    for (const auto& cidr : n->pod_cidrs) {
      if (self_cidrs.count(cidr) != 0) {
        out.conflicts.push_back({cidr, self, n->name});
        continue;
      }
      auto [it, inserted] = out.owner.emplace(cidr, std::make_pair(n->name, *n->tunnelEndpoint()));
      if (!inserted) {
        out.conflicts.push_back({cidr, it->second.first, n->name});
      }
    }
  }
  std::stable_sort(out.conflicts.begin(), out.conflicts.end(),
                   [](const CidrConflict& a, const CidrConflict& b) { return a.cidr < b.cidr; });
  return out;
}

template <typename T>
std::vector<T> sortedUnique(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

}  // namespace

std::vector<RouteSpec> desiredRoutes(const std::vector<Node>& nodes, const std::string& self) {
  std::vector<RouteSpec> out;
  for (const auto& [cidr, owner] : resolve(nodes, self).owner) {
    out.push_back({cidr, owner.second});
  }
  return out;
}

std::vector<TunnelEntry> desiredTunnelEntries(const std::vector<Node>& nodes, const std::string& self) {
  std::vector<TunnelEntry> out;
  for (const auto& [cidr, owner] : resolve(nodes, self).owner) {
    out.push_back({cidr, owner.second});
  }
  return out;
}

std::vector<CidrConflict> podCidrConflicts(const std::vector<Node>& nodes, const std::string& self) {
  return resolve(nodes, self).conflicts;
}

RoutePlan diffRoutes(const std::vector<RouteSpec>& installed, const std::vector<RouteSpec>& desired) {
  auto have = sortedUnique(installed);
  auto want = sortedUnique(desired);
  RoutePlan plan;
  std::set_difference(want.begin(), want.end(), have.begin(), have.end(), std::back_inserter(plan.add));
  std::set_difference(have.begin(), have.end(), want.begin(), want.end(), std::back_inserter(plan.remove));
  return plan;
}

TunnelPlan diffTunnelEntries(const std::vector<TunnelEntry>& installed, const std::vector<TunnelEntry>& desired) {
  // Keyed by pod_cidr; with duplicate keys the last one wins, as it would in the map after sequential writes.
  std::map<Ipv4Prefix, Ipv4> have;
  for (const auto& e : installed) {
    have[e.pod_cidr] = e.endpoint;
  }
  std::map<Ipv4Prefix, Ipv4> want;
  for (const auto& e : desired) {
    want[e.pod_cidr] = e.endpoint;
  }
  TunnelPlan plan;
  for (const auto& [cidr, endpoint] : want) {
    auto it = have.find(cidr);
    if (it == have.end() || it->second != endpoint) {
      plan.add.push_back({cidr, endpoint});
    }
  }
  for (const auto& [cidr, endpoint] : have) {
    if (want.count(cidr) == 0) {
      plan.remove.push_back({cidr, endpoint});
    }
  }
  return plan;
}

std::vector<RouteSpec> applyRoutePlan(const std::vector<RouteSpec>& installed, const RoutePlan& plan) {
  std::set<RouteSpec> s(installed.begin(), installed.end());
  for (const auto& r : plan.remove) {
    s.erase(r);
  }
  s.insert(plan.add.begin(), plan.add.end());
  return {s.begin(), s.end()};
}

std::vector<TunnelEntry> applyTunnelPlan(const std::vector<TunnelEntry>& installed, const TunnelPlan& plan) {
  std::map<Ipv4Prefix, Ipv4> m;
  for (const auto& e : installed) {
    m[e.pod_cidr] = e.endpoint;
  }
  for (const auto& e : plan.remove) {
    m.erase(e.pod_cidr);
  }
  for (const auto& e : plan.add) {
    m[e.pod_cidr] = e.endpoint;
  }
  std::vector<TunnelEntry> out;
  for (const auto& [cidr, endpoint] : m) {
    out.push_back({cidr, endpoint});
  }
  return out;
}

std::vector<IpcacheContribution> nodeIpcacheEntries(const Node& node) {
  std::vector<IpcacheContribution> out;
  auto endpoint = node.tunnelEndpoint();
  if (!endpoint) {
    return out;
  }
  for (const auto& ip : node.internal_ips) {
    out.push_back({Ipv4Prefix(ip, 32), PLEXUS_IDENTITY_REMOTE_NODE, std::nullopt});
  }
  for (const auto& cidr : node.pod_cidrs) {
    out.push_back({cidr, PLEXUS_IDENTITY_UNKNOWN, endpoint});
  }
  // A /32 pod CIDR equal to a node IP would appear twice; the node-IP entry (first) is the one kept.
  std::stable_sort(out.begin(), out.end(),
                   [](const IpcacheContribution& a, const IpcacheContribution& b) { return a.prefix < b.prefix; });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const IpcacheContribution& a, const IpcacheContribution& b) { return a.prefix == b.prefix; }),
            out.end());
  return out;
}

std::string toString(const RouteSpec& r) { return fmt::format("{} via {}", r.dst.toString(), r.via.toString()); }

std::string toString(const TunnelEntry& t) {
  return fmt::format("{} -> {}", t.pod_cidr.toString(), t.endpoint.toString());
}

}  // namespace plexus::node
