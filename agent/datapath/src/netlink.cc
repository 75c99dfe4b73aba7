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
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <sched.h>

#include <fstream>
#include <memory>
#include <thread>

#include <fmt/format.h>

namespace plexus::datapath {

namespace {

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using NlSock = std::unique_ptr<nl_sock, SockDeleter>;

struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
using NlLink = std::unique_ptr<rtnl_link, LinkDeleter>;

struct AddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using NlAddr = std::unique_ptr<nl_addr, AddrDeleter>;

Error nlError(const std::string& what, int err) {
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
  NlSock sock(nl_socket_alloc());
  if (!sock) {
    return makeError(ErrorCode::kInternal, "netlink: socket alloc failed");
  }
  int err = nl_connect(sock.get(), NETLINK_ROUTE);
  if (err < 0) {
    return nlError("netlink connect", err);
  }
  return sock;
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
  rtnl_route_set_protocol(route, RTPROT_STATIC);
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

}  // namespace plexus::datapath
