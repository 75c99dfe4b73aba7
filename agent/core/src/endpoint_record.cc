#include "plexus/agent/endpoint_record.h"

#include <fmt/format.h>

namespace plexus::agent {

nlohmann::json toJson(const EndpointRecord& r) {
  return {{"id", r.id},
          {"container_id", r.container_id},
          {"ifname", r.ifname},
          {"netns", r.netns},
          {"pod_namespace", r.pod_namespace},
          {"pod_name", r.pod_name},
          {"pod_uid", r.pod_uid},
          {"ip", r.ip.toString()},
          {"mac", r.mac.toString()},
          {"host_ifname", r.host_ifname},
          {"host_ifindex", r.host_ifindex},
          {"host_mac", r.host_mac.toString()},
          {"chained", r.chained},
          {"identity", r.identity},
          {"labels", r.labels},
          {"created_unix", r.created_unix}};
}

Result<EndpointRecord> endpointFromJson(const nlohmann::json& j) {
  try {
    EndpointRecord r;
    r.id = j.at("id").get<uint16_t>();
    r.container_id = j.at("container_id").get<std::string>();
    r.ifname = j.at("ifname").get<std::string>();
    r.netns = j.value("netns", "");
    r.pod_namespace = j.value("pod_namespace", "");
    r.pod_name = j.value("pod_name", "");
    r.pod_uid = j.value("pod_uid", "");
    auto ip = Ipv4::parse(j.at("ip").get<std::string>());
    auto mac = Mac::parse(j.value("mac", "00:00:00:00:00:00"));
    auto host_mac = Mac::parse(j.value("host_mac", "00:00:00:00:00:00"));
    if (!ip || !mac || !host_mac) {
      return makeError(ErrorCode::kInvalidArgument, "endpoint record: malformed ip or mac");
    }
    r.ip = *ip;
    r.mac = *mac;
    r.host_mac = *host_mac;
    r.host_ifname = j.at("host_ifname").get<std::string>();
    r.host_ifindex = j.value("host_ifindex", 0);
    r.chained = j.value("chained", false);
    r.identity = j.value("identity", 0u);
    r.labels = j.value("labels", std::vector<std::string>{});
    r.created_unix = j.value("created_unix", int64_t{0});
    if (r.id == 0 || r.container_id.empty() || r.ifname.empty() || r.host_ifname.empty()) {
      return makeError(ErrorCode::kInvalidArgument, "endpoint record: missing id, container_id, ifname or host_ifname");
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("endpoint record: {}", e.what()));
  }
}

std::string hostIfname(const std::string& container_id, const std::string& ifname) {
  // FNV-1a 64: stable across builds and platforms (std::hash is not).
  uint64_t h = 1469598103934665603ull;
  for (char c : container_id + "/" + ifname) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return fmt::format("lxc{:011x}", h & 0xfffffffffffull);
}

std::optional<EndpointRecord> findEndpoint(const std::vector<EndpointRecord>& endpoints, const std::string& selector) {
  for (const auto& rec : endpoints) {
    if (std::to_string(rec.id) == selector || rec.container_id == selector || rec.ip.toString() == selector ||
        rec.pod_namespace + "/" + rec.pod_name == selector || rec.host_ifname == selector) {
      return rec;
    }
  }
  return std::nullopt;
}

}  // namespace plexus::agent
