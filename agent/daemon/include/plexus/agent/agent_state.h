#pragma once
// The composition root: everything the agent owns, built by startAgent() in dependency order. The kernel
// adapters (datapath) are wrapped in the seams the control layer depends on; the managers are wired to each
// other only through the controller; the gRPC services read what they need through the accessors below and
// run every change on the reconcile thread.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "plexus/agent/api_metrics.h"
#include "plexus/agent/config.h"
#include "plexus/agent/controller.h"
#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/flow_store.h"
#include "plexus/agent/hubble_metrics.h"
#include "plexus/agent/kernel_ports.h"
#include "plexus/agent/kubernetes.h"
#include "plexus/agent/node_health.h"
#include "plexus/agent/prometheus.h"
#include "plexus/agent/reconciler.h"
#include "plexus/agent/service_health.h"
#include "plexus/agent/state_store.h"
#include "plexus/datapath/conntrack_gc.h"
#include "plexus/datapath/event_reader.h"
#include "plexus/datapath/host_datapath.h"
#include "plexus/datapath/sock_datapath.h"

namespace plexus::agent {

inline constexpr const char* kTunnelDevice = "plexus_vxlan";

// Events from watchers and the API worker, queued for the reconcile thread.
class ReconcilerSink final : public EventSink {
 public:
  explicit ReconcilerSink(Reconciler& reconciler) : reconciler_(reconciler) {}
  void attach(Controller* controller) { controller_ = controller; }
  void post(AgentEvent event) override {
    (void)reconciler_.submit([c = controller_, e = std::move(event)] { c->handle(e); });
  }

 private:
  Reconciler& reconciler_;
  Controller* controller_ = nullptr;
};

struct AgentState {
  AgentConfig config;
  int64_t started_unix = 0;
  std::atomic<bool> ready{false};
  // A bulk apply freed much memory: the main loop hands it back to the kernel (malloc_trim) within a second, once
  // the response is sent and freed too (a trim inside the request would leave the response's pages behind).
  std::atomic<bool> trim_heap{false};

  // Kernel adapters and the seams over them.
  std::unique_ptr<datapath::LxcDatapath> lxc;
  std::unique_ptr<datapath::SockDatapath> sock;  // null when socket LB is off
  std::unique_ptr<datapath::HostDatapath> host;  // null when kube-proxy replacement is off
  std::unique_ptr<datapath::OverlayDatapath> overlay;  // null in native routing
  std::unique_ptr<StateStore> store;
  node::RoutingMode routing_mode = node::RoutingMode::kTunnel;
  // --devices, or detected (again whenever the nodes change: a route to another node selects a device too).
  std::vector<std::string> devices() const {
    std::lock_guard<std::mutex> lock(devices_mu);
    return devices_;
  }
  std::vector<std::string> devices_;
  mutable std::mutex devices_mu;
  int tunnel_ifindex = 0;            // the tunnel device (tunnel mode)
  int pod_mtu = 1500;
  bool host_routing = false;         // BPF host routing (fib redirect out, redirect_peer in)
  std::unique_ptr<KernelNodeRoutes> node_routes;
  struct Ports;
  std::unique_ptr<Ports> ports;

  // Control: the managers and the controller that sequences them. Read them only on the reconcile thread.
  std::unique_ptr<Ipam> ipam;
  std::unique_ptr<ResourceState> resources;
  std::unique_ptr<IdentityManager> identities;
  std::unique_ptr<IpcacheManager> ipcache;
  std::unique_ptr<PolicyManager> policies;
  std::unique_ptr<EndpointManager> endpoints;
  std::unique_ptr<ServiceManager> services;  // null when kube-proxy replacement is off
  std::unique_ptr<ServiceSync> service_sync;
  std::unique_ptr<NodeManager> nodes;
  std::unique_ptr<Controller> controller;

  Reconciler reconciler;
  ReconcilerSink sink{reconciler};
  std::unique_ptr<KubernetesSync> kube;  // null in standalone mode; declared after the reconciler, stopped first
  std::unique_ptr<NodeHealth> health;    // null with --health-port 0; reads through the reconciler, stopped first
  // healthCheckNodePort listeners; null when kube-proxy replacement is off; ask through the reconciler, stopped first
  std::unique_ptr<ServiceHealthServers> service_health;

  // Observability: flows decoded from the datapath's events, and what /metrics reports.
  std::unique_ptr<FlowStore> flows;  // null when hubble is off
  // The agent's own events (Hubble's GetAgentEvents): the managers report into it from the reconcile thread.
  NotificationLog notices;
  // Hubble's flow metrics, counted as the event reader decodes each flow; null unless --hubble-metrics-server and
  // --hubble-metrics are both set (and hubble is on). The registry is what the Hubble metrics listener serves.
  std::shared_ptr<prometheus::Registry> hubble_registry;
  std::unique_ptr<HubbleMetrics> hubble_metrics;
  FlowDirectory flow_dir;
  datapath::EventReader events;
  // Instruments updated between scrapes (histograms), serialized by /metrics after the scrape-time samples.
  std::shared_ptr<prometheus::Registry> instruments = std::make_shared<prometheus::Registry>();
  ApiMetrics api_metrics{*instruments};
  // Cilium's cilium_datapath_conntrack_gc_duration_seconds{family,status}.
  prometheus::Family<prometheus::Histogram>& ct_gc_duration =
      prometheus::BuildHistogram()
          .Name("cilium_datapath_conntrack_gc_duration_seconds")
          .Help("Duration in seconds of the garbage collector process labeled by datapath family and completion status")
          .Register(*instruments);
  std::vector<std::function<void(Exposition&)>> metric_sources;  // called on the reconcile thread
  // Conntrack garbage collection: runConntrackGc() scans and deletes (any thread but the reconcile thread: a pass
  // walks the whole map); recordConntrackGc() keeps its totals for /metrics (reconcile thread).
  struct CtGcRun {
    Result<datapath::CtGcResult> ct = datapath::CtGcResult{};
    double seconds = 0;
  };
  CtGcRun runConntrackGc();
  void recordConntrackGc(const CtGcRun& run);
  struct {
    uint64_t runs = 0;
    uint64_t deleted = 0;
    size_t entries = 0;  // after the last run
    double last_seconds = 0;
    uint64_t failed = 0;  // runs that did not complete
    // The last completed run, TCP and other protocols apart (Cilium's cilium_datapath_conntrack_gc_entries).
    size_t alive_tcp = 0, alive_other = 0, deleted_tcp = 0, deleted_other = 0;
  } ct_gc;
  // Without --devices, devices are detected again as nodes come and go, in three steps: the other nodes' addresses
  // (reconcile thread), the detection (a netlink dump, off the reconcile thread; the devices when they differ from
  // the selected ones), and the selection (reconcile thread): new ones get the host programs, NodePort listens on
  // their addresses.
  std::vector<Ipv4> otherNodeAddresses() const;
  std::optional<std::vector<std::string>> detectChangedDevices(const std::vector<Ipv4>& others) const;
  void selectDevices(const std::vector<std::string>& found);
  // Stops what feeds or reads through the reconcile thread, then the reconcile thread. Idempotent.
  void stop();

  ~AgentState();
};

// Loads the datapath, restores state, drains queued CNI deletes. Problems that do not stop the agent are logged.
Result<std::unique_ptr<AgentState>> startAgent(const AgentConfig& config);

}  // namespace plexus::agent
