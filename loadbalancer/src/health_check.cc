#include "plexus/lb/health_check.h"

#include <set>

#include <nlohmann/json.hpp>

namespace plexus::lb {

std::optional<HealthCheck> healthCheckOf(const Service& svc, const std::vector<EndpointSlice>& slices,
                                         const std::string& node_name) {
  if (svc.type != ServiceType::kLoadBalancer || !svc.external_traffic_local || svc.health_check_node_port == 0) {
    return std::nullopt;
  }
  std::set<Ipv4> local;
  for (const auto& es : slices) {
    if (es.ns != svc.ns || es.service != svc.name) {
      continue;
    }
    for (const auto& ep : es.endpoints) {
      if (ep.ready && !ep.terminating && (ep.node_name.empty() || ep.node_name == node_name)) {
        local.insert(ep.ip);
      }
    }
  }
  return HealthCheck{svc.ns, svc.name, svc.health_check_node_port, static_cast<uint32_t>(local.size())};
}

HealthAnswer healthCheckAnswer(const HealthCheck& check, bool proxy_healthy) {
  nlohmann::ordered_json body;
  body["service"]["namespace"] = check.ns;
  body["service"]["name"] = check.name;
  body["localEndpoints"] = check.local_endpoints;
  body["serviceProxyHealthy"] = proxy_healthy;
  return {check.local_endpoints > 0 && proxy_healthy ? 200 : 503, body.dump(1, '\t')};
}

}  // namespace plexus::lb
