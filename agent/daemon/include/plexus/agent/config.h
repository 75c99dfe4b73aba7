#pragma once
// Agent configuration: command-line flags, optionally seeded from a YAML file (--config) whose keys are the
// flag names (the Helm chart's ConfigMap renders that file). Flags given on the command line win.

#include "plexus/conntrack.h"
#include "plexus/endpoint.h"
#include "plexus/events.h"
#include "plexus/lb.h"
#include "plexus/nat.h"
#include "plexus/policy.h"
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"

namespace plexus::agent {

struct AgentConfig {
  std::string config_file;
  std::string state_dir = "/var/lib/plexus";
  std::string bpf_root = "/sys/fs/bpf/plexus";
  std::string socket = "/run/plexus/plexus.sock";
  std::string pod_cidr = "10.244.0.0/24";
  std::string node_name;
  std::string cluster_name = "default";
  std::string host_device = "plexus_host";
  int mtu = 0;  // pod MTU; 0: the device MTU, less the encapsulation overhead in tunnel mode
  std::string ipam_mode = "standalone";
  std::vector<std::string> cluster_pool_ipv4_cidr;
  int cluster_pool_ipv4_mask_size = 24;
  bool kube_proxy_replacement = true;
  std::string k8s_service_host;
  int k8s_service_port = 0;
  std::string k8s_kubeconfig_path;
  std::string routing_mode = "tunnel";  // Cilium's default
  std::string tunnel_protocol = "vxlan";
  int tunnel_port = 8472;
  bool auto_direct_node_routes = false;
  bool enable_host_legacy_routing = false;  // true: the kernel stack forwards pods' traffic (no BPF host routing)
  std::string ipv4_native_routing_cidr;
  int health_port = 4240;  // cilium-health's port; 0: no health endpoint or probes
  bool enable_bpf_masquerade = false;
  bool enable_ipv4_masquerade = false;  // netfilter's MASQUERADE when BPF masquerade is off (the chart turns it on)
  bool enable_hubble = true;
  int hubble_flow_buffer_size = 4096;
  // Hubble's observer API (observer.Observer). Unless given, the socket sits next to --socket (so the default
  // --socket gives /run/plexus/hubble.sock, and agents with sockets of their own get hubble sockets of their own).
  std::string hubble_socket_path = "/run/plexus/hubble.sock";
  std::string hubble_listen_address;  // "[host]:port" for TCP (Cilium's hubble.listenAddress ":4244"); "": off
  // TLS on that TCP listener, as Cilium's flags: on unless disabled, with the server's certificate and key (PEM
  // files, re-read when they change); with a client CA (one file), clients such as Hubble Relay must present a
  // certificate it signed (mutual TLS). The unix socket stays plaintext, as Cilium's.
  bool hubble_disable_tls = false;
  std::string hubble_tls_cert_file;
  std::string hubble_tls_key_file;
  std::vector<std::string> hubble_tls_client_ca_files;
  bool hubbleTcpTls() const { return !hubble_listen_address.empty() && !hubble_disable_tls; }
  // Hubble's flow metrics (hubble_*): the listener ("[host]:port", Cilium's hubble.metrics.port ":9965"; "": off) and
  // the metrics, in Cilium's list syntax ("dns drop tcp flow port-distribution icmp httpV2:...").
  std::string hubble_metrics_server;
  std::string hubble_metrics;
  std::string monitor_aggregation = "medium";
  std::string lb_algorithm = "maglev";
  std::string enable_policy = "default";  // policy enforcement mode: default | always | never (Cilium's enable-policy)
  bool policy_audit_mode = false;  // policy drops are forwarded and reported as AUDIT (Cilium's policy-audit-mode)
  std::string lb_mode = "snat";  // how NodePort reaches another node's backend (Cilium's bpf-lb-mode)
  std::string lb_dsr_dispatch = "opt";  // how DSR names the frontend to the backend's node (bpf-lb-dsr-dispatch)
  int maglev_table_size = 16381;
  std::string maglev_hash_seed;
  std::string prometheus_serve_addr = "127.0.0.1:9962";
  std::string health_addr;
  std::string kpr_healthz_addr;  // kube-proxy's /healthz (empty: off)
  bool debug = false;
  std::string cgroup_root = "/run/plexus/cgroupv2";
  std::vector<std::string> devices;
  bool enable_socket_lb = true;
  int ct_map_size = PLEXUS_CT4_DEFAULT_MAX;
  int lb_map_max = PLEXUS_LB_MAP_DEFAULT_MAX;          // entries of each service map
  int policy_map_max = PLEXUS_POLICY_MAP_DEFAULT_MAX;  // entries of each endpoint's policy map
  int ipcache_map_max = PLEXUS_IPCACHE_MAX;
  int nat_map_max = PLEXUS_SNAT4_DEFAULT_MAX;  // entries of the masquerade map
  int conntrack_gc_interval = 60;  // seconds; 0: no GC
  int events_ring_size = PLEXUS_EVENTS_RING_BYTES;  // bytes of the flow-event ring buffer
  bool print_config = false;       // print the effective configuration as JSON and exit

  Ipv4Prefix podCidr() const;
};

// Parses argv (and the YAML file it names). Returns InvalidArgument with a message naming the flag or key.
// `help` is set when --help was asked for; the text is in the error message then.
Result<AgentConfig> parseAgentConfig(int argc, const char* const* argv, bool* help);
// The effective configuration, keyed by flag name (what --print-config shows).
nlohmann::json toJson(const AgentConfig& c);

}  // namespace plexus::agent
