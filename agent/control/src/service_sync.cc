#include "plexus/agent/service_sync.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace plexus::agent {

namespace {
std::string nsOrDefault(const std::string& ns) { return ns.empty() ? "default" : ns; }
std::string labelKey(const std::string& ns, const std::string& k, const std::string& v) {
  std::string key;
  key.reserve(ns.size() + k.size() + v.size() + 2);
  key.append(ns).append(1, '\0').append(k).append(1, '=').append(v);
  return key;
}

// What a selector service needs of a Pod manifest (validated by validatePod); the address from CNI is added later.
lb::PodRecord podFacts(const std::string& ns, const std::string& name, const nlohmann::json& o) {
  lb::PodRecord p;
  p.ns = ns;
  p.name = name;
  if (!o.contains("metadata") || !o["metadata"].is_object()) {
    return p;
  }
  const auto& md = o["metadata"];
  if (md.contains("labels") && md["labels"].is_object()) {
    for (const auto& [k, v] : md["labels"].items()) {
      p.labels[k] = v.get<std::string>();
    }
  }
  p.terminating = md.contains("deletionTimestamp");
  if (o.contains("status") && o["status"].is_object() && o["status"].contains("podIP")) {
    p.ip = o["status"]["podIP"].is_string() ? Ipv4::parse(o["status"]["podIP"].get<std::string>()) : std::nullopt;
  }
  for (const auto& [port_name, port] : podNamedPorts(o)) {
    p.named_ports[port_name] = port;
  }
  // Where the pod runs (externalTrafficPolicy: Local and the health checks keep to this node's endpoints); a pod
  // without spec.nodeName counts as local, as the planner treats an endpoint without a nodeName.
  if (o.contains("spec") && o["spec"].is_object() && o["spec"].contains("nodeName") &&
      o["spec"]["nodeName"].is_string()) {
    p.node_name = o["spec"]["nodeName"].get<std::string>();
  }
  return p;
}

// What the store decoded when the object came in, or a parse of it (events that did not pass a decoder).
template <typename T, typename Parse>
Result<T> decodedOr(const ResourceEvent& e, Parse parse) {
  if (const auto* d = std::any_cast<T>(&e.decoded)) {
    return *d;
  }
  return parse(e.object);
}
}  // namespace

std::optional<lb::Service> ServiceSync::service(const std::string& key) const {
  if (auto it = pending_services_.find(key); it != pending_services_.end()) {
    return it->second;
  }
  auto slash = key.find('/');
  auto object = resources_.store().get({ResourceKind::kService, key.substr(0, slash), key.substr(slash + 1)});
  if (!object) {
    return std::nullopt;
  }
  auto svc = lb::parseService(*object);
  return svc.ok() ? std::optional<lb::Service>(std::move(*svc)) : std::nullopt;
}

std::optional<lb::EndpointSlice> ServiceSync::slice(const ResourceKey& key) const {
  if (auto it = pending_slices_.find(key); it != pending_slices_.end()) {
    return it->second;
  }
  auto object = resources_.store().get(key);
  if (!object) {
    return std::nullopt;
  }
  auto es = lb::parseEndpointSlice(*object);
  return es.ok() ? std::optional<lb::EndpointSlice>(std::move(*es)) : std::nullopt;
}

std::vector<lb::Service> ServiceSync::services() const {
  std::vector<lb::Service> out;
  out.reserve(services_.size());
  for (const auto& [key, selector] : services_) {
    if (auto svc = service(key)) {
      out.push_back(std::move(*svc));
    }
  }
  return out;
}

ServiceSync::PodIndex ServiceSync::podIndex(const std::set<std::string>& namespaces,
                                           const std::vector<EndpointRecord>& endpoints) const {
  PodIndex index;
  for (const auto& rec : endpoints) {
    index.ips[{nsOrDefault(rec.pod_namespace), rec.pod_name}] = rec.ip;
  }
  for (const auto& ns : namespaces) {
    auto it = pods_.find(ns);
    if (it == pods_.end()) {
      continue;
    }
    for (const auto& [name, pod] : it->second) {
      for (const auto& [k, v] : pod.labels) {
        index.by_label[labelKey(ns, k, v)].push_back(&pod);
      }
    }
  }
  return index;
}

