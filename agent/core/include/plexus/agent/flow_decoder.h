#pragma once
// Turns datapath flow events into enriched flow records. The directory is written by the reconcile thread
// (endpoint and service changes) and read by the event reader thread, so it is thread-safe. Pure.

#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "plexus/agent/flow_store.h"
#include "plexus/common/ipv4.h"
#include "plexus/events.h"

namespace plexus::agent {

struct PeerInfo {
  std::string pod_namespace;
  std::string pod_name;
  std::vector<std::string> labels;
  uint16_t endpoint_id = 0;
  std::string host_ifname;  // the endpoint's host-side device, where its flows are observed
  uint32_t host_ifindex = 0;
};

// A service frontend as flows meet it: address, port, protocol.
struct FrontendAddress {
  Ipv4 ip;
  uint16_t port = 0;
  uint8_t proto = 0;
};
using ServiceNames = std::vector<std::pair<FrontendAddress, std::string>>;  // frontend -> "namespace/name"

class FlowDirectory {
 public:
  void upsertEndpoint(Ipv4 ip, PeerInfo info);
  void removeEndpoint(Ipv4 ip);
  // Every frontend with its service's name.
  void setServices(const ServiceNames& frontends);
  // Incremental form: drops `removed` frontends, then adds `added`.
  void updateServices(const std::vector<FrontendAddress>& removed, const ServiceNames& added);

  // The rules of one policy (by its key, e.g. "CiliumNetworkPolicy x/name"), each with its id and its own `ingress`
  // and `match_type` over `policy`'s kind and name, replacing those it had; none: it is gone.
  struct RuleRef {
    uint32_t id = 0;
    bool ingress = false;
    uint8_t match_type = 0;
  };
  void setPolicyRules(const std::string& policy_key, const FlowPolicy& policy, const std::vector<RuleRef>& rules);

  bool lookupEndpoint(Ipv4 ip, PeerInfo* out) const;
  std::string lookupService(Ipv4 ip, uint16_t port, uint8_t proto) const;
  std::shared_ptr<const FlowPolicy> lookupRule(uint32_t rule_id) const;

  // Fills what the directory knows of the event's flow (both peers' pods, the observing endpoint's device, the
  // deciding rule's policy, the service of a translated flow's frontend) under one read lock, sharing what it keeps.
  void enrich(const plexus_flow_event& e, FlowRecord* f) const;

 private:
  struct Endpoint {
    std::shared_ptr<const FlowPod> pod;  // shared by every flow of the pod
    uint16_t endpoint_id = 0;
    std::string host_ifname;
    uint32_t host_ifindex = 0;
  };
  // Under mu_.
  const Endpoint* find(Ipv4 ip) const;
  const std::string* findService(const FrontendAddress& f) const;
  std::shared_ptr<const FlowPolicy> findRule(uint32_t rule_id) const;

  mutable std::shared_mutex mu_;
  std::unordered_map<uint32_t, Endpoint> endpoints_;  // by address (host order)
  std::unordered_map<uint64_t, std::string> services_;  // packed frontend address -> name
  std::map<std::string, std::vector<uint32_t>> policy_rules_;  // policy key -> its rule ids
  std::unordered_map<uint32_t, std::shared_ptr<const FlowPolicy>> rules_;
};

// mono_to_real_ns: CLOCK_REALTIME - CLOCK_MONOTONIC, to turn bpf_ktime_get_ns() into wall-clock time.
FlowRecord decodeFlow(const plexus_flow_event& e, int64_t mono_to_real_ns, const FlowDirectory& dir);

}  // namespace plexus::agent
