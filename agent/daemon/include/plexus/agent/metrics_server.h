#pragma once
// /metrics (Prometheus text exposition) and /healthz over HTTP, on --prometheus-serve-addr (127.0.0.1:9962 by
// default). Each scrape reads the datapath counters and asks the reconcile thread for the agent's state.

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "plexus/common/result.h"
#include "plexus/lb/health_check.h"

namespace httplib {
class Server;
}
namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace plexus::agent {

struct AgentState;

// Everything one scrape reports, in exposition format.
std::string renderMetrics(AgentState& state);

// What one HTTP listener serves.
enum class HttpRoutes {
  kMetrics,          // /metrics and /healthz (--prometheus-serve-addr)
  kHealth,           // /healthz alone (--health-addr)
  kKubeProxyHealth,  // kube-proxy's /healthz and /livez (--kube-proxy-replacement-healthz-bind-address)
};

// kube-proxy's health answer: 200 while the agent is ready and the service maps hold what the cluster wants, else
// 503; the body is kube-proxy's JSON ({"lastUpdated", "currentTime", "nodeEligible"}). Reconcile thread.
struct KubeProxyHealth {
  int status = 503;
  std::string body;
};
KubeProxyHealth kubeProxyHealth(AgentState& state);

class MetricsServer {
 public:
  explicit MetricsServer(AgentState& state);
  ~MetricsServer();
  // "host:port"; `flag` names the address in errors.
  Status start(const std::string& address, HttpRoutes routes = HttpRoutes::kMetrics,
               const std::string& flag = "--prometheus-serve-addr");
  // Answers every request (any path; GET, HEAD or POST) with answer(), as kube-proxy's per-service health check
  // servers do (service_health.h); answer() runs on a server thread. `what` names the listener in errors.
  Status serveAnswers(const std::string& address, std::function<lb::HealthAnswer()> answer, const std::string& what);
  void stop();

 private:
  // Binds "host:port" (empty host: every address) and serves on a thread of its own.
  Status listen(const std::string& address, const std::string& flag);

  AgentState& state_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

// Hubble's metrics listener (--hubble-metrics-server, Cilium's hubble.metrics.port): prometheus-cpp's pull Exposer
// serving `registry` (the hubble_* families HubbleMetrics counts into) on /metrics, on threads of its own.
class HubbleMetricsServer {
 public:
  // address: "[host]:port"; an empty host is every address (":9965", as Cilium's chart writes it).
  static Result<std::unique_ptr<HubbleMetricsServer>> start(const std::string& address,
                                                            std::shared_ptr<prometheus::Registry> registry);
  ~HubbleMetricsServer();

 private:
  HubbleMetricsServer() = default;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace plexus::agent