std::vector<lb::PodRecord> ServiceSync::selectable(const lb::Service& svc, const PodIndex& index) {
  // Pods as the EndpointSlice controller sees them: labels and ports from the manifest, the IP from CNI (or
  // status.podIP when the manifest carries one). Only those carrying the least common of the selector's labels:
  // deriveSlices() matches the whole selector.
  const std::vector<const lb::PodRecord*>* fewest = nullptr;
  for (const auto& [k, v] : svc.selector) {
    auto it = index.by_label.find(labelKey(svc.ns, k, v));
    if (it == index.by_label.end()) {
      return {};  // no pod carries this label
    }
    if (!fewest || it->second.size() < fewest->size()) {
      fewest = &it->second;
    }
  }
  std::vector<lb::PodRecord> out;
  if (!fewest) {
    return out;  // no selector: endpoints come only from the slices the user applies
  }
  out.reserve(fewest->size());
  for (const auto* pod : *fewest) {
    out.push_back(*pod);
    if (auto ip = index.ips.find({pod->ns, pod->name}); ip != index.ips.end()) {
      out.back().ip = ip->second;
    }
  }
  return out;
}

void ServiceSync::podsChanged(const std::string& ns) {
  if (!derive_) {
    return;
  }
  std::string prefix = ns + "/";
  for (auto it = services_.lower_bound(prefix); it != services_.end() && it->first.starts_with(prefix); ++it) {
    if (it->second) {
      dirty_.insert(it->first);
    }
  }
}

