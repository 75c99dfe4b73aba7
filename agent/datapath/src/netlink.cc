#include "plexus/datapath/netlink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <thread>

#include <fmt/format.h>

namespace plexus::datapath {

namespace {

// A socket the caller owns is freed with it; a thread's cached socket (see connect()) is only lent.
struct SockDeleter {
  bool owned = true;
  void operator()(nl_sock* s) const {
    if (owned) {
      nl_socket_free(s);
    }
  }
};
using NlSock = std::unique_ptr<nl_sock, SockDeleter>;

// Each thread's route socket in the agent's own network namespace, reused by the calls that run there (a CNI ADD makes
// a dozen; opening one costs socket, bind, getsockname and setsockopt calls). Calls made inside another namespace (a
// pod's, on a helper thread) get a socket of their own, as a namespace's inode can be reused once it is gone. A
// failed call drops the cached socket (nlError), so that nothing a failure left unread reaches the next call.
thread_local nl_sock* t_cached_sock = nullptr;

void dropCachedSocket() {
  if (t_cached_sock) {
    nl_socket_free(t_cached_sock);
    t_cached_sock = nullptr;
  }
}

bool inAgentNetns() {
  struct stat self {};
  struct stat thread {};
  return stat("/proc/self/ns/net", &self) == 0 && stat("/proc/thread-self/ns/net", &thread) == 0 &&
         self.st_ino == thread.st_ino && self.st_dev == thread.st_dev;
}

struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
using NlLink = std::unique_ptr<rtnl_link, LinkDeleter>;

struct AddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using NlAddr = std::unique_ptr<nl_addr, AddrDeleter>;

Error nlError(const std::string& what, int err) {
  dropCachedSocket();
  ErrorCode code = ErrorCode::kInternal;
  switch (-err) {
    case NLE_EXIST: code = ErrorCode::kAlreadyExists; break;
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV: code = ErrorCode::kNotFound; break;
    case NLE_PERM: code = ErrorCode::kPermissionDenied; break;
    case NLE_INVAL: code = ErrorCode::kInvalidArgument; break;
    default: break;
  }
  return Error{code, fmt::format("{}: {}", what, nl_geterror(err))};
}

Result<NlSock> connect() {
  bool cacheable = inAgentNetns();
  if (cacheable && t_cached_sock) {
    return NlSock(t_cached_sock, SockDeleter{false});
  }
  NlSock sock(nl_socket_alloc());
  if (!sock) {
    return makeError(ErrorCode::kInternal, "netlink: socket alloc failed");
  }
  int err = nl_connect(sock.get(), NETLINK_ROUTE);
  if (err < 0) {
    return nlError("netlink connect", err);
  }
  if (!cacheable) {
    return sock;
  }
  t_cached_sock = sock.release();
  return NlSock(t_cached_sock, SockDeleter{false});
}

NlAddr ipv4Addr(Ipv4 ip, int prefix_len) {
  uint32_t be = ip.networkOrder();
  NlAddr a(nl_addr_build(AF_INET, &be, sizeof(be)));
  if (a) {
    nl_addr_set_prefixlen(a.get(), prefix_len);
  }
  return a;
}

NlAddr macAddr(const Mac& mac) { return NlAddr(nl_addr_build(AF_LLC, mac.b, 6)); }

LinkInfo toInfo(rtnl_link* link) {
  LinkInfo info;
  info.ifindex = rtnl_link_get_ifindex(link);
  info.mtu = static_cast<int>(rtnl_link_get_mtu(link));
  info.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
  nl_addr* a = rtnl_link_get_addr(link);
  if (a && nl_addr_get_len(a) == 6) {
    std::memcpy(info.mac.b, nl_addr_get_binary_addr(a), 6);
  }
  return info;
}

Result<NlLink> getLink(nl_sock* sock, int ifindex, const std::string& name) {
  rtnl_link* link = nullptr;
  int err = rtnl_link_get_kernel(sock, ifindex, name.empty() ? nullptr : name.c_str(), &link);
  if (err < 0) {
    return nlError(fmt::format("get link {}", name.empty() ? std::to_string(ifindex) : name), err);
  }
  return NlLink(link);
}

Status routeOp(const RouteSpec& spec, bool add) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  rtnl_route* route = rtnl_route_alloc();
  std::unique_ptr<rtnl_route, void (*)(rtnl_route*)> guard(route, rtnl_route_put);
  rtnl_route_set_family(route, AF_INET);
  rtnl_route_set_table(route, RT_TABLE_MAIN);
  rtnl_route_set_protocol(route, spec.protocol);
  rtnl_route_set_type(route, RTN_UNICAST);
  auto dst = ipv4Addr(spec.dst.network(), spec.dst.length());
  rtnl_route_set_dst(route, dst.get());
  rtnl_route_set_scope(route, spec.scope_link ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(nh, spec.ifindex);
  NlAddr gw;
  if (spec.gateway) {
    gw = ipv4Addr(*spec.gateway, 32);
    rtnl_route_nh_set_gateway(nh, gw.get());
  }
  rtnl_route_add_nexthop(route, nh);  // the route owns nh from here
  int err = add ? rtnl_route_add(sock->get(), route, NLM_F_CREATE | NLM_F_REPLACE)
                : rtnl_route_delete(sock->get(), route, 0);
  if (err < 0) {
    return nlError(fmt::format("{} route {}", add ? "replace" : "delete", spec.dst.toString()), err);
  }
  return Status::Ok();
}

}  // namespace

Result<LinkInfo> linkByName(const std::string& name) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  auto link = getLink(sock->get(), 0, name);
  if (!link.ok()) {
    return link.error();
  }
  return toInfo(link->get());
}

