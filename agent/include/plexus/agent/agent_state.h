#pragma once
// Everything the agent owns, wired together. Built by main; handed by reference to the gRPC services.

#include <atomic>
#include <functional>
#include <vector>
#include <memory>
#include <string>

#include "plexus/agent/api_metrics.h"
#include "plexus/agent/cluster_state.h"
#include "plexus/agent/config.h"
#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/flow_store.h"
#include "plexus/agent/prometheus.h"
#include "plexus/agent/endpoint_manager.h"
#include "plexus/agent/ipam.h"
#include "plexus/agent/kubernetes.h"
#include "plexus/agent/policy_manager.h"
#include "plexus/agent/reconciler.h"
#include "plexus/agent/state_store.h"
#include "plexus/datapath/conntrack_gc.h"
#include "plexus/datapath/event_reader.h"
#include "plexus/datapath/host_datapath.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/datapath/sock_datapath.h"

namespace plexus::agent {

struct AgentState {
  AgentConfig config;
  std::unique_ptr<datapath::LxcDatapath> lxc;
  std::unique_ptr<datapath::SockDatapath> sock;  // null when socket LB is off
  std::unique_ptr<datapath::HostDatapath> host;  // null when no --devices are given
  std::unique_ptr<StateStore> store;
  std::unique_ptr<Ipam> ipam;
  std::unique_ptr<EndpointManager> endpoints;
  std::unique_ptr<ServiceManager> services;  // null when kube-proxy replacement is off
  std::unique_ptr<ClusterState> cluster;
  std::unique_ptr<PolicyManager> policies;
  Reconciler reconciler;
  std::unique_ptr<KubernetesSync> kube;  // null in standalone mode; declared after the reconciler, stopped first
  // Observability: flows decoded from the datapath's events, and what /metrics reports.
  std::unique_ptr<FlowStore> flows;  // null when hubble is off
  FlowDirectory flow_dir;
  datapath::EventReader events;
  ApiMetrics api_metrics;
  std::vector<std::function<void(Exposition&)>> metric_sources;  // called on the reconcile thread
  std::atomic<bool> ready{false};
  int64_t started_unix = 0;
  // Conntrack garbage collection (reconcile thread): totals for /metrics.
  struct {
    uint64_t runs = 0;
    uint64_t deleted = 0;
    size_t entries = 0;  // after the last run
    double last_seconds = 0;
  } ct_gc;
  void collectConntrack();
};

// Loads the datapath, restores state, drains queued CNI deletes. Problems that do not stop the agent are logged.
Result<std::unique_ptr<AgentState>> startAgent(const AgentConfig& config);

}  // namespace plexus::agent
