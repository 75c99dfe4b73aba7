#pragma once
// Typed resource events: what the Kubernetes watchers and the embedded standalone store both emit. Nothing
// downstream knows which source produced an event. Objects stay in their Kubernetes JSON form here; each domain
// library parses the kinds it owns (policy/ parses NetworkPolicy and CNP, loadbalancer/ parses Service, ...).

#include <any>
#include <string>

#include <nlohmann/json.hpp>

namespace plexus {

// The kinds the agent consumes, keyed by "apiVersion group/Kind" identity without version skew.
enum class ResourceKind {
  kNamespace,
  kPod,
  kNode,
  kService,
  kEndpointSlice,
  kNetworkPolicy,
  kCiliumNetworkPolicy,
  kCiliumClusterwideNetworkPolicy,
  kPlexusEndpoint,  // plexus.io/v1alpha1: an endpoint another agent published (Kubernetes mode)
  kPlexusNode,      // plexus.io/v1alpha1: a node's cluster-pool pod CIDR claim (Kubernetes mode)
};

enum class ResourceEventType { kUpsert, kDelete, kSynced };

struct ResourceKey {
  ResourceKind kind = ResourceKind::kNamespace;
  std::string namespace_name;  // empty for cluster-scoped kinds
  std::string name;
  friend bool operator==(const ResourceKey&, const ResourceKey&) = default;
  friend auto operator<=>(const ResourceKey&, const ResourceKey&) = default;
};

struct ResourceEvent {
  ResourceEventType type = ResourceEventType::kUpsert;
  ResourceKey key;
  nlohmann::json object;  // the full object for kUpsert, the last known object for kDelete, null for kSynced
  // For kUpsert, what the store's check of the kind decoded from `object` (an lb::Service, ...) when it keeps it:
  // consumers use it instead of parsing the object again.
  std::any decoded = {};
};

const char* toString(ResourceKind kind);
// Maps an object's apiVersion + kind ("v1"/"Pod", "cilium.io/v2"/"CiliumNetworkPolicy") to a ResourceKind.
bool resourceKindFromManifest(const std::string& api_version, const std::string& kind, ResourceKind* out);
bool isClusterScoped(ResourceKind kind);

}  // namespace plexus
