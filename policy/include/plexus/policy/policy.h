#pragma once
// The policy model (pure): Kubernetes NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy
// parsed and validated into one shape. Every peer becomes a set of label selectors over identities (entities
// and CIDRs included, through reserved and cidr labels), so the compiler has one thing to evaluate.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/policy/selector.h"

namespace plexus::policy {

enum class Direction : uint8_t { kIngress = 1, kEgress = 2 };  // the datapath's plexus_direction values
const char* toString(Direction d);

inline constexpr uint8_t kProtoAny = 0;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoIcmpv6 = 58;
inline constexpr uint8_t kProtoSctp = 132;
const char* protoName(uint8_t proto);  // "TCP", "UDP", "SCTP", "ICMP", "ICMPv6", "ANY"

// One toPorts/ports item, or one CNP `icmps` field. port 0 with no name: every port. A name is resolved on the pods
// the traffic goes to. ICMP and ICMPv6: `port` is the message type, always exactly that type (0 is echo reply).
struct PortSpec {
  uint8_t proto = kProtoAny;
  uint16_t port = 0;
  uint16_t end_port = 0;  // inclusive; 0 = just `port`
  std::string name;
};

// Who is on the other side. `all` is the wildcard (any identity, in or out of the cluster).
struct Peers {
  bool all = false;
  std::vector<Selector> selectors;
  bool empty() const { return !all && selectors.empty(); }
};

struct Rule {
  Direction direction = Direction::kIngress;
  bool deny = false;
  Peers peers;
  std::vector<PortSpec> ports;  // empty: every port and protocol
  std::string origin;           // "CiliumNetworkPolicy x/allow-web spec ingress[0]"
  uint32_t id = 0;              // stable hash of origin, never 0
};

// One selecting spec: the endpoints it applies to, and its rules.
struct Spec {
  Selector subject;
  bool selects_nodes = false;  // a nodeSelector: host policy, not enforced by this build (as Cilium without
                               // the host firewall)
  bool ingress = false;        // has ingress rules (allow or deny): ingress becomes default-deny
  bool egress = false;
  bool default_deny_ingress = true;  // enableDefaultDeny
  bool default_deny_egress = true;
  std::vector<Rule> rules;
};

enum class Kind { kNetworkPolicy, kCiliumNetworkPolicy, kCiliumClusterwideNetworkPolicy };
const char* toString(Kind k);

struct Policy {
  Kind kind = Kind::kNetworkPolicy;
  std::string ns;  // empty for CCNP
  std::string name;
  std::vector<Spec> specs;
  std::set<Ipv4Prefix> cidrs;  // every CIDR the peers name (each needs a local CIDR identity)
  // What was accepted but not taken as written, each naming the field (the caller logs them with key()).
  std::vector<std::string> warnings;
  std::string key() const;     // "CiliumNetworkPolicy x/name"
};

// Parse and validate. Errors name the field: "spec.ingress[0].ports[1].endPort: must be >= port".
Result<Policy> parseNetworkPolicy(const nlohmann::json& object);
Result<Policy> parseCiliumPolicy(const nlohmann::json& object, bool clusterwide);
// Dispatches on apiVersion/kind.
Result<Policy> parsePolicy(const nlohmann::json& object);

// Identity labels of reserved identities and CIDR identities, so that entity and CIDR selectors are label
// selectors like any other.
std::vector<std::string> reservedIdentityLabels(uint32_t id);
// A CIDR identity for `prefix` carries cidr:<p> for every policy CIDR p containing it, plus reserved:world.
std::vector<std::string> cidrIdentityLabels(const Ipv4Prefix& prefix, const std::set<Ipv4Prefix>& all_cidrs);
// The label a CIDR selector tests.
std::string cidrLabelKey(const Ipv4Prefix& prefix);

}  // namespace plexus::policy
