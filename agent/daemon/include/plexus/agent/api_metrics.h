#pragma once
// Counts and times every gRPC call the agent serves (one server interceptor instead of code in each handler):
// plexus_agent_api_process_time_seconds{method, return_code} and, for CNI ADD/DEL,
// plexus_cni_request_duration_seconds{command}.

#include <memory>

#include <grpcpp/support/server_interceptor.h>

#include "plexus/agent/prometheus.h"

namespace plexus::agent {

struct ApiMetrics {
  HistogramVec api_time{{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5}};
  HistogramVec cni_time{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};
};

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> apiMetricsInterceptor(ApiMetrics& metrics);

}  // namespace plexus::agent
