#pragma once
// Policy enforcement state and the one writer of the policy map: the parsed policies (and the reasons invalid
// ones were refused), the selector cache over every identity (pods, reserved, local CIDR identities), and each
// endpoint's compiled map state. regenerate() recomputes what changed and swaps in each endpoint's new trie
// (shadow then swap); an endpoint whose new state cannot be installed keeps its old one, says so in its view,
// and is retried by the next regenerate(), never left with a partial map. A state is recorded as installed only
// after the kernel accepted it. The CIDR identities policies need go to the ipcache through its owner.
// Runs on the reconcile thread.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "plexus/agent/agent_notifications.h"
#include "plexus/agent/endpoint_record.h"
#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/ipcache_manager.h"
#include "plexus/agent/seams.h"
#include "plexus/common/resource.h"
#include "plexus/common/result.h"
#include "plexus/identity/identity.h"
#include "plexus/policy/compiler.h"
#include "plexus/policy/policy.h"

namespace plexus::agent {


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

// A peer `explain` finds outside this node's endpoints (a pod on another node, a node address).
struct ExplainPeer {
  std::string name;
  std::string node;
  uint32_t identity = 0;
};
using ExplainPeerLookup = std::function<std::optional<ExplainPeer>(const std::string&)>;

struct ExplainResult {
  bool allowed = false;
  std::vector<std::string> lines;  // egress at the source, then ingress at the destination
};

class PolicyManager final : public EndpointPolicyInstaller {
 public:
  // Identity labels of pod identities (the allocator's view), and the named ports of an endpoint's pod.
  using IdentitySource = std::function<std::map<uint32_t, std::vector<std::string>>()>;
  using NamedPortsOf = std::function<std::multimap<std::string, std::pair<uint16_t, uint8_t>>(const EndpointRecord&)>;

  PolicyManager(PolicyMap& map, IpcacheManager& ipcache, IdentitySource identities, NamedPortsOf named_ports,
                policy::EnforcementMode mode = policy::EnforcementMode::kDefault);

  // Validates without storing or recording anything (pure: it runs on a request's thread).
  Status validate(const nlohmann::json& object) const;
  // What validate() said when the object reached the store: a refusal is recorded under the policy's key (the
  // previous version stays enforced, and the status says why), an acceptance clears an old one.
  void validated(const ResourceKey& key, const Status& verdict);
  void upsert(const nlohmann::json& object);
  void remove(const std::string& kind, const std::string& ns, const std::string& name);

  // Recomputes the policy of every endpoint in `endpoints` (all of this node's) and installs what changed or
  // failed before; forgets endpoints that are gone. Returns the first failure (the others are logged).
  Status regenerate(const std::vector<EndpointRecord>& endpoints);
  // Installs the state a new endpoint starts with, before it gets its first packet (`endpoints`: all the others).
  Status install(const EndpointRecord& rec, const std::vector<EndpointRecord>& endpoints) override;
  // The endpoint is gone: its trie is released.
  void forget(uint16_t id) override;
  // Endpoints whose last install failed (kept on their previous state).
  bool pending() const;
  // The most entries any endpoint's installed policy holds (the fullest policy map).
  size_t largestPolicy() const;

  std::vector<PolicyStatus> policies() const;
  std::optional<EndpointPolicyView> endpointPolicy(uint16_t id) const;
  // Identity -> labels, for every identity the selector cache knows.
  const std::map<uint32_t, std::vector<policy::Label>>& identities() const { return cache_.identities(); }
  // The rule behind a rule id ("" when unknown).
  std::string ruleOrigin(uint32_t rule_id) const;
  // Where flow decoding learns which policy a flow event's rule id belongs to (kept current by upsert/remove).
  void reportRulesTo(FlowDirectory* flows) { flows_ = flows; }
  // Where each added, changed or deleted policy (POLICY_UPDATED, POLICY_DELETED) and each endpoint's policy install
  // (ENDPOINT_REGENERATE_SUCCESS, _FAILURE: once per failure, not per retry) is reported; null: nowhere.
  void setNotifications(NotificationLog* log) { notices_ = log; }
  // `remote` resolves what is not a local endpoint (may be empty): its identity judges, its own node enforces.
  Result<ExplainResult> explain(const std::vector<EndpointRecord>& endpoints, const std::string& from,
                                const std::string& to, uint8_t proto, uint16_t port,
                                const ExplainPeerLookup& remote = {});
  size_t validCount() const { return policies_.size(); }
  size_t invalidCount() const { return invalid_.size(); }
  // Node-local (CIDR) identities the policies' CIDRs were given.
  size_t cidrIdentityCount() const { return cidr_ids_.size(); }

 private:
  void notify(NotificationType type, const std::string& kind, const std::string& ns, const std::string& name,
              int64_t rules);
  void notifyRegenerated(const EndpointRecord& rec, const std::string& error);  // error empty: success
  // Why `compiled` must not be installed yet: it uses CIDR identities the ipcache failed to take.
  std::optional<std::string> cidrHole(const policy::EndpointPolicy& compiled) const;
  static std::string keyOf(const std::string& kind, const std::string& ns, const std::string& name);
  void syncIdentities();
  void syncCidrIdentities();
  policy::EndpointPolicy compileFor(const EndpointRecord& rec, const std::vector<EndpointRecord>& endpoints);

  PolicyMap& map_;
  IpcacheManager& ipcache_;
  IdentitySource identity_source_;
  NamedPortsOf named_ports_;
  std::map<std::string, policy::Policy> policies_;  // by key
  std::map<std::string, std::string> invalid_;      // key -> reason
  std::map<uint32_t, std::string> rule_origins_;
  FlowDirectory* flows_ = nullptr;
  NotificationLog* notices_ = nullptr;
  uint64_t revision_ = 1;  // the policy set's revision: each add, change or delete of a policy makes a new one
  policy::SelectorCache cache_;
  policy::EnforcementMode mode_;
  std::map<Ipv4Prefix, uint32_t> cidr_ids_;
  uint32_t next_cidr_id_ = identity::kFirstLocalIdentity;  // Cilium's local (CIDR) identity scope
  std::map<uint16_t, EndpointPolicyView> installed_;
};

}  // namespace plexus::agent
