#include "plexus/k8s/client.h"

#include <curl/curl.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace plexus::k8s {

namespace {

void globalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Result<std::string> readFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    return makeError(ErrorCode::kNotFound, fmt::format("{}: cannot read", path));
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

Result<std::string> base64Decode(const std::string& in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r') {
      continue;
    }
    auto pos = chars.find(c);
    if (pos == std::string::npos) {
      return makeError(ErrorCode::kInvalidArgument, "invalid base64");
    }
    buf = (buf << 6) | static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xff));
    }
  }
  return out;
}

// A *-data field (base64) or its file twin, relative to the kubeconfig's directory.
Result<std::string> dataOrFile(const YAML::Node& n, const std::string& key, const std::string& dir) {
  if (n[key + "-data"]) {
    return base64Decode(n[key + "-data"].as<std::string>());
  }
  if (n[key]) {
    std::filesystem::path p = n[key].as<std::string>();
    if (p.is_relative()) {
      p = std::filesystem::path(dir) / p;
    }
    return readFile(p.string());
  }
  return std::string();
}

struct CurlHandle {
  CURL* h = curl_easy_init();
  curl_slist* headers = nullptr;
  ~CurlHandle() {
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
  }
};

void configure(const RestConfig& c, CurlHandle* ch, const std::string& url, const std::string& content_type) {
  CURL* h = ch->h;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  ch->headers = curl_slist_append(ch->headers, "Accept: application/json");
  if (!content_type.empty()) {
    ch->headers = curl_slist_append(ch->headers, ("Content-Type: " + content_type).c_str());
  }
  if (!c.token.empty()) {
    ch->headers = curl_slist_append(ch->headers, ("Authorization: Bearer " + c.token).c_str());
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, ch->headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "plexus-agent/0.1.0");
  if (!c.ca_pem.empty()) {
    curl_blob blob{const_cast<char*>(c.ca_pem.data()), c.ca_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (!c.client_cert_pem.empty()) {
    curl_blob cert{const_cast<char*>(c.client_cert_pem.data()), c.client_cert_pem.size(), CURL_BLOB_COPY};
    curl_blob key{const_cast<char*>(c.client_key_pem.data()), c.client_key_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  }
  if (c.insecure_skip_verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
}

size_t appendBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

struct StreamState {
  std::string pending;
  const std::function<void(const std::string&)>* on_line;
  const std::atomic<bool>* stop;
  long status = 0;
  CURL* h;
  std::string error_body;
};

size_t streamBody(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<StreamState*>(user);
  if (st->status == 0) {
    curl_easy_getinfo(st->h, CURLINFO_RESPONSE_CODE, &st->status);
  }
  if (st->stop->load()) {
    return 0;  // aborts the transfer
  }
  if (st->status != 200) {
    st->error_body.append(data, size * n);
    return size * n;
  }
  st->pending.append(data, size * n);
  size_t pos;
  while ((pos = st->pending.find('\n')) != std::string::npos) {
    std::string line = st->pending.substr(0, pos);
    st->pending.erase(0, pos + 1);
    if (!line.empty()) {
      (*st->on_line)(line);
    }
  }
  return size * n;
}

int progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(user)->load() ? 1 : 0;
}

}  // namespace

Result<RestConfig> inCluster(const Overrides& overrides, const std::string& sa_dir) {
  RestConfig c;
  std::string host = overrides.service_host;
  int port = overrides.service_port;
  if (host.empty() && std::getenv("KUBERNETES_SERVICE_HOST")) {
    host = std::getenv("KUBERNETES_SERVICE_HOST");
  }
  if (port == 0 && std::getenv("KUBERNETES_SERVICE_PORT")) {
    port = std::atoi(std::getenv("KUBERNETES_SERVICE_PORT"));
  }
  if (host.empty()) {
    return makeError(ErrorCode::kFailedPrecondition,
                     "no API server: set k8s-service-host or KUBERNETES_SERVICE_HOST, or give a kubeconfig");
  }
  c.server = fmt::format("https://{}:{}", host.find(':') != std::string::npos ? "[" + host + "]" : host,
                         port ? port : 443);
  auto token = readFile(sa_dir + "/token");
  if (!token.ok()) {
    return token.error().wrap("service account token");
  }
  c.token = trim(*token);
  auto ca = readFile(sa_dir + "/ca.crt");
  if (ca.ok()) {
    c.ca_pem = *ca;
  }
  auto ns = readFile(sa_dir + "/namespace");
  c.ns = ns.ok() ? trim(*ns) : "kube-system";
  return c;
}

Result<RestConfig> fromKubeconfig(const std::string& path, const Overrides& overrides) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("kubeconfig {}: {}", path, e.what()));
  }
  try {
    std::string dir = std::filesystem::path(path).parent_path().string();
    std::string current = root["current-context"] ? root["current-context"].as<std::string>() : "";
    auto find = [&](const char* list, const std::string& name) -> YAML::Node {
      for (const auto& item : root[list]) {
        if (name.empty() || item["name"].as<std::string>() == name) {
          return item;
        }
      }
      return YAML::Node();
    };
    YAML::Node ctx = find("contexts", current);
    if (!ctx) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("kubeconfig {}: context {:?} not found", path, current));
    }
    std::string cluster_name = ctx["context"]["cluster"].as<std::string>();
    std::string user_name = ctx["context"]["user"] ? ctx["context"]["user"].as<std::string>() : "";
    YAML::Node cluster = find("clusters", cluster_name);
    if (!cluster) {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("kubeconfig {}: cluster {:?} not found", path, cluster_name));
    }
    RestConfig c;
    c.server = cluster["cluster"]["server"].as<std::string>();
    c.insecure_skip_verify =
        cluster["cluster"]["insecure-skip-tls-verify"] && cluster["cluster"]["insecure-skip-tls-verify"].as<bool>();
    auto ca = dataOrFile(cluster["cluster"], "certificate-authority", dir);
    if (!ca.ok()) {
      return ca.error().wrap("kubeconfig certificate-authority");
    }
    c.ca_pem = *ca;
    c.ns = ctx["context"]["namespace"] ? ctx["context"]["namespace"].as<std::string>() : "default";
    YAML::Node user = user_name.empty() ? YAML::Node() : find("users", user_name);
    if (user && user["user"]) {
      const auto& u = user["user"];
      if (u["token"]) {
        c.token = u["token"].as<std::string>();
      } else if (u["tokenFile"]) {
        auto t = readFile(u["tokenFile"].as<std::string>());
        if (!t.ok()) {
          return t.error().wrap("kubeconfig tokenFile");
        }
        c.token = trim(*t);
      }
      auto cert = dataOrFile(u, "client-certificate", dir);
      auto key = dataOrFile(u, "client-key", dir);
      if (!cert.ok() || !key.ok()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("kubeconfig {}: client certificate or key", path));
      }
      c.client_cert_pem = *cert;
      c.client_key_pem = *key;
    }
    if (!overrides.service_host.empty()) {
      auto scheme = c.server.substr(0, c.server.find("://"));
      c.server = fmt::format("{}://{}:{}", scheme, overrides.service_host,
                             overrides.service_port ? overrides.service_port : 443);
    }
    return c;
  } catch (const std::exception& e) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("kubeconfig {}: {}", path, e.what()));
  }
}

