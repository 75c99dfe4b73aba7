#include "plexus/common/resource.h"

namespace plexus {

namespace {
struct KindInfo {
  ResourceKind kind;
  const char* group;  // "" for the core group
  const char* name;
  bool cluster_scoped;
};

constexpr KindInfo kKinds[] = {
    {ResourceKind::kNamespace, "", "Namespace", true},
    {ResourceKind::kPod, "", "Pod", false},
    {ResourceKind::kNode, "", "Node", true},
    {ResourceKind::kService, "", "Service", false},
    {ResourceKind::kEndpointSlice, "discovery.k8s.io", "EndpointSlice", false},
    {ResourceKind::kNetworkPolicy, "networking.k8s.io", "NetworkPolicy", false},
    {ResourceKind::kCiliumNetworkPolicy, "cilium.io", "CiliumNetworkPolicy", false},
    {ResourceKind::kCiliumClusterwideNetworkPolicy, "cilium.io", "CiliumClusterwideNetworkPolicy", true},
    {ResourceKind::kPlexusEndpoint, "plexus.io", "PlexusEndpoint", false},
    {ResourceKind::kPlexusNode, "plexus.io", "PlexusNode", true},
};
}  // namespace

const char* toString(ResourceKind kind) {
  for (const auto& k : kKinds) {
    if (k.kind == kind) {
      return k.name;
    }
  }
  return "Unknown";
}

bool resourceKindFromManifest(const std::string& api_version, const std::string& kind, ResourceKind* out) {
  auto slash = api_version.find('/');
  std::string group = slash == std::string::npos ? "" : api_version.substr(0, slash);
  for (const auto& k : kKinds) {
    if (kind == k.name && group == k.group) {
      *out = k.kind;
      return true;
    }
  }
  return false;
}

bool isClusterScoped(ResourceKind kind) {
  for (const auto& k : kKinds) {
    if (k.kind == kind) {
      return k.cluster_scoped;
    }
  }
  return false;
}

}  // namespace plexus
