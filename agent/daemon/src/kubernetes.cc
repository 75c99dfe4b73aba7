#include "plexus/agent/kubernetes.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/identity_manager.h"
#include "plexus/node/endpoint.h"

namespace plexus::agent {

namespace {

constexpr const char* kUsedByPrefix = "plexus.io/used-by.";

std::string nowRfc3339() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

nlohmann::json securityLabels(const identity::Labels& labels) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& l : labels) {
    auto eq = l.find('=');
    out[l.substr(0, eq)] = eq == std::string::npos ? "" : l.substr(eq + 1);
  }
  return out;
}

// Bounded: `attempts` tries, doubling from 200 ms up to 2 s.
template <typename F>
auto retry(int attempts, F fn) -> decltype(fn()) {
  auto delay = std::chrono::milliseconds(200);
  auto r = fn();
  for (int i = 1; i < attempts && !r.ok() && r.error().code == ErrorCode::kUnavailable; ++i) {
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(2000));
    r = fn();
  }
  return r;
}

Error httpError(const std::string& what, const k8s::Response& r) {
  return makeError(r.status == 403 || r.status == 401 ? ErrorCode::kPermissionDenied
                   : r.status == 409                  ? ErrorCode::kAlreadyExists
                   : r.status == 404                  ? ErrorCode::kNotFound
                                                      : ErrorCode::kUnavailable,
                   fmt::format("{}: {}", what, k8s::statusMessage(r)));
}

}  // namespace

bool kubernetesMode(const AgentConfig& config) {
  return !config.k8s_kubeconfig_path.empty() || !config.k8s_service_host.empty() ||
         (std::getenv("KUBERNETES_SERVICE_HOST") &&
          std::filesystem::exists("/var/run/secrets/kubernetes.io/serviceaccount/token"));
}

Result<k8s::RestConfig> restConfig(const AgentConfig& config) {
  k8s::Overrides o{config.k8s_service_host, config.k8s_service_port};
  if (!config.k8s_kubeconfig_path.empty()) {
    return k8s::fromKubeconfig(config.k8s_kubeconfig_path, o);
  }
  return k8s::inCluster(o);
}

