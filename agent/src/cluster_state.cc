#include "plexus/agent/cluster_state.h"

#include <chrono>
#include <filesystem>
#include <set>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/map_encoding.h"
#include "plexus/datapath/files.h"

namespace plexus::agent {

namespace {
Status validatePod(const nlohmann::json& pod) {
  if (!pod.contains("spec") || !pod["spec"].is_object()) {
    return Status::Ok();
  }
  const auto& spec = pod["spec"];
  if (spec.contains("containers")) {
    if (!spec["containers"].is_array()) {
      return makeError(ErrorCode::kInvalidArgument, "spec.containers: must be a list");
    }
    for (size_t i = 0; i < spec["containers"].size(); ++i) {
      const auto& c = spec["containers"][i];
      if (!c.is_object() || !c.contains("ports")) {
        continue;
      }
      if (!c["ports"].is_array()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("spec.containers[{}].ports: must be a list", i));
      }
      for (size_t j = 0; j < c["ports"].size(); ++j) {
        const auto& p = c["ports"][j];
        if (!p.is_object() || !p.contains("containerPort") || !p["containerPort"].is_number_integer() ||
            p["containerPort"].get<int64_t>() < 1 || p["containerPort"].get<int64_t>() > 65535) {
          return makeError(ErrorCode::kInvalidArgument,
                           fmt::format("spec.containers[{}].ports[{}].containerPort: must be 1-65535", i, j));
        }
      }
    }
  }
  return Status::Ok();
}
// Named container ports of a pod manifest: name -> (port, protocol).
std::multimap<std::string, std::pair<uint16_t, uint8_t>> podNamedPorts(const nlohmann::json& pod) {
  std::multimap<std::string, std::pair<uint16_t, uint8_t>> out;
  const auto& spec = pod.value("spec", nlohmann::json::object());
  for (const auto& c : spec.value("containers", nlohmann::json::array())) {
    for (const auto& port : c.value("ports", nlohmann::json::array())) {
      if (port.contains("name") && port["name"].is_string()) {
        std::string proto = port.value("protocol", "TCP");
        uint8_t p = proto == "UDP" ? 17 : proto == "SCTP" ? 132 : 6;
        out.emplace(port["name"].get<std::string>(),
                    std::make_pair(static_cast<uint16_t>(port["containerPort"].get<int64_t>()), p));
      }
    }
  }
  return out;
}
}  // namespace

std::vector<std::string> podLabels(const nlohmann::json& pod) {
  std::vector<std::string> out;
  const auto& md = pod.at("metadata");
  if (md.contains("labels") && md["labels"].is_object()) {
    for (const auto& [k, v] : md["labels"].items()) {
      out.push_back(fmt::format("k8s:{}={}", k, v.get<std::string>()));
    }
  }
  out.push_back(fmt::format("k8s:io.kubernetes.pod.namespace={}", md.value("namespace", "default")));
  return out;
}

ClusterState::ClusterState(EndpointManager& endpoints, ServiceManager* services, std::string state_dir)
    : endpoints_(endpoints), services_(services), path_(state_dir + "/resources.json"),
      identities_path_(state_dir + "/identities.json") {
  store_.setValidator(ResourceKind::kPod, validatePod);
  std::vector<ResourceKind> refused = {ResourceKind::kNode};
  if (services_) {
    store_.setValidator(ResourceKind::kService,
                        [](const nlohmann::json& o) -> Status { return lb::parseService(o).status(); });
    store_.setValidator(ResourceKind::kEndpointSlice,
                        [](const nlohmann::json& o) -> Status { return lb::parseEndpointSlice(o).status(); });
  } else {
    refused.push_back(ResourceKind::kService);
    refused.push_back(ResourceKind::kEndpointSlice);
  }
  for (ResourceKind k : refused) {
    store_.setValidator(k, [k](const nlohmann::json&) -> Status {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("kind {} is not handled by this agent build yet", toString(k)));
    });
  }
  for (ResourceKind k : {ResourceKind::kNetworkPolicy, ResourceKind::kCiliumNetworkPolicy,
                         ResourceKind::kCiliumClusterwideNetworkPolicy}) {
    store_.setValidator(k, [this](const nlohmann::json& o) -> Status {
      if (!policies_) {
        return makeError(ErrorCode::kFailedPrecondition, "policy enforcement is not running");
      }
      return policies_->validate(o);
    });
  }
}

