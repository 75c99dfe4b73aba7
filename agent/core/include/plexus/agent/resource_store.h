#pragma once
// The embedded standalone store: what `plexus apply -f` / `plexus delete -f` write in standalone mode. It
// validates objects (common rules here, kind-specific rules through validators the domain libraries
// register), keeps the accepted ones, and emits the same ResourceEvents the Kubernetes watchers emit. Pure:
// persistence is the caller's (snapshot()/restore()).

#include <any>
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

// A kind-specific check. Returns an error naming the field ("spec.ports[0].port: must be 1-65535"). Pure: it may run
// on a request's thread while the store's owner commits earlier objects.
using Validator = std::function<Status(const nlohmann::json& object)>;
// A validator that also hands on what it decoded, in the object's upsert event (ResourceEvent::decoded).
using Decoder = std::function<Result<std::any>(const nlohmann::json& object)>;
// Told, on the store's thread when an object of the kind commits, what its validator said (an invalid policy update
// keeps the previous version enforced, and its status says why).
using VerdictHook = std::function<void(const ResourceKey& key, const Status& verdict)>;

// An object normalised (namespace defaulted) and checked, ready to commit. prepare() is pure, so a large request's
// objects are prepared on its own thread while the earlier ones commit on the store's.
struct PreparedObject {
  ResourceKey key;
  nlohmann::json object;
  ApplyOutcome outcome;  // names the object; kRejected with the message when it was refused
  bool accepted = false;
  std::optional<Status> verdict;  // the kind validator's, when one ran
  std::any decoded;               // what a Decoder gave
};

class ResourceStore {
 public:
  // Set before any object is prepared (validators are read without a lock).
  void setValidator(ResourceKind kind, Validator validator, VerdictHook on_verdict = {});
  void setDecoder(ResourceKind kind, Decoder decoder, VerdictHook on_verdict = {});

  // Each object is judged on its own: an invalid one is rejected with a message, the others still apply.
  std::vector<ApplyOutcome> apply(std::vector<nlohmann::json> objects, std::vector<ResourceEvent>* events);
  std::vector<ApplyOutcome> remove(std::vector<nlohmann::json> objects, std::vector<ResourceEvent>* events);
  // apply() and remove() in two steps: prepare() from any thread, commit() in order on the store's.
  PreparedObject prepare(nlohmann::json object, bool remove) const;
  std::vector<ApplyOutcome> commit(std::vector<PreparedObject> objects, bool remove,
                                   std::vector<ResourceEvent>* events);

  std::vector<nlohmann::json> list(ResourceKind kind) const;
  std::optional<nlohmann::json> get(const ResourceKey& key) const;
  size_t size() const { return objects_.size(); }
  // The stored object's CBOR (valid until the store changes), or null.
  const std::vector<std::uint8_t>* encoded(const ResourceKey& key) const {
    auto it = objects_.find(key);
    return it == objects_.end() ? nullptr : &it->second;
  }

  nlohmann::json snapshot() const;
  // Restores a snapshot; returns the events that replay it (upserts, then kSynced).
  Result<std::vector<ResourceEvent>> restore(const nlohmann::json& snapshot);
  // A snapshot's resourceVersion; 0 when it is missing or not an unsigned number (a damaged file).
  static uint64_t snapshotVersion(const nlohmann::json& snapshot);

 private:
  // Common checks and normalisation (namespace defaulting); fills key.
  Status normalise(nlohmann::json* object, ResourceKey* key) const;
  std::vector<PreparedObject> prepareAll(std::vector<nlohmann::json> objects, bool remove) const;
  void commitApply(PreparedObject& p, std::vector<ResourceEvent>* events);
  void commitRemove(PreparedObject& p, std::vector<ResourceEvent>* events);

  struct Check {
    Decoder decode;
    VerdictHook on_verdict;
  };
  std::map<ResourceKind, Check> checks_;
  // Each object as CBOR (RFC 8949) bytes: a fifth or less of an nlohmann::json tree's memory (a node per value, a
  // map node per key); readers get a decoded copy, as they got a copy before.
  std::map<ResourceKey, std::vector<std::uint8_t>> objects_;
  uint64_t resource_version_ = 0;
};

}  // namespace plexus::agent
