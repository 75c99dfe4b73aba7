#include "plexus/agent/endpoint_manager.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/map_encoding.h"
#include "plexus/datapath/netlink.h"
#include "plexus/datapath/tc.h"

namespace plexus::agent {

namespace dp = plexus::datapath;

namespace {
plexus_endpoint_key endpointKey(Ipv4 ip) { return encodeEndpointKey(ip); }
plexus_ipcache_key ipcacheKey(Ipv4 ip) { return encodeIpcacheKey(Ipv4Prefix(ip, 32)); }
}  // namespace

EndpointManager::EndpointManager(dp::LxcDatapath& dp, Ipam& ipam, StateStore& store, EndpointManagerConfig config,
                                 std::function<int64_t()> clock)
    : dp_(dp), ipam_(ipam), store_(store), config_(std::move(config)), clock_(std::move(clock)),
      resolve_identity_([](EndpointRecord* rec) { rec->identity = kIdentityInit; }),
      resolve_policy_([](const EndpointRecord&) { return dp::allowAllPolicy(); }) {}

Status EndpointManager::persistIpam() { return store_.saveIpam(ipam_.snapshot()); }

Status EndpointManager::start(std::vector<std::string>* problems) {
  // The node routes between pods, the host and the world.
  PLEXUS_TRY(dp::writeSysctl("net/ipv4/ip_forward", "1"), "enable forwarding");
  auto host = dp::ensureHostDevice(config_.host_device, config_.host_device + "_net");
  if (!host.ok()) {
    return host.error().wrap("gateway device");
  }
  PLEXUS_TRY(dp::setLinkUp(host->ifindex), "gateway device up");
  PLEXUS_TRY(dp::addAddress(host->ifindex, ipam_.gateway(), 32), "gateway address");
  // The gateway is the node itself: identity host.
  PLEXUS_TRY(dp_.ipcache().update(ipcacheKey(ipam_.gateway()), encodeIpcacheValue(kIdentityHost)),
             "ipcache gateway entry");
  PLEXUS_TRY(dp_.endpoints().update(endpointKey(ipam_.gateway()), encodeHostEndpointValue()),
             "endpoint gateway entry");

  std::set<uint32_t> live_ips{ipam_.gateway().networkOrder()};
  for (auto& rec : store_.loadEndpoints(problems)) {
    auto link = dp::linkByName(rec.host_ifname);
    if (!link.ok()) {
      problems->push_back(fmt::format("endpoint {} ({}): host veth {} is gone, cleaning up", rec.id, rec.owner(),
                                      rec.host_ifname));
      eraseMaps(rec);
      if (!rec.chained) {
        ipam_.release(rec.owner());
      }
      (void)store_.removeEndpoint(rec.id);
      continue;
    }
    rec.host_ifindex = link->ifindex;
    rec.host_mac = link->mac;
    // Replace the programs in place (same tc handle/priority) and rewrite the entries: traffic keeps flowing.
    Status s = dp_.attachEndpoint(rec.host_ifindex);
    if (s.ok()) {
      s = writeMaps(rec);
    }
    if (!s.ok()) {
      problems->push_back(fmt::format("endpoint {} ({}): restore: {}", rec.id, rec.owner(), s.error().message));
    }
    live_ips.insert(rec.ip.networkOrder());
    endpoints_[rec.id] = rec;
  }
  // Entries in the pinned map that no record explains are leftovers of a crash mid-DEL.
  auto entries = dp_.endpoints().entries();
  if (entries.ok()) {
    for (const auto& [key, value] : *entries) {
      if (live_ips.count(key.ip) == 0) {
        (void)dp_.endpoints().erase(key);
        (void)dp_.ipcache().erase(ipcacheKey(Ipv4::fromNetwork(key.ip)));
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

Result<uint16_t> EndpointManager::allocateId() const {
  for (uint32_t id = 1; id < 65536; ++id) {
    if (endpoints_.count(static_cast<uint16_t>(id)) == 0) {
      return static_cast<uint16_t>(id);
    }
  }
  return makeError(ErrorCode::kResourceExhausted, "no free endpoint id");
}

Result<EndpointRecord> EndpointManager::add(const AddRequest& req) {
  std::string owner = req.container_id + "/" + req.ifname;
  if (const auto* existing = byOwner(owner)) {
    // A repeated ADD for a live attachment returns what the first one returned.
    if (dp::linkByName(existing->host_ifname).ok()) {
      return *existing;
    }
    EndpointRecord stale = *existing;
    forget(stale);
  }
  return req.chained ? addChained(req) : addVeth(req);
}

Result<EndpointRecord> EndpointManager::addVeth(const AddRequest& req) {
  auto netns = dp::openNetns(req.netns);
  if (!netns.ok()) {
    return netns.error();
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
  rec.host_ifname = hostIfname(req.container_id, req.ifname);
  rec.created_unix = clock_();

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
    (void)dp::deleteLink(rec.host_ifname);
    eraseMaps(rec);
    ipam_.release(rec.owner());
    (void)persistIpam();
    return e;
  };
  // A leftover host veth of an earlier, crashed attempt would make the create fail with EEXIST.
  (void)dp::deleteLink(rec.host_ifname);
  dp::VethSpec spec{rec.host_ifname, req.ifname, netns->get(), req.mtu > 0 ? req.mtu : config_.default_mtu,
                    req.requested_mac};
  if (Status s = dp::createVeth(spec); !s.ok()) {
    return rollback(s.error());
  }
  if (Status s = configurePod(req, rec.ip, &rec); !s.ok()) {
    return rollback(s.error().wrap(fmt::format("configure {} in {}", req.ifname, req.netns)));
  }
  if (Status s = configureHost(&rec); !s.ok()) {
    return rollback(s.error().wrap(fmt::format("configure host side {}", rec.host_ifname)));
  }
  resolve_identity_(&rec);
  if (Status s = writeMaps(rec); !s.ok()) {
    return rollback(s.error().wrap("write endpoint maps"));
  }
  if (Status s = store_.saveEndpoint(rec); !s.ok()) {
    return rollback(s.error().wrap("persist endpoint"));
  }
  endpoints_[rec.id] = rec;
  spdlog::info("endpoint {} added: pod {}/{} ip {} host veth {}", rec.id, rec.pod_namespace, rec.pod_name,
               rec.ip.toString(), rec.host_ifname);
  return rec;
}

Status EndpointManager::configurePod(const AddRequest& req, Ipv4 ip, EndpointRecord* rec) {
  auto netns = dp::openNetns(req.netns);
  if (!netns.ok()) {
    return netns.error();
  }
  Ipv4 gw = ipam_.gateway();
  Mac mac;
  Status s = dp::inNetns(netns->get(), [&]() -> Status {
    auto lo = dp::linkByName("lo");
    if (lo.ok()) {
      PLEXUS_TRY(dp::setLinkUp(lo->ifindex), "lo up");
    }
    auto link = dp::linkByName(req.ifname);
    if (!link.ok()) {
      return link.error();
    }
    // IPv4-only datapath: no IPv6 neighbour discovery chatter on the pod interface.
    (void)dp::writeSysctl(fmt::format("net/ipv6/conf/{}/disable_ipv6", req.ifname), "1");
    PLEXUS_TRY(dp::addAddress(link->ifindex, ip, 32), "pod address");
    PLEXUS_TRY(dp::setLinkUp(link->ifindex), "pod interface up");
    PLEXUS_TRY(dp::replaceRoute({Ipv4Prefix(gw, 32), std::nullopt, link->ifindex, true}), "gateway route");
    PLEXUS_TRY(dp::replaceRoute({Ipv4Prefix(Ipv4(0), 0), gw, link->ifindex, false}), "default route");
    mac = link->mac;
    return Status::Ok();
  });
  if (!s.ok()) {
    return s;
  }
  rec->mac = mac;
  return Status::Ok();
}

Status EndpointManager::configureHost(EndpointRecord* rec) {
  auto link = dp::linkByName(rec->host_ifname);
  if (!link.ok()) {
    return link.error();
  }
  rec->host_ifindex = link->ifindex;
  rec->host_mac = link->mac;
  // IPv4 only: without this the host would send router and neighbour solicitations the pod cannot use.
  (void)dp::writeSysctl(fmt::format("net/ipv6/conf/{}/disable_ipv6", rec->host_ifname), "1");
  PLEXUS_TRY(dp::setLinkUp(link->ifindex), "host veth up");
  PLEXUS_TRY(dp::replaceRoute({Ipv4Prefix(rec->ip, 32), std::nullopt, link->ifindex, true}), "host route to pod");
  // A permanent neighbour entry: the host never has to ARP for its pods.
  PLEXUS_TRY(dp::replacePermanentNeighbour(link->ifindex, rec->ip, rec->mac), "host neighbour entry");
  PLEXUS_TRY(dp_.attachEndpoint(link->ifindex), "attach programs");
  return Status::Ok();
}

Result<EndpointRecord> EndpointManager::addChained(const AddRequest& req) {
  const ChainedSpec& ch = *req.chained;
  if (ch.addresses.empty()) {
    return makeError(ErrorCode::kInvalidArgument, "chained ADD: prevResult carries no IPv4 address");
  }
  auto link = dp::linkByName(ch.host_ifname);
  if (!link.ok()) {
    return link.error().wrap(fmt::format("chained ADD: host veth {}", ch.host_ifname));
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
  rec.ip = ch.addresses.front();
  rec.mac = ch.container_mac.value_or(Mac{});
  rec.host_ifname = ch.host_ifname;
  rec.host_ifindex = link->ifindex;
  rec.host_mac = link->mac;
  rec.chained = true;
  rec.created_unix = clock_();
  resolve_identity_(&rec);
  // The previous plugin owns the veth, addresses and routes; we only attach and register.
  if (Status s = dp_.attachEndpoint(link->ifindex); !s.ok()) {
    return s.error().wrap(fmt::format("chained ADD on {}", ch.host_ifname));
  }
  if (Status s = writeMaps(rec); !s.ok()) {
    (void)dp::tcDetach(link->ifindex, dp::TcDirection::kIngress, false);
    (void)dp::tcDetach(link->ifindex, dp::TcDirection::kEgress, false);
    return s.error().wrap("write endpoint maps");
  }
  if (Status s = store_.saveEndpoint(rec); !s.ok()) {
    eraseMaps(rec);
    return s.error().wrap("persist endpoint");
  }
  endpoints_[rec.id] = rec;
  spdlog::info("endpoint {} added (chained on {}): pod {}/{} ip {}", rec.id, rec.host_ifname, rec.pod_namespace,
               rec.pod_name, rec.ip.toString());
  return rec;
}

Status EndpointManager::writeMaps(const EndpointRecord& rec) {
  // Policy first: the endpoint entry is what makes the datapath deliver to and from the pod.
  PLEXUS_TRY(dp_.policy().set(rec.id, resolve_policy_(rec)), "policy map");
  PLEXUS_TRY(dp_.endpoints().update(endpointKey(rec.ip), encodeEndpointValue(rec)), "endpoints map");
  PLEXUS_TRY(dp_.ipcache().update(ipcacheKey(rec.ip), encodeIpcacheValue(rec.identity)), "ipcache map");
  for (const auto& l : listeners_) {
    l(rec, false);
  }
  return Status::Ok();
}

void EndpointManager::eraseMaps(const EndpointRecord& rec) {
  (void)dp_.endpoints().erase(endpointKey(rec.ip));
  (void)dp_.ipcache().erase(ipcacheKey(rec.ip));
  (void)dp_.policy().clear(rec.id);
  for (const auto& l : listeners_) {
    l(rec, true);
  }
}

void EndpointManager::forget(const EndpointRecord& record) {
  // Out of the table first (on a copy: record may live in it), so listeners see the endpoint gone.
  const EndpointRecord rec = record;
  endpoints_.erase(rec.id);
  eraseMaps(rec);
  if (rec.chained) {
    auto link = dp::linkByName(rec.host_ifname);
    if (link.ok()) {
      (void)dp::tcDetach(link->ifindex, dp::TcDirection::kIngress, false);
      (void)dp::tcDetach(link->ifindex, dp::TcDirection::kEgress, false);
    }
  } else {
    // Deleting the host side removes the pair, the pod's addresses and routes, and our tc filters.
    (void)dp::deleteLink(rec.host_ifname);
    ipam_.release(rec.owner());
  }
  (void)store_.removeEndpoint(rec.id);
}

Status EndpointManager::del(const std::string& container_id, const std::string& ifname) {
  std::string owner = container_id + "/" + ifname;
  if (const auto* rec = byOwner(owner)) {
    EndpointRecord copy = *rec;
    forget(copy);
    spdlog::info("endpoint {} deleted: {}", copy.id, owner);
  } else {
    // Unknown attachment: succeed, but still drop a leaked allocation and a leftover veth.
    ipam_.release(owner);
    (void)dp::deleteLink(hostIfname(container_id, ifname));
  }
  return persistIpam();
}

Status EndpointManager::check(const std::string& container_id, const std::string& ifname) {
  const auto* rec = byOwner(container_id + "/" + ifname);
  if (!rec) {
    return makeError(ErrorCode::kNotFound, fmt::format("no endpoint for container {} interface {}", container_id, ifname));
  }
  auto link = dp::linkByName(rec->host_ifname);
  if (!link.ok()) {
    return link.error().wrap("host veth");
  }
  for (auto dir : {dp::TcDirection::kIngress, dp::TcDirection::kEgress}) {
    auto prog = dp::tcAttachedProgramId(link->ifindex, dir);
    if (!prog.ok()) {
      return prog.error().wrap(fmt::format("programs on {}", rec->host_ifname));
    }
  }
  auto entry = dp_.endpoints().lookup(endpointKey(rec->ip));
  if (!entry.ok()) {
    return entry.error();
  }
  if (!entry->has_value() || (*entry)->ifindex != static_cast<uint32_t>(link->ifindex)) {
    return makeError(ErrorCode::kFailedPrecondition,
                     fmt::format("endpoints map entry for {} is missing or stale", rec->ip.toString()));
  }
  if (rec->chained || rec->netns.empty()) {
    return Status::Ok();
  }
  auto netns = dp::openNetns(rec->netns);
  if (!netns.ok()) {
    return netns.error();
  }
  return dp::inNetns(netns->get(), [&]() -> Status {
    auto pod = dp::linkByName(rec->ifname);
    if (!pod.ok()) {
      return pod.error().wrap("pod interface");
    }
    if (!pod->up) {
      return makeError(ErrorCode::kFailedPrecondition, fmt::format("pod interface {} is down", rec->ifname));
    }
    return Status::Ok();
  });
}

uint32_t EndpointManager::gc(const std::set<std::string>& valid_owners) {
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
  uint32_t released = static_cast<uint32_t>(stale.size());
  for (const auto& [ip, owner] : ipam_.snapshot().allocations) {
    if (valid_owners.count(owner) == 0 && byOwner(owner) == nullptr) {
      released += static_cast<uint32_t>(ipam_.release(owner));
    }
  }
  (void)persistIpam();
  return released;
}

Status EndpointManager::updateIdentity(uint16_t id, uint32_t identity, std::vector<std::string> labels) {
  auto it = endpoints_.find(id);
  if (it == endpoints_.end()) {
    return makeError(ErrorCode::kNotFound, fmt::format("endpoint {}", id));
  }
  EndpointRecord next = it->second;
  next.identity = identity;
  next.labels = std::move(labels);
  PLEXUS_TRY(writeMaps(next), fmt::format("endpoint {} identity", id));
  it->second = next;
  return store_.saveEndpoint(next);
}

std::vector<EndpointRecord> EndpointManager::list() const {
  std::vector<EndpointRecord> out;
  for (const auto& [id, rec] : endpoints_) {
    out.push_back(rec);
  }
  return out;
}

std::optional<EndpointRecord> EndpointManager::find(const std::string& selector) const {
  for (const auto& [id, rec] : endpoints_) {
    if (std::to_string(id) == selector || rec.container_id == selector || rec.ip.toString() == selector ||
        rec.pod_namespace + "/" + rec.pod_name == selector || rec.host_ifname == selector) {
      return rec;
    }
  }
  return std::nullopt;
}

}  // namespace plexus::agent