void ClusterState::setKubernetes(KubernetesSync* kube) {
  kube_ = kube;
  store_.setValidator(ResourceKind::kNode, [](const nlohmann::json&) { return Status::Ok(); });
}

void ClusterState::ingest(const std::vector<ResourceEvent>& events) {
  std::vector<ResourceEvent> changed;
  std::vector<nlohmann::json> upserts, deletes;
  for (const auto& e : events) {
    if (e.type == ResourceEventType::kUpsert) {
      upserts.push_back(e.object);
    } else if (e.type == ResourceEventType::kDelete) {
      deletes.push_back(e.object);
    } else {
      changed.push_back(e);
    }
  }
  for (const auto& o : store_.apply(upserts, &changed)) {
    if (o.action == ApplyAction::kRejected) {
      spdlog::warn("{}: rejected, skipped: {}", o.object, o.message);
    }
  }
  (void)store_.remove(deletes, &changed);
  if (!changed.empty()) {
    if (Status s = persist(); !s.ok()) {
      spdlog::error("resources: persist: {}", s.error().message);
    }
    handle(changed);
  }
  reportPolicies(events);
}

void ClusterState::reportPolicies(const std::vector<ResourceEvent>& events) {
  if (!kube_ || !policies_) {
    return;
  }
  auto statuses = policies_->policies();
  for (const auto& e : events) {
    if (e.type != ResourceEventType::kUpsert || (e.key.kind != ResourceKind::kCiliumNetworkPolicy &&
                                                  e.key.kind != ResourceKind::kCiliumClusterwideNetworkPolicy)) {
      continue;
    }
    std::string key = e.key.namespace_name.empty()
                          ? fmt::format("{} {}", toString(e.key.kind), e.key.name)
                          : fmt::format("{} {}/{}", toString(e.key.kind), e.key.namespace_name, e.key.name);
    for (const auto& st : statuses) {
      if (st.key == key) {
        // A refused update of a valid policy: the old version is enforced, the new one is in error.
        kube_->reportPolicy(e.object, st.valid && st.reason.empty(), st.reason);
      }
    }
  }
}

Status ClusterState::restore() {
  if (std::filesystem::exists(identities_path_)) {
    std::ifstream f(identities_path_);
    std::stringstream ss;
    ss << f.rdbuf();
    auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    Status s = j.is_discarded() ? Status(makeError(ErrorCode::kFailedPrecondition, "not JSON")) : identities_.restore(j);
    if (!s.ok()) {
      // Never guess identities: a wrong one would apply another workload's policy.
      return s.error().wrap(identities_path_);
    }
  }
  if (!std::filesystem::exists(path_)) {
    return Status::Ok();
  }
  std::ifstream f(path_);
  std::stringstream ss;
  ss << f.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) {
    return makeError(ErrorCode::kFailedPrecondition, fmt::format("{}: not JSON", path_));
  }
  auto events = store_.restore(j);
  if (!events.ok()) {
    return events.error().wrap(path_);
  }
  handle(*events);
  return Status::Ok();
}

Status ClusterState::persist() const { return writeFileAtomic(path_, store_.snapshot().dump()); }

std::vector<ApplyOutcome> ClusterState::apply(const std::vector<nlohmann::json>& objects) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  auto t0 = Clock::now();
  std::vector<ResourceEvent> events;
  auto out = store_.apply(objects, &events);
  auto t1 = Clock::now();
  if (!events.empty()) {
    if (Status s = persist(); !s.ok()) {
      spdlog::error("resources: persist: {}", s.error().message);
    }
    auto t2 = Clock::now();
    handle(events);
    spdlog::debug("apply: {} objects: store {:.1f} ms, persist {:.1f} ms, handle {:.1f} ms", objects.size(),
                  ms(t0, t1), ms(t1, t2), ms(t2, Clock::now()));
  }
  return out;
}

std::vector<ApplyOutcome> ClusterState::remove(const std::vector<nlohmann::json>& objects) {
  std::vector<ResourceEvent> events;
  auto out = store_.remove(objects, &events);
  if (!events.empty()) {
    if (Status s = persist(); !s.ok()) {
      spdlog::error("resources: persist: {}", s.error().message);
    }
    handle(events);
  }
  return out;
}

