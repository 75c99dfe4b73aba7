#include "plexus/agent/kernel_ports.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include <set>
#include <tuple>

#include "plexus/datapath/netlink.h"
#include "plexus/datapath/tc.h"

namespace plexus::agent {

namespace dp = plexus::datapath;

Status KernelServiceMaps::apply(const lb::Plan& plan) {
  auto ignoreMissing = [](const Status& s) { return s.ok() || s.error().code == ErrorCode::kNotFound; };
  // Frontends that go away entirely leave first: nothing refers to their entries, and in a full map they make the
  // room the writes need. A frontend that only loses slots keeps them until its master no longer counts them.
  std::set<std::tuple<uint32_t, uint16_t, uint8_t, uint8_t>> gone;
  for (const auto& k : plan.service_deletes) {
    if (k.backend_slot == 0) {
      gone.insert({k.address, k.dport, k.proto, k.scope});
    }
  }
  auto whole = [&](const plexus_lb4_key& k) { return gone.count({k.address, k.dport, k.proto, k.scope}) > 0; };
  for (const auto& k : plan.service_deletes) {
    if (whole(k)) {
      if (Status s = maps_.services.erase(k); !ignoreMissing(s)) {
        return s.error().wrap("service entry");
      }
    }
  }
  // Batched writes in dependency order: backends and reverse NAT before the service entries that name them,
  // and (within the service entries, as the plan orders them) slots before their master.
  PLEXUS_TRY(maps_.backends.updateBatch(plan.backend_upserts), "backends");
  PLEXUS_TRY(maps_.revnat.updateBatch(plan.revnat_upserts), "reverse NAT");
  for (const auto& [id, t] : plan.maglev_upserts) {
    PLEXUS_TRY(maps_.setMaglevTable(id, t), fmt::format("maglev table {}", id));
  }
  // Ranges before the masters that announce them (one at a time: LPM tries take no batches).
  for (const auto& k : plan.source_range_upserts) {
    PLEXUS_TRY(maps_.source_ranges.update(k, 1), "source ranges");
  }
  PLEXUS_TRY(maps_.services.updateBatch(plan.service_upserts), "service entries");
  for (const auto& k : plan.service_deletes) {
    if (whole(k)) {
      continue;
    }
    if (Status s = maps_.services.erase(k); !ignoreMissing(s)) {
      return s.error().wrap("service entry");
    }
  }
  for (const auto& k : plan.source_range_deletes) {
    if (Status s = maps_.source_ranges.erase(k); !ignoreMissing(s)) {
      return s.error().wrap("source range");
    }
  }
  for (uint16_t id : plan.maglev_deletes) {
    PLEXUS_TRY(maps_.eraseMaglevTable(id), fmt::format("maglev table {}", id));
  }
  for (uint16_t id : plan.revnat_deletes) {
    if (Status s = maps_.revnat.erase(id); !ignoreMissing(s)) {
      return s.error().wrap(fmt::format("reverse NAT {}", id));
    }
  }
  for (uint32_t id : plan.backend_deletes) {
    if (Status s = maps_.backends.erase(id); !ignoreMissing(s)) {
      return s.error().wrap(fmt::format("backend {}", id));
    }
  }
  return Status::Ok();
}

Result<lb::MapState> KernelServiceMaps::read() const {
  auto services = maps_.services.entries();
  auto backends = maps_.backends.entries();
  auto revnat = maps_.revnat.entries();
  auto maglev = maps_.maglevIndexes();
  auto ranges = maps_.source_ranges.entries();
  if (!services.ok() || !backends.ok() || !revnat.ok() || !maglev.ok() || !ranges.ok()) {
    return !services.ok() ? services.error()
           : !backends.ok() ? backends.error()
           : !revnat.ok()   ? revnat.error()
           : !maglev.ok()   ? maglev.error()
                            : ranges.error();
  }
  lb::MapState st;
  st.services.insert(services->begin(), services->end());
  st.backends.insert(backends->begin(), backends->end());
  st.revnat.insert(revnat->begin(), revnat->end());
  for (const auto& [k, v] : *ranges) {
    st.source_ranges.insert(k);
  }
  for (uint16_t id : *maglev) {
    auto table = maps_.maglevTable(id);
    st.maglev[id] = lb::MaglevTable::of(table.ok() ? std::move(*table) : std::vector<uint32_t>{});  // unreadable: the first sync rewrites it
  }
  return st;
}

Status KernelPodNetwork::prepareNode(Ipv4 gateway) {
  // The node routes between pods, the host and the world.
  PLEXUS_TRY(dp::writeSysctl("net/ipv4/ip_forward", "1"), "enable forwarding");
  auto host = dp::ensureHostDevice(config_.host_device, config_.host_device + "_net");
  if (!host.ok()) {
    return host.error();
  }
  PLEXUS_TRY(dp::setLinkUp(host->ifindex), "gateway device up");
  PLEXUS_TRY(dp::addAddress(host->ifindex, gateway, 32), "gateway address");
  return Status::Ok();
}

Result<PodLink> KernelPodNetwork::createPod(const PodLinkSpec& spec) {
  auto netns = dp::openNetns(spec.netns);
  if (!netns.ok()) {
    return netns.error();
  }
  // A leftover host veth of an earlier, crashed attempt would make the create fail with EEXIST.
  (void)dp::deleteLink(spec.host_ifname);
  auto fail = [&](const Error& e) -> Result<PodLink> {
    (void)dp::deleteLink(spec.host_ifname);
    return e;
  };
  if (Status s = dp::createVeth({spec.host_ifname, spec.ifname, netns->get(), spec.mtu, spec.mac}); !s.ok()) {
    return fail(s.error());
  }
  auto pod_mac = configurePod(spec);
  if (!pod_mac.ok()) {
    return fail(pod_mac.error().wrap(fmt::format("configure {} in {}", spec.ifname, spec.netns)));
  }
  auto link = configureHost(spec, *pod_mac);
  if (!link.ok()) {
    return fail(link.error().wrap(fmt::format("configure host side {}", spec.host_ifname)));
  }
  return link;
}

Result<Mac> KernelPodNetwork::configurePod(const PodLinkSpec& spec) {
  auto netns = dp::openNetns(spec.netns);
  if (!netns.ok()) {
    return netns.error();
  }
  Mac mac;
  Status s = dp::inNetns(netns->get(), [&]() -> Status {
    auto lo = dp::linkByName("lo");
    if (lo.ok()) {
      PLEXUS_TRY(dp::setLinkUp(lo->ifindex), "lo up");
    }
    auto link = dp::linkByName(spec.ifname);
    if (!link.ok()) {
      return link.error();
    }
    // IPv4-only datapath: no IPv6 neighbour discovery chatter on the pod interface.
    (void)dp::writeSysctl(fmt::format("net/ipv6/conf/{}/disable_ipv6", spec.ifname), "1");
    PLEXUS_TRY(dp::addAddress(link->ifindex, spec.ip, 32), "pod address");
    PLEXUS_TRY(dp::setLinkUp(link->ifindex), "pod interface up");
    PLEXUS_TRY(dp::replaceRoute({Ipv4Prefix(spec.gateway, 32), std::nullopt, link->ifindex, true}), "gateway route");
    PLEXUS_TRY(dp::replaceRoute({Ipv4Prefix(Ipv4(0), 0), spec.gateway, link->ifindex, false}), "default route");
    mac = link->mac;
    return Status::Ok();
  });
  if (!s.ok()) {
    return s.error();
  }
  return mac;
}

Result<PodLink> KernelPodNetwork::configureHost(const PodLinkSpec& spec, const Mac& pod_mac) {
  auto link = dp::linkByName(spec.host_ifname);
  if (!link.ok()) {
    return link.error();
  }
  // IPv4 only: without this the host would send router and neighbour solicitations the pod cannot use.
  (void)dp::writeSysctl(fmt::format("net/ipv6/conf/{}/disable_ipv6", spec.host_ifname), "1");
  PLEXUS_TRY(dp::setLinkUp(link->ifindex), "host veth up");
  PLEXUS_TRY(dp::replaceRoute({Ipv4Prefix(spec.ip, 32), std::nullopt, link->ifindex, true}), "host route to pod");
  // A permanent neighbour entry: the host never has to ARP for its pods.
  PLEXUS_TRY(dp::replacePermanentNeighbour(link->ifindex, spec.ip, pod_mac), "host neighbour entry");
  PLEXUS_TRY(dp_.attachEndpoint(link->ifindex), "attach programs");
  return PodLink{link->ifindex, link->mac, pod_mac};
}

Result<PodLink> KernelPodNetwork::attach(const std::string& host_ifname) {
  auto link = dp::linkByName(host_ifname);
  if (!link.ok()) {
    return link.error();
  }
  // Same tc handle and priority: programs are replaced in place and traffic keeps flowing.
  PLEXUS_TRY(dp_.attachEndpoint(link->ifindex), fmt::format("attach programs on {}", host_ifname));
  return PodLink{link->ifindex, link->mac, Mac{}};
}

void KernelPodNetwork::removePod(const std::string& host_ifname) { (void)dp::deleteLink(host_ifname); }

void KernelPodNetwork::detach(const std::string& host_ifname) {
  auto link = dp::linkByName(host_ifname);
  if (link.ok()) {
    (void)dp::tcDetach(link->ifindex, dp::TcDirection::kIngress, false);
    (void)dp::tcDetach(link->ifindex, dp::TcDirection::kEgress, false);
  }
}

bool KernelPodNetwork::exists(const std::string& host_ifname) { return dp::linkByName(host_ifname).ok(); }

Status KernelPodNetwork::check(const EndpointRecord& rec) {
  auto link = dp::linkByName(rec.host_ifname);
  if (!link.ok()) {
    return link.error().wrap("host veth");
  }
  for (auto dir : {dp::TcDirection::kIngress, dp::TcDirection::kEgress}) {
    auto prog = dp::tcAttachedProgramId(link->ifindex, dir);
    if (!prog.ok()) {
      return prog.error().wrap(fmt::format("programs on {}", rec.host_ifname));
    }
  }
  if (link->ifindex != rec.host_ifindex) {
    return makeError(ErrorCode::kFailedPrecondition, fmt::format("host veth {} was replaced", rec.host_ifname));
  }
  if (rec.chained || rec.netns.empty()) {
    return Status::Ok();
  }
  auto netns = dp::openNetns(rec.netns);
  if (!netns.ok()) {
    return netns.error();
  }
  return dp::inNetns(netns->get(), [&]() -> Status {
    auto pod = dp::linkByName(rec.ifname);
    if (!pod.ok()) {
      return pod.error().wrap("pod interface");
    }
    if (!pod->up) {
      return makeError(ErrorCode::kFailedPrecondition, fmt::format("pod interface {} is down", rec.ifname));
    }
    return Status::Ok();
  });
}

Result<dp::RouteSpec> KernelNodeRoutes::spec(Ipv4Prefix dst, Ipv4 via, bool tunnel) const {
  if (tunnel) {
    if (tunnel_ifindex_ <= 0) {
      return makeError(ErrorCode::kFailedPrecondition, "no tunnel device");
    }
    return dp::RouteSpec{dst, std::nullopt, tunnel_ifindex_, true, dp::kNodeRouteProtocol};
  }
  auto links = dp::listLinks();
  if (!links.ok()) {
    return links.error();
  }
  for (const auto& l : *links) {
    for (const auto& a : l.addresses) {
      if (a.length() > 0 && a.contains(via)) {
        return dp::RouteSpec{dst, via, l.info.ifindex, false, dp::kNodeRouteProtocol};
      }
    }
  }
  return makeError(ErrorCode::kNotFound,
                   fmt::format("no device on the network of {} (auto-direct-node-routes needs nodes on one L2 segment)",
                               via.toString()));
}

Status KernelNodeRoutes::replace(Ipv4Prefix dst, Ipv4 via, bool tunnel) {
  auto s = spec(dst, via, tunnel);
  if (!s.ok()) {
    return s.error();
  }
  return dp::replaceRoute(*s);
}

namespace {
// The agent's routes in the main table (marked with its route protocol).
Result<std::vector<dp::RouteSpec>> ownRoutes() {
  auto routes = dp::listRoutes();
  if (!routes.ok()) {
    return routes.error();
  }
  std::erase_if(*routes, [](const dp::RouteSpec& r) { return r.protocol != dp::kNodeRouteProtocol; });
  return routes;
}
}  // namespace

Status KernelNodeRoutes::remove(Ipv4Prefix dst) {
  auto own = ownRoutes();
  if (!own.ok()) {
    return own.error();
  }
  for (const auto& r : *own) {
    if (r.dst == dst) {
      Status s = dp::deleteRoute(r);
      if (!s.ok() && s.error().code != ErrorCode::kNotFound) {
        return s;
      }
    }
  }
  return Status::Ok();
}

Result<std::vector<Ipv4Prefix>> KernelNodeRoutes::installed() {
  auto own = ownRoutes();
  if (!own.ok()) {
    return own.error();
  }
  std::vector<Ipv4Prefix> out;
  for (const auto& r : *own) {
    out.push_back(r.dst);
  }
  return out;
}

std::set<Ipv4> KernelHostAddresses::list() {
  std::set<Ipv4> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    return out;
  }
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET) {
      Ipv4 ip = Ipv4::fromNetwork(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
      if ((ip.hostOrder() >> 24) != 127) {
        out.insert(ip);
      }
    }
  }
  freeifaddrs(list);
  return out;
}

}  // namespace plexus::agent