nlohmann::json Response::json() const { return nlohmann::json::parse(body, nullptr, false); }

std::string statusMessage(const Response& r) {
  auto j = r.json();
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return fmt::format("HTTP {}: {}", r.status, j["message"].get<std::string>());
  }
  return fmt::format("HTTP {}: {}", r.status, r.body.substr(0, 200));
}

std::string urlEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '=' || c == ',') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

Client::Client(RestConfig config) : config_(std::move(config)) { globalInit(); }

Result<Response> Client::request(const std::string& method, const std::string& path, const std::string& body,
                                 const std::string& content_type, int timeout_seconds) const {
  CurlHandle ch;
  if (!ch.h) {
    return makeError(ErrorCode::kInternal, "curl_easy_init failed");
  }
  configure(config_, &ch, config_.server + path, body.empty() ? "" : content_type);
  Response r;
  curl_easy_setopt(ch.h, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(ch.h, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(ch.h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(ch.h, CURLOPT_TIMEOUT, static_cast<long>(timeout_seconds));
  curl_easy_setopt(ch.h, CURLOPT_WRITEFUNCTION, appendBody);
  curl_easy_setopt(ch.h, CURLOPT_WRITEDATA, &r.body);
  CURLcode rc = curl_easy_perform(ch.h);
  if (rc != CURLE_OK) {
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("{} {}{}: {}", method, config_.server, path, curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(ch.h, CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

Result<nlohmann::json> Client::get(const std::string& path) const {
  auto r = request("GET", path);
  if (!r.ok()) {
    return r.error();
  }
  if (r->status / 100 != 2) {
    ErrorCode code = r->status == 404   ? ErrorCode::kNotFound
                     : r->status == 403 || r->status == 401 ? ErrorCode::kPermissionDenied
                                                            : ErrorCode::kUnavailable;
    return makeError(code, fmt::format("GET {}: {}", path, statusMessage(*r)));
  }
  auto j = r->json();
  if (j.is_discarded()) {
    return makeError(ErrorCode::kInternal, fmt::format("GET {}: response is not JSON", path));
  }
  return j;
}

Result<long> Client::stream(const std::string& path, const std::function<void(const std::string&)>& on_line,
                            const std::atomic<bool>& stop, int timeout_seconds, std::string* error) const {
  CurlHandle ch;
  if (!ch.h) {
    return makeError(ErrorCode::kInternal, "curl_easy_init failed");
  }
  configure(config_, &ch, config_.server + path, "");
  StreamState st{"", &on_line, &stop, 0, ch.h, ""};
  curl_easy_setopt(ch.h, CURLOPT_WRITEFUNCTION, streamBody);
  curl_easy_setopt(ch.h, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(ch.h, CURLOPT_TIMEOUT, static_cast<long>(timeout_seconds));
  curl_easy_setopt(ch.h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(ch.h, CURLOPT_XFERINFOFUNCTION, progress);
  curl_easy_setopt(ch.h, CURLOPT_XFERINFODATA, &stop);
  CURLcode rc = curl_easy_perform(ch.h);
  curl_easy_getinfo(ch.h, CURLINFO_RESPONSE_CODE, &st.status);
  if (stop.load()) {
    return st.status;
  }
  if (rc != CURLE_OK && rc != CURLE_OPERATION_TIMEDOUT && rc != CURLE_PARTIAL_FILE && rc != CURLE_RECV_ERROR &&
      rc != CURLE_GOT_NOTHING) {
    return makeError(ErrorCode::kUnavailable, fmt::format("watch {}: {}", path, curl_easy_strerror(rc)));
  }
  if (st.status != 200 && error) {
    *error = statusMessage(Response{st.status, st.error_body});
  }
  return st.status;
}

}  // namespace plexus::k8s
