#include "plexus/agent/identity_manager.h"

#include <cstdlib>

#include <spdlog/spdlog.h>

#include "plexus/agent/map_encoding.h"

namespace plexus::agent {

std::optional<std::pair<uint32_t, identity::Labels>> parsePlexusIdentity(const nlohmann::json& obj) {
  if (!obj.is_object()) {
    return std::nullopt;
  }
  const auto& md = obj.value("metadata", nlohmann::json::object());
  std::string name = md.is_object() ? md.value("name", "") : "";
  char* end = nullptr;
  unsigned long id = std::strtoul(name.c_str(), &end, 10);
  if (name.empty() || *end != '\0' || id < identity::kFirstClusterIdentity || id > PLEXUS_IDENTITY_VNI_MAX) {
    return std::nullopt;
  }
  const auto& sl = obj.value("security-labels", nlohmann::json::object());
  if (!sl.is_object() || sl.empty()) {
    return std::nullopt;
  }
  identity::Labels labels;
  for (const auto& [k, v] : sl.items()) {
    if (!v.is_string()) {
      return std::nullopt;
    }
    std::string value = v;
    labels.insert(value.empty() && k.rfind("reserved:", 0) == 0 ? k : k + "=" + value);
  }
  return std::make_pair(static_cast<uint32_t>(id), labels);
}

Status IdentityManager::restore() {
  auto snapshot = store_.loadIdentities();
  if (!snapshot.ok()) {
    return snapshot.error();
  }
  if (!snapshot->has_value()) {
    return Status::Ok();
  }
  return allocator_.restore(**snapshot);
}

void IdentityManager::persist() {
  unsaved_ = false;
  if (Status s = store_.saveIdentities(allocator_.snapshot()); !s.ok()) {
    spdlog::error("identities: persist: {}", s.error().message);
  }
}

void IdentityManager::changedAllocator(bool durable) {
  if (durable) {
    persist();
  } else {
    unsaved_ = true;
  }
}

void IdentityManager::flush() {
  if (unsaved_) {
    persist();
  }
}

uint32_t IdentityManager::acquire(const identity::Labels& labels, bool durable) {
  if (labels.empty()) {
    return kIdentityInit;
  }
  if (!api_ || allocator_.find(labels)) {
    uint32_t id = allocator_.acquire(labels);
    changedAllocator(durable);
    return id;
  }
  // The first local user of these labels: the cluster decides the number.
  std::string key = identity::canonical(labels);
  if (auto it = granted_.find(key); it != granted_.end()) {
    auto held = allocator_.acquireWithId(labels, it->second);
    if (held.ok()) {
      changedAllocator(durable);
      return *held;
    }
    spdlog::warn("identity {} for {}: {}", it->second, key, held.error().message);
    granted_.erase(it);
  }
  if (requested_.insert(key).second) {
    api_->allocateIdentity(labels);
  }
  return kIdentityInit;
}

void IdentityManager::release(uint32_t id, bool durable) {
  if (id < identity::kFirstClusterIdentity) {
    return;
  }
  auto labels = allocator_.labelsOf(id);
  if (allocator_.release(id)) {
    if (api_) {
      api_->releaseIdentity(id);
    }
    if (labels) {
      granted_.erase(identity::canonical(*labels));
    }
  }
  changedAllocator(durable);
}

void IdentityManager::allocated(const identity::Labels& labels, uint32_t id) {
  std::string key = identity::canonical(labels);
  requested_.erase(key);
  granted_[key] = id;
  remote_[id] = labels;
}

void IdentityManager::failed(const identity::Labels& labels, const std::string& error) {
  // The endpoints stay init; the next event for their pods asks again.
  requested_.erase(identity::canonical(labels));
  spdlog::warn("identity for {}: {}", identity::canonical(labels), error);
}

void IdentityManager::settle(const identity::Labels& labels) {
  std::string key = identity::canonical(labels);
  auto it = granted_.find(key);
  if (it == granted_.end() || allocator_.find(labels)) {
    return;
  }
  if (api_) {
    api_->releaseIdentity(it->second);  // nobody here wanted it any more
  }
  granted_.erase(it);
}

void IdentityManager::observeRemote(const std::vector<ResourceEvent>& events) {
  for (const auto& e : events) {
    if (e.type == ResourceEventType::kSynced) {
      continue;
    }
    auto parsed = parsePlexusIdentity(e.object);
    if (!parsed) {
      spdlog::warn("k8s: PlexusIdentity {}: not a valid identity object, ignored", e.key.name);
      continue;
    }
    if (e.type == ResourceEventType::kDelete) {
      remote_.erase(parsed->first);
    } else {
      remote_[parsed->first] = parsed->second;
    }
  }
}

std::map<uint32_t, std::vector<std::string>> IdentityManager::all() const {
  std::map<uint32_t, std::vector<std::string>> out;
  for (const auto& [id, labels] : allocator_.all()) {
    out.emplace(id, std::vector<std::string>(labels.begin(), labels.end()));
  }
  for (const auto& [id, labels] : remote_) {
    out.emplace(id, std::vector<std::string>(labels.begin(), labels.end()));
  }
  return out;
}

}  // namespace plexus::agent
