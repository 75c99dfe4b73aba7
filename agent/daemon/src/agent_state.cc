#include "plexus/agent/agent_state.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <set>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/api/paths.h"
#include "plexus/datapath/netlink.h"
#include "plexus/identity.h"

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
}  // namespace

struct AgentState::Ports {
  BpfMapWriter<plexus_endpoint_key, plexus_endpoint_value> endpoints;
  BpfMapWriter<plexus_ipcache_key, plexus_ipcache_value> ipcache;
  KernelPolicyMap policy;
  KernelServiceMaps services;
  KernelPodNetwork network;
  KernelHostAddresses host;
};

AgentState::~AgentState() {
  if (kube) {
    kube->stop();  // no more events for the reconcile thread
  }
  reconciler.stop();  // queued work still sees every manager
}

void AgentState::collectConntrack() {
  uint64_t now = datapath::monotonicNs();
  auto r = datapath::collectConntrack(lxc->lb().ct, now, datapath::CtLifetimes{});
  if (!r.ok()) {
    spdlog::warn("{}", r.error().message);
    return;
  }
  ++ct_gc.runs;
  ct_gc.deleted += r->deleted;
  ct_gc.entries = r->scanned - r->deleted;
  ct_gc.last_seconds = static_cast<double>(datapath::monotonicNs() - now) / 1e9;
  spdlog::debug("conntrack gc: {} entries, {} expired, {:.1f} ms", r->scanned, r->deleted, ct_gc.last_seconds * 1e3);
}

