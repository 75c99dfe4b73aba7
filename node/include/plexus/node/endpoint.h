#pragma once
// PlexusEndpoint (plexus.io/v1alpha1): how an agent in Kubernetes mode tells the other nodes about a pod it
// wired, as Cilium's CiliumEndpoint does: the pod's address, its cluster-wide identity and labels, and the node
// that hosts it. Pure parsing and building.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"

namespace plexus::node {

inline constexpr const char* kEndpointApiVersion = "plexus.io/v1alpha1";

struct RemoteEndpoint {
  std::string ns;
  std::string name;  // the pod's name
  std::string node;  // the node that hosts it
  Ipv4 ip;
  uint32_t identity = 0;
  std::vector<std::string> labels;
  friend bool operator==(const RemoteEndpoint&, const RemoteEndpoint&) = default;
};

// Checks every field it reads (status.ipv4, status.identity, status.nodeName, status.labels) with an error
// naming the field; never throws.
[[nodiscard]] Result<RemoteEndpoint> parsePlexusEndpoint(const nlohmann::json& object);
nlohmann::json plexusEndpointObject(const RemoteEndpoint& ep);

}  // namespace plexus::node
