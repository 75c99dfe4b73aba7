#pragma once
// The agent's persistent record of one endpoint (pod interface), stored as JSON in the state directory.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"

namespace plexus::agent {

struct EndpointRecord {
  uint16_t id = 0;
  std::string container_id;
  std::string ifname;
  std::string netns;
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_uid;
  Ipv4 ip;
  Mac mac;
  std::string host_ifname;
  int host_ifindex = 0;
  Mac host_mac;
  bool chained = false;
  uint32_t identity = 0;
  std::vector<std::string> labels;
  int64_t created_unix = 0;

  std::string owner() const { return container_id + "/" + ifname; }
};

nlohmann::json toJson(const EndpointRecord& r);
Result<EndpointRecord> endpointFromJson(const nlohmann::json& j);

// The endpoint named by `selector`: its id, container id, "namespace/pod", pod IP or host veth.
std::optional<EndpointRecord> findEndpoint(const std::vector<EndpointRecord>& endpoints, const std::string& selector);

// "lxc" + 11 hex digits of a hash of the owner: unique per attachment and within IFNAMSIZ (15).
std::string hostIfname(const std::string& container_id, const std::string& ifname);

}  // namespace plexus::agent
