#include "plexus/agent/config.h"

#include <unistd.h>

#include <cstdlib>
#include <set>
#include <tuple>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "plexus/agent/hubble_metrics.h"
#include "plexus/lb/maglev.h"
#include "plexus/policy/compiler.h"

namespace plexus::agent {

Ipv4Prefix AgentConfig::podCidr() const {
  auto p = Ipv4Prefix::parse(pod_cidr);
  return p ? *p : Ipv4Prefix();
}

namespace {

void addOptions(CLI::App& app, AgentConfig& c) {
  app.add_option("--config", c.config_file, "YAML file whose keys are these flag names");
  app.add_option("--state-dir", c.state_dir, "persistent state directory");
  app.add_option("--bpf-root", c.bpf_root, "directory on a bpffs for pinned maps");
  app.add_option("--socket", c.socket, "gRPC unix socket (mode 0660)");
  app.add_option("--pod-cidr", c.pod_cidr, "this node's pod CIDR (standalone IPAM)");
  app.add_option("--node-name", c.node_name, "node name (default: $PLEXUS_NODE_NAME or the hostname)");
  app.add_option("--cluster-name", c.cluster_name, "cluster name for identity labels");
  app.add_option("--host-device", c.host_device, "device (veth pair <name> <-> <name>_net) that holds the pods' gateway address");
  app.add_option("--mtu", c.mtu, "pod interface MTU (0: the device MTU, less 50 in tunnel mode)");
  app.add_option("--ipam-mode,--ipam", c.ipam_mode, "standalone | kubernetes | cluster-pool")
      ->check(CLI::IsMember({"standalone", "kubernetes", "cluster-pool"}));
  app.add_option("--cluster-pool-ipv4-cidr", c.cluster_pool_ipv4_cidr, "cluster-pool CIDRs")->delimiter(',');
  app.add_option("--cluster-pool-ipv4-mask-size", c.cluster_pool_ipv4_mask_size, "per-node mask size");
  app.add_option("--kube-proxy-replacement", c.kube_proxy_replacement, "load-balance services in eBPF");
  app.add_option("--k8s-service-host", c.k8s_service_host, "API server host (kube-proxy-free clusters)");
  app.add_option("--k8s-service-port", c.k8s_service_port, "API server port");
  app.add_option("--k8s-kubeconfig-path", c.k8s_kubeconfig_path, "kubeconfig file");
  app.add_option("--routing-mode", c.routing_mode, "native | tunnel")->check(CLI::IsMember({"native", "tunnel"}));
  app.add_option("--tunnel-protocol", c.tunnel_protocol, "vxlan | geneve (tunnel mode)");
  app.add_option("--tunnel-port", c.tunnel_port, "UDP port of the tunnel (VXLAN: 8472, as Cilium)");
  app.add_option("--auto-direct-node-routes", c.auto_direct_node_routes,
                 "native mode: route other nodes' pod CIDRs via their InternalIPs (nodes on one L2 segment)");
  app.add_option("--enable-host-legacy-routing", c.enable_host_legacy_routing,
                 "forward pods' traffic through the kernel stack instead of BPF host routing");
  app.add_option("--ipv4-native-routing-cidr", c.ipv4_native_routing_cidr,
                 "destinations reached without masquerade in native mode");
  app.add_option("--health-port,--cluster-health-port", c.health_port, "TCP port of the node health endpoint other nodes probe (0: off)");
  app.add_option("--enable-bpf-masquerade", c.enable_bpf_masquerade, "masquerade pod egress in eBPF");
  app.add_option("--enable-ipv4-masquerade", c.enable_ipv4_masquerade,
                 "masquerade pod egress (in eBPF with --enable-bpf-masquerade, else with an iptables rule)");
  app.add_option("--enable-hubble", c.enable_hubble, "flow events and the flow store");
  app.add_option("--hubble-flow-buffer-size,--hubble-event-buffer-capacity", c.hubble_flow_buffer_size, "flows kept in memory");
  app.add_option("--hubble-socket-path", c.hubble_socket_path,
                 "unix socket of Hubble's observer API (default: hubble.sock next to --socket)");
  app.add_option("--hubble-listen-address", c.hubble_listen_address,
                 "TCP address of Hubble's observer API, e.g. :4244 (empty: unix socket only)");
  app.add_option("--hubble-disable-tls", c.hubble_disable_tls,
                 "serve --hubble-listen-address in plaintext (default: TLS with --hubble-tls-cert-file and -key-file)");
  app.add_option("--hubble-tls-cert-file", c.hubble_tls_cert_file, "PEM certificate (chain) of the Hubble TLS server");
  app.add_option("--hubble-tls-key-file", c.hubble_tls_key_file, "PEM private key of the Hubble TLS server");
  app.add_option("--hubble-tls-client-ca-files", c.hubble_tls_client_ca_files,
                 "PEM CA bundle that signs the certificates Hubble clients must present (mutual TLS; one file)")
      ->delimiter(',');
  app.add_option("--hubble-metrics-server", c.hubble_metrics_server,
                 "[host]:port of Hubble's flow metrics (hubble_*) on /metrics, e.g. :9965 (empty: off)");
  app.add_option("--hubble-metrics", c.hubble_metrics,
                 "Hubble metrics to count, in Cilium's list syntax: flow drop tcp port-distribution icmp flows-to-world (others "
                 "Hubble has, such as dns or httpV2, are skipped with a log line)");
  app.add_option("--monitor-aggregation", c.monitor_aggregation,
                 "flow events: medium (new connections, TCP flag changes, drops) or none (every packet)");
  app.add_option("--lb-algorithm,--bpf-lb-algorithm", c.lb_algorithm, "maglev | random")->check(CLI::IsMember({"maglev", "random"}));
  app.add_option("--enable-policy", c.enable_policy,
                 "policy enforcement: default (a direction selected by a policy), always (every endpoint, no rule: "
                 "deny) or never");
  app.add_option("--policy-audit-mode", c.policy_audit_mode,
                 "policy drops are not enforced: the packets pass and are reported with verdict AUDIT");
  app.add_option("--bpf-lb-mode", c.lb_mode,
                 "NodePort/LoadBalancer to another node's backend: snat (the entry node's address as source), dsr "
                 "(direct server return: the client's address kept, the backend's node replies) or hybrid (dsr for "
                 "TCP, snat for UDP)");
  app.add_option("--bpf-lb-dsr-dispatch", c.lb_dsr_dispatch,
                 "how dsr names the frontend to the backend's node: opt (an IPv4 option)");
  app.add_option("--maglev-table-size,--bpf-lb-maglev-table-size", c.maglev_table_size, "Maglev table size (prime)");
  app.add_option("--maglev-hash-seed,--bpf-lb-maglev-hash-seed", c.maglev_hash_seed, "base64 12-byte Maglev seed");
  app.add_option("--prometheus-serve-addr", c.prometheus_serve_addr, "host:port for /metrics and /healthz (empty: off)");
  app.add_option("--health-addr", c.health_addr, "address for /healthz (empty: off)");
  app.add_option("--kube-proxy-replacement-healthz-bind-address", c.kpr_healthz_addr,
                 "host:port serving kube-proxy's /healthz and /livez (empty: off)");
  app.add_option("--debug", c.debug, "debug logging");
  app.add_option("--cgroup-root", c.cgroup_root, "cgroup v2 root for socket load-balancing");
  app.add_option("--devices", c.devices, "external devices for NodePort")->delimiter(',');
  app.add_option("--enable-socket-lb,--bpf-lb-sock", c.enable_socket_lb, "socket-level load-balancing");
  app.add_option("--ct-map-size,--bpf-ct-global-tcp-max", c.ct_map_size, "conntrack map entries");
  app.add_option("--bpf-lb-map-max", c.lb_map_max,
                 "entries of each service map (services, backends, rev-NAT, affinity, Maglev tables)");
  app.add_option("--bpf-policy-map-max", c.policy_map_max, "entries of each endpoint's policy map");
  app.add_option("--bpf-ipcache-map-max", c.ipcache_map_max, "entries of the ipcache (IP prefix -> identity)");
  app.add_option("--bpf-nat-global-max", c.nat_map_max, "entries of the masquerade (BPF SNAT) map");
  app.add_option("--conntrack-gc-interval", c.conntrack_gc_interval,
                 "seconds between conntrack garbage collections (0: never; entries then leave by LRU eviction only)");
  app.add_option("--events-ring-size", c.events_ring_size,
                 "bytes of the BPF ring buffer carrying flow events (a power of two, 4096-67108864)");
  app.add_flag("--print-config", c.print_config, "print the effective configuration as JSON and exit");
}

// "[host]:port" with a port of 1-65535.
bool validListenAddress(const std::string& address) {
  auto colon = address.rfind(':');
  std::string digits = colon == std::string::npos ? "" : address.substr(colon + 1);
  if (digits.empty() || digits.size() > 5 || digits.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  int port = std::stoi(digits);
  return port >= 1 && port <= 65535;
}

std::string scalarText(const YAML::Node& n) {
  if (n.IsSequence()) {
    std::string joined;
    for (const auto& item : n) {
      if (!joined.empty()) {
        joined += ",";
      }
      joined += item.as<std::string>();
    }
    return joined;
  }
  return n.as<std::string>();
}

}  // namespace

Result<AgentConfig> parseAgentConfig(int argc, const char* const* argv, bool* help) {
  *help = false;
  // Find --config first: the file's values go in front of the command line so that flags win.
  std::string config_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_file = argv[i + 1];
    } else if (a.rfind("--config=", 0) == 0) {
      config_file = a.substr(9);
    }
  }
  std::vector<std::string> args;
  if (!config_file.empty()) {
    try {
      YAML::Node root = YAML::LoadFile(config_file);
      if (root && !root.IsNull() && !root.IsMap()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("config {}: top level must be a map", config_file));
      }
      for (const auto& kv : root) {
        std::string key = kv.first.as<std::string>();
        if (kv.second.IsMap()) {
          return makeError(ErrorCode::kInvalidArgument, fmt::format("config {}: key {}: must be a scalar or list",
                                                                    config_file, key));
        }
        if (kv.second.IsNull()) {
          continue;
        }
        std::string value = scalarText(kv.second);
        if (value.empty()) {
          // "--key=" would make CLI11 take the next argument as the value: pass the empty value on its own.
          args.push_back("--" + key);
          args.push_back("");
        } else {
          args.push_back(fmt::format("--{}={}", key, value));
        }
      }
    } catch (const YAML::Exception& e) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("config {}: {}", config_file, e.what()));
    }
  }
  for (int i = 1; i < argc; ++i) {
    args.emplace_back(argv[i]);
  }

  AgentConfig c;
  CLI::App app{"plexus-agent: eBPF networking agent"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  addOptions(app, c);
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    *help = true;
    return makeError(ErrorCode::kInvalidArgument, app.help());
  } catch (const CLI::ParseError& e) {
    return makeError(ErrorCode::kInvalidArgument, e.what());
  }
  if (app.get_option("--hubble-socket-path")->count() == 0) {
    auto slash = c.socket.rfind('/');
    c.hubble_socket_path = (slash == std::string::npos ? std::string() : c.socket.substr(0, slash + 1)) + "hubble.sock";
  }
  if (c.hubble_socket_path.empty() || c.hubble_socket_path == c.socket) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("--hubble-socket-path {:?}: must be a path other than "
                                                              "--socket",
                                                              c.hubble_socket_path));
  }
  if (!c.hubble_listen_address.empty() && !validListenAddress(c.hubble_listen_address)) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--hubble-listen-address {:?}: must be [host]:port, e.g. :4244",
                                 c.hubble_listen_address));
  }
  if (!c.hubble_listen_address.empty() && !c.hubble_disable_tls &&
      (c.hubble_tls_cert_file.empty() || c.hubble_tls_key_file.empty())) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--hubble-listen-address {:?}: TLS needs --hubble-tls-cert-file and "
                                 "--hubble-tls-key-file (or --hubble-disable-tls for plaintext)",
                                 c.hubble_listen_address));
  }
  if (c.hubble_tls_client_ca_files.size() > 1) {
    return makeError(ErrorCode::kInvalidArgument, "--hubble-tls-client-ca-files: one file (put every CA in it)");
  }
  if (!c.hubble_metrics_server.empty() && !validListenAddress(c.hubble_metrics_server)) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("--hubble-metrics-server {:?}: must be [host]:port, "
                                                              "e.g. :9965",
                                                              c.hubble_metrics_server));
  }
  if (auto metrics = parseHubbleMetrics(c.hubble_metrics); !metrics.ok()) {
    return metrics.error();
  }
  if (c.node_name.empty()) {
    const char* env = std::getenv("PLEXUS_NODE_NAME");
    char host[256] = {};
    c.node_name = env ? env : (gethostname(host, sizeof(host) - 1) == 0 ? host : "node");
  }
  auto cidr = Ipv4Prefix::parse(c.pod_cidr);
  if (!cidr || cidr->length() > 30 || cidr->length() < 8) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--pod-cidr {}: must be an IPv4 CIDR between /8 and /30", c.pod_cidr));
  }
  if (c.hubble_flow_buffer_size < 1 || c.hubble_flow_buffer_size > 1 << 20) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--hubble-flow-buffer-size {}: must be 1-1048576", c.hubble_flow_buffer_size));
  }
  if (c.monitor_aggregation != "medium" && c.monitor_aggregation != "none") {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--monitor-aggregation {}: must be medium or none", c.monitor_aggregation));
  }
  if (!lb::isAllowedMaglevTableSize(static_cast<uint32_t>(c.maglev_table_size))) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--maglev-table-size {}: must be one of Cilium's primes (251, 509, 1021, 2039, 4093, "
                                 "8191, 16381, 32749, 65521, 131071)",
                                 c.maglev_table_size));
  }
  if (!c.maglev_hash_seed.empty()) {
    auto seed = lb::parseMaglevSeed(c.maglev_hash_seed);
    if (!seed.ok()) {
      return seed.error().wrap("--maglev-hash-seed");
    }
  }
  if (c.events_ring_size < 4096 || c.events_ring_size > (64 << 20) ||
      (c.events_ring_size & (c.events_ring_size - 1)) != 0) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--events-ring-size {}: must be a power of two, 4096-67108864", c.events_ring_size));
  }
  // Accepted by the chart and the flags for Cilium compatibility, but not built yet: refuse rather than ignore.
  if (c.tunnel_protocol == "geneve") {
    return makeError(ErrorCode::kInvalidArgument,
                     "--tunnel-protocol geneve: this kernel has no Geneve driver (ip link add ... type geneve fails); "
                     "use vxlan");
  }
  if (c.tunnel_protocol != "vxlan") {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--tunnel-protocol {:?}: must be vxlan or geneve", c.tunnel_protocol));
  }
  if (c.tunnel_port < 1 || c.tunnel_port > 65535 || c.health_port < 0 || c.health_port > 65535) {
    return makeError(ErrorCode::kInvalidArgument, "--tunnel-port and --health-port must be valid ports");
  }
  if (!c.ipv4_native_routing_cidr.empty() && !Ipv4Prefix::parse(c.ipv4_native_routing_cidr)) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--ipv4-native-routing-cidr {:?}: not an IPv4 CIDR", c.ipv4_native_routing_cidr));
  }
  if (c.mtu != 0 && (c.mtu < 576 || c.mtu > 65535)) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("--mtu {}: must be 576-65535 (or 0: automatic)", c.mtu));
  }
  if (!policy::parseEnforcementMode(c.enable_policy)) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--enable-policy {:?}: must be default, always or never", c.enable_policy));
  }
  if (c.lb_mode != "snat" && c.lb_mode != "dsr" && c.lb_mode != "hybrid") {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--bpf-lb-mode {:?}: must be snat, dsr or hybrid", c.lb_mode));
  }
  if (c.lb_mode != "snat" && !c.kube_proxy_replacement) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--bpf-lb-mode {} needs --kube-proxy-replacement (it runs in the devices' programs)",
                                 c.lb_mode));
  }
  if (c.lb_dsr_dispatch != "opt") {
    // Cilium's other dispatch methods: ipip (an IPIP header), geneve (a Geneve option; no Geneve driver here).
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--bpf-lb-dsr-dispatch {:?}: only opt (the frontend in an IPv4 option) is built; "
                                 "ipip and geneve are not",
                                 c.lb_dsr_dispatch));
  }
  if (c.enable_bpf_masquerade && !c.kube_proxy_replacement) {
    return makeError(ErrorCode::kInvalidArgument,
                     "--enable-bpf-masquerade needs --kube-proxy-replacement (it runs in the devices' programs)");
  }
  if ((c.enable_bpf_masquerade || c.enable_ipv4_masquerade) && c.routing_mode == "native" &&
      c.ipv4_native_routing_cidr.empty()) {
    // As Cilium: without it, traffic to pods on other nodes would be masqueraded.
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} in native routing needs --ipv4-native-routing-cidr (the destinations reached "
                                 "without masquerade, e.g. the cluster's pod CIDRs)",
                                 c.enable_bpf_masquerade ? "--enable-bpf-masquerade" : "--enable-ipv4-masquerade"));
  }
  if (c.ct_map_size < 1024 || c.ct_map_size > 16777216) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("--ct-map-size {}: must be 1024-16777216", c.ct_map_size));
  }
  for (const auto& [flag, value, low, high] :
       {std::tuple<const char*, int, int, int>{"--bpf-lb-map-max", c.lb_map_max, 16, 16777216},
        {"--bpf-policy-map-max", c.policy_map_max, 16, PLEXUS_POLICY_INNER_MAX},
        {"--bpf-ipcache-map-max", c.ipcache_map_max, 16, 16777216},
        {"--bpf-nat-global-max", c.nat_map_max, 1024, 16777216}}) {
    if (value < low || value > high) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("{} {}: must be {}-{}", flag, value, low, high));
    }
  }
  if (c.conntrack_gc_interval < 0 || c.conntrack_gc_interval > 86400) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("--conntrack-gc-interval {}: must be 0-86400 seconds", c.conntrack_gc_interval));
  }
  if (c.state_dir.empty() || c.bpf_root.empty() || c.socket.empty()) {
    return makeError(ErrorCode::kInvalidArgument, "--state-dir, --bpf-root and --socket must not be empty");
  }
  return c;
}

