#include "plexus/agent/resource_store.h"

#include <fmt/format.h>

#include "plexus/common/manifest.h"

namespace plexus::agent {

const char* toString(ApplyAction action) {
  switch (action) {
    case ApplyAction::kCreated: return "created";
    case ApplyAction::kConfigured: return "configured";
    case ApplyAction::kUnchanged: return "unchanged";
    case ApplyAction::kDeleted: return "deleted";
    case ApplyAction::kRejected: return "rejected";
    case ApplyAction::kNotFound: return "not found";
  }
  return "unknown";
}

namespace {
// Kubernetes object names: DNS-1123 subdomain (RFC 1123), at most 253 characters: dot-separated labels of lower-case
// letters, digits and '-', each starting and ending with a letter or digit.
bool validName(const std::string& name) {
  if (name.empty() || name.size() > 253) {
    return false;
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string::npos) {
      end = name.size();
    }
    if (end == start || !alnum(name[start]) || !alnum(name[end - 1])) {
      return false;
    }
    for (size_t i = start; i < end; ++i) {
      if (!alnum(name[i]) && name[i] != '-') {
        return false;
      }
    }
    start = end + 1;
  }
  return true;
}

nlohmann::json decode(const std::vector<std::uint8_t>& bytes) { return nlohmann::json::from_cbor(bytes); }

// CBOR in a vector of its exact size: encoded into a reused buffer first (an encoder's growing vector keeps up to
// twice the bytes, and leaves the freed steps behind in the heap).
std::vector<std::uint8_t> encode(const nlohmann::json& object) {
  thread_local std::vector<std::uint8_t> scratch;
  scratch.clear();
  nlohmann::json::to_cbor(object, scratch);
  return std::vector<std::uint8_t>(scratch.begin(), scratch.end());
}

// The part of an object that decides whether a re-apply changed anything.
nlohmann::json comparable(const nlohmann::json& object) {
  nlohmann::json c = object;
  if (c.contains("metadata") && c["metadata"].is_object()) {
    c["metadata"].erase("resourceVersion");
    c["metadata"].erase("generation");
    c["metadata"].erase("uid");
    c["metadata"].erase("creationTimestamp");
  }
  return c;
}
}  // namespace

void ResourceStore::setValidator(ResourceKind kind, Validator validator, VerdictHook on_verdict) {
  setDecoder(
      kind,
      [validator = std::move(validator)](const nlohmann::json& object) -> Result<std::any> {
        Status s = validator(object);
        if (!s.ok()) {
          return s.error();
        }
        return std::any();
      },
      std::move(on_verdict));
}

void ResourceStore::setDecoder(ResourceKind kind, Decoder decoder, VerdictHook on_verdict) {
  checks_[kind] = Check{std::move(decoder), std::move(on_verdict)};
}

Status ResourceStore::normalise(nlohmann::json* object, ResourceKey* key) const {
  if (!object->is_object()) {
    return makeError(ErrorCode::kInvalidArgument, "object: must be a map");
  }
  auto& o = *object;
  auto what = [&o] { return describeObject(o); };  // for an error's message only: not built for every object
  if (!o.contains("apiVersion") || !o["apiVersion"].is_string() || !o.contains("kind") || !o["kind"].is_string()) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("{}: apiVersion and kind: required strings", what()));
  }
  std::string api_version = o["apiVersion"];
  std::string kind = o["kind"];
  if (!resourceKindFromManifest(api_version, kind, &key->kind)) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("{}: kind {} (apiVersion {}) is not supported", what(), kind, api_version));
  }
  if (!o.contains("metadata") || !o["metadata"].is_object()) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("{}: metadata: required", what()));
  }
  auto& md = o["metadata"];
  if (!md.contains("name") || !md["name"].is_string() || !validName(md["name"].get<std::string>())) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("{}: metadata.name: must be a lower-case DNS-1123 subdomain", what()));
  }
  key->name = md["name"];
  if (isClusterScoped(key->kind)) {
    md.erase("namespace");  // cluster-scoped objects have none, as the API server treats them
    key->namespace_name.clear();
  } else {
    if (!md.contains("namespace") || md["namespace"].is_null()) {
      md["namespace"] = "default";
    }
    if (!md["namespace"].is_string() || !validName(md["namespace"].get<std::string>())) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("{}: metadata.namespace: invalid", what()));
    }
    key->namespace_name = md["namespace"];
  }
  if (md.contains("labels") && !md["labels"].is_null()) {
    if (!md["labels"].is_object()) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("{}: metadata.labels: must be a map", what()));
    }
    for (const auto& [k, v] : md["labels"].items()) {
      if (!v.is_string()) {
        return makeError(ErrorCode::kInvalidArgument,
                         fmt::format("{}: metadata.labels.{}: must be a string", what(), k));
      }
    }
  }
  return Status::Ok();
}

PreparedObject ResourceStore::prepare(nlohmann::json object, bool remove) const {
  PreparedObject p;
  Status s = normalise(&object, &p.key);
  p.outcome = ApplyOutcome{describeObject(object), ApplyAction::kRejected, ""};
  if (s.ok()) {
    auto v = checks_.find(p.key.kind);
    if (!remove && v != checks_.end()) {
      auto decoded = v->second.decode(object);
      p.verdict = decoded.status();
      if (decoded.ok()) {
        p.decoded = std::move(*decoded);
      }
      s = *p.verdict;
      if (!s.ok() && s.error().message.rfind(p.outcome.object, 0) != 0) {
        s = Error{s.error().code, p.outcome.object + ": " + s.error().message};
      }
    }
  }
  if (!s.ok()) {
    p.outcome.message = s.error().message;
    return p;
  }
  p.accepted = true;
  p.object = std::move(object);
  return p;
}

