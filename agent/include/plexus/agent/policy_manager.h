#pragma once
// Policy enforcement state: the parsed policies (and the reasons invalid ones were refused), the selector
// cache over every identity (pods, reserved, local CIDR identities), and each endpoint's compiled map state.
// regenerate() recomputes what changed and swaps in each endpoint's new trie (shadow then swap); an endpoint
// whose new state cannot be installed keeps its old one and the failure is reported, never a partial map.
// Runs on the reconcile thread.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "plexus/agent/endpoint_manager.h"
#include "plexus/common/result.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/policy/compiler.h"
#include "plexus/policy/policy.h"

namespace plexus::agent {

inline constexpr uint32_t kFirstLocalIdentity = 1u << 24;  // Cilium's local (CIDR) identity scope

struct PolicyStatus {
  std::string key;  // "CiliumNetworkPolicy x/allow-web"
  bool valid = false;
  std::string reason;  // why it was refused
  size_t rules = 0;
  std::vector<uint16_t> endpoints;  // endpoints it selects
};

struct EndpointPolicyView {
  policy::EndpointPolicy compiled;
  std::string error;  // the last install failure, if the map still holds an older state
};

struct ExplainResult {
  bool allowed = false;
  std::vector<std::string> lines;  // egress at the source, then ingress at the destination
};

class PolicyManager {
 public:
  // Identity labels of pod identities (the allocator's view), and the named ports of an endpoint's pod.
  using IdentitySource = std::function<std::map<uint32_t, std::vector<std::string>>()>;
  using NamedPortsOf = std::function<std::multimap<std::string, std::pair<uint16_t, uint8_t>>(const EndpointRecord&)>;

  PolicyManager(datapath::LxcDatapath& dp, EndpointManager& endpoints, IdentitySource identities,
                NamedPortsOf named_ports);

  // Validates without storing; records the refusal (or clears an old one) under the object's key.
  Status validate(const nlohmann::json& object);
  void upsert(const nlohmann::json& object);
  void remove(const std::string& kind, const std::string& ns, const std::string& name);

  // Recomputes every endpoint's policy and installs what changed.
  void regenerate();
  // The state an endpoint must start with (the endpoint manager installs it before the pod gets traffic).
  datapath::PolicyEntries initialEntries(const EndpointRecord& rec);

  std::vector<PolicyStatus> policies() const;
  std::optional<EndpointPolicyView> endpointPolicy(uint16_t id) const;
  // Identity -> labels, for every identity the selector cache knows.
  const std::map<uint32_t, std::vector<policy::Label>>& identities() const { return cache_.identities(); }
  // The rule behind a rule id ("" when unknown).
  std::string ruleOrigin(uint32_t rule_id) const;
  Result<ExplainResult> explain(const std::string& from, const std::string& to, uint8_t proto, uint16_t port);
  size_t validCount() const { return policies_.size(); }
  size_t invalidCount() const { return invalid_.size(); }

 private:
  static std::string keyOf(const std::string& kind, const std::string& ns, const std::string& name);
  void syncIdentities();
  void syncCidrIdentities();
  // Every IPv4 address of this node is the host identity in the ipcache, as in Cilium.
  void syncHostAddresses();
  policy::EndpointPolicy compileFor(const EndpointRecord& rec);

  datapath::LxcDatapath& dp_;
  EndpointManager& endpoints_;
  IdentitySource identity_source_;
  NamedPortsOf named_ports_;
  std::map<std::string, policy::Policy> policies_;  // by key
  std::map<std::string, std::string> invalid_;      // key -> reason
  std::map<uint32_t, std::string> rule_origins_;
  policy::SelectorCache cache_;
  std::map<Ipv4Prefix, uint32_t> cidr_ids_;
  std::set<Ipv4> host_addrs_;
  uint32_t next_cidr_id_ = kFirstLocalIdentity;
  std::map<uint16_t, EndpointPolicyView> installed_;
};

}  // namespace plexus::agent