Result<Ipv4Prefix> podCidrFromApi(const k8s::Client& client, const AgentConfig& config) {
  const std::string node = config.node_name;
  if (config.ipam_mode == "kubernetes") {
    // The node controller assigns Node.spec.podCIDR(s); wait for it (bounded).
    for (int i = 0; i < 60; ++i) {
      auto n = client.get("/api/v1/nodes/" + k8s::urlEscape(node));
      if (n.ok()) {
        // Read without value()/get(), which throw on a member of another type (a null spec, a number).
        auto spec = n->find("spec");  // end() for a non-object
        std::vector<std::string> cidrs;
        if (spec != n->end() && spec->is_object()) {
          if (auto list = spec->find("podCIDRs"); list != spec->end() && list->is_array()) {
            for (const auto& c : *list) {
              if (c.is_string()) {
                cidrs.push_back(c.get<std::string>());
              }
            }
          }
          if (auto one = spec->find("podCIDR"); cidrs.empty() && one != spec->end() && one->is_string()) {
            cidrs.push_back(one->get<std::string>());
          }
        }
        for (const auto& c : cidrs) {
          if (auto p = Ipv4Prefix::parse(c); p && c.find(':') == std::string::npos) {
            return *p;
          }
        }
        spdlog::info("ipam: Node {} has no IPv4 podCIDR yet, waiting", node);
      } else if (n.error().code != ErrorCode::kUnavailable && n.error().code != ErrorCode::kNotFound) {
        return n.error().wrap("ipam kubernetes");
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    return makeError(ErrorCode::kUnavailable, fmt::format("ipam kubernetes: Node {} got no podCIDR in 60 s", node));
  }
  // cluster-pool: claim the lowest free /mask of the pool in our PlexusNode; on a tie the lower node name keeps
  // the CIDR and the other moves on.
  std::vector<Ipv4Prefix> pool;
  for (const auto& c : config.cluster_pool_ipv4_cidr) {
    auto p = Ipv4Prefix::parse(c);
    if (!p || p->length() > config.cluster_pool_ipv4_mask_size) {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("--cluster-pool-ipv4-cidr {}: not a CIDR wider than /{}", c,
                                   config.cluster_pool_ipv4_mask_size));
    }
    pool.push_back(*p);
  }
  if (pool.empty()) {
    return makeError(ErrorCode::kInvalidArgument, "ipam cluster-pool needs --cluster-pool-ipv4-cidr");
  }
  const std::string own = std::string(kPlexusNodePath) + "/" + k8s::urlEscape(node);
  for (int attempt = 0; attempt < 30; ++attempt) {
    auto list = retry(10, [&] { return client.get(kPlexusNodePath); });
    if (!list.ok()) {
      return list.error().wrap("ipam cluster-pool: list PlexusNodes");
    }
    std::map<std::string, std::string> claims;  // cidr -> lowest node name claiming it
    std::optional<std::string> mine;
    bool exists = false;  // our PlexusNode exists (maybe without a CIDR yet)
    for (const auto& item : (*list)["items"]) {
      std::string name = item["metadata"].value("name", "");
      exists = exists || name == node;
      auto cidrs = item.value(nlohmann::json::json_pointer("/spec/ipam/podCIDRs"), nlohmann::json::array());
      if (cidrs.empty()) {
        continue;
      }
      std::string c = cidrs[0];
      if (name == node) {
        mine = c;
      }
      if (!claims.count(c) || name < claims[c]) {
        claims[c] = name;
      }
    }
    if (mine && claims[*mine] == node) {
      auto p = Ipv4Prefix::parse(*mine);
      if (p) {
        return *p;
      }
    }
    // Pick the first free block.
    std::optional<std::string> pick;
    for (const auto& p : pool) {
      uint64_t blocks = uint64_t{1} << (config.cluster_pool_ipv4_mask_size - p.length());
      for (uint64_t i = 0; i < blocks && !pick; ++i) {
        Ipv4Prefix b(p.at(i << (32 - config.cluster_pool_ipv4_mask_size)), config.cluster_pool_ipv4_mask_size);
        if (!claims.count(b.toString())) {
          pick = b.toString();
        }
      }
    }
    if (!pick) {
      return makeError(ErrorCode::kResourceExhausted, "ipam cluster-pool: every pool CIDR is claimed");
    }
    nlohmann::json spec = {{"ipam", {{"podCIDRs", {*pick}}}}};
    auto r = exists ? client.request("PATCH", own, nlohmann::json{{"spec", spec}}.dump(), "application/merge-patch+json")
                  : client.request("POST", kPlexusNodePath,
                                   nlohmann::json{{"apiVersion", "plexus.io/v1alpha1"},
                                                  {"kind", "PlexusNode"},
                                                  {"metadata", {{"name", node}}},
                                                  {"spec", spec}}
                                       .dump());
    if (!r.ok()) {
      return r.error().wrap("ipam cluster-pool");
    }
    if (r->status / 100 != 2 && r->status != 409) {
      return httpError("ipam cluster-pool: claim " + *pick, *r);
    }
    // Loop: re-list and check that nobody with a lower name claimed the same block meanwhile.
  }
  return makeError(ErrorCode::kUnavailable, "ipam cluster-pool: could not settle a CIDR claim in 30 attempts");
}

// ---- identities ----

ClusterIdentities::ClusterIdentities(const k8s::Client& client, std::string node)
    : client_(client), node_(std::move(node)) {}

void ClusterIdentities::markUser(uint32_t id, bool use) {
  nlohmann::json patch = {{"metadata", {{"annotations", {{kUsedByPrefix + node_, use ? nlohmann::json("true")
                                                                                       : nlohmann::json(nullptr)}}}}}};
  auto r = client_.request("PATCH", fmt::format("{}/{}", kIdentityPath, id), patch.dump(),
                           "application/merge-patch+json");
  if (!r.ok() || r->status / 100 != 2) {
    spdlog::warn("identity {}: mark node {} as {}: {}", id, node_, use ? "user" : "gone",
                 r.ok() ? k8s::statusMessage(*r) : r.error().message);
  }
}

Result<uint32_t> ClusterIdentities::allocate(const identity::Labels& labels) {
  auto wanted = securityLabels(labels);
  for (int attempt = 0; attempt < 50; ++attempt) {
    // The authoritative view: the API server's list (our informer cache may lag behind another node's create).
    auto list = retry(5, [&] { return client_.get(kIdentityPath); });
    if (!list.ok()) {
      return list.error().wrap("allocate identity");
    }
    std::set<uint32_t> taken;
    for (const auto& item : (*list)["items"]) {
      auto parsed = parsePlexusIdentity(item);
      if (!parsed) {
        continue;
      }
      taken.insert(parsed->first);
      if (parsed->second == labels) {
        markUser(parsed->first, true);
        return parsed->first;
      }
    }
    uint32_t id = identity::kFirstClusterIdentity;
    while (taken.count(id)) {
      ++id;
    }
    nlohmann::json obj = {{"apiVersion", "plexus.io/v1alpha1"},
                          {"kind", "PlexusIdentity"},
                          {"metadata", {{"name", std::to_string(id)}, {"annotations", {{kUsedByPrefix + node_, "true"}}}}},
                          {"security-labels", wanted}};
    auto r = client_.request("POST", kIdentityPath, obj.dump());
    if (!r.ok()) {
      return r.error().wrap("allocate identity");
    }
    if (r->status == 201 || r->status == 200) {
      spdlog::info("identity {} allocated cluster-wide for {}", id, identity::canonical(labels));
      return id;
    }
    if (r->status != 409) {
      return httpError("allocate identity", *r);
    }
    // Another node took this id (maybe for the same labels): look again.
  }
  return makeError(ErrorCode::kUnavailable, "allocate identity: too many conflicting allocations");
}

void ClusterIdentities::release(uint32_t id) {
  markUser(id, false);
  auto obj = client_.get(fmt::format("{}/{}", kIdentityPath, id));
  if (!obj.ok()) {
    return;
  }
  const auto& ann = (*obj)["metadata"].value("annotations", nlohmann::json::object());
  for (const auto& [k, v] : ann.items()) {
    if (k.rfind(kUsedByPrefix, 0) == 0) {
      return;  // another node still uses it
    }
  }
  // Unused everywhere: delete it, guarded by the version we saw (a node that started using it meanwhile wins).
  nlohmann::json opts = {{"apiVersion", "v1"},
                         {"kind", "DeleteOptions"},
                         {"preconditions", {{"resourceVersion", (*obj)["metadata"].value("resourceVersion", "")}}}};
  auto r = client_.request("DELETE", fmt::format("{}/{}", kIdentityPath, id), opts.dump());
  if (r.ok() && r->status / 100 == 2) {
    spdlog::info("identity {} released cluster-wide", id);
  }
}

// ---- sync ----

KubernetesSync::KubernetesSync(const AgentConfig& config, std::unique_ptr<k8s::Client> client, EventSink& sink)
    : config_(config), client_(std::move(client)), sink_(sink), identities_(*client_, config.node_name) {}

KubernetesSync::~KubernetesSync() { stop(); }

void KubernetesSync::start() {
  std::vector<k8s::ResourceSpec> specs = {
      {"/api/v1/pods", "v1", "Pod", "spec.nodeName=" + config_.node_name},
      {"/api/v1/namespaces", "v1", "Namespace", ""},
      {"/api/v1/nodes", "v1", "Node", ""},
      {"/apis/networking.k8s.io/v1/networkpolicies", "networking.k8s.io/v1", "NetworkPolicy", ""},
      {"/apis/cilium.io/v2/ciliumnetworkpolicies", "cilium.io/v2", "CiliumNetworkPolicy", ""},
      {"/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies", "cilium.io/v2", "CiliumClusterwideNetworkPolicy", ""},
  };
  if (config_.kube_proxy_replacement) {
    specs.push_back({"/api/v1/services", "v1", "Service", ""});
    specs.push_back({"/apis/discovery.k8s.io/v1/endpointslices", "discovery.k8s.io/v1", "EndpointSlice", ""});
  }
  // The nodes' own records, as Cilium's CiliumEndpoints and CiliumNodes: the other nodes' pods, and with
  // cluster-pool IPAM the pod CIDR each node claimed (the node table's CIDRs when a Node has no spec.podCIDRs).
  specs.push_back({kPlexusEndpointPath, "plexus.io/v1alpha1", "PlexusEndpoint", ""});
  if (config_.ipam_mode == "cluster-pool") {
    specs.push_back({kPlexusNodePath, "plexus.io/v1alpha1", "PlexusNode", ""});
  }
  fetches_.start();
  writes_.start();
  for (const auto& spec : specs) {
    informers_.push_back(std::make_unique<k8s::Informer>(*client_, spec, [this](std::vector<ResourceEvent> events) {
      sink_.post(ResourcesChanged{std::move(events)});
    }));
  }
  informers_.push_back(std::make_unique<k8s::Informer>(
      *client_, k8s::ResourceSpec{kIdentityPath, "plexus.io/v1alpha1", "PlexusIdentity", ""},
      [this](std::vector<ResourceEvent> events) { sink_.post(RemoteIdentities{std::move(events)}); }));
  for (auto& i : informers_) {
    i->start();
  }
  spdlog::info("k8s: watching {} as node {}", client_->config().server, config_.node_name);
}

void KubernetesSync::stop() {
  for (auto& i : informers_) {
    i->stop();
  }
  fetches_.stop();
  writes_.stop();
}

std::vector<k8s::InformerStats> KubernetesSync::stats() const {
  std::vector<k8s::InformerStats> out;
  for (const auto& i : informers_) {
    out.push_back(i->stats());
  }
  return out;
}

void WorkQueue::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) {
    return;
  }
  stopping_ = false;
  thread_ = std::thread([this] {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (stopping_) {
          return;
        }
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  });
}

