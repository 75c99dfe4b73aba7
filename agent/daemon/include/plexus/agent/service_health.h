#pragma once
// kube-proxy's per-service health check servers: for every LoadBalancer with externalTrafficPolicy: Local and a
// healthCheckNodePort, HTTP on that port on every node address, answering lb::healthCheckAnswer() (200 with the
// count of local endpoints, 503 with 0). The reconcile thread publishes the desired set (never blocking: it only
// swaps a map under a mutex); a worker thread of this class opens and closes the listeners, each a MetricsServer
// (the agent's one HTTP serving code), and the requests read the latest counts.

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "plexus/agent/metrics_server.h"
#include "plexus/agent/seams.h"

namespace plexus::agent {

struct AgentState;

class ServiceHealthServers final : public HealthCheckListeners {
 public:
  // proxy_healthy: the service proxy's own health (serviceProxyHealthy), asked at each request on a server thread.
  ServiceHealthServers(AgentState& state, std::function<bool()> proxy_healthy);
  ~ServiceHealthServers() override;
  ServiceHealthServers(const ServiceHealthServers&) = delete;
  ServiceHealthServers& operator=(const ServiceHealthServers&) = delete;

  void publish(std::map<std::string, lb::HealthCheck> checks) override;
  // Closes every listener and ends the worker; call before the reconcile thread stops (proxy_healthy may ask it).
  // Idempotent.
  void stop();

 private:
  void run();
  // Worker thread: closes the listeners no longer wanted (or wanted for another service), opens the missing ones.
  void converge(const std::map<std::string, lb::HealthCheck>& desired);
  lb::HealthAnswer answer(const lb::HealthCheck& opened);

  AgentState& state_;
  std::function<bool()> proxy_healthy_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, lb::HealthCheck> desired_;  // by service key (guarded by mu_)
  uint64_t generation_ = 0;                         // bumped by publish() (guarded by mu_)
  bool stopping_ = false;                           // guarded by mu_
  struct Listener {
    lb::HealthCheck check;  // as opened: the service it answers for
    std::unique_ptr<MetricsServer> server;
  };
  std::map<uint16_t, Listener> open_;  // by port; worker thread only
  std::thread worker_;
};

}  // namespace plexus::agent