Result<LinkInfo> linkByIndex(int ifindex) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  auto link = getLink(sock->get(), ifindex, "");
  if (!link.ok()) {
    return link.error();
  }
  return toInfo(link->get());
}

Result<std::string> linkNameByIndex(int ifindex) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  auto link = getLink(sock->get(), ifindex, "");
  if (!link.ok()) {
    return link.error();
  }
  return std::string(rtnl_link_get_name(link->get()));
}

Status createVeth(const VethSpec& spec) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  NlLink link(rtnl_link_veth_alloc());
  if (!link) {
    return makeError(ErrorCode::kInternal, "veth alloc failed");
  }
  rtnl_link_set_name(link.get(), spec.host_name.c_str());
  if (spec.mtu > 0) {
    rtnl_link_set_mtu(link.get(), static_cast<unsigned>(spec.mtu));
  }
  NlLink peer(rtnl_link_veth_get_peer(link.get()));
  rtnl_link_set_name(peer.get(), spec.peer_name.c_str());
  if (spec.mtu > 0) {
    rtnl_link_set_mtu(peer.get(), static_cast<unsigned>(spec.mtu));
  }
  NlAddr mac;
  if (spec.peer_mac) {
    mac = macAddr(*spec.peer_mac);
    rtnl_link_set_addr(peer.get(), mac.get());
  }
  if (spec.peer_netns_fd >= 0) {
    rtnl_link_set_ns_fd(peer.get(), spec.peer_netns_fd);
  }
  int err = rtnl_link_add(sock->get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err < 0) {
    return nlError(fmt::format("create veth {} <-> {}", spec.host_name, spec.peer_name), err);
  }
  return Status::Ok();
}

Result<LinkInfo> ensureHostDevice(const std::string& name, const std::string& peer_name) {
  auto existing = linkByName(name);
  if (existing.ok() || existing.error().code != ErrorCode::kNotFound) {
    return existing;
  }
  // A veth pair rather than a dummy: it needs no extra kernel module (some kernels ship without dummy).
  VethSpec spec;
  spec.host_name = name;
  spec.peer_name = peer_name;
  Status s = createVeth(spec);
  if (!s.ok() && s.error().code != ErrorCode::kAlreadyExists) {
    return s.error().wrap(fmt::format("host device {}", name));
  }
  auto peer = linkByName(peer_name);
  if (peer.ok()) {
    PLEXUS_TRY(setLinkUp(peer->ifindex), "host device peer up");
  }
  return linkByName(name);
}

Status deleteLink(const std::string& name) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  auto link = getLink(sock->get(), 0, name);
  if (!link.ok()) {
    return link.error();
  }
  int err = rtnl_link_delete(sock->get(), link->get());
  if (err < 0) {
    return nlError(fmt::format("delete link {}", name), err);
  }
  return Status::Ok();
}

Status setLinkUp(int ifindex) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  auto link = getLink(sock->get(), ifindex, "");
  if (!link.ok()) {
    return link.error();
  }
  NlLink change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  int err = rtnl_link_change(sock->get(), link->get(), change.get(), 0);
  if (err < 0) {
    return nlError(fmt::format("set link {} up", ifindex), err);
  }
  return Status::Ok();
}

