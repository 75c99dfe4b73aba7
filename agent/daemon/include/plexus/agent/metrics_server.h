#pragma once
// /metrics (Prometheus text exposition) and /healthz over HTTP, on --prometheus-serve-addr (127.0.0.1:9962 by
// default). Each scrape reads the datapath counters and asks the reconcile thread for the agent's state.

#include <memory>
#include <string>
#include <thread>

#include "plexus/common/result.h"

namespace httplib {
class Server;
}

namespace plexus::agent {

struct AgentState;

// Everything one scrape reports, in exposition format.
std::string renderMetrics(AgentState& state);

class MetricsServer {
 public:
  explicit MetricsServer(AgentState& state);
  ~MetricsServer();
  Status start(const std::string& address);  // "host:port"
  void stop();

 private:
  AgentState& state_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace plexus::agent
