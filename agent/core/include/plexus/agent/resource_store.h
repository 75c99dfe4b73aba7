#pragma once
// The embedded standalone store: what `plexus apply -f` / `plexus delete -f` write in standalone mode. It
// validates objects (common rules here, kind-specific rules through validators the domain libraries
// register), keeps the accepted ones, and emits the same ResourceEvents the Kubernetes watchers emit. Pure:
// persistence is the caller's (snapshot()/restore()).

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/resource.h"
#include "plexus/common/result.h"

namespace plexus::agent {

enum class ApplyAction { kCreated, kConfigured, kUnchanged, kDeleted, kRejected, kNotFound };
const char* toString(ApplyAction action);

struct ApplyOutcome {
  std::string object;  // "Service default/web"
  ApplyAction action = ApplyAction::kRejected;
  std::string message;  // why it was rejected
};

// A kind-specific check. Returns an error naming the field ("spec.ports[0].port: must be 1-65535").
using Validator = std::function<Status(const nlohmann::json& object)>;

class ResourceStore {
 public:
  void setValidator(ResourceKind kind, Validator validator);

  // Each object is judged on its own: an invalid one is rejected with a message, the others still apply.
  std::vector<ApplyOutcome> apply(const std::vector<nlohmann::json>& objects, std::vector<ResourceEvent>* events);
  std::vector<ApplyOutcome> remove(const std::vector<nlohmann::json>& objects, std::vector<ResourceEvent>* events);

  std::vector<nlohmann::json> list(ResourceKind kind) const;
  std::optional<nlohmann::json> get(const ResourceKey& key) const;
  size_t size() const { return objects_.size(); }

  nlohmann::json snapshot() const;
  // Restores a snapshot; returns the events that replay it (upserts, then kSynced).
  Result<std::vector<ResourceEvent>> restore(const nlohmann::json& snapshot);

 private:
  // Common checks and normalisation (namespace defaulting); fills key.
  Status normalise(nlohmann::json* object, ResourceKey* key) const;

  std::map<ResourceKind, Validator> validators_;
  // Each object as CBOR (RFC 8949) bytes: a fifth or less of an nlohmann::json tree's memory (a node per value, a
  // map node per key); readers get a decoded copy, as they got a copy before.
  std::map<ResourceKey, std::vector<std::uint8_t>> objects_;
  uint64_t resource_version_ = 0;
};

}  // namespace plexus::agent