Status addAddress(int ifindex, Ipv4 address, int prefix_len) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  rtnl_addr* addr = rtnl_addr_alloc();
  std::unique_ptr<rtnl_addr, void (*)(rtnl_addr*)> guard(addr, rtnl_addr_put);
  rtnl_addr_set_ifindex(addr, ifindex);
  rtnl_addr_set_family(addr, AF_INET);
  auto local = ipv4Addr(address, prefix_len);
  rtnl_addr_set_local(addr, local.get());
  rtnl_addr_set_prefixlen(addr, prefix_len);
  int err = rtnl_addr_add(sock->get(), addr, 0);
  if (err < 0 && -err != NLE_EXIST) {
    return nlError(fmt::format("add address {}/{}", address.toString(), prefix_len), err);
  }
  return Status::Ok();
}

Status replaceRoute(const RouteSpec& route) { return routeOp(route, true); }
Status deleteRoute(const RouteSpec& route) { return routeOp(route, false); }

Status replacePermanentNeighbour(int ifindex, Ipv4 ip, const Mac& mac) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  rtnl_neigh* neigh = rtnl_neigh_alloc();
  std::unique_ptr<rtnl_neigh, void (*)(rtnl_neigh*)> guard(neigh, rtnl_neigh_put);
  rtnl_neigh_set_ifindex(neigh, ifindex);
  rtnl_neigh_set_family(neigh, AF_INET);
  auto dst = ipv4Addr(ip, 32);
  auto ll = macAddr(mac);
  rtnl_neigh_set_dst(neigh, dst.get());
  rtnl_neigh_set_lladdr(neigh, ll.get());
  rtnl_neigh_set_state(neigh, NUD_PERMANENT);
  int err = rtnl_neigh_add(sock->get(), neigh, NLM_F_CREATE | NLM_F_REPLACE);
  if (err < 0) {
    return nlError(fmt::format("neighbour {} lladdr {}", ip.toString(), mac.toString()), err);
  }
  return Status::Ok();
}

Result<UniqueFd> openNetns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errnoError(fmt::format("open netns {}", path), errno);
  }
  return UniqueFd(fd);
}

Status inNetns(int netns_fd, const std::function<Status()>& fn) {
  Status result;
  std::thread worker([&] {
    if (setns(netns_fd, CLONE_NEWNET) != 0) {
      result = errnoError("setns", errno);
      return;
    }
    result = fn();
  });
  worker.join();
  return result;
}

Status writeSysctl(const std::string& key, const std::string& value) {
  std::string path = "/proc/sys/" + key;
  std::ofstream f(path);
  if (!f) {
    return makeError(ErrorCode::kNotFound, fmt::format("sysctl {}: cannot open", key));
  }
  f << value;
  f.close();
  if (!f) {
    return makeError(ErrorCode::kInternal, fmt::format("sysctl {}: write failed", key));
  }
  return Status::Ok();
}

// ---- nodes: devices, routes and the tunnel device ----

namespace {
struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using NlCache = std::unique_ptr<nl_cache, CacheDeleter>;

std::optional<Ipv4> ipv4Of(nl_addr* a) {
  if (!a || nl_addr_get_family(a) != AF_INET || nl_addr_get_len(a) != 4) {
    return std::nullopt;
  }
  uint32_t be = 0;
  std::memcpy(&be, nl_addr_get_binary_addr(a), 4);
  return Ipv4::fromNetwork(be);
}
}  // namespace