identity::Labels ClusterState::identityLabels(const EndpointRecord& rec) const {
  if (rec.pod_name.empty()) {
    return {};
  }
  std::string ns = rec.pod_namespace.empty() ? "default" : rec.pod_namespace;
  auto pod = store_.get({ResourceKind::kPod, ns, rec.pod_name});
  if (!pod) {
    return {};
  }
  identity::PodIdentityInput in;
  in.ns = ns;
  in.cluster = cluster_name_;
  const auto& md = (*pod)["metadata"];
  if (md.contains("labels") && md["labels"].is_object()) {
    for (const auto& [k, v] : md["labels"].items()) {
      in.pod_labels[k] = v.get<std::string>();
    }
  }
  if (pod->contains("spec") && (*pod)["spec"].is_object()) {
    in.service_account = (*pod)["spec"].value("serviceAccountName", "default");
  }
  in.namespace_labels["kubernetes.io/metadata.name"] = ns;  // set on every namespace by the API server
  auto nsobj = store_.get({ResourceKind::kNamespace, "", ns});
  if (nsobj && (*nsobj)["metadata"].contains("labels") && (*nsobj)["metadata"]["labels"].is_object()) {
    for (const auto& [k, v] : (*nsobj)["metadata"]["labels"].items()) {
      in.namespace_labels[k] = v.get<std::string>();
    }
  }
  return identity::podIdentityLabels(in, filter_);
}

void ClusterState::resolve(EndpointRecord* rec) {
  auto labels = identityLabels(*rec);
  if (labels.empty() && kube_ && !rec->pod_name.empty()) {
    // CNI ADD can come before our watch has seen the pod: ask the API server (briefly).
    std::string ns = rec->pod_namespace.empty() ? "default" : rec->pod_namespace;
    if (auto pod = kube_->fetchPod(ns, rec->pod_name)) {
      std::vector<ResourceEvent> events;
      (void)store_.apply({*pod}, &events);
      labels = identityLabels(*rec);
    }
  }
  if (labels.empty()) {
    rec->identity = kIdentityInit;
    rec->labels.clear();
    return;
  }
  if (kube_) {
    auto id = kube_->identities().allocate(labels);
    auto held = id.ok() ? identities_.acquireWithId(labels, *id) : Result<uint32_t>(id.error());
    if (!held.ok()) {
      // No cluster-wide identity (API server unreachable): init until the next pod event resolves it.
      spdlog::warn("endpoint {}/{}: {}", rec->pod_namespace, rec->pod_name, held.error().message);
      rec->identity = kIdentityInit;
      rec->labels.clear();
      return;
    }
    rec->identity = *held;
  } else {
    rec->identity = identities_.acquire(labels);
  }
  rec->labels.assign(labels.begin(), labels.end());
  persistIdentities();
}

void ClusterState::endpointRemoved(const EndpointRecord& rec) {
  if (rec.identity >= identity::kFirstClusterIdentity) {
    if (identities_.release(rec.identity) && kube_) {
      kube_->identities().release(rec.identity);
    }
    persistIdentities();
  }
}

void ClusterState::persistIdentities() const {
  if (Status s = writeFileAtomic(identities_path_, identities_.snapshot().dump()); !s.ok()) {
    spdlog::error("identities: persist: {}", s.error().message);
  }
}

std::vector<lb::Service> ClusterState::services() const {
  std::vector<lb::Service> out;
  for (const auto& o : store_.list(ResourceKind::kService)) {
    auto s = lb::parseService(o);
    if (s.ok()) {
      out.push_back(*s);
    }
  }
  return out;
}

