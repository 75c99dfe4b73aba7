#include "plexus/agent/service_health.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace plexus::agent {

ServiceHealthServers::ServiceHealthServers(AgentState& state, std::function<bool()> proxy_healthy)
    : state_(state), proxy_healthy_(std::move(proxy_healthy)), worker_([this] { run(); }) {}

ServiceHealthServers::~ServiceHealthServers() { stop(); }

void ServiceHealthServers::publish(std::map<std::string, lb::HealthCheck> checks) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    desired_ = std::move(checks);
    ++generation_;
  }
  cv_.notify_one();
}

void ServiceHealthServers::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (worker_.joinable()) {
    worker_.join();
  }
}

void ServiceHealthServers::run() {
  uint64_t seen = 0;
  for (;;) {
    std::map<std::string, lb::HealthCheck> desired;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) {
        break;
      }
      seen = generation_;
      desired = desired_;
    }
    converge(desired);
  }
  converge({});  // every listener closed
}

void ServiceHealthServers::converge(const std::map<std::string, lb::HealthCheck>& desired) {
  std::map<uint16_t, const lb::HealthCheck*> wanted;
  for (const auto& [key, hc] : desired) {
    auto [it, fresh] = wanted.emplace(hc.port, &hc);
    if (!fresh) {
      spdlog::warn("service {}: healthCheckNodePort {} is already the health check of {}; not served for it", key,
                   hc.port, it->second->key());
    }
  }
  for (auto it = open_.begin(); it != open_.end();) {
    auto w = wanted.find(it->first);
    if (w == wanted.end() || w->second->key() != it->second.check.key()) {
      spdlog::info("service {}: health check on port {} closed", it->second.check.key(), it->first);
      it->second.server->stop();  // waits for requests in flight: this thread, never the reconcile thread
      it = open_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [port, hc] : wanted) {
    if (open_.count(port)) {
      continue;
    }
    auto server = std::make_unique<MetricsServer>(state_);
    lb::HealthCheck opened = *hc;
    Status s = server->serveAnswers(fmt::format("0.0.0.0:{}", port), [this, opened] { return answer(opened); },
                                    fmt::format("service {}: healthCheckNodePort", hc->key()));
    if (!s.ok()) {
      // As kube-proxy: logged, and tried again at the next change of the services.
      spdlog::warn("{}", s.error().message);
      continue;
    }
    open_[port] = Listener{opened, std::move(server)};
  }
}

lb::HealthAnswer ServiceHealthServers::answer(const lb::HealthCheck& opened) {
  lb::HealthCheck now = opened;
  now.local_endpoints = 0;  // a service that is going away has none
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = desired_.find(opened.key());
    if (it != desired_.end()) {
      now.local_endpoints = it->second.local_endpoints;
    }
  }
  return lb::healthCheckAnswer(now, proxy_healthy_());
}

}  // namespace plexus::agent