void WorkQueue::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (!jobs_.empty()) {
      spdlog::info("k8s: {}: {} queued request(s) dropped at stop", name_, jobs_.size());
    }
    jobs_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void WorkQueue::push(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      return;
    }
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

bool WorkQueue::sleep(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_for(lock, d, [this] { return stopping_; });
}

void KubernetesSync::fetchPod(const std::string& ns, const std::string& name) {
  fetches_.push([this, ns, name] {
    if (auto pod = getPod(ns, name)) {
      sink_.post(ResourcesChanged{{ResourceEvent{ResourceEventType::kUpsert,
                                                 ResourceKey{ResourceKind::kPod, ns, name}, std::move(*pod)}}});
    } else {
      spdlog::warn("k8s: pod {}/{} not found; its endpoint keeps the init identity until the watch delivers it",
                   ns, name);
    }
  });
}

void KubernetesSync::allocateIdentity(const identity::Labels& labels) {
  writes_.push([this, labels] {
    auto id = identities_.allocate(labels);
    if (id.ok()) {
      sink_.post(IdentityAllocated{labels, *id});
    } else {
      sink_.post(IdentityFailed{labels, id.error().message});
    }
  });
}

void KubernetesSync::releaseIdentity(uint32_t id) {
  writes_.push([this, id] { identities_.release(id); });
}