nlohmann::json toJson(const AgentConfig& c) {
  return {{"state-dir", c.state_dir},
          {"bpf-root", c.bpf_root},
          {"socket", c.socket},
          {"pod-cidr", c.pod_cidr},
          {"node-name", c.node_name},
          {"cluster-name", c.cluster_name},
          {"host-device", c.host_device},
          {"mtu", c.mtu},
          {"ipam-mode", c.ipam_mode},
          {"cluster-pool-ipv4-cidr", c.cluster_pool_ipv4_cidr},
          {"cluster-pool-ipv4-mask-size", c.cluster_pool_ipv4_mask_size},
          {"kube-proxy-replacement", c.kube_proxy_replacement},
          {"k8s-service-host", c.k8s_service_host},
          {"k8s-service-port", c.k8s_service_port},
          {"k8s-kubeconfig-path", c.k8s_kubeconfig_path},
          {"routing-mode", c.routing_mode},
          {"tunnel-protocol", c.tunnel_protocol},
          {"tunnel-port", c.tunnel_port},
          {"auto-direct-node-routes", c.auto_direct_node_routes},
          {"enable-host-legacy-routing", c.enable_host_legacy_routing},
          {"ipv4-native-routing-cidr", c.ipv4_native_routing_cidr},
          {"health-port", c.health_port},
          {"enable-bpf-masquerade", c.enable_bpf_masquerade},
          {"enable-ipv4-masquerade", c.enable_ipv4_masquerade},
          {"enable-hubble", c.enable_hubble},
          {"hubble-flow-buffer-size", c.hubble_flow_buffer_size},
          {"hubble-socket-path", c.hubble_socket_path},
          {"hubble-listen-address", c.hubble_listen_address},
          {"hubble-disable-tls", c.hubble_disable_tls},
          {"hubble-tls-cert-file", c.hubble_tls_cert_file},
          {"hubble-tls-key-file", c.hubble_tls_key_file},
          {"hubble-tls-client-ca-files", c.hubble_tls_client_ca_files},
          {"hubble-metrics-server", c.hubble_metrics_server},
          {"hubble-metrics", c.hubble_metrics},
          {"monitor-aggregation", c.monitor_aggregation},
          {"lb-algorithm", c.lb_algorithm},
          {"enable-policy", c.enable_policy},
          {"policy-audit-mode", c.policy_audit_mode},
          {"bpf-lb-mode", c.lb_mode},
          {"bpf-lb-dsr-dispatch", c.lb_dsr_dispatch},
          {"maglev-table-size", c.maglev_table_size},
          {"maglev-hash-seed", c.maglev_hash_seed},
          {"prometheus-serve-addr", c.prometheus_serve_addr},
          {"health-addr", c.health_addr},
          {"kube-proxy-replacement-healthz-bind-address", c.kpr_healthz_addr},
          {"debug", c.debug},
          {"cgroup-root", c.cgroup_root},
          {"devices", c.devices},
          {"enable-socket-lb", c.enable_socket_lb},
          {"ct-map-size", c.ct_map_size},
          {"bpf-lb-map-max", c.lb_map_max},
          {"bpf-policy-map-max", c.policy_map_max},
          {"bpf-ipcache-map-max", c.ipcache_map_max},
          {"bpf-nat-global-max", c.nat_map_max},
          {"conntrack-gc-interval", c.conntrack_gc_interval},
          {"events-ring-size", c.events_ring_size}};
}

}  // namespace plexus::agent
