#pragma once
// Counts and times every gRPC call the agent serves (one server interceptor instead of code in each handler):
// plexus_agent_api_process_time_seconds{method, return_code} and, for CNI ADD/DEL,
// plexus_cni_request_duration_seconds{command}.

#include <memory>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace plexus::agent {

// The histograms, in the registry the agent's /metrics serializes (AgentState::instruments).
struct ApiMetrics {
  explicit ApiMetrics(prometheus::Registry& registry);
  prometheus::Family<prometheus::Histogram>& api_time;
  prometheus::Family<prometheus::Histogram>& cni_time;
  // Cilium's cilium_agent_api_process_time_seconds{method, path, return_code}: gRPC's HTTP method (POST), the gRPC
  // method as the path, the status code's name.
  prometheus::Family<prometheus::Histogram>& cilium_api_time;
  static const prometheus::Histogram::BucketBoundaries kApiBuckets;
  static const prometheus::Histogram::BucketBoundaries kCniBuckets;
};

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> apiMetricsInterceptor(ApiMetrics& metrics);

}  // namespace plexus::agent
