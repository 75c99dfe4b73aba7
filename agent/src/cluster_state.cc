#include "plexus/agent/cluster_state.h"

#include <fcntl.h>
#include <unistd.h>

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
// Journal entries name objects as Kind/namespace/name.
std::string journalKey(const std::string& kind, const std::string& ns, const std::string& name) {
  return kind + "/" + ns + "/" + name;
}
std::string journalKey(const nlohmann::json& o) {
  const auto& md = o.value("metadata", nlohmann::json::object());
  return journalKey(o.value("kind", ""), md.value("namespace", ""), md.value("name", ""));
}

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
      journal_(state_dir + "/resources.log"),
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
    if (Status s = persist(changed); !s.ok()) {
      spdlog::error("resources: persist: {}", s.error().message);
    }
    handle(changed);
  }
  reportPolicies(events);
}

void ClusterState::reportPolicies(const std::vector<ResourceEvent>& events) {
  bool cilium_policies = std::any_of(events.begin(), events.end(), [](const ResourceEvent& e) {
    return e.key.kind == ResourceKind::kCiliumNetworkPolicy || e.key.kind == ResourceKind::kCiliumClusterwideNetworkPolicy;
  });
  if (!kube_ || !policies_ || !cilium_policies) {
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
  // The snapshot, then the journal replayed over it.
  auto read = [](const std::string& file) -> Result<std::string> {
    std::ifstream f(file);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  nlohmann::json snapshot = {{"resourceVersion", 0}, {"items", nlohmann::json::array()}};
  if (std::filesystem::exists(path_)) {
    auto j = nlohmann::json::parse(*read(path_), nullptr, false);
    if (j.is_discarded()) {
      return makeError(ErrorCode::kFailedPrecondition, fmt::format("{}: not JSON", path_));
    }
    snapshot = std::move(j);
  }
  if (std::filesystem::exists(journal_)) {
    std::map<std::string, nlohmann::json> objects;
    for (auto& item : snapshot.value("items", nlohmann::json::array())) {
      objects[journalKey(item)] = item;
    }
    uint64_t version = snapshot.value("resourceVersion", uint64_t{0});
    std::stringstream lines(*read(journal_));
    std::string line;
    size_t n = 0;
    while (std::getline(lines, line)) {
      ++n;
      auto entry = nlohmann::json::parse(line, nullptr, false);
      if (entry.is_discarded() || !entry.is_object()) {
        if (lines.peek() == EOF) {
          spdlog::warn("{}: line {} is incomplete (a write interrupted by a crash), ignored", journal_, n);
          break;
        }
        return makeError(ErrorCode::kFailedPrecondition, fmt::format("{}: line {}: not JSON", journal_, n));
      }
      if (entry.value("op", "") == "delete") {
        objects.erase(entry.value("key", ""));
      } else if (entry.contains("object")) {
        const auto& rv = entry["object"].value(nlohmann::json::json_pointer("/metadata/resourceVersion"),
                                                std::string("0"));
        version = std::max<uint64_t>(version, std::strtoull(rv.c_str(), nullptr, 10));
        objects[journalKey(entry["object"])] = entry["object"];
      }
    }
    journal_entries_ = n;
    snapshot = {{"resourceVersion", version}, {"items", nlohmann::json::array()}};
    for (auto& [k, o] : objects) {
      snapshot["items"].push_back(std::move(o));
    }
  }
  auto events = store_.restore(snapshot);
  if (!events.ok()) {
    return events.error().wrap(path_);
  }
  handle(*events);
  return Status::Ok();
}

Status ClusterState::persist(const std::vector<ResourceEvent>& events) {
  // A journal: each change is one appended line, made durable with one fsync per call, so a change costs the
  // same whatever the number of objects stored. When the journal outgrows the store it is folded into a new
  // snapshot (amortised O(1) per change).
  std::string lines;
  for (const auto& e : events) {
    if (e.type == ResourceEventType::kSynced) {
      continue;
    }
    nlohmann::json entry;
    if (e.type == ResourceEventType::kDelete) {
      entry = {{"op", "delete"}, {"key", journalKey(toString(e.key.kind), e.key.namespace_name, e.key.name)}};
    } else if (auto obj = store_.get(e.key)) {
      entry = {{"op", "upsert"}, {"object", *obj}};
    } else {
      continue;
    }
    lines += entry.dump() + "\n";
    ++journal_entries_;
  }
  if (journal_entries_ > std::max<size_t>(1024, store_.size())) {
    PLEXUS_TRY(writeFileAtomic(path_, store_.snapshot().dump()), "snapshot " + path_);
    journal_entries_ = 0;
    return writeFileAtomic(journal_, "");
  }
  if (lines.empty()) {
    return Status::Ok();
  }
  int fd = ::open(journal_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return errnoError("open " + journal_, errno);
  }
  size_t off = 0;
  while (off < lines.size()) {
    ssize_t n = ::write(fd, lines.data() + off, lines.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return errnoError("append " + journal_, err);
    }
    off += static_cast<size_t>(n);
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : errnoError("fsync " + journal_, err);
}

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
    if (Status s = persist(events); !s.ok()) {
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
    if (Status s = persist(events); !s.ok()) {
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
  if (kube_ && !identities_.find(labels)) {
    // The first local user of these labels asks the cluster; later ones share the identity this node holds.
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
  out.reserve(parsed_services_.size());
  for (const auto& [key, svc] : parsed_services_) {
    out.push_back(svc);
  }
  return out;
}

std::vector<lb::PodRecord> ClusterState::podRecords(const std::set<std::string>& namespaces) const {
  // Pods as the EndpointSlice controller sees them: labels and ports from the manifest, the IP from CNI (or
  // status.podIP when the manifest carries one).
  std::vector<lb::PodRecord> pods;
  auto endpoints = endpoints_.list();
  for (const auto& o : store_.list(ResourceKind::kPod)) {
    lb::PodRecord p;
    p.ns = o["metadata"].value("namespace", "default");
    if (!namespaces.empty() && !namespaces.count(p.ns)) {
      continue;
    }
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
  return pods;
}

void ClusterState::podsChanged(const std::string& ns) {
  // Selector services of that namespace derive their endpoints from its pods.
  for (const auto& [key, svc] : parsed_services_) {
    if (svc.ns == ns && !svc.selector.empty()) {
      dirty_services_.insert(key);
    }
  }
}

void ClusterState::endpointsRestored() {
  endpoints_restored_ = true;
  syncServices();
}

void ClusterState::syncServices() {
  if (!services_ || !endpoints_restored_) {
    return;
  }
  auto t0 = std::chrono::steady_clock::now();
  bool full = dirty_all_ || services_->needsFullSync();
  std::set<std::string> keys;
  if (full) {
    for (const auto& [key, svc] : parsed_services_) {
      keys.insert(key);
    }
  } else {
    keys = dirty_services_;
  }
  if (keys.empty() && !full) {
    return;
  }
  std::map<std::string, std::vector<lb::EndpointSlice>> slices;
  std::set<std::string> namespaces;
  for (const auto& [rk, es] : parsed_slices_) {
    if (keys.count(es.ns + "/" + es.service)) {
      slices[es.ns + "/" + es.service].push_back(es);  // the user's slices win over derived ones
    }
  }
  std::map<std::string, std::optional<lb::Service>> changed;
  for (const auto& key : keys) {
    auto it = parsed_services_.find(key);
    changed[key] = it == parsed_services_.end() ? std::nullopt : std::optional<lb::Service>(it->second);
    if (it != parsed_services_.end() && !slices.count(key) && !it->second.selector.empty()) {
      namespaces.insert(it->second.ns);
    }
  }
  if (!namespaces.empty()) {
    auto pods = podRecords(namespaces);
    for (const auto& [key, svc] : changed) {
      if (svc && !slices.count(key)) {
        slices[key] = lb::deriveSlices(*svc, pods);
      }
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  Status s = Status::Ok();
  if (full) {
    std::vector<lb::EndpointSlice> all;
    for (auto& [key, list] : slices) {
      all.insert(all.end(), list.begin(), list.end());
    }
    s = services_->sync(services(), all);
  } else {
    s = services_->update(changed, slices);
  }
  spdlog::debug("services: {} {} service(s): derive {:.1f} ms, program {:.1f} ms", full ? "full sync of" : "update of",
                keys.size(), std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count());
  if (!s.ok()) {
    spdlog::error("services: {} (will retry on the next change)", s.error().message);
    return;
  }
  dirty_all_ = false;
  dirty_services_.clear();
}

std::multimap<std::string, std::pair<uint16_t, uint8_t>> ClusterState::namedPorts(const EndpointRecord& rec) const {
  auto pod = store_.get({ResourceKind::kPod, rec.pod_namespace.empty() ? "default" : rec.pod_namespace, rec.pod_name});
  return pod ? podNamedPorts(*pod) : std::multimap<std::string, std::pair<uint16_t, uint8_t>>{};
}

bool ClusterState::trackServiceInputs(const ResourceEvent& e) {
  switch (e.key.kind) {
    case ResourceKind::kService: {
      std::string key = (e.key.namespace_name.empty() ? "default" : e.key.namespace_name) + "/" + e.key.name;
      auto svc = e.type == ResourceEventType::kUpsert ? lb::parseService(e.object) : Result<lb::Service>(Error{});
      if (e.type == ResourceEventType::kUpsert && svc.ok()) {
        parsed_services_[key] = *svc;
      } else {
        parsed_services_.erase(key);
      }
      dirty_services_.insert(key);
      return true;
    }
    case ResourceKind::kEndpointSlice: {
      if (auto it = parsed_slices_.find(e.key); it != parsed_slices_.end()) {
        dirty_services_.insert(it->second.ns + "/" + it->second.service);  // its old owner
        parsed_slices_.erase(it);
      }
      if (e.type == ResourceEventType::kUpsert) {
        if (auto es = lb::parseEndpointSlice(e.object); es.ok()) {
          dirty_services_.insert(es->ns + "/" + es->service);
          parsed_slices_[e.key] = *es;
        }
      }
      return true;
    }
    case ResourceKind::kPod:
      podsChanged(e.key.namespace_name.empty() ? "default" : e.key.namespace_name);
      return true;
    default:
      if (e.type == ResourceEventType::kSynced) {
        dirty_all_ = true;
        return true;
      }
      return false;
  }
}

void ClusterState::handle(const std::vector<ResourceEvent>& events) {
  bool services_changed = false;
  for (const auto& e : events) {
    services_changed = trackServiceInputs(e) || services_changed;  // every event must be tracked
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
