#pragma once
// A small Kubernetes API client: where the server is and how to authenticate (in-cluster service account,
// k8sServiceHost/k8sServicePort overrides, kubeconfig with token or client certificate), plain requests, and
// streaming watches. libcurl does the HTTP and TLS.

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "plexus/common/result.h"

namespace plexus::k8s {

struct RestConfig {
  std::string server;  // "https://10.0.0.1:6443" or "http://127.0.0.1:8080"
  std::string ca_pem;  // trusted CA (PEM); empty: the system store
  std::string token;   // bearer token
  std::string client_cert_pem;
  std::string client_key_pem;
  bool insecure_skip_verify = false;
  std::string ns;  // the namespace the agent runs in (service account namespace)
};

struct Overrides {
  std::string service_host;  // k8sServiceHost: a kube-proxy-free cluster cannot reach the kubernetes ClusterIP
  int service_port = 0;
};

// In-cluster: the service account files under `sa_dir` and KUBERNETES_SERVICE_HOST/PORT, unless overridden.
Result<RestConfig> inCluster(const Overrides& overrides,
                             const std::string& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");
// A kubeconfig file: its current context's cluster and user (token, client certificate, or none).
Result<RestConfig> fromKubeconfig(const std::string& path, const Overrides& overrides = {});

struct Response {
  long status = 0;
  std::string body;
  nlohmann::json json() const;
};

class Client {
 public:
  explicit Client(RestConfig config);
  const RestConfig& config() const { return config_; }

  // One request; a transport failure is an error, any HTTP status is a Response.
  Result<Response> request(const std::string& method, const std::string& path, const std::string& body = "",
                           const std::string& content_type = "application/json", int timeout_seconds = 30) const;
  Result<nlohmann::json> get(const std::string& path) const;  // 2xx JSON, else an error with the Status message

  // Streams a watch: on_line gets each newline-delimited JSON event. Returns the HTTP status once the stream ends
  // (server timeout, dropped connection) or `stop` becomes true; for a status other than 200, `error` gets the
  // server's message.
  Result<long> stream(const std::string& path, const std::function<void(const std::string& line)>& on_line,
                      const std::atomic<bool>& stop, int timeout_seconds, std::string* error = nullptr) const;

 private:
  RestConfig config_;
};

// The message of a Kubernetes Status object (or the body) for an error.
std::string statusMessage(const Response& r);
// "a/b c" -> "a%2Fb%20c"
std::string urlEscape(const std::string& s);

}  // namespace plexus::k8s
