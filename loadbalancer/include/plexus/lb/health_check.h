#pragma once
// kube-proxy's per-service health check (pure): a LoadBalancer with externalTrafficPolicy: Local and a
// healthCheckNodePort asks every node to answer HTTP on that port, 200 while the node has local endpoints for it and
// 503 otherwise, so that the cloud load balancer sends traffic only to nodes that keep it (the others would refuse
// it: ETP=Local never forwards to another node). The agent's listeners serve what healthCheckAnswer() returns.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "plexus/lb/service.h"

namespace plexus::lb {

struct HealthCheck {
  std::string ns;
  std::string name;
  uint16_t port = 0;             // spec.healthCheckNodePort
  uint32_t local_endpoints = 0;  // ready endpoints on this node

  std::string key() const { return ns + "/" + name; }
  friend bool operator==(const HealthCheck&, const HealthCheck&) = default;
};

// The health check a service asks of this node, or nullopt. Local endpoints are the distinct addresses in the
// service's slices that are ready and not terminating and whose nodeName is this node, or empty (the planner's
// ETP=Local backends count those as local too, so the answer matches what the datapath does).
std::optional<HealthCheck> healthCheckOf(const Service& svc, const std::vector<EndpointSlice>& slices,
                                         const std::string& node_name);

struct HealthAnswer {
  int status = 503;
  std::string body;
};

// kube-proxy's answer (pkg/proxy/healthcheck/service_health.go): 200 when the node has local endpoints and the
// service proxy is healthy, else 503; the body is {"service": {"namespace", "name"}, "localEndpoints",
// "serviceProxyHealthy"} in that order, tab-indented as kube-proxy prints it. Served with Content-Type
// application/json and X-Content-Type-Options: nosniff, for any path and method.
HealthAnswer healthCheckAnswer(const HealthCheck& check, bool proxy_healthy);

}  // namespace plexus::lb