void ClusterState::syncServices() {
  if (!services_) {
    return;
  }
  std::vector<lb::EndpointSlice> slices;
  std::set<std::string> sliced;  // services with applied slices: the user's slices win over derived ones
  for (const auto& o : store_.list(ResourceKind::kEndpointSlice)) {
    auto es = lb::parseEndpointSlice(o);
    if (es.ok()) {
      sliced.insert(es->ns + "/" + es->service);
      slices.push_back(*es);
    }
  }
  // Pods as the EndpointSlice controller sees them: labels and ports from the manifest, the IP from CNI (or
  // status.podIP when the manifest carries one).
  std::vector<lb::PodRecord> pods;
  auto endpoints = endpoints_.list();
  for (const auto& o : store_.list(ResourceKind::kPod)) {
    lb::PodRecord p;
    p.ns = o["metadata"].value("namespace", "default");
    p.name = o["metadata"].value("name", "");
    if (o["metadata"].contains("labels") && o["metadata"]["labels"].is_object()) {
      for (const auto& [k, v] : o["metadata"]["labels"].items()) {
        p.labels[k] = v.get<std::string>();
      }
    }
    p.terminating = o["metadata"].contains("deletionTimestamp");
    for (const auto& rec : endpoints) {
      if ((rec.pod_namespace.empty() ? "default" : rec.pod_namespace) == p.ns && rec.pod_name == p.name) {
        p.ip = rec.ip;
      }
    }
    if (!p.ip && o.contains("status") && o["status"].is_object() && o["status"].contains("podIP")) {
      p.ip = o["status"]["podIP"].is_string() ? Ipv4::parse(o["status"]["podIP"].get<std::string>()) : std::nullopt;
    }
    for (const auto& [name, port] : podNamedPorts(o)) {
      p.named_ports[name] = port;
    }
    pods.push_back(std::move(p));
  }
  auto t0 = std::chrono::steady_clock::now();
  auto services = this->services();
  for (const auto& svc : services) {
    if (!sliced.count(svc.key())) {
      for (auto& d : lb::deriveSlices(svc, pods)) {
        slices.push_back(std::move(d));
      }
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  Status s = services_->sync(services, slices);
  spdlog::debug("services: derive {:.1f} ms, sync {:.1f} ms",
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count());
  if (!s.ok()) {
    spdlog::error("services: {} (will retry on the next change)", s.error().message);
  }
}

std::multimap<std::string, std::pair<uint16_t, uint8_t>> ClusterState::namedPorts(const EndpointRecord& rec) const {
  auto pod = store_.get({ResourceKind::kPod, rec.pod_namespace.empty() ? "default" : rec.pod_namespace, rec.pod_name});
  return pod ? podNamedPorts(*pod) : std::multimap<std::string, std::pair<uint16_t, uint8_t>>{};
}

void ClusterState::handle(const std::vector<ResourceEvent>& events) {
  bool services_changed = false;
  for (const auto& e : events) {
    services_changed = services_changed || e.key.kind == ResourceKind::kService ||
                       e.key.kind == ResourceKind::kEndpointSlice || e.key.kind == ResourceKind::kPod ||
                       e.type == ResourceEventType::kSynced;
  }
  if (services_changed) {
    syncServices();
  }
  for (const auto& e : events) {
    bool is_policy = e.key.kind == ResourceKind::kNetworkPolicy || e.key.kind == ResourceKind::kCiliumNetworkPolicy ||
                     e.key.kind == ResourceKind::kCiliumClusterwideNetworkPolicy;
    if (is_policy && policies_) {
      if (e.type == ResourceEventType::kUpsert) {
        policies_->upsert(e.object);
      } else if (e.type == ResourceEventType::kDelete) {
        policies_->remove(toString(e.key.kind), e.key.namespace_name, e.key.name);
      }
    }
  }
  for (const auto& e : events) {
    bool pod = e.key.kind == ResourceKind::kPod;
    bool ns = e.key.kind == ResourceKind::kNamespace;
    if (e.type == ResourceEventType::kSynced || (!pod && !ns)) {
      continue;
    }
    for (const auto& rec : endpoints_.list()) {
      std::string rec_ns = rec.pod_namespace.empty() ? "default" : rec.pod_namespace;
      bool affected = pod ? (rec_ns == e.key.namespace_name && rec.pod_name == e.key.name) : rec_ns == e.key.name;
      if (!affected) {
        continue;
      }
      auto now = identityLabels(rec);
      if (!now.empty() && std::vector<std::string>(now.begin(), now.end()) == rec.labels) {
        continue;  // labels unchanged (a status update): same identity, nothing to allocate
      }
      // The new identity first, then the endpoint moves to it, then the old one is given back.
      EndpointRecord next = rec;
      resolve(&next);
      if (next.labels == rec.labels && next.identity == rec.identity) {
        endpointRemoved(next);  // the extra reference resolve() took
        continue;
      }
      Status s = endpoints_.updateIdentity(rec.id, next.identity, next.labels);
      if (!s.ok()) {
        spdlog::warn("{} {}: endpoint {}: {}", pod ? "Pod" : "Namespace", e.key.name, rec.id, s.error().message);
        endpointRemoved(next);
        continue;
      }
      endpointRemoved(rec);
      spdlog::info("endpoint {} ({}/{}): identity {} -> {}", rec.id, rec_ns, rec.pod_name, rec.identity,
                   next.identity);
    }
  }
  if (policies_) {
    policies_->regenerate();  // policies or identities may have changed; unchanged endpoints are skipped
  }
}

}  // namespace plexus::agent
