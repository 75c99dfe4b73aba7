#include "plexus/agent/map_encoding.h"

#include <arpa/inet.h>

#include <cstring>

namespace plexus::agent {

plexus_endpoint_key encodeEndpointKey(Ipv4 ip) {
  plexus_endpoint_key k{};
  k.ip = ip.networkOrder();
  return k;
}

plexus_endpoint_value encodeEndpointValue(const EndpointRecord& rec) {
  plexus_endpoint_value v{};
  v.ifindex = static_cast<uint32_t>(rec.host_ifindex);
  v.identity = rec.identity;
  v.ep_id = rec.id;
  v.flags = rec.chained ? PLEXUS_EP_F_CHAINED : 0;
  std::memcpy(v.pod_mac, rec.mac.b, sizeof(v.pod_mac));
  std::memcpy(v.node_mac, rec.host_mac.b, sizeof(v.node_mac));
  return v;
}

plexus_endpoint_value encodeHostEndpointValue() {
  plexus_endpoint_value v{};
  v.flags = PLEXUS_EP_F_HOST;
  v.identity = kIdentityHost;
  return v;
}

plexus_ipcache_key encodeIpcacheKey(Ipv4Prefix prefix) {
  plexus_ipcache_key k{};
  k.prefixlen = static_cast<uint32_t>(prefix.length());
  k.ip = prefix.network().networkOrder();
  return k;
}

plexus_ipcache_value encodeIpcacheValue(uint32_t identity, Ipv4 tunnel_endpoint) {
  plexus_ipcache_value v{};
  v.identity = identity;
  v.tunnel_endpoint = tunnel_endpoint.networkOrder();
  return v;
}

std::pair<plexus_policy_key, plexus_policy_value> encodePolicyEntry(const policy::Entry& e) {
  plexus_policy_key k{};
  k.prefixlen = e.proto == policy::kProtoAny ? PLEXUS_POLICY_FIXED_PREFIX : PLEXUS_POLICY_PROTO_PREFIX + e.port_bits;
  k.identity = e.identity;
  k.direction = static_cast<uint8_t>(e.direction);
  k.protocol = e.proto;
  k.dport = htons(e.port);
  plexus_policy_value v{};
  v.flags = e.deny ? PLEXUS_POLICY_F_DENY : 0;
  v.rule_id = e.rule_id;
  return {k, v};
}

}  // namespace plexus::agent
