#include "plexus/agent/controller.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/map_encoding.h"
#include "plexus/node/node.h"

namespace plexus::agent {

namespace {
std::string nsOrDefault(const std::string& ns) { return ns.empty() ? "default" : ns; }
bool isPolicy(ResourceKind k) {
  return k == ResourceKind::kNetworkPolicy || k == ResourceKind::kCiliumNetworkPolicy ||
         k == ResourceKind::kCiliumClusterwideNetworkPolicy;
}
template <typename T>
Result<std::any> decoded(Result<T> r) {
  if (!r.ok()) {
    return r.error();
  }
  return std::any(std::move(*r));
}
Status refuse(ResourceKind k) {
  return makeError(ErrorCode::kInvalidArgument, fmt::format("kind {} is not handled by this agent build yet", toString(k)));
}
}  // namespace

Controller::Controller(ControllerParts parts, std::string node) : p_(parts), node_(std::move(node)) {
  auto& r = p_.resources;
  if (p_.services) {
    // Decoded once, where the request is read; the service sync takes the decoded objects from the events.
    r.setDecoder(ResourceKind::kService, [](const nlohmann::json& o) { return decoded(lb::parseService(o)); });
    r.setDecoder(ResourceKind::kEndpointSlice,
                 [](const nlohmann::json& o) { return decoded(lb::parseEndpointSlice(o)); });
  } else {
    r.setValidator(ResourceKind::kService, [](const nlohmann::json&) { return refuse(ResourceKind::kService); });
    r.setValidator(ResourceKind::kEndpointSlice,
                   [](const nlohmann::json&) { return refuse(ResourceKind::kEndpointSlice); });
  }
  r.setValidator(ResourceKind::kNode, [nodes = p_.nodes](const nlohmann::json& o) {
    return nodes ? node::parseNode(o).status() : refuse(ResourceKind::kNode);
  });
  r.setValidator(ResourceKind::kPlexusEndpoint, [](const nlohmann::json& o) { return node::parsePlexusEndpoint(o).status(); });
  r.setValidator(ResourceKind::kPlexusNode, [nodes = p_.nodes](const nlohmann::json& o) {
    return nodes ? node::parsePlexusNode(o).status() : refuse(ResourceKind::kPlexusNode);
  });
  for (ResourceKind k : {ResourceKind::kNetworkPolicy, ResourceKind::kCiliumNetworkPolicy,
                         ResourceKind::kCiliumClusterwideNetworkPolicy}) {
    r.setValidator(
        k, [this](const nlohmann::json& o) { return p_.policies.validate(o); },
        [this](const ResourceKey& key, const Status& verdict) { p_.policies.validated(key, verdict); });
  }
}

Status Controller::start(std::vector<std::string>* problems) {
  PLEXUS_TRY(p_.identities.restore(), "restore identities");
  if (p_.nodes) {
    if (Status s = p_.nodes->restore(); !s.ok()) {
      problems->push_back(s.error().message);  // leftovers stay; nothing wanted is lost
    }
  }
  auto events = p_.resources.restore();
  if (!events.ok()) {
    return events.error().wrap("restore cluster state");
  }
  changed(*events);
  PLEXUS_TRY(p_.ipcache.restore(), "restore ipcache");
  PLEXUS_TRY(p_.endpoints.start(problems), "start endpoint manager");
  for (const auto& rec : p_.endpoints.list()) {
    p_.flows.upsertEndpoint(rec.ip, PeerInfo{rec.pod_namespace, rec.pod_name, rec.labels, rec.id, rec.host_ifname,
                                             static_cast<uint32_t>(rec.host_ifindex)});
  }
  syncHostAddresses();
  if (p_.services) {
    // The first service sync: every restored pod address is known now.
    p_.services->endpointsRestored();
    syncServices();
  }
  regenerate();
  // Every source has spoken: what the ipcache still holds beyond that is a leftover.
  note("ipcache", p_.ipcache.reconcile());
  return Status::Ok();
}

void Controller::handle(const AgentEvent& event) {
  if (const auto* e = std::get_if<ResourcesChanged>(&event)) {
    changed(p_.resources.ingest(e->events));
    reportPolicies(e->events);
  } else if (const auto* e = std::get_if<IdentityAllocated>(&event)) {
    p_.identities.allocated(e->labels, e->id);
    reidentify([&](const EndpointRecord& rec) {
      return rec.identity == kIdentityInit &&
             p_.resources.podIdentityLabels(rec.pod_namespace, rec.pod_name) == e->labels;
    });
    p_.identities.settle(e->labels);
    regenerate();
  } else if (const auto* e = std::get_if<IdentityFailed>(&event)) {
    p_.identities.failed(e->labels, e->error);
  } else if (const auto* e = std::get_if<RemoteIdentities>(&event)) {
    p_.identities.observeRemote(e->events);
    regenerate();  // other nodes' identities feed the selectors
  }
}

std::vector<ApplyOutcome> Controller::apply(std::vector<nlohmann::json> objects) {
  return inGroups(std::move(objects), false);
}

std::vector<ApplyOutcome> Controller::remove(std::vector<nlohmann::json> objects) {
  return inGroups(std::move(objects), true);
}

std::vector<ApplyOutcome> Controller::inGroups(std::vector<nlohmann::json> objects, bool remove) {
  // A bulk apply in groups: each group's objects and change events (a copy of every object) are gone before the
  // next group comes, so the heap they take is reused instead of left behind between the objects the agent keeps.
  std::vector<ApplyOutcome> out;
  out.reserve(objects.size());
  std::vector<PreparedObject> group;
  for (size_t i = 0; i < objects.size(); ++i) {
    group.push_back(prepare(std::move(objects[i]), remove));
    if (group.size() == kApplyGroup || i + 1 == objects.size()) {
      auto outcomes = commit(std::move(group), remove);
      out.insert(out.end(), std::make_move_iterator(outcomes.begin()), std::make_move_iterator(outcomes.end()));
      group.clear();
    }
  }
  flush();
  return out;
}

std::vector<ApplyOutcome> Controller::commit(std::vector<PreparedObject> objects, bool remove) {
  std::vector<ResourceEvent> events;
  auto outcomes = p_.resources.commit(std::move(objects), remove, &events);
  changed(events);
  return outcomes;
}

Controller::Resolved Controller::resolve(const std::string& pod_ns, const std::string& pod) {
  std::string ns = nsOrDefault(pod_ns);
  auto labels = p_.resources.podIdentityLabels(ns, pod);
  if (labels.empty()) {
    // A CNI ADD before the watch delivered the pod: ask for it off this thread; the answer is a resource event.
    if (p_.api && !pod.empty() && fetching_.insert(ns + "/" + pod).second) {
      p_.api->fetchPod(ns, pod);
    }
    return {kIdentityInit, {}};
  }
  if (p_.api && !p_.resources.namespaceKnown(ns)) {
    // Cluster mode: the namespace's labels are part of the identity, and its watch may deliver it after the pod's.
    // Until it arrives the endpoint runs as init (an identity allocated now would be given back at once, and two
    // nodes would briefly disagree); the namespace event re-identifies it.
    return {kIdentityInit, {}};
  }
  uint32_t id = p_.identities.acquire(labels);
  if (id == kIdentityInit) {
    return {kIdentityInit, {}};  // waiting for the cluster-wide identity
  }
  return {id, std::vector<std::string>(labels.begin(), labels.end())};
}

void Controller::reidentify(const std::function<bool(const EndpointRecord&)>& affected) {
  for (const auto& rec : p_.endpoints.list()) {
    if (!affected(rec)) {
      continue;
    }
    auto labels = p_.resources.podIdentityLabels(rec.pod_namespace, rec.pod_name);
    if (!labels.empty() && std::vector<std::string>(labels.begin(), labels.end()) == rec.labels) {
      continue;  // labels unchanged (a status update): same identity, nothing to allocate
    }
    // The new identity first, then the endpoint moves to it, then the old one is given back.
    Resolved next = resolve(rec.pod_namespace, rec.pod_name);
    if (next.identity == rec.identity && next.labels == rec.labels) {
      p_.identities.release(next.identity);  // the extra reference resolve() took
      continue;
    }
    if (Status s = p_.endpoints.updateIdentity(rec.id, next.identity, next.labels); !s.ok()) {
      spdlog::warn("endpoint {} ({}/{}): {}", rec.id, rec.pod_namespace, rec.pod_name, s.error().message);
      p_.identities.release(next.identity);
      continue;
    }
    p_.identities.release(rec.identity);
    p_.flows.upsertEndpoint(rec.ip, PeerInfo{rec.pod_namespace, rec.pod_name, next.labels, rec.id, rec.host_ifname,
                                             static_cast<uint32_t>(rec.host_ifindex)});
    if (auto moved = p_.endpoints.get(rec.id)) {
      publish(*moved);
    }
    spdlog::info("endpoint {} ({}/{}): identity {} -> {}", rec.id, nsOrDefault(rec.pod_namespace), rec.pod_name,
                 rec.identity, next.identity);
  }
}

void Controller::changed(const std::vector<ResourceEvent>& events) {
  if (events.empty()) {
    return;
  }
  bool services_changed = false;
  bool nodes_changed = false;
  for (const auto& e : events) {
    if (p_.nodes) {
      nodes_changed = p_.nodes->track(e) || nodes_changed;
    }
    if (p_.services) {
      services_changed = p_.services->track(e) || services_changed;  // every event must be tracked
    }
    if (isPolicy(e.key.kind)) {
      if (e.type == ResourceEventType::kUpsert) {
        p_.policies.upsert(e.object);
      } else if (e.type == ResourceEventType::kDelete) {
        p_.policies.remove(toString(e.key.kind), e.key.namespace_name, e.key.name);
      }
    }
  }
  if (services_changed) {
    syncServices();
  }
  if (nodes_changed) {
    syncNodes();
  }
  for (const auto& e : events) {
    bool pod = e.key.kind == ResourceKind::kPod;
    if (e.type == ResourceEventType::kSynced || (!pod && e.key.kind != ResourceKind::kNamespace)) {
      continue;
    }
    if (pod) {
      fetching_.erase(nsOrDefault(e.key.namespace_name) + "/" + e.key.name);
    }
    reidentify([&](const EndpointRecord& rec) {
      std::string ns = nsOrDefault(rec.pod_namespace);
      return pod ? (ns == e.key.namespace_name && rec.pod_name == e.key.name) : ns == e.key.name;
    });
  }
  // Policies or identities may have changed (unchanged endpoints are skipped). Services and slices are no input of
  // policy (toServices is refused), and a bulk apply of them commits in many groups: each would walk every
  // identity again for nothing. A policy install that failed earlier is retried by tick().
  bool policy_inputs = std::any_of(events.begin(), events.end(), [](const ResourceEvent& e) {
    return e.type == ResourceEventType::kSynced ||
           (e.key.kind != ResourceKind::kService && e.key.kind != ResourceKind::kEndpointSlice);
  });
  if (policy_inputs) {
    regenerate();
  }
  p_.identities.flush();  // what the remote pods of this batch acquired or released, in one snapshot
}

void Controller::reportPolicies(const std::vector<ResourceEvent>& events) {
  auto cilium = [](const ResourceEvent& e) {
    return e.key.kind == ResourceKind::kCiliumNetworkPolicy ||
           e.key.kind == ResourceKind::kCiliumClusterwideNetworkPolicy;
  };
  if (!p_.api || std::none_of(events.begin(), events.end(), cilium)) {
    return;
  }
  auto statuses = p_.policies.policies();
  for (const auto& e : events) {
    if (e.type != ResourceEventType::kUpsert || !cilium(e)) {
      continue;
    }
    std::string key = e.key.namespace_name.empty()
                          ? fmt::format("{} {}", toString(e.key.kind), e.key.name)
                          : fmt::format("{} {}/{}", toString(e.key.kind), e.key.namespace_name, e.key.name);
    for (const auto& st : statuses) {
      if (st.key == key) {
        // A refused update of a valid policy: the old version is enforced, the new one is in error.
        p_.api->reportPolicy(e.object, st.valid && st.reason.empty(), st.reason);
      }
    }
  }
}

void Controller::endpointsChanged(const std::string& ns) {
  if (p_.services) {
    p_.services->podsChanged(nsOrDefault(ns));
    syncServices();
  }
  regenerate();  // a new or vanished identity changes what other endpoints' selectors match
}

Result<EndpointRecord> Controller::addEndpoint(const AddRequest& req) {
  if (auto existing = p_.endpoints.live(req.container_id + "/" + req.ifname)) {
    // A runtime must not ADD a container and interface twice without a DEL, and the plugin must then fail
    // (CNI SPEC.md, ADD). Refused before anything is allocated; the first attachment stays as it is.
    return makeError(ErrorCode::kAlreadyExists,
                     fmt::format("container {} interface {} is already attached as endpoint {} ({}); DEL it first",
                                 req.container_id, req.ifname, existing->id, existing->ip.toString()));
  }
  Resolved id = resolve(req.pod_namespace, req.pod_name);
  auto rec = p_.endpoints.add(req, id.identity, id.labels);
  if (!rec.ok()) {
    p_.identities.release(id.identity);
    return rec.error();
  }
  p_.flows.upsertEndpoint(rec->ip, PeerInfo{rec->pod_namespace, rec->pod_name, rec->labels, rec->id, rec->host_ifname,
                                            static_cast<uint32_t>(rec->host_ifindex)});
  publish(*rec);
  notifyEndpoint(NotificationType::kEndpointCreated, *rec);
  endpointsChanged(rec->pod_namespace);
  return rec;
}

void Controller::notifyEndpoint(NotificationType type, const EndpointRecord& rec) {
  if (p_.notices) {
    p_.notices->add({.type = type, .labels = rec.labels, .id = rec.id, .pod_name = rec.pod_name,
                     .pod_namespace = rec.pod_namespace});
  }
}

Status Controller::deleteEndpoint(const std::string& container_id, const std::string& ifname) {
  auto removed = p_.endpoints.del(container_id, ifname);
  if (!removed.ok()) {
    return removed.error();
  }
  if (*removed) {
    const EndpointRecord& rec = **removed;
    p_.identities.release(rec.identity);
    p_.flows.removeEndpoint(rec.ip);
    unpublish(rec);
    notifyEndpoint(NotificationType::kEndpointDeleted, rec);
    fetching_.erase(nsOrDefault(rec.pod_namespace) + "/" + rec.pod_name);
    endpointsChanged(rec.pod_namespace);
  }
  return Status::Ok();
}

uint32_t Controller::gcEndpoints(const std::set<std::string>& valid_owners) {
  uint32_t released = 0;
  auto removed = p_.endpoints.gc(valid_owners, &released);
  for (const auto& rec : removed) {
    p_.identities.release(rec.identity);
    p_.flows.removeEndpoint(rec.ip);
    unpublish(rec);
    notifyEndpoint(NotificationType::kEndpointDeleted, rec);
    if (p_.services) {
      p_.services->podsChanged(nsOrDefault(rec.pod_namespace));
    }
  }
  if (!removed.empty()) {
    endpointsChanged(removed.front().pod_namespace);
  }
  return released;
}

void Controller::publish(const EndpointRecord& rec) {
  if (p_.api && !rec.pod_name.empty() && rec.identity >= identity::kFirstClusterIdentity) {
    p_.api->publishEndpoint(rec, node_);
  }
}

void Controller::unpublish(const EndpointRecord& rec) {
  if (p_.api && !rec.pod_name.empty()) {
    p_.api->unpublishEndpoint(nsOrDefault(rec.pod_namespace), rec.pod_name);
  }
}

void Controller::syncHostAddresses() {
  if (!p_.host) {
    return;
  }
  // Every IPv4 address of this node is the host identity in the ipcache, as in Cilium.
  std::map<Ipv4Prefix, IpcacheEntry> entries;
  for (const Ipv4& ip : p_.host->list()) {
    entries[Ipv4Prefix(ip, 32)] = IpcacheEntry{kIdentityHost, Ipv4{}};
  }
  note("ipcache", p_.ipcache.replace(IpcacheSource::kHost, entries));
}

void Controller::regenerate() { note("policy", p_.policies.regenerate(p_.endpoints.list())); }

void Controller::syncServices() { note("services", p_.services->sync(p_.endpoints.list())); }

void Controller::syncNodes() { note("nodes", p_.nodes->sync()); }

void Controller::note(const std::string& area, const Status& outcome) {
  auto it = problems_.find(area);
  if (outcome.ok()) {
    if (it != problems_.end()) {
      spdlog::info("{}: recovered (was: {})", area, it->second);
      problems_.erase(it);
    }
    return;
  }
  if (it == problems_.end() || it->second != outcome.error().message) {
    spdlog::error("{}: {} (will retry)", area, outcome.error().message);
    problems_[area] = outcome.error().message;
  }
}

std::vector<std::string> Controller::problems() const {
  std::vector<std::string> out;
  for (const auto& [area, message] : problems_) {
    out.push_back(area + ": " + message);
  }
  if (!p_.ipcache.failures().empty() && !problems_.count("ipcache")) {
    const auto& [prefix, why] = *p_.ipcache.failures().begin();
    out.push_back(fmt::format("ipcache: {} prefixes not installed (first: {}: {})", p_.ipcache.failures().size(),
                              prefix.toString(), why));
  }
  return out;
}

bool Controller::pending() const {
  return p_.ipcache.pending() || p_.policies.pending() || (p_.services && p_.services->pending()) ||
         (p_.nodes && p_.nodes->pending());
}

void Controller::tick() {
  syncHostAddresses();
  if (p_.ipcache.pending()) {
    note("ipcache", p_.ipcache.reconcile());
  }
  if (p_.services && p_.services->pending()) {
    syncServices();
  }
  if (p_.nodes && p_.nodes->pending()) {
    syncNodes();
  }
  if (p_.policies.pending()) {
    regenerate();
  }
}

}  // namespace plexus::agent