void KubernetesSync::publishEndpoint(const EndpointRecord& rec, const std::string& node) {
  node::RemoteEndpoint ep{rec.pod_namespace.empty() ? "default" : rec.pod_namespace, rec.pod_name, node, rec.ip,
                          rec.identity, rec.labels};
  writes_.push([this, ep] {
    std::string path = fmt::format("/apis/plexus.io/v1alpha1/namespaces/{}/plexusendpoints/{}", k8s::urlEscape(ep.ns),
                                   k8s::urlEscape(ep.name));
    auto obj = node::plexusEndpointObject(ep);
    // Merge-patch what exists (a restart, an identity change), create what does not.
    auto r = client_->request("PATCH", path, nlohmann::json{{"status", obj["status"]}}.dump(),
                              "application/merge-patch+json", 5);
    if (r.ok() && r->status == 404) {
      r = client_->request("POST",
                           fmt::format("/apis/plexus.io/v1alpha1/namespaces/{}/plexusendpoints", k8s::urlEscape(ep.ns)),
                           obj.dump(), "application/json", 5);
    }
    if (!r.ok() || r->status / 100 != 2) {
      spdlog::warn("k8s: publish PlexusEndpoint {}/{}: {}", ep.ns, ep.name,
                   r.ok() ? k8s::statusMessage(*r) : r.error().message);
    }
  });
}

