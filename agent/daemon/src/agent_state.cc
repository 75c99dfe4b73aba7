#include "plexus/agent/agent_state.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <set>
#include <string_view>
#include <tuple>
#include <ctime>
#include <filesystem>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/iptables.h"
#include "plexus/agent/metrics_server.h"
#include "plexus/api/paths.h"
#include "plexus/datapath/netlink.h"
#include "plexus/identity.h"
#include "plexus/identity/identity.h"
#include "plexus/node/devices.h"
#include "plexus/node/mtu.h"

namespace plexus::agent {

namespace {
// The IPv4 addresses of the external devices: the node addresses NodePort services listen on.
std::vector<Ipv4> nodeAddresses(const std::vector<std::string>& devices) {
  std::vector<Ipv4> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    return out;
  }
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) {
      continue;
    }
    if (std::find(devices.begin(), devices.end(), a->ifa_name) == devices.end()) {
      continue;
    }
    out.push_back(Ipv4::fromNetwork(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr));
  }
  freeifaddrs(list);
  return out;
}
// The address pods' traffic leaving through the device is masqueraded to: its first IPv4 address.
std::optional<Ipv4> masqueradeAddress(const std::string& device) {
  auto addresses = nodeAddresses({device});
  return addresses.empty() ? std::nullopt : std::optional<Ipv4>(addresses.front());
}

// The host programs on a device, with its masquerade address. That address is also the tunnel device's (tunnel_ifindex
// > 0): NodePort flows translated to another node's backend leave through the tunnel with it as their source.
Status attachHostDevice(datapath::HostDatapath& host, const std::string& dev, int tunnel_ifindex) {
  auto link = datapath::linkByName(dev);
  if (!link.ok()) {
    return link.error();
  }
  auto address = masqueradeAddress(dev);
  PLEXUS_TRY(host.attachDevice(link->ifindex, address), "attach");
  if (address && tunnel_ifindex > 0) {
    PLEXUS_TRY(host.setMasqueradeAddress(tunnel_ifindex, *address), "tunnel device address");
  }
  return Status::Ok();
}

// The devices Cilium would pick: up, global unicast IPv4, carrying the default route or the route to another node.
// `log`: one line per link saying why it was or was not picked.
Result<std::vector<std::string>> detectDevices(const std::vector<Ipv4>& other_nodes, bool log) {
  auto links = datapath::listLinks();
  auto routes = datapath::listRoutes();
  if (!links.ok() || !routes.ok()) {
    return (!links.ok() ? links.error() : routes.error()).wrap("detect devices");
  }
  std::vector<node::LinkInfo> in;
  for (const auto& l : *links) {
    in.push_back(node::LinkInfo{l.name, l.info.ifindex, l.info.up, l.loopback, l.kind, l.addresses});
  }
  std::vector<node::RouteInfo> rin;
  for (const auto& r : *routes) {
    rin.push_back(node::RouteInfo{r.dst, r.ifindex, r.gateway});
  }
  if (log) {
    for (const auto& d : node::explainDevices(in, rin, other_nodes)) {
      spdlog::info("devices: {} {}: {}", d.name, d.selected ? "selected" : "skipped", d.reason);
    }
  }
  return node::detectDevices(in, rin, other_nodes);
}

}  // namespace

struct AgentState::Ports {
  BpfMapWriter<plexus_endpoint_key, plexus_endpoint_value> endpoints;
  BpfMapWriter<plexus_ipcache_key, plexus_ipcache_value> ipcache;
  KernelPolicyMap policy;
  KernelServiceMaps services;
  KernelPodNetwork network;
  KernelHostAddresses host;
};

void AgentState::stop() {
  if (health) {
    health->stop();  // it reads the node list through the reconcile thread
  }
  if (service_health) {
    service_health->stop();  // its answers ask the reconcile thread whether the service proxy is healthy
  }
  if (kube) {
    kube->stop();  // no more events for the reconcile thread
  }
  reconciler.stop();  // queued work still sees every manager
}

AgentState::~AgentState() { stop(); }

