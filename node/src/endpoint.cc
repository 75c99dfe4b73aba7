#include "plexus/node/endpoint.h"

#include <fmt/format.h>

namespace plexus::node {

Result<RemoteEndpoint> parsePlexusEndpoint(const nlohmann::json& o) {
  auto bad = [](const std::string& what) { return makeError(ErrorCode::kInvalidArgument, what); };
  if (!o.is_object() || !o.contains("metadata") || !o["metadata"].is_object()) {
    return bad("metadata: must be an object");
  }
  const auto& md = o["metadata"];
  RemoteEndpoint ep;
  if (!md.contains("name") || !md["name"].is_string() || md["name"].get<std::string>().empty()) {
    return bad("metadata.name: must be the pod's name");
  }
  ep.name = md["name"].get<std::string>();
  ep.ns = md.contains("namespace") && md["namespace"].is_string() ? md["namespace"].get<std::string>() : "default";
  if (!o.contains("status") || !o["status"].is_object()) {
    return bad("status: must be an object");
  }
  const auto& st = o["status"];
  auto ip = st.contains("ipv4") && st["ipv4"].is_string() ? Ipv4::parse(st["ipv4"].get<std::string>()) : std::nullopt;
  if (!ip) {
    return bad("status.ipv4: must be an IPv4 address");
  }
  ep.ip = *ip;
  if (!st.contains("identity") || !st["identity"].is_number_unsigned() || st["identity"].get<uint64_t>() < 1 ||
      st["identity"].get<uint64_t>() > 0xffffff) {
    return bad("status.identity: must be a security identity (1-16777215)");
  }
  ep.identity = st["identity"].get<uint32_t>();
  if (!st.contains("nodeName") || !st["nodeName"].is_string() || st["nodeName"].get<std::string>().empty()) {
    return bad("status.nodeName: must name the hosting node");
  }
  ep.node = st["nodeName"].get<std::string>();
  if (st.contains("labels")) {
    if (!st["labels"].is_array()) {
      return bad("status.labels: must be a list");
    }
    for (size_t i = 0; i < st["labels"].size(); ++i) {
      if (!st["labels"][i].is_string()) {
        return bad(fmt::format("status.labels[{}]: must be a string", i));
      }
      ep.labels.push_back(st["labels"][i].get<std::string>());
    }
  }
  return ep;
}

nlohmann::json plexusEndpointObject(const RemoteEndpoint& ep) {
  return {{"apiVersion", kEndpointApiVersion},
          {"kind", "PlexusEndpoint"},
          {"metadata", {{"name", ep.name}, {"namespace", ep.ns}}},
          {"status",
           {{"ipv4", ep.ip.toString()}, {"identity", ep.identity}, {"nodeName", ep.node}, {"labels", ep.labels}}}};
}

}  // namespace plexus::node