void KubernetesSync::unpublishEndpoint(const std::string& ns, const std::string& pod) {
  writes_.push([this, ns, pod] {
    auto r = client_->request(
        "DELETE", fmt::format("/apis/plexus.io/v1alpha1/namespaces/{}/plexusendpoints/{}", k8s::urlEscape(ns),
                              k8s::urlEscape(pod)),
        "", "application/json", 5);
    if (!r.ok() || (r->status / 100 != 2 && r->status != 404)) {
      spdlog::warn("k8s: delete PlexusEndpoint {}/{}: {}", ns, pod, r.ok() ? k8s::statusMessage(*r) : r.error().message);
    }
  });
}

void KubernetesSync::reportPolicy(const nlohmann::json& object, bool ok, const std::string& error) {
  writes_.push([this, object, ok, error] { writePolicyStatus(object, ok, error); });
}

std::optional<nlohmann::json> KubernetesSync::getPod(const std::string& ns, const std::string& name) {
  // Bounded: 5 tries over about 3 s (the pod may not be visible yet right after it was scheduled).
  for (int i = 0; i < 5; ++i) {
    auto pod = client_->get(fmt::format("/api/v1/namespaces/{}/pods/{}", k8s::urlEscape(ns), k8s::urlEscape(name)));
    if (pod.ok()) {
      (*pod)["apiVersion"] = "v1";
      (*pod)["kind"] = "Pod";
      return *pod;
    }
    if (!fetches_.sleep(std::chrono::milliseconds(200 << i))) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

void KubernetesSync::writePolicyStatus(const nlohmann::json& object, bool ok, const std::string& error) {
  const auto& md = object.value("metadata", nlohmann::json::object());
  std::string kind = object.value("kind", "");
  std::string name = md.value("name", "");
  // Found member by member: a JSON pointer would read a node name with '/' in it as two tokens, and throws on a
  // status that is a list.
  nlohmann::json current;
  if (auto status = object.find("status"); status != object.end() && status->is_object()) {
    if (auto nodes = status->find("nodes"); nodes != status->end() && nodes->is_object()) {
      current = nodes->value(config_.node_name, nlohmann::json());
    }
  }
  nlohmann::json want_error = ok ? nlohmann::json(nullptr) : nlohmann::json(error);
  const nlohmann::json none;  // compared as JSON values: a member of another type is a difference, not a throw
  if (current.is_object() && current.value("ok", none) == ok && current.value("enforcing", none) == ok &&
      current.value("error", none) == want_error) {
    return;  // already says so (our own earlier patch coming back through the watch)
  }
  nlohmann::json node = {{"ok", ok}, {"enforcing", ok}, {"lastUpdated", nowRfc3339()}};
  node["error"] = want_error;
  std::string path = kind == "CiliumClusterwideNetworkPolicy"
                         ? fmt::format("/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies/{}/status", name)
                         : fmt::format("/apis/cilium.io/v2/namespaces/{}/ciliumnetworkpolicies/{}/status",
                                       md.value("namespace", "default"), name);
  auto r = client_->request("PATCH", path, nlohmann::json{{"status", {{"nodes", {{config_.node_name, node}}}}}}.dump(),
                            "application/merge-patch+json", 5);
  if (!r.ok() || r->status / 100 != 2) {
    spdlog::warn("{} {}: policy status: {}", kind, name, r.ok() ? k8s::statusMessage(*r) : r.error().message);
  }
}

}  // namespace plexus::agent