std::vector<Ipv4> AgentState::otherNodeAddresses() const {
  std::vector<Ipv4> others;
  for (const auto& n : nodes->nodes()) {
    if (n.name != config.node_name) {
      others.insert(others.end(), n.internal_ips.begin(), n.internal_ips.end());
    }
  }
  return others;
}

std::optional<std::vector<std::string>> AgentState::detectChangedDevices(const std::vector<Ipv4>& others) const {
  auto found = detectDevices(others, false);
  if (!found.ok() || *found == devices()) {
    return std::nullopt;
  }
  (void)detectDevices(others, true);  // the reasons, once per change
  return *found;
}

void AgentState::selectDevices(const std::vector<std::string>& found) {
  auto current = devices();
  if (found == current) {
    return;  // a detection queued twice before the first was applied
  }
  std::vector<std::string> next;
  for (const auto& dev : found) {
    bool known = std::find(current.begin(), current.end(), dev) != current.end();
    if (!known && host) {
      Status s = attachHostDevice(*host, dev, tunnel_ifindex);
      if (!s.ok()) {
        spdlog::warn("devices: {}: {} (will retry)", dev, s.error().message);
        continue;
      }
    }
    next.push_back(dev);
  }
  for (const auto& dev : current) {
    if (std::find(next.begin(), next.end(), dev) == next.end()) {
      spdlog::info("devices: {} is no longer selected; its programs stay attached until the agent restarts", dev);
    }
  }
  spdlog::info("devices: {} (were {})", next.empty() ? "none" : fmt::format("{}", fmt::join(next, ", ")),
               current.empty() ? "none" : fmt::format("{}", fmt::join(current, ", ")));
  if (services) {
    services->setNodeAddresses(nodeAddresses(next));
  }
  std::lock_guard<std::mutex> lock(devices_mu);
  devices_ = std::move(next);
}

AgentState::CtGcRun AgentState::runConntrackGc() {
  CtGcRun run;
  uint64_t now = datapath::monotonicNs();
  run.ct = datapath::collectConntrack(lxc->lb().ct, now, datapath::CtLifetimes{});
  if (run.ct.ok() && config.enable_bpf_masquerade) {
    auto nat = lxc->nat();
    auto n = nat.ok() ? datapath::collectNat(*nat, now, datapath::CtLifetimes{}) : Result<datapath::CtGcResult>(nat.error());
    if (!n.ok()) {
      spdlog::warn("{}", n.error().message);
    }
  }
  run.seconds = static_cast<double>(datapath::monotonicNs() - now) / 1e9;
  return run;
}

void AgentState::recordConntrackGc(const CtGcRun& run) {
  // Cilium's default histogram buckets (client_golang's DefBuckets), as its GC duration histogram has.
  static const prometheus::Histogram::BucketBoundaries kGcBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                  0.5,   1,    2.5,   5,    10};
  if (!run.ct.ok()) {
    spdlog::warn("{}", run.ct.error().message);
    ++ct_gc.failed;
    ct_gc_duration.Add({{"family", "ipv4"}, {"status", "uncompleted"}}, kGcBuckets).Observe(run.seconds);
    return;
  }
  const auto& r = run.ct;
  ++ct_gc.runs;
  ct_gc.deleted += r->deleted;
  ct_gc.alive_tcp = r->scanned_tcp - r->deleted_tcp;
  ct_gc.alive_other = (r->scanned - r->scanned_tcp) - (r->deleted - r->deleted_tcp);
  ct_gc.deleted_tcp = r->deleted_tcp;
  ct_gc.deleted_other = r->deleted - r->deleted_tcp;
  ct_gc.entries = r->scanned - r->deleted;
  ct_gc.last_seconds = run.seconds;
  ct_gc_duration.Add({{"family", "ipv4"}, {"status", "completed"}}, kGcBuckets).Observe(ct_gc.last_seconds);
  spdlog::debug("conntrack gc: {} entries, {} expired, {:.1f} ms", r->scanned, r->deleted, ct_gc.last_seconds * 1e3);
}

