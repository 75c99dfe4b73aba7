#include "plexus/agent/api_metrics.h"

#include <chrono>
#include <string>

namespace plexus::agent {

namespace {

const char* codeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "CANCELLED";
    case grpc::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND: return "NOT_FOUND";
    case grpc::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::UNAVAILABLE: return "UNAVAILABLE";
    default: return "INTERNAL";
  }
}

class Interceptor final : public grpc::experimental::Interceptor {
 public:
  Interceptor(ApiMetrics& m, std::string method) : m_(m), method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      grpc::Status status = methods->GetSendStatus();
      m_.api_time.Add({{"method", method_}, {"return_code", codeName(status.error_code())}}, ApiMetrics::kApiBuckets)
          .Observe(secs);
      m_.cilium_api_time
          .Add({{"method", "POST"}, {"path", method_}, {"return_code", codeName(status.error_code())}},
               ApiMetrics::kApiBuckets)
          .Observe(secs);
      if (method_ == "/plexus.v1.Cni/Add") {
        m_.cni_time.Add({{"command", "ADD"}}, ApiMetrics::kCniBuckets).Observe(secs);
      } else if (method_ == "/plexus.v1.Cni/Del") {
        m_.cni_time.Add({{"command", "DEL"}}, ApiMetrics::kCniBuckets).Observe(secs);
      }
    }
    methods->Proceed();
  }

 private:
  ApiMetrics& m_;
  std::string method_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

class Factory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(ApiMetrics& m) : m_(m) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new Interceptor(m_, info->method());
  }

 private:
  ApiMetrics& m_;
};

}  // namespace

const prometheus::Histogram::BucketBoundaries ApiMetrics::kApiBuckets{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
const prometheus::Histogram::BucketBoundaries ApiMetrics::kCniBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                      0.5,   1,    2.5,   5,    10};

ApiMetrics::ApiMetrics(prometheus::Registry& registry)
    : api_time(prometheus::BuildHistogram()
                   .Name("plexus_agent_api_process_time_seconds")
                   .Help("Duration of the agent's API calls")
                   .Register(registry)),
      cni_time(prometheus::BuildHistogram()
                   .Name("plexus_cni_request_duration_seconds")
                   .Help("Duration of CNI ADD and DEL in the agent")
                   .Register(registry)),
      cilium_api_time(prometheus::BuildHistogram()
                          .Name("cilium_agent_api_process_time_seconds")
                          .Help("Duration of processed API calls labeled by path, method and return code")
                          .Register(registry)) {}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> apiMetricsInterceptor(ApiMetrics& metrics) {
  return std::make_unique<Factory>(metrics);
}

}  // namespace plexus::agent
