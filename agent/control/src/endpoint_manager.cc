#include "plexus/agent/endpoint_manager.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/map_encoding.h"

namespace plexus::agent {

namespace {
Ipv4Prefix hostPrefix(Ipv4 ip) { return Ipv4Prefix(ip, 32); }
}  // namespace

EndpointManager::EndpointManager(EndpointManagerDeps deps, Ipam& ipam, EndpointManagerConfig config,
                                 std::function<int64_t()> clock)
    : deps_(deps), ipam_(ipam), config_(config), clock_(std::move(clock)) {}

Status EndpointManager::persistIpam() { return deps_.store.saveIpam(ipam_.snapshot()); }

Status EndpointManager::start(std::vector<std::string>* problems) {
  PLEXUS_TRY(deps_.network.prepareNode(ipam_.gateway()), "gateway device");
  // The gateway is the node itself: identity host.
  PLEXUS_TRY(deps_.ipcache.upsert(hostPrefix(ipam_.gateway()), IpcacheSource::kLocalEndpoint,
                                  IpcacheEntry{kIdentityHost, Ipv4{}}),
             "ipcache gateway entry");
  PLEXUS_TRY(deps_.map.update(encodeEndpointKey(ipam_.gateway()), encodeHostEndpointValue()),
             "endpoint gateway entry");

  std::set<uint32_t> live_ips{ipam_.gateway().networkOrder()};
  for (auto& rec : deps_.store.loadEndpoints(problems)) {
    auto link = deps_.network.attach(rec.host_ifname);
    if (!link.ok() && link.error().code == ErrorCode::kNotFound) {
      problems->push_back(fmt::format("endpoint {} ({}): host veth {} is gone, cleaning up", rec.id, rec.owner(),
                                      rec.host_ifname));
      if (!rec.chained) {
        ipam_.release(rec.owner());
      }
      (void)deps_.store.removeEndpoint(rec.id);
      continue;
    }
    if (link.ok()) {
      rec.host_ifindex = link->host_ifindex;
      rec.host_mac = link->host_mac;
    }
    // Programs replaced in place (same tc handle/priority) and entries rewritten: traffic keeps flowing.
    Status s = link.ok() ? writeMaps(rec) : Status(link.error());
    if (!s.ok()) {
      problems->push_back(fmt::format("endpoint {} ({}): restore: {}", rec.id, rec.owner(), s.error().message));
    }
    live_ips.insert(rec.ip.networkOrder());
    endpoints_[rec.id] = rec;
  }
  // Entries in the pinned map that no record explains are leftovers of a crash mid-DEL.
  auto entries = deps_.map.entries();
  if (entries.ok()) {
    for (const auto& [key, value] : *entries) {
      if (live_ips.count(key.ip) == 0) {
        (void)deps_.map.erase(key);
      }
    }
  }
  return persistIpam();
}

const EndpointRecord* EndpointManager::byOwner(const std::string& owner) const {
  for (const auto& [id, rec] : endpoints_) {
    if (rec.owner() == owner) {
      return &rec;
    }
  }
  return nullptr;
}

std::optional<EndpointRecord> EndpointManager::live(const std::string& owner) {
  const auto* rec = byOwner(owner);
  if (rec && deps_.network.exists(rec->host_ifname)) {
    return *rec;
  }
  return std::nullopt;
}

Result<uint16_t> EndpointManager::allocateId() const {
  for (uint32_t id = 1; id < 65536; ++id) {
    if (endpoints_.count(static_cast<uint16_t>(id)) == 0) {
      return static_cast<uint16_t>(id);
    }
  }
  return makeError(ErrorCode::kResourceExhausted, "no free endpoint id");
}

Result<EndpointRecord> EndpointManager::add(const AddRequest& req, uint32_t identity,
                                            const std::vector<std::string>& labels) {
  if (const auto* existing = byOwner(req.container_id + "/" + req.ifname)) {
    EndpointRecord stale = *existing;  // its veth is gone (the caller checked live() first)
    forget(stale);
  }
  auto id = allocateId();
  if (!id.ok()) {
    return id.error();
  }
  EndpointRecord rec;
  rec.id = *id;
  rec.container_id = req.container_id;
  rec.ifname = req.ifname;
  rec.netns = req.netns;
  rec.pod_namespace = req.pod_namespace;
  rec.pod_name = req.pod_name;
  rec.pod_uid = req.pod_uid;
  rec.identity = identity;
  rec.labels = labels;
  rec.created_unix = clock_();
  return req.chained ? addChained(req, std::move(rec)) : addVeth(req, std::move(rec));
}

Result<EndpointRecord> EndpointManager::addVeth(const AddRequest& req, EndpointRecord rec) {
  rec.host_ifname = hostIfname(req.container_id, req.ifname);
  auto ip = ipam_.allocate(rec.owner(), req.requested_ip);
  if (!ip.ok()) {
    return ip.error();
  }
  rec.ip = *ip;
  if (Status s = persistIpam(); !s.ok()) {
    ipam_.release(rec.owner());
    return s.error().wrap("persist IPAM");
  }
  auto rollback = [&](const Error& e) -> Result<EndpointRecord> {
    deps_.network.removePod(rec.host_ifname);
    eraseMaps(rec);
    ipam_.release(rec.owner());
    (void)persistIpam();
    return e;
  };
  PodLinkSpec spec{req.netns, req.ifname, rec.host_ifname, req.mtu > 0 ? req.mtu : config_.default_mtu,
                   req.requested_mac, rec.ip, ipam_.gateway()};
  auto link = deps_.network.createPod(spec);
  if (!link.ok()) {
    return rollback(link.error());
  }
  rec.host_ifindex = link->host_ifindex;
  rec.host_mac = link->host_mac;
  rec.mac = link->pod_mac;
  if (Status s = writeMaps(rec); !s.ok()) {
    return rollback(s.error().wrap("write endpoint maps"));
  }
  if (Status s = deps_.store.saveEndpoint(rec); !s.ok()) {
    return rollback(s.error().wrap("persist endpoint"));
  }
  endpoints_[rec.id] = rec;
  spdlog::info("endpoint {} added: pod {}/{} ip {} host veth {} identity {}", rec.id, rec.pod_namespace,
               rec.pod_name, rec.ip.toString(), rec.host_ifname, rec.identity);
  return rec;
}

Result<EndpointRecord> EndpointManager::addChained(const AddRequest& req, EndpointRecord rec) {
  const ChainedSpec& ch = *req.chained;
  if (ch.addresses.empty()) {
    return makeError(ErrorCode::kInvalidArgument, "chained ADD: prevResult carries no IPv4 address");
  }
  rec.ip = ch.addresses.front();
  rec.mac = ch.container_mac.value_or(Mac{});
  rec.host_ifname = ch.host_ifname;
  rec.chained = true;
  // The previous plugin owns the veth, addresses and routes; we only attach and register.
  auto link = deps_.network.attach(ch.host_ifname);
  if (!link.ok()) {
    return link.error().wrap(fmt::format("chained ADD on {}", ch.host_ifname));
  }
  rec.host_ifindex = link->host_ifindex;
  rec.host_mac = link->host_mac;
  if (Status s = writeMaps(rec); !s.ok()) {
    eraseMaps(rec);
    deps_.network.detach(ch.host_ifname);
    return s.error().wrap("write endpoint maps");
  }
  if (Status s = deps_.store.saveEndpoint(rec); !s.ok()) {
    eraseMaps(rec);
    deps_.network.detach(ch.host_ifname);
    return s.error().wrap("persist endpoint");
  }
  endpoints_[rec.id] = rec;
  spdlog::info("endpoint {} added (chained on {}): pod {}/{} ip {} identity {}", rec.id, rec.host_ifname,
               rec.pod_namespace, rec.pod_name, rec.ip.toString(), rec.identity);
  return rec;
}

Status EndpointManager::writeMaps(const EndpointRecord& rec) {
  // Policy first: the endpoint entry is what makes the datapath deliver to and from the pod.
  std::vector<EndpointRecord> others;
  for (const auto& [id, e] : endpoints_) {
    if (id != rec.id) {
      others.push_back(e);
    }
  }
  PLEXUS_TRY(deps_.policy.install(rec, others), "policy map");
  PLEXUS_TRY(deps_.map.update(encodeEndpointKey(rec.ip), encodeEndpointValue(rec)), "endpoints map");
  PLEXUS_TRY(deps_.ipcache.upsert(hostPrefix(rec.ip), IpcacheSource::kLocalEndpoint, IpcacheEntry{rec.identity, Ipv4{}}),
             "ipcache map");
  return Status::Ok();
}

void EndpointManager::eraseMaps(const EndpointRecord& rec) {
  (void)deps_.map.erase(encodeEndpointKey(rec.ip));
  if (Status s = deps_.ipcache.remove(hostPrefix(rec.ip), IpcacheSource::kLocalEndpoint); !s.ok()) {
    spdlog::warn("endpoint {}: {} (will retry)", rec.id, s.error().message);
  }
  deps_.policy.forget(rec.id);
}

void EndpointManager::forget(const EndpointRecord& record) {
  const EndpointRecord rec = record;  // a copy: record may live in the table
  endpoints_.erase(rec.id);
  eraseMaps(rec);
  if (rec.chained) {
    deps_.network.detach(rec.host_ifname);
  } else {
    // Deleting the host side removes the pair, the pod's addresses and routes, and our tc filters.
    deps_.network.removePod(rec.host_ifname);
    ipam_.release(rec.owner());
  }
  (void)deps_.store.removeEndpoint(rec.id);
}

Result<std::optional<EndpointRecord>> EndpointManager::del(const std::string& container_id, const std::string& ifname) {
  std::string owner = container_id + "/" + ifname;
  std::optional<EndpointRecord> removed;
  if (const auto* rec = byOwner(owner)) {
    removed = *rec;
    forget(*removed);
    spdlog::info("endpoint {} deleted: {}", removed->id, owner);
  } else {
    // Unknown attachment: succeed, but still drop a leaked allocation and a leftover veth.
    ipam_.release(owner);
    deps_.network.removePod(hostIfname(container_id, ifname));
  }
  PLEXUS_TRY(persistIpam(), "persist IPAM");
  return removed;
}

Status EndpointManager::check(const std::string& container_id, const std::string& ifname) {
  const auto* rec = byOwner(container_id + "/" + ifname);
  if (!rec) {
    return makeError(ErrorCode::kNotFound, fmt::format("no endpoint for container {} interface {}", container_id, ifname));
  }
  auto entry = deps_.map.lookup(encodeEndpointKey(rec->ip));
  if (!entry.ok()) {
    return entry.error();
  }
  if (!entry->has_value() || (*entry)->ifindex != static_cast<uint32_t>(rec->host_ifindex)) {
    return makeError(ErrorCode::kFailedPrecondition,
                     fmt::format("endpoints map entry for {} is missing or stale", rec->ip.toString()));
  }
  return deps_.network.check(*rec);
}

std::vector<EndpointRecord> EndpointManager::gc(const std::set<std::string>& valid_owners, uint32_t* released) {
  std::vector<EndpointRecord> stale;
  for (const auto& [id, rec] : endpoints_) {
    if (valid_owners.count(rec.owner()) == 0) {
      stale.push_back(rec);
    }
  }
  for (const auto& rec : stale) {
    forget(rec);
  }
  // Allocations without an endpoint (a crash between IPAM and wiring) are released too.
  *released = static_cast<uint32_t>(stale.size());
  for (const auto& [ip, owner] : ipam_.snapshot().allocations) {
    if (valid_owners.count(owner) == 0 && byOwner(owner) == nullptr) {
      *released += static_cast<uint32_t>(ipam_.release(owner));
    }
  }
  (void)persistIpam();
  return stale;
}

Status EndpointManager::updateIdentity(uint16_t id, uint32_t identity, std::vector<std::string> labels) {
  auto it = endpoints_.find(id);
  if (it == endpoints_.end()) {
    return makeError(ErrorCode::kNotFound, fmt::format("endpoint {}", id));
  }
  EndpointRecord next = it->second;
  next.identity = identity;
  next.labels = std::move(labels);
  PLEXUS_TRY(deps_.map.update(encodeEndpointKey(next.ip), encodeEndpointValue(next)),
             fmt::format("endpoint {} identity", id));
  it->second = next;
  if (Status s = deps_.ipcache.upsert(hostPrefix(next.ip), IpcacheSource::kLocalEndpoint,
                                      IpcacheEntry{identity, Ipv4{}});
      !s.ok()) {
    spdlog::warn("endpoint {}: {} (will retry)", id, s.error().message);
  }
  return deps_.store.saveEndpoint(next);
}

std::vector<EndpointRecord> EndpointManager::list() const {
  std::vector<EndpointRecord> out;
  out.reserve(endpoints_.size());
  for (const auto& [id, rec] : endpoints_) {
    out.push_back(rec);
  }
  return out;
}

std::optional<EndpointRecord> EndpointManager::find(const std::string& selector) const {
  return findEndpoint(list(), selector);
}

std::optional<EndpointRecord> EndpointManager::get(uint16_t id) const {
  auto it = endpoints_.find(id);
  return it == endpoints_.end() ? std::nullopt : std::optional<EndpointRecord>(it->second);
}

}  // namespace plexus::agent