Result<std::vector<LinkDetails>> listLinks() {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  nl_cache* links_raw = nullptr;
  if (int err = rtnl_link_alloc_cache(sock->get(), AF_UNSPEC, &links_raw); err < 0) {
    return nlError("list links", err);
  }
  NlCache links(links_raw);
  nl_cache* addrs_raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(sock->get(), &addrs_raw); err < 0) {
    return nlError("list addresses", err);
  }
  NlCache addrs(addrs_raw);
  std::vector<LinkDetails> out;
  for (nl_object* o = nl_cache_get_first(links.get()); o; o = nl_cache_get_next(o)) {
    auto* link = reinterpret_cast<rtnl_link*>(o);
    LinkDetails d;
    d.name = rtnl_link_get_name(link) ? rtnl_link_get_name(link) : "";
    d.info = toInfo(link);
    d.loopback = (rtnl_link_get_flags(link) & IFF_LOOPBACK) != 0;
    d.kind = rtnl_link_get_type(link) ? rtnl_link_get_type(link) : "";
    out.push_back(std::move(d));
  }
  for (nl_object* o = nl_cache_get_first(addrs.get()); o; o = nl_cache_get_next(o)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_family(addr) != AF_INET) {
      continue;
    }
    auto ip = ipv4Of(rtnl_addr_get_local(addr));
    for (auto& d : out) {
      if (ip && d.info.ifindex == rtnl_addr_get_ifindex(addr)) {
        d.addresses.push_back(Ipv4Prefix(*ip, rtnl_addr_get_prefixlen(addr)));
        d.ips.push_back(*ip);
      }
    }
  }
  return out;
}

Result<std::vector<RouteSpec>> listRoutes() {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  nl_cache* raw = nullptr;
  if (int err = rtnl_route_alloc_cache(sock->get(), AF_INET, 0, &raw); err < 0) {
    return nlError("list routes", err);
  }
  NlCache routes(raw);
  std::vector<RouteSpec> out;
  for (nl_object* o = nl_cache_get_first(routes.get()); o; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_type(r) != RTN_UNICAST) {
      continue;
    }
    RouteSpec spec;
    nl_addr* dst = rtnl_route_get_dst(r);
    auto net = ipv4Of(dst);
    spec.dst = Ipv4Prefix(net.value_or(Ipv4{}), dst ? static_cast<int>(nl_addr_get_prefixlen(dst)) : 0);
    spec.scope_link = rtnl_route_get_scope(r) == RT_SCOPE_LINK;
    spec.protocol = rtnl_route_get_protocol(r);
    if (rtnl_route_get_nnexthops(r) > 0) {
      rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
      spec.ifindex = rtnl_route_nh_get_ifindex(nh);
      spec.gateway = ipv4Of(rtnl_route_nh_get_gateway(nh));
    }
    out.push_back(spec);
  }
  return out;
}

namespace {
// The tunnel device must not ARP: the host's packets to remote pods are routed `dev <vxlan>`, so the stack would ARP
// for each pod address, and a request leaves without a tunnel key, which a collect-metadata device drops
// (docs/datapath.md, "Routing modes"). With NOARP the stack addresses the inner frame to the device's own MAC;
// the receiving node rewrites L2 before delivery anyway. Applied to an existing device too (an older agent's).
Status setVxlanFlags(const std::string& name, int ifindex) {
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  auto link = getLink(sock->get(), ifindex, "");
  if (!link.ok()) {
    return link.error();
  }
  NlLink change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_NOARP | IFF_UP);
  if (int err = rtnl_link_change(sock->get(), link->get(), change.get(), 0); err < 0) {
    return nlError(fmt::format("{}: arp off, up", name), err);
  }
  return Status::Ok();
}
}  // namespace

Result<LinkInfo> ensureVxlanDevice(const std::string& name, uint16_t port) {
  if (auto existing = linkByName(name); existing.ok()) {
    PLEXUS_TRY(setVxlanFlags(name, existing->ifindex), fmt::format("vxlan device {}", name));
    return linkByName(name);
  }
  auto sock = connect();
  if (!sock.ok()) {
    return sock.error();
  }
  NlLink link(rtnl_link_vxlan_alloc());
  if (!link) {
    return makeError(ErrorCode::kInternal, "vxlan: alloc failed");
  }
  rtnl_link_set_name(link.get(), name.c_str());
  // External (collect-metadata) mode: one device for every remote node; the programs set the tunnel key.
  rtnl_link_vxlan_set_collect_metadata(link.get(), 1);
  rtnl_link_vxlan_set_learning(link.get(), 0);
  rtnl_link_vxlan_set_port(link.get(), port);
  if (int err = rtnl_link_add(sock->get(), link.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0 && err != -NLE_EXIST) {
    return nlError(fmt::format("create vxlan device {} (port {})", name, port), err);
  }
  auto created = linkByName(name);
  if (!created.ok()) {
    return created.error();
  }
  PLEXUS_TRY(setVxlanFlags(name, created->ifindex), fmt::format("vxlan device {}", name));
  return linkByName(name);
}

}  // namespace plexus::datapath