Result<std::unique_ptr<AgentState>> startAgent(const AgentConfig& config) {
  auto state = std::make_unique<AgentState>();
  state->config = config;
  state->started_unix = std::time(nullptr);
  state->store = std::make_unique<StateStore>(config.state_dir);
  PLEXUS_TRY(state->store->init(), "state dir");

  datapath::LxcConfig lxc_cfg;
  lxc_cfg.bpf_root = config.bpf_root;
  lxc_cfg.ct_map_size = static_cast<uint32_t>(config.ct_map_size);
  lxc_cfg.events_ring_bytes = static_cast<uint32_t>(config.events_ring_size);
  lxc_cfg.maglev_table_size = static_cast<uint32_t>(config.maglev_table_size);
  lxc_cfg.enable_events = config.enable_hubble;
  lxc_cfg.monitor_aggregation =
      config.monitor_aggregation == "none" ? PLEXUS_AGGREGATION_NONE : PLEXUS_AGGREGATION_MEDIUM;
  auto lxc = datapath::LxcDatapath::load(lxc_cfg);
  if (!lxc.ok()) {
    return lxc.error();
  }
  state->lxc = std::move(lxc.value());
  if (config.kube_proxy_replacement && config.enable_socket_lb) {
    auto sock = datapath::SockDatapath::load(
        {config.bpf_root, config.cgroup_root, static_cast<uint32_t>(config.maglev_table_size)});
    if (!sock.ok()) {
      return sock.error();
    }
    state->sock = std::move(sock.value());
  } else {
    PLEXUS_TRY(datapath::detachSockPrograms(config.bpf_root), "socket LB off");
  }

  // NodePort/LoadBalancer from outside the node: the external devices get bpf_host at tc ingress.
  if (config.kube_proxy_replacement && !config.devices.empty()) {
    auto host = datapath::HostDatapath::load(lxc_cfg);
    if (!host.ok()) {
      return host.error();
    }
    for (const auto& dev : config.devices) {
      auto link = datapath::linkByName(dev);
      if (!link.ok()) {
        return link.error().wrap(fmt::format("--devices {}", dev));
      }
      PLEXUS_TRY((*host)->attachDevice(link->ifindex), fmt::format("--devices {}", dev));
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
      BpfMapWriter<plexus_endpoint_key, plexus_endpoint_value>(state->lxc->endpoints()),
      BpfMapWriter<plexus_ipcache_key, plexus_ipcache_value>(state->lxc->ipcache()),
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
  state->policies = std::make_unique<PolicyManager>(
      ports.policy, *state->ipcache, [ids = state->identities.get()] { return ids->all(); },
      [r = state->resources.get()](const EndpointRecord& rec) { return r->namedPorts(rec.pod_namespace, rec.pod_name); });
  state->endpoints = std::make_unique<EndpointManager>(
      EndpointManagerDeps{ports.network, ports.endpoints, *state->ipcache, *state->policies, *state->store},
      *state->ipam, EndpointManagerConfig{config.mtu}, [] { return static_cast<int64_t>(std::time(nullptr)); });
  if (config.kube_proxy_replacement) {
    lb::PlannerConfig pc;
    pc.node_name = config.node_name;
    pc.node_ips = nodeAddresses(config.devices);
    pc.maglev = config.lb_algorithm == "maglev";
    pc.maglev_m = static_cast<uint32_t>(config.maglev_table_size);
    auto seed = lb::parseMaglevSeed(config.maglev_hash_seed.empty() ? lb::kDefaultMaglevSeed
                                                                    : config.maglev_hash_seed);
    if (!seed.ok()) {
      return seed.error().wrap("--maglev-hash-seed");
    }
    pc.seed = *seed;
    state->services = std::make_unique<ServiceManager>(ports.services, pc, &state->flow_dir);
    if (Status s = state->services->restore(); !s.ok()) {
      // Not fatal: services are then written afresh, with new ids (established per-packet flows may break).
      spdlog::warn("services: {}", s.error().message);
    }
    state->service_sync = std::make_unique<ServiceSync>(*state->services, *state->resources);
  }
  state->controller = std::make_unique<Controller>(ControllerParts{
      *state->resources, *state->identities, *state->ipcache, *state->endpoints, *state->policies,
      state->service_sync.get(), state->flow_dir, api, &ports.host});
  state->sink.attach(state->controller.get());
  // Flow enrichment follows every endpoint the datapath serves.
  // /metrics: identities and services, read on the reconcile thread at scrape time.
  state->metric_sources.push_back([ids = state->identities.get(), svc = state->services.get(),
                                   p = state->policies.get()](Exposition& e) {
    e.family("plexus_identity", "gauge", "Security identities in use, by type");
    e.sample("plexus_identity", {{"type", "cluster"}}, static_cast<double>(ids->local().size()));
    e.sample("plexus_identity", {{"type", "reserved"}}, PLEXUS_IDENTITY_RESERVED_MAX);
    e.family("plexus_policy", "gauge", "Policies by validity");
    e.sample("plexus_policy", {{"valid", "true"}}, static_cast<double>(p->validCount()));
    e.sample("plexus_policy", {{"valid", "false"}}, static_cast<double>(p->invalidCount()));
    if (svc) {
      size_t backends = 0;
      std::set<std::string> services;
      for (const auto& f : svc->installed().frontends) {
        services.insert(f.service);
      }
      backends = svc->installed().backends.size();
      e.family("plexus_services", "gauge", "Services programmed into the datapath");
      e.sample("plexus_services", {}, static_cast<double>(services.size()));
      e.family("plexus_service_frontends", "gauge", "Service frontends (address, port, protocol, scope)");
      e.sample("plexus_service_frontends", {}, static_cast<double>(svc->installed().frontends.size()));
      e.family("plexus_service_backends", "gauge", "Service backends, active and terminating");
      e.sample("plexus_service_backends", {}, static_cast<double>(backends));
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
    e.family("plexus_conntrack_gc_runs_total", "counter", "Conntrack garbage collection passes");
    e.sample("plexus_conntrack_gc_runs_total", {}, static_cast<double>(st->ct_gc.runs));
    e.family("plexus_conntrack_gc_entries_deleted_total", "counter", "Conntrack entries removed as expired");
    e.sample("plexus_conntrack_gc_entries_deleted_total", {}, static_cast<double>(st->ct_gc.deleted));
    e.family("plexus_conntrack_entries", "gauge", "Conntrack entries left after the last garbage collection");
    e.sample("plexus_conntrack_entries", {}, static_cast<double>(st->ct_gc.entries));
    e.family("plexus_conntrack_gc_duration_seconds", "gauge", "Time of the last conntrack garbage collection");
    e.sample("plexus_conntrack_gc_duration_seconds", {}, st->ct_gc.last_seconds);
  });
  if (config.enable_hubble) {
    state->flows = std::make_unique<FlowStore>(static_cast<size_t>(config.hubble_flow_buffer_size));
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