std::vector<ApplyOutcome> ResourceStore::commit(std::vector<PreparedObject> objects, bool remove,
                                                std::vector<ResourceEvent>* events) {
  std::vector<ApplyOutcome> out;
  out.reserve(objects.size());
  for (auto& p : objects) {
    if (p.verdict) {
      const auto& hook = checks_.at(p.key.kind).on_verdict;
      if (hook) {
        hook(p.key, *p.verdict);
      }
    }
    if (p.accepted) {
      if (remove) {
        commitRemove(p, events);
      } else {
        commitApply(p, events);
      }
    }
    out.push_back(std::move(p.outcome));
  }
  return out;
}

void ResourceStore::commitApply(PreparedObject& p, std::vector<ResourceEvent>* events) {
  auto it = objects_.find(p.key);
  std::optional<nlohmann::json> old;
  if (it != objects_.end()) {
    old = decode(it->second);
  }
  if (old && comparable(*old) == comparable(p.object)) {
    p.outcome.action = ApplyAction::kUnchanged;
    return;
  }
  auto& o = p.object;
  int64_t generation = old ? (*old)["metadata"].value("generation", int64_t{1}) + 1 : 1;
  o["metadata"]["generation"] = generation;
  o["metadata"]["resourceVersion"] = std::to_string(++resource_version_);
  p.outcome.action = it == objects_.end() ? ApplyAction::kCreated : ApplyAction::kConfigured;
  objects_[p.key] = encode(o);
  events->push_back(ResourceEvent{ResourceEventType::kUpsert, p.key, std::move(o), std::move(p.decoded)});
}
void ResourceStore::commitRemove(PreparedObject& p, std::vector<ResourceEvent>* events) {
  auto it = objects_.find(p.key);
  if (it == objects_.end()) {
    p.outcome.action = ApplyAction::kNotFound;
    return;
  }
  events->push_back(ResourceEvent{ResourceEventType::kDelete, p.key, decode(it->second)});
  objects_.erase(it);
  p.outcome.action = ApplyAction::kDeleted;
}

std::vector<ApplyOutcome> ResourceStore::apply(std::vector<nlohmann::json> objects,
                                               std::vector<ResourceEvent>* events) {
  return commit(prepareAll(std::move(objects), false), false, events);
}

std::vector<ApplyOutcome> ResourceStore::remove(std::vector<nlohmann::json> objects,
                                                std::vector<ResourceEvent>* events) {
  return commit(prepareAll(std::move(objects), true), true, events);
}

std::vector<PreparedObject> ResourceStore::prepareAll(std::vector<nlohmann::json> objects, bool remove) const {
  std::vector<PreparedObject> out;
  out.reserve(objects.size());
  for (auto& o : objects) {
    out.push_back(prepare(std::move(o), remove));
  }
  return out;
}

std::vector<nlohmann::json> ResourceStore::list(ResourceKind kind) const {
  std::vector<nlohmann::json> out;
  // Keys order by kind first: one range, not a scan of every object.
  for (auto it = objects_.lower_bound(ResourceKey{kind, "", ""}); it != objects_.end() && it->first.kind == kind;
       ++it) {
    out.push_back(decode(it->second));
  }
  return out;
}

std::optional<nlohmann::json> ResourceStore::get(const ResourceKey& key) const {
  auto it = objects_.find(key);
  if (it == objects_.end()) {
    return std::nullopt;
  }
  return decode(it->second);
}

nlohmann::json ResourceStore::snapshot() const {
  nlohmann::json items = nlohmann::json::array();
  for (const auto& [key, o] : objects_) {
    items.push_back(decode(o));
  }
  return {{"resourceVersion", resource_version_}, {"items", items}};
}

uint64_t ResourceStore::snapshotVersion(const nlohmann::json& snapshot) {
  auto v = snapshot.find("resourceVersion");
  return v != snapshot.end() && v->is_number_unsigned() ? v->get<uint64_t>() : 0;
}

Result<std::vector<ResourceEvent>> ResourceStore::restore(const nlohmann::json& snapshot) {
  if (!snapshot.is_object() || !snapshot.contains("items") || !snapshot["items"].is_array()) {
    return makeError(ErrorCode::kInvalidArgument, "resource snapshot: items: must be a list");
  }
  std::vector<ResourceEvent> events;
  objects_.clear();
  for (const auto& item : snapshot["items"]) {
    nlohmann::json o = item;
    ResourceKey key;
    Status s = normalise(&o, &key);
    if (!s.ok()) {
      return s.error().wrap("resource snapshot");
    }
    objects_[key] = encode(o);
    events.push_back(ResourceEvent{ResourceEventType::kUpsert, key, std::move(o)});
  }
  resource_version_ = snapshotVersion(snapshot);
  events.push_back(ResourceEvent{ResourceEventType::kSynced, {}, nullptr});
  return events;
}

}  // namespace plexus::agent