Result<std::unique_ptr<AgentState>> startAgent(const AgentConfig& config) {
  auto state = std::make_unique<AgentState>();
  state->config = config;
  state->started_unix = std::time(nullptr);
  state->store = std::make_unique<StateStore>(config.state_dir);
  PLEXUS_TRY(state->store->init(), "state dir");

  // Routing: the devices (given, or detected as Cilium does), the tunnel device, the pods' MTU.
  auto mode = node::parseRoutingMode(config.routing_mode);
  if (!mode.ok()) {
    return mode.error().wrap("--routing-mode");
  }
  state->routing_mode = *mode;
  // Without --devices: detected now from the default route, and again once the nodes are known (selectDevices).
  auto devices = config.devices.empty() ? detectDevices({}, true) : Result<std::vector<std::string>>(config.devices);
  if (!devices.ok()) {
    return devices.error();
  }
  state->devices_ = *devices;
  int device_mtu = 1500;
  if (!state->devices_.empty()) {
    if (auto l = datapath::linkByName(state->devices_.front()); l.ok() && l->mtu > 0) {
      device_mtu = l->mtu;
    }
  }
  auto mtu = node::podMtu(device_mtu, *mode, node::TunnelProtocol::kVxlan, config.mtu);
  if (!mtu.ok()) {
    return mtu.error().wrap("--mtu");
  }
  state->pod_mtu = *mtu;
  // Replies of cross-node flows may come back on another device than the route to their source (the tunnel,
  // the underlay): strict reverse-path filtering would drop them, as Cilium notes.
  (void)datapath::writeSysctl("net/ipv4/conf/all/rp_filter", "0");
  (void)datapath::writeSysctl("net/ipv4/conf/default/rp_filter", "0");
  if (*mode == node::RoutingMode::kTunnel) {
    auto vx = datapath::ensureVxlanDevice(kTunnelDevice, static_cast<uint16_t>(config.tunnel_port));
    if (!vx.ok()) {
      return vx.error().wrap("tunnel device");
    }
    state->tunnel_ifindex = vx->ifindex;
    (void)datapath::writeSysctl(fmt::format("net/ipv4/conf/{}/rp_filter", kTunnelDevice), "0");
    spdlog::info("routing: tunnel (vxlan, {} on UDP {}), pod MTU {}", kTunnelDevice, config.tunnel_port, *mtu);
  } else {
    spdlog::info("routing: native{}, pod MTU {}", config.auto_direct_node_routes ? " with direct node routes" : "",
                 *mtu);
  }

  datapath::LxcConfig lxc_cfg;
  lxc_cfg.bpf_root = config.bpf_root;
  lxc_cfg.sizes.ct = static_cast<uint32_t>(config.ct_map_size);
  lxc_cfg.sizes.events_ring_bytes = static_cast<uint32_t>(config.events_ring_size);
  lxc_cfg.sizes.lb = static_cast<uint32_t>(config.lb_map_max);
  lxc_cfg.sizes.policy = static_cast<uint32_t>(config.policy_map_max);
  lxc_cfg.sizes.ipcache = static_cast<uint32_t>(config.ipcache_map_max);
  lxc_cfg.sizes.nat = static_cast<uint32_t>(config.nat_map_max);
  lxc_cfg.masquerade = config.enable_bpf_masquerade;
  lxc_cfg.policy_audit = config.policy_audit_mode;
  lxc_cfg.lb_mode = config.lb_mode == "dsr"      ? PLEXUS_LB_MODE_DSR
                    : config.lb_mode == "hybrid" ? PLEXUS_LB_MODE_HYBRID
                                                 : PLEXUS_LB_MODE_SNAT;
  if (auto native = Ipv4Prefix::parse(config.ipv4_native_routing_cidr)) {
    lxc_cfg.native_cidr = *native;
  }
  lxc_cfg.maglev_table_size = static_cast<uint32_t>(config.maglev_table_size);
  lxc_cfg.enable_events = config.enable_hubble;
  lxc_cfg.monitor_aggregation =
      config.monitor_aggregation == "none" ? PLEXUS_AGGREGATION_NONE : PLEXUS_AGGREGATION_MEDIUM;
  lxc_cfg.routing_mode =
      *mode == node::RoutingMode::kTunnel ? datapath::RoutingMode::kTunnel : datapath::RoutingMode::kNative;
  lxc_cfg.tunnel_ifindex = static_cast<uint32_t>(state->tunnel_ifindex);
  lxc_cfg.tunnel_port = state->tunnel_ifindex > 0 ? static_cast<uint16_t>(config.tunnel_port) : 0;
  // BPF host routing (FIB lookup + redirect out, the devices' redirect_peer in), as Cilium enables it: it needs the
  // host programs on the devices, which come with kube-proxy replacement. Otherwise the stack forwards ("legacy").
  state->host_routing = !config.enable_host_legacy_routing && config.kube_proxy_replacement;
  lxc_cfg.host_routing = state->host_routing;
  spdlog::info("host routing: {}", state->host_routing ? "BPF"
                                   : config.enable_host_legacy_routing ? "legacy (--enable-host-legacy-routing)"
                                   : "legacy (needs kube-proxy replacement)");
  auto lxc = datapath::LxcDatapath::load(lxc_cfg);
  if (!lxc.ok()) {
    return lxc.error();
  }
  state->lxc = std::move(lxc.value());
  state->lxc->policy().keepSpares(2);  // new endpoints' policy tries, inserted ahead of their CNI ADD
  if (config.kube_proxy_replacement && config.enable_socket_lb) {
    auto sock = datapath::SockDatapath::load(
        {config.bpf_root, config.cgroup_root, static_cast<uint32_t>(config.maglev_table_size), lxc_cfg.sizes});
    if (!sock.ok()) {
      return sock.error();
    }
    state->sock = std::move(sock.value());
  } else {
    PLEXUS_TRY(datapath::detachSockPrograms(config.bpf_root), "socket LB off");
  }

  if (state->tunnel_ifindex > 0) {
    auto overlay = datapath::OverlayDatapath::load(lxc_cfg);
    if (!overlay.ok()) {
      return overlay.error().wrap("overlay programs");
    }
    PLEXUS_TRY((*overlay)->attachOverlay(state->tunnel_ifindex), fmt::format("attach on {}", kTunnelDevice));
    state->overlay = std::move(overlay.value());
  }

  // NodePort/LoadBalancer from outside the node: the external devices get bpf_host at tc ingress.
  // Loaded even without devices: devices detected later (selectDevices) get them then.
  if (config.kube_proxy_replacement) {
    auto host = datapath::HostDatapath::load(lxc_cfg);
    if (!host.ok()) {
      return host.error();
    }
    for (const auto& dev : state->devices_) {
      PLEXUS_TRY(attachHostDevice(**host, dev, state->tunnel_ifindex), fmt::format("--devices {}", dev));
    }
    state->host = std::move(host.value());
  }

  // Kubernetes mode: the API client first, since IPAM may take this node's CIDR from the API server.
  std::unique_ptr<k8s::Client> kube_client;
  if (kubernetesMode(config)) {
    auto rest = restConfig(config);
    if (!rest.ok()) {
      return rest.error().wrap("kubernetes");
    }
    kube_client = std::make_unique<k8s::Client>(*rest);
  } else if (config.ipam_mode != "standalone") {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--ipam-mode {} needs the Kubernetes API (--k8s-kubeconfig-path or "
                                 "--k8s-service-host)", config.ipam_mode));
  }
  Ipv4Prefix cidr = config.podCidr();
  if (kube_client && config.ipam_mode != "standalone") {
    auto from_api = podCidrFromApi(*kube_client, config);
    if (!from_api.ok()) {
      return from_api.error();
    }
    cidr = *from_api;
    spdlog::info("ipam {}: pod CIDR {}", config.ipam_mode, cidr.toString());
  }
  // Netfilter's masquerade when BPF masquerade is off; leftovers of an earlier run go when neither is on.
  std::optional<node::MasqueradeRules> masquerade;
  if (config.enable_ipv4_masquerade && !config.enable_bpf_masquerade) {
    masquerade = node::MasqueradeRules{cidr, Ipv4Prefix::parse(config.ipv4_native_routing_cidr)};
  }
  PLEXUS_TRY(applyMasqueradeRules(masquerade), "start");
  state->ipam = std::make_unique<Ipam>(cidr, cidr.at(1));
  auto snapshot = state->store->loadIpam();
  if (!snapshot.ok()) {
    // Never guess: a corrupt allocation file could hand out an address twice.
    return snapshot.error().wrap("restore IPAM");
  }
  if (snapshot->has_value()) {
    if ((*snapshot)->cidr != cidr.toString()) {
      return makeError(ErrorCode::kFailedPrecondition,
                       fmt::format("state dir {} holds allocations for {}, but --pod-cidr is {}", config.state_dir,
                                   (*snapshot)->cidr, cidr.toString()));
    }
    for (const auto& p : state->ipam->restore(**snapshot)) {
      spdlog::warn("ipam: {}", p);
    }
  }

  state->ports = std::make_unique<AgentState::Ports>(AgentState::Ports{
      BpfMapWriter<plexus_endpoint_key, plexus_endpoint_value>(state->lxc->endpoints(), &state->lxc->verdictEpoch()),
      BpfMapWriter<plexus_ipcache_key, plexus_ipcache_value>(state->lxc->ipcache(), &state->lxc->verdictEpoch()),
      KernelPolicyMap(state->lxc->policy()), KernelServiceMaps(state->lxc->lb()),
      KernelPodNetwork(*state->lxc, KernelPodNetworkConfig{config.host_device}), KernelHostAddresses{}});
  auto& ports = *state->ports;
  if (kube_client) {
    state->kube = std::make_unique<KubernetesSync>(config, std::move(kube_client), state->sink);
  }
  ClusterApi* api = state->kube.get();
  state->resources = std::make_unique<ResourceState>(*state->store);
  state->identities = std::make_unique<IdentityManager>(*state->store, api);
  state->ipcache = std::make_unique<IpcacheManager>(ports.ipcache);
  state->ipcache->setNotifications(&state->notices);
  state->policies = std::make_unique<PolicyManager>(
      ports.policy, *state->ipcache, [ids = state->identities.get()] { return ids->all(); },
      [r = state->resources.get()](const EndpointRecord& rec) { return r->namedPorts(rec.pod_namespace, rec.pod_name); },
      *policy::parseEnforcementMode(config.enable_policy));
  state->policies->reportRulesTo(&state->flow_dir);
  state->policies->setNotifications(&state->notices);
  state->endpoints = std::make_unique<EndpointManager>(
      EndpointManagerDeps{ports.network, ports.endpoints, *state->ipcache, *state->policies, *state->store},
      *state->ipam, EndpointManagerConfig{state->pod_mtu}, [] { return static_cast<int64_t>(std::time(nullptr)); });
  state->node_routes = std::make_unique<KernelNodeRoutes>(state->tunnel_ifindex);
  NodeManagerConfig node_cfg{config.node_name, *mode, config.auto_direct_node_routes, {}};
  if (state->kube) {  // the node table is complete once the informers listed Nodes (and PlexusNode claims)
    node_cfg.sync_kinds.insert(ResourceKind::kNode);
    if (config.ipam_mode == "cluster-pool") {
      node_cfg.sync_kinds.insert(ResourceKind::kPlexusNode);
    }
  }
  state->nodes = std::make_unique<NodeManager>(
      std::move(node_cfg), *state->ipcache,
      *state->identities, *state->resources, state->node_routes.get(), &state->flow_dir);
  if (config.kube_proxy_replacement) {
    lb::PlannerConfig pc;
    pc.node_name = config.node_name;
    pc.node_ips = nodeAddresses(state->devices_);
    pc.maglev = config.lb_algorithm == "maglev";
    pc.maglev_m = static_cast<uint32_t>(config.maglev_table_size);
    auto seed = lb::parseMaglevSeed(config.maglev_hash_seed.empty() ? lb::kDefaultMaglevSeed
                                                                    : config.maglev_hash_seed);
    if (!seed.ok()) {
      return seed.error().wrap("--maglev-hash-seed");
    }
    pc.seed = *seed;
    state->services = std::make_unique<ServiceManager>(ports.services, pc, &state->flow_dir);
    state->services->setNotifications(&state->notices);
    if (Status s = state->services->restore(); !s.ok()) {
      // Not fatal: services are then written afresh, with new ids (established per-packet flows may break).
      spdlog::warn("services: {}", s.error().message);
    }
    state->service_health = std::make_unique<ServiceHealthServers>(*state, [st = state.get()] {
      // serviceProxyHealthy: what the kube-proxy /healthz answers (kubeProxyHealth, on the reconcile thread).
      return st->ready && st->reconciler.submit([st] { return kubeProxyHealth(*st).status == 200; }).get();
    });
    state->service_sync = std::make_unique<ServiceSync>(
        *state->services, *state->resources, state->service_health.get(),
        kubernetesMode(config) ? ServiceSync::Endpoints::kSlicesOnly : ServiceSync::Endpoints::kDeriveFromPods);
  }
  state->controller = std::make_unique<Controller>(ControllerParts{
      *state->resources, *state->identities, *state->ipcache, *state->endpoints, *state->policies,
      state->service_sync.get(), state->flow_dir, api, &ports.host, state->nodes.get(), &state->notices},
      config.node_name);
  state->sink.attach(state->controller.get());
  // Flow enrichment follows every endpoint the datapath serves.
  // /metrics: identities and services, read on the reconcile thread at scrape time.
  state->metric_sources.push_back([ids = state->identities.get(), svc = state->services.get(),
                                   p = state->policies.get()](Exposition& e) {
    // Reserved identities: those Cilium's numbering names (1 host ... 8 ingress), counted from the one table.
    size_t reserved = identity::reservedIdentityCount();
    size_t cluster = 0;  // every cluster-scope identity this node knows: its own and other nodes'
    for (const auto& [id, labels] : ids->all()) {
      const char* type = identity::identityType(id);
      cluster += type != nullptr && std::string_view(type) == "cluster_local" ? 1 : 0;
    }
    e.family("plexus_identity", "gauge", "Security identities in use, by type");
    e.sample("plexus_identity", {{"type", "cluster"}}, static_cast<double>(ids->local().size()));
    e.sample("plexus_identity", {{"type", "reserved"}}, static_cast<double>(reserved));
    e.sample("plexus_identity", {{"type", "node_local"}}, static_cast<double>(p->cidrIdentityCount()));
    e.family("cilium_identity", "gauge", "Number of identities currently allocated");
    e.sample("cilium_identity", {{"type", "cluster_local"}}, static_cast<double>(cluster));
    e.sample("cilium_identity", {{"type", "node_local"}}, static_cast<double>(p->cidrIdentityCount()));
    e.sample("cilium_identity", {{"type", "reserved"}}, static_cast<double>(reserved));
    e.family("plexus_policy", "gauge", "Policies by validity");
    e.sample("plexus_policy", {{"valid", "true"}}, static_cast<double>(p->validCount()));
    e.sample("plexus_policy", {{"valid", "false"}}, static_cast<double>(p->invalidCount()));
    e.family("cilium_policy", "gauge", "Number of policies currently loaded");
    e.sample("cilium_policy", {}, static_cast<double>(p->validCount()));
    if (svc) {
      auto counts = svc->counts();
      e.family("plexus_services", "gauge", "Services programmed into the datapath");
      e.sample("plexus_services", {}, static_cast<double>(counts.services));
      e.family("plexus_service_frontends", "gauge", "Service frontends (address, port, protocol, scope)");
      e.sample("plexus_service_frontends", {}, static_cast<double>(counts.frontends));
      e.family("plexus_service_backends", "gauge", "Service backends, active and terminating");
      e.sample("plexus_service_backends", {}, static_cast<double>(counts.backends));
      e.family("plexus_service_sync_duration_seconds", "gauge",
               "Time of the last programming of the service maps, by kind (full sync or incremental update)");
      e.family("plexus_service_sync_operations", "gauge", "Map operations of the last programming, by kind");
      e.family("plexus_service_syncs_total", "counter", "Programmings of the service maps, by kind");
      for (const auto& [kind, r] : {std::pair{"full", svc->lastFull()}, std::pair{"incremental", svc->lastIncremental()}}) {
        e.sample("plexus_service_sync_duration_seconds", {{"kind", kind}}, r.milliseconds / 1000.0);
        e.sample("plexus_service_sync_operations", {{"kind", kind}}, static_cast<double>(r.operations));
        e.sample("plexus_service_syncs_total", {{"kind", kind}}, static_cast<double>(r.count));
      }
    }
  });
  state->metric_sources.push_back([st = state.get()](Exposition& e) {
    auto probes = st->health ? st->health->results() : std::map<std::string, NodeProbe>{};
    size_t reachable = 0;
    e.family("plexus_node_health_probe_seconds", "gauge",
             "Round trip of the last successful health probe, by node and protocol (icmp: echo to the InternalIP, "
             "tcp: connect to the health port)");
    e.family("plexus_node_health_probe_ok", "gauge", "Whether the last health probe answered (1) or not (0), by node "
             "and protocol");
    for (const auto& [name, p] : probes) {
      reachable += p.reachable() ? 1 : 0;
      for (const auto& [proto, r] : {std::pair{"icmp", &p.icmp}, std::pair{"tcp", &p.tcp}}) {
        e.sample("plexus_node_health_probe_ok", {{"node", name}, {"protocol", proto}}, r->ok ? 1.0 : 0.0);
        if (r->ok) {
          e.sample("plexus_node_health_probe_seconds", {{"node", name}, {"protocol", proto}}, r->milliseconds / 1000.0);
        }
      }
    }
    e.family("plexus_nodes", "gauge", "Nodes known, this one included");
    e.sample("plexus_nodes", {}, static_cast<double>(st->nodes->nodes().size()));
    // Cilium's names: the node count, and the other nodes whose ICMP echo (node) or health port (health endpoint)
    // did not answer last time.
    size_t icmp_down = 0;
    size_t tcp_down = 0;
    for (const auto& [name, p] : probes) {
      icmp_down += p.icmp.ok ? 0 : 1;
      tcp_down += p.tcp.ok ? 0 : 1;
    }
    e.family("cilium_nodes_all_num", "gauge", "Number of nodes managed");
    e.sample("cilium_nodes_all_num", {}, static_cast<double>(st->nodes->nodes().size()));
    e.family("cilium_unreachable_nodes", "gauge", "Number of nodes that cannot be reached");
    e.sample("cilium_unreachable_nodes", {}, static_cast<double>(icmp_down));
    e.family("cilium_unreachable_health_endpoints", "gauge", "Number of health endpoints that cannot be reached");
    e.sample("cilium_unreachable_health_endpoints", {}, static_cast<double>(tcp_down));
    e.family("plexus_nodes_reachable", "gauge", "Other nodes that answered both health probes (ICMP and TCP) last time");
    e.sample("plexus_nodes_reachable", {}, static_cast<double>(reachable));
    e.family("plexus_conntrack_gc_runs_total", "counter", "Conntrack garbage collection passes");
    e.sample("plexus_conntrack_gc_runs_total", {}, static_cast<double>(st->ct_gc.runs));
    e.family("plexus_conntrack_gc_entries_deleted_total", "counter", "Conntrack entries removed as expired");
    e.sample("plexus_conntrack_gc_entries_deleted_total", {}, static_cast<double>(st->ct_gc.deleted));
    e.family("plexus_conntrack_entries", "gauge", "Conntrack entries left after the last garbage collection");
    e.sample("plexus_conntrack_entries", {}, static_cast<double>(st->ct_gc.entries));
    e.family("plexus_conntrack_gc_duration_seconds", "gauge", "Time of the last conntrack garbage collection");
    e.sample("plexus_conntrack_gc_duration_seconds", {}, st->ct_gc.last_seconds);
    // Cilium's names (the duration histogram is an instrument: AgentState::ct_gc_duration).
    e.family("cilium_datapath_conntrack_gc_runs_total", "counter",
             "Number of times that the conntrack garbage collector process was run labeled by completion status");
    e.sample("cilium_datapath_conntrack_gc_runs_total", {{"family", "ipv4"}, {"status", "completed"}},
             static_cast<double>(st->ct_gc.runs));
    e.sample("cilium_datapath_conntrack_gc_runs_total", {{"family", "ipv4"}, {"status", "uncompleted"}},
             static_cast<double>(st->ct_gc.failed));
    e.family("cilium_datapath_conntrack_gc_entries", "gauge",
             "The number of alive and deleted conntrack entries at the end of a garbage collector run labeled by "
             "datapath family");
    for (const auto& [protocol, alive, deleted] :
         {std::tuple{"TCP", st->ct_gc.alive_tcp, st->ct_gc.deleted_tcp},
          std::tuple{"non-TCP", st->ct_gc.alive_other, st->ct_gc.deleted_other}}) {
      e.sample("cilium_datapath_conntrack_gc_entries", {{"family", "ipv4"}, {"protocol", protocol}, {"status", "alive"}},
               static_cast<double>(alive));
      e.sample("cilium_datapath_conntrack_gc_entries",
               {{"family", "ipv4"}, {"protocol", protocol}, {"status", "deleted"}}, static_cast<double>(deleted));
    }
  });
  if (config.enable_hubble) {
    // Flow UUIDs differ between agents and runs: the store's instance is random (the one place it is chosen).
    std::random_device rd;
    uint64_t instance = (static_cast<uint64_t>(rd()) << 32) | rd();
    state->flows = std::make_unique<FlowStore>(static_cast<size_t>(config.hubble_flow_buffer_size), instance);
  }
  auto hubble_metrics = parseHubbleMetrics(config.hubble_metrics);  // validated by parseAgentConfig
  if (!hubble_metrics.ok()) {
    return hubble_metrics.error().wrap("--hubble-metrics");
  }
  for (const auto& line : hubble_metrics->skipped) {
    spdlog::warn("--hubble-metrics: {}", line);
  }
  if (config.hubble_metrics_server.empty() != hubble_metrics->enabled.empty()) {
    spdlog::warn("Hubble metrics off: they need both --hubble-metrics-server (now {:?}) and metrics in "
                 "--hubble-metrics that Plexus counts (now {:?})",
                 config.hubble_metrics_server, config.hubble_metrics);
  } else if (!hubble_metrics->enabled.empty() && !state->flows) {
    spdlog::warn("Hubble metrics off: they count flows, and --enable-hubble is false");
  } else if (!hubble_metrics->enabled.empty()) {
    state->hubble_registry = std::make_shared<prometheus::Registry>();
    state->hubble_metrics = std::make_unique<HubbleMetrics>(hubble_metrics->enabled, *state->hubble_registry);
  }
  std::vector<std::string> problems;
  PLEXUS_TRY(state->controller->start(&problems), "start");
  for (const auto& p : problems) {
    spdlog::warn("restore: {}", p);
  }
  spdlog::info("restored {} endpoints", state->endpoints->list().size());
  if (state->kube) {
    state->kube->start();
  }
  if (config.health_port > 0) {
    state->health = std::make_unique<NodeHealth>(config.health_port, [st = state.get()] {
      return st->reconciler
          .submit([st] {
            std::map<std::string, Ipv4> out;
            for (const auto& n : st->nodes->nodes()) {
              if (n.name != st->config.node_name && n.tunnelEndpoint()) {
                out[n.name] = *n.tunnelEndpoint();
              }
            }
            return out;
          })
          .get();
    });
    if (Status s = state->health->start(); !s.ok()) {
      spdlog::warn("{} (node health off)", s.error().message);
      state->health.reset();
    }
  }

  // DELs that plexus-cni queued while we were down.
  std::vector<std::string> queue_problems;
  for (const auto& pending : loadPendingDeletes(api::pendingDeleteDir(config.socket), &queue_problems)) {
    Status s = state->controller->deleteEndpoint(pending.container_id, pending.ifname);
    if (s.ok()) {
      std::error_code ec;
      std::filesystem::remove(pending.path, ec);
      spdlog::info("finished queued CNI DEL for {}/{}", pending.container_id, pending.ifname);
    } else {
      spdlog::warn("queued CNI DEL for {}/{}: {}", pending.container_id, pending.ifname, s.error().message);
    }
  }
  for (const auto& p : queue_problems) {
    spdlog::warn("cni queue: {}", p);
  }
  return state;
}

}  // namespace plexus::agent
