#pragma once
// The Kubernetes service model (pure): v1 Service and discovery.k8s.io/v1 EndpointSlice parsed from their JSON,
// and endpoints derived from pods as the EndpointSlice controller would when no slice is given.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"

namespace plexus::lb {

enum class ServiceType { kClusterIP, kNodePort, kLoadBalancer };
const char* toString(ServiceType t);
const char* protoName(uint8_t proto);

struct ServicePort {
  std::string name;
  uint8_t proto = 6;             // IPPROTO_TCP / IPPROTO_UDP
  uint16_t port = 0;
  std::string target_port;       // a number or a container port name; empty: same as port
  uint16_t node_port = 0;        // 0: allocate (NodePort, LoadBalancer)
};

struct Service {
  std::string ns;
  std::string name;
  ServiceType type = ServiceType::kClusterIP;
  std::optional<Ipv4> cluster_ip;   // none for headless services
  std::vector<ServicePort> ports;
  std::vector<Ipv4> external_ips;
  std::vector<Ipv4> lb_ingress_ips;  // status.loadBalancer.ingress[].ip
  std::map<std::string, std::string> selector;
  bool affinity_client_ip = false;
  uint32_t affinity_timeout = 10800;  // Kubernetes' default
  bool external_traffic_local = false;
  bool internal_traffic_local = false;
  // spec.healthCheckNodePort (externalTrafficPolicy: Local LoadBalancers): the node answers kube-proxy's health
  // check there (lb/health_check.h); 0: none.
  uint16_t health_check_node_port = 0;
  // spec.loadBalancerSourceRanges. source_ranges_set: the field lists anything, so the LoadBalancer addresses admit
  // only clients inside source_ranges. Entries that are no IPv4 CIDR are left out of source_ranges (an IPv6 range
  // never holds an IPv4 client; a malformed one is named in invalid_source_ranges for the log) and so admit
  // nobody: a mistake closes the service, it never opens it to all.
  bool source_ranges_set = false;
  std::vector<Ipv4Prefix> source_ranges;
  std::vector<std::string> invalid_source_ranges;

  std::string key() const { return ns + "/" + name; }
};

// Rejects what the API server would, naming the field: "spec.ports[1].port: must be 1-65535". Malformed
// loadBalancerSourceRanges entries are kept aside (invalid_source_ranges), not refused: see above.
Result<Service> parseService(const nlohmann::json& object);

// One entry of spec.loadBalancerSourceRanges, as kube-proxy reads it (surrounding spaces ignored): an IPv4 CIDR, or
// nullopt with *ipv6 set for an IPv6 CIDR (valid, but it holds no IPv4 client), or nullopt when malformed.
std::optional<Ipv4Prefix> parseSourceRange(const std::string& text, bool* ipv6);

struct EndpointPort {
  std::string name;
  uint8_t proto = 6;
  uint16_t port = 0;
};

struct EndpointAddress {
  Ipv4 ip;
  bool ready = true;
  bool serving = true;
  bool terminating = false;
  std::string node_name;
};

struct EndpointSlice {
  std::string ns;
  std::string name;
  std::string service;  // label kubernetes.io/service-name
  std::vector<EndpointPort> ports;
  std::vector<EndpointAddress> endpoints;
};

Result<EndpointSlice> parseEndpointSlice(const nlohmann::json& object);

struct PodRecord {
  std::string ns;
  std::string name;
  std::map<std::string, std::string> labels;
  std::optional<Ipv4> ip;
  bool ready = true;
  bool terminating = false;
  std::map<std::string, std::pair<uint16_t, uint8_t>> named_ports;  // containerPort name -> (port, proto)
  std::string node_name;
};

// What the EndpointSlice controller would publish for a selector service: every pod with an IP whose labels
// match, one port per service port (a named targetPort resolved on each pod; pods without that name left out).
std::vector<EndpointSlice> deriveSlices(const Service& svc, const std::vector<PodRecord>& pods);

}  // namespace plexus::lb
