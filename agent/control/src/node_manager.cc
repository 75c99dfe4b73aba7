#include "plexus/agent/node_manager.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/node/node.h"

namespace plexus::agent {

namespace {
std::string podKey(const std::string& ns, const std::string& name) { return (ns.empty() ? "default" : ns) + "/" + name; }
}  // namespace

bool NodeManager::isRemotePod(const nlohmann::json& pod) const {
  auto node = pod.value(nlohmann::json::json_pointer("/spec/nodeName"), std::string());
  return !node.empty() && node != config_.self;
}

std::optional<NodeManager::RemotePeer> NodeManager::findRemote(const std::string& text) const {
  auto ip = Ipv4::parse(text);
  for (const auto& [key, pod] : remote_pods_) {
    if (ip ? pod.ip == *ip : (key == text || key == podKey("", text))) {
      return RemotePeer{key, pod.node, pod.identity};
    }
  }
  if (!ip) {
    return std::nullopt;
  }
  for (const auto& n : table_.list()) {
    if (std::find(n.internal_ips.begin(), n.internal_ips.end(), *ip) != n.internal_ips.end()) {
      bool self = n.name == config_.self;
      return RemotePeer{"node " + n.name, n.name, self ? ::plexus::identity::kHost : ::plexus::identity::kRemoteNode};
    }
  }
  return std::nullopt;
}

Status NodeManager::restore() {
  if (!routes_) {
    return Status::Ok();
  }
  auto left = routes_->installed();
  if (!left.ok()) {
    return left.error().wrap("adopt node routes");
  }
  adopted_routes_.insert(left->begin(), left->end());
  dirty_ = dirty_ || !adopted_routes_.empty();
  return Status::Ok();
}

bool NodeManager::track(const ResourceEvent& e) {
  if (e.type == ResourceEventType::kSynced) {
    if (unsynced_.erase(e.key.kind) == 0 || !unsynced_.empty() || adopted_routes_.empty()) {
      return false;
    }
    dirty_ = true;  // the table is complete: leftovers can go
    return true;
  }
  if (e.key.kind == ResourceKind::kPlexusEndpoint) {
    trackEndpoint(e);
    return true;
  }
  if (e.key.kind == ResourceKind::kPod) {
    size_t before = remote_pods_.size();
    bool known = remote_pods_.count(podKey(e.key.namespace_name, e.key.name)) > 0;
    trackPod(e);
    bool changed = known || remote_pods_.size() != before;
    dirty_ = dirty_ || changed;
    return changed;
  }
  if (e.key.kind == ResourceKind::kPlexusNode) {
    return trackClaim(e);
  }
  if (e.key.kind != ResourceKind::kNode) {
    return false;
  }
  std::optional<node::NodeChange> change;
  if (e.type == ResourceEventType::kDelete) {
    change = table_.remove(e.key.name);
  } else {
    auto parsed = node::parseNode(e.object);
    if (!parsed.ok()) {
      spdlog::warn("Node {}: {}", e.key.name, parsed.error().message);  // validated on apply; a watch may differ
      return false;
    }
    change = table_.upsert(*parsed);
  }
  return nodeChanged(e.key.name, change);
}

bool NodeManager::trackClaim(const ResourceEvent& e) {
  std::optional<node::NodeChange> change;
  if (e.type == ResourceEventType::kDelete) {
    change = table_.removeClaim(e.key.name);
  } else {
    auto parsed = node::parsePlexusNode(e.object);
    if (!parsed.ok()) {
      spdlog::warn("{}", parsed.error().message);  // validated on ingest; a watch may differ
      return false;
    }
    change = table_.upsertClaim(*parsed);
  }
  return nodeChanged(e.key.name, change);
}

bool NodeManager::nodeChanged(const std::string& name, const std::optional<node::NodeChange>& change) {
  if (!change) {
    return false;
  }
  spdlog::info("node {}: {}{}", name,
               !change->after ? "removed" : change->before ? node::describe(*change->after) + " (changed)"
                                                           : node::describe(*change->after),
               change->after && table_.cidrsClaimed(name) ? ", pod CIDRs from its PlexusNode" : "");
  dirty_ = true;
  return true;
}

void NodeManager::trackPod(const ResourceEvent& e) {
  std::string key = podKey(e.key.namespace_name, e.key.name);
  if (e.type == ResourceEventType::kDelete || !isRemotePod(e.object)) {
    forgetPod(key);
    return;
  }
  auto ip_text = e.object.value(nlohmann::json::json_pointer("/status/podIP"), std::string());
  auto ip = Ipv4::parse(ip_text);
  auto labels = resources_.podIdentityLabels(e.key.namespace_name, e.key.name);
  if (!ip || labels.empty()) {
    forgetPod(key);  // not running yet (no address): nothing to route or judge
    return;
  }
  RemotePod next{e.object["spec"]["nodeName"].get<std::string>(), *ip, 0,
                 std::vector<std::string>(labels.begin(), labels.end()), true};
  auto it = remote_pods_.find(key);
  if (it != remote_pods_.end() && !it->second.owned) {
    return;  // its agent published it with its cluster identity
  }
  if (it != remote_pods_.end() && it->second.labels == next.labels) {
    next.identity = it->second.identity;  // same labels, same identity: keep the reference
    it->second = next;
    return;
  }
  // Deferred persistence (flushed at the end of the batch): a remote pod's identity lives only in the ipcache, which
  // a restart rebuilds from the stored Pod objects.
  next.identity = identities_.acquire(labels, false);
  forgetPod(key);
  remote_pods_[key] = next;
}

void NodeManager::trackEndpoint(const ResourceEvent& e) {
  std::string key = podKey(e.key.namespace_name, e.key.name);
  auto ep = e.type == ResourceEventType::kDelete ? Result<node::RemoteEndpoint>(Error{})
                                                  : node::parsePlexusEndpoint(e.object);
  if (!ep.ok() || ep->node == config_.self) {
    forgetPod(key);  // deleted, or ours (this node knows its own endpoints first hand)
    return;
  }
  auto it = remote_pods_.find(key);
  RemotePod next{ep->node, ep->ip, ep->identity, ep->labels, false};
  if (it != remote_pods_.end() && !it->second.owned) {
    it->second = next;
  } else {
    forgetPod(key);
    remote_pods_[key] = next;
  }
  dirty_ = true;
}

void NodeManager::forgetPod(const std::string& key) {
  auto it = remote_pods_.find(key);
  if (it == remote_pods_.end()) {
    return;
  }
  if (it->second.owned) {
    identities_.release(it->second.identity, false);
  }
  remote_pods_.erase(it);
  dirty_ = true;
}

Status NodeManager::sync() {
  if (!dirty_) {
    return Status::Ok();
  }
  Status routes = syncRoutes();
  Status ipcache = syncIpcache();
  if (!routes.ok()) {
    return routes;
  }
  if (!ipcache.ok()) {
    return ipcache;
  }
  dirty_ = false;
  return Status::Ok();
}

Status NodeManager::syncRoutes() {
  bool tunnel = config_.mode == node::RoutingMode::kTunnel;
  std::vector<node::RouteSpec> desired;
  if (routes_ && (tunnel || config_.auto_direct_node_routes)) {
    // The whole list, self included: this node's own CIDRs are never routed away, and of two nodes claiming one
    // CIDR (a cluster-pool claim race) the smaller name keeps it, as in the ipcache below.
    desired = node::desiredRoutes(table_.list(), config_.self);
  }
  auto plan = node::diffRoutes(installed_routes_, desired);
  Status first = Status::Ok();
  // An earlier run's routes: kept while the node table may be incomplete, then those no node wants are removed.
  for (const auto& r : desired) {
    adopted_routes_.erase(r.dst);
  }
  if (routes_ && unsynced_.empty()) {
    for (auto it = adopted_routes_.begin(); it != adopted_routes_.end();) {
      if (Status s = routes_->remove(*it); !s.ok()) {
        if (first.ok()) {
          first = s.error().wrap(fmt::format("route {} left by an earlier run", it->toString()));
        }
        ++it;
        continue;
      }
      spdlog::info("nodes: removed route {} left by an earlier run (no node has that pod CIDR now)", it->toString());
      it = adopted_routes_.erase(it);
    }
  }
  for (const auto& r : plan.remove) {
    bool replaced = std::any_of(plan.add.begin(), plan.add.end(), [&](const auto& a) { return a.dst == r.dst; });
    if (replaced) {
      continue;  // the add below replaces it
    }
    if (Status s = routes_->remove(r.dst); !s.ok() && first.ok()) {
      first = s.error().wrap(fmt::format("route {}", r.dst.toString()));
      continue;
    }
    installed_routes_.erase(std::remove(installed_routes_.begin(), installed_routes_.end(), r),
                            installed_routes_.end());
  }
  for (const auto& r : plan.add) {
    if (Status s = routes_->replace(r.dst, r.via, tunnel); !s.ok()) {
      if (first.ok()) {
        first = s.error().wrap(fmt::format("route {} via {}", r.dst.toString(), r.via.toString()));
      }
      continue;
    }
    std::erase_if(installed_routes_, [&](const auto& i) { return i.dst == r.dst; });
    installed_routes_.push_back(r);
  }
  return first;
}

Status NodeManager::syncIpcache() {
  std::map<Ipv4Prefix, IpcacheEntry> node_entries;
  std::map<std::string, Ipv4> endpoints;  // node name -> tunnel endpoint
  for (const auto& n : table_.others()) {
    for (const auto& c : node::nodeIpcacheEntries(n)) {
      if (!c.tunnel_endpoint) {
        node_entries[c.prefix] = IpcacheEntry{c.identity, Ipv4{}};  // its InternalIPs (remote-node)
      }
    }
    if (auto ep = n.tunnelEndpoint()) {
      endpoints[n.name] = *ep;
    }
  }
  // Pod CIDRs with their node as tunnel endpoint: one owner per CIDR, the same as the routes (self's CIDRs are
  // never claimed away; otherwise the smaller name keeps a CIDR two nodes claim).
  auto all = table_.list();
  for (const auto& t : node::desiredTunnelEntries(all, config_.self)) {
    node_entries[t.pod_cidr] = IpcacheEntry{0, t.endpoint};
  }
  for (const auto& c : node::podCidrConflicts(all, config_.self)) {
    if (logged_conflicts_.insert({c.cidr, c.dropped}).second) {
      spdlog::warn("nodes: pod CIDR {} is claimed by {} and {}; {} keeps it", c.cidr.toString(), c.kept, c.dropped,
                   c.kept);
    }
  }
  std::map<Ipv4Prefix, IpcacheEntry> pod_entries;
  for (const auto& [key, pod] : remote_pods_) {
    auto ep = endpoints.find(pod.node);
    if (ep == endpoints.end() || pod.identity == 0) {
      continue;  // its node is not known (or was deleted): no route to it, no entry
    }
    pod_entries[Ipv4Prefix(pod.ip, 32)] = IpcacheEntry{pod.identity, ep->second};
  }
  if (flows_) {
    std::set<Ipv4> now;
    for (const auto& [key, pod] : remote_pods_) {
      if (!pod_entries.count(Ipv4Prefix(pod.ip, 32))) {
        continue;  // its node is not known: not reachable, not named (as its entry)
      }
      auto slash = key.find('/');
      flows_->upsertEndpoint(pod.ip, PeerInfo{key.substr(0, slash), key.substr(slash + 1), pod.labels, 0, "", 0});
      now.insert(pod.ip);
    }
    for (const Ipv4& ip : named_) {
      if (!now.count(ip)) {
        flows_->removeEndpoint(ip);
      }
    }
    named_ = std::move(now);
  }
  Status a = ipcache_.replace(IpcacheSource::kNode, node_entries);
  Status b = ipcache_.replace(IpcacheSource::kRemoteEndpoint, pod_entries);
  return !a.ok() ? a : b;
}

}  // namespace plexus::agent