Status ServiceSync::sync(const std::vector<EndpointRecord>& endpoints) {
  if (!endpoints_restored_) {
    return Status::Ok();
  }
  auto t0 = std::chrono::steady_clock::now();
  bool full = dirty_all_ || manager_.needsFullSync();
  std::set<std::string> keys;
  if (full) {
    for (const auto& [key, selector] : services_) {
      keys.insert(key);
    }
  } else {
    keys = dirty_;
  }
  if (keys.empty() && !full) {
    return Status::Ok();
  }
  std::map<std::string, std::vector<lb::EndpointSlice>> slices;
  std::set<std::string> namespaces;
  for (const auto& key : keys) {
    auto owned = owned_slices_.find(key);
    if (owned == owned_slices_.end()) {
      continue;
    }
    std::string ns = key.substr(0, key.find('/'));
    for (const auto& name : owned->second) {
      if (auto es = slice({ResourceKind::kEndpointSlice, ns, name})) {
        slices[key].push_back(std::move(*es));  // the user's slices win over derived ones
      }
    }
  }
  std::map<std::string, std::optional<lb::Service>> changed;
  for (const auto& key : keys) {
    auto& svc = changed[key];
    if (services_.count(key)) {
      svc = service(key);
    }
    if (derive_ && svc && !slices.count(key) && !svc->selector.empty()) {
      namespaces.insert(svc->ns);
    }
  }
  pending_services_.clear();
  pending_slices_.clear();
  if (!namespaces.empty()) {
    auto index = podIndex(namespaces, endpoints);
    for (const auto& [key, svc] : changed) {
      if (svc && !slices.count(key)) {
        slices[key] = lb::deriveSlices(*svc, selectable(*svc, index));
      }
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  Status s = Status::Ok();
  if (full) {
    std::vector<lb::Service> all_services;
    for (auto& [key, svc] : changed) {
      if (svc) {
        all_services.push_back(*svc);
      }
    }
    std::vector<lb::EndpointSlice> all;
    for (auto& [key, list] : slices) {
      all.insert(all.end(), list.begin(), list.end());
    }
    s = manager_.sync(all_services, all);
  } else {
    s = manager_.update(changed, slices);
  }
  spdlog::debug("services: {} {} service(s): derive {:.1f} ms, program {:.1f} ms", full ? "full sync of" : "update of",
                keys.size(), std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count());
  if (!s.ok()) {
    return s;  // dirty state kept: the next sync retries (in full, the manager knows it is behind)
  }
  updateHealthChecks(changed, slices);
  dirty_all_ = false;
  dirty_.clear();
  return Status::Ok();
}

void ServiceSync::updateHealthChecks(const std::map<std::string, std::optional<lb::Service>>& services,
                                     const std::map<std::string, std::vector<lb::EndpointSlice>>& slices) {
  static const std::vector<lb::EndpointSlice> kNone;
  bool changed = false;
  for (const auto& [key, svc] : services) {
    auto mine = slices.find(key);
    std::optional<lb::HealthCheck> hc;
    if (svc) {
      hc = lb::healthCheckOf(*svc, mine == slices.end() ? kNone : mine->second, manager_.nodeName());
    }
    auto it = health_checks_.find(key);
    if (!hc) {
      if (it != health_checks_.end()) {
        health_checks_.erase(it);
        changed = true;
      }
    } else if (it == health_checks_.end() || !(it->second == *hc)) {
      health_checks_[key] = *hc;
      changed = true;
    }
  }
  if (changed && health_) {
    health_->publish(health_checks_);
  }
}

void ServiceSync::reportSourceRanges(const lb::Service& svc) {
  auto old = invalid_ranges_.find(svc.key());
  if (svc.invalid_source_ranges.empty()) {
    if (old != invalid_ranges_.end()) {
      invalid_ranges_.erase(old);
    }
    return;
  }
  if (old != invalid_ranges_.end() && old->second == svc.invalid_source_ranges) {
    return;
  }
  invalid_ranges_[svc.key()] = svc.invalid_source_ranges;
  std::string list;
  for (const auto& r : svc.invalid_source_ranges) {
    list += (list.empty() ? "" : ", ") + fmt::format("{:?}", r);
  }
  spdlog::warn("service {}: spec.loadBalancerSourceRanges: {} {} no IPv4 or IPv6 CIDR; they admit no client (the "
               "LoadBalancer addresses stay closed to all but the valid ranges)",
               svc.key(), list, svc.invalid_source_ranges.size() == 1 ? "is" : "are");
}

bool ServiceSync::track(const ResourceEvent& e) {
  switch (e.key.kind) {
    case ResourceKind::kService: {
      std::string key = nsOrDefault(e.key.namespace_name) + "/" + e.key.name;
      auto svc = e.type != ResourceEventType::kUpsert ? Result<lb::Service>(Error{})
                                                      : decodedOr<lb::Service>(e, lb::parseService);
      if (e.type == ResourceEventType::kUpsert && svc.ok()) {
        reportSourceRanges(*svc);
        services_[key] = !svc->selector.empty();
        pending_services_[key] = std::move(*svc);
      } else {
        services_.erase(key);
        pending_services_.erase(key);
        invalid_ranges_.erase(key);
      }
      dirty_.insert(key);
      return true;
    }
    case ResourceKind::kEndpointSlice: {
      if (auto it = slice_owners_.find(e.key); it != slice_owners_.end()) {
        dirty_.insert(it->second);  // its old owner
        auto owned = owned_slices_.find(it->second);
        std::erase(owned->second, e.key.name);
        if (owned->second.empty()) {
          owned_slices_.erase(owned);
        }
        slice_owners_.erase(it);
      }
      pending_slices_.erase(e.key);
      if (e.type == ResourceEventType::kUpsert) {
        if (auto es = decodedOr<lb::EndpointSlice>(e, lb::parseEndpointSlice); es.ok()) {
          std::string owner = es->ns + "/" + es->service;
          dirty_.insert(owner);
          auto& names = owned_slices_[owner];
          names.insert(std::lower_bound(names.begin(), names.end(), e.key.name), e.key.name);
          slice_owners_[e.key] = std::move(owner);
          pending_slices_[e.key] = std::move(*es);
        }
      }
      return true;
    }
    case ResourceKind::kPod: {
      if (!derive_) {
        return false;  // no input of any service
      }
      std::string ns = nsOrDefault(e.key.namespace_name);
      if (e.type == ResourceEventType::kUpsert && e.object.is_object()) {
        pods_[ns][e.key.name] = podFacts(ns, e.key.name, e.object);
      } else if (auto it = pods_.find(ns); it != pods_.end()) {
        it->second.erase(e.key.name);
        if (it->second.empty()) {
          pods_.erase(it);
        }
      }
      podsChanged(ns);
      return true;
    }
    default:
      if (e.type == ResourceEventType::kSynced) {
        dirty_all_ = true;
        return true;
      }
      return false;
  }
}

}  // namespace plexus::agent
