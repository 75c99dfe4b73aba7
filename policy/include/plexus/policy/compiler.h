#pragma once
// Policy compilation (pure): policies + identities -> per-endpoint map state.
//
// The datapath looks a packet up twice in the endpoint's LPM trie, keyed (peer identity, direction,
// protocol, port prefix): once with the peer's identity and once with the wildcard identity 0. A deny found by
// either lookup drops; otherwise any entry found allows; otherwise the packet is dropped. Deny precedence is
// therefore resolved here: an allow entry that a deny entry of the same identity covers is removed, so the
// longest-prefix match can never pick it over the deny.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "plexus/policy/policy.h"
#include "plexus/policy/selector.h"

namespace plexus::policy {

inline constexpr uint32_t kWildcardIdentity = 0;

struct Entry {
  uint32_t identity = kWildcardIdentity;
  Direction direction = Direction::kIngress;
  uint8_t proto = kProtoAny;  // kProtoAny: every protocol and port (port_bits must be 0)
  uint16_t port = 0;          // the first port of the prefix
  uint8_t port_bits = 0;      // how many leading bits of the port are fixed (16: one port, 0: all)
  bool deny = false;
  uint32_t rule_id = 0;       // the deciding rule; 0 = allowed because no policy selects this direction

  // The fixed fields: two entries with equal keys cannot both be installed.
  auto key() const { return std::tuple(identity, direction, proto, port, port_bits); }
  bool covers(const Entry& other) const;  // same identity and direction, and this prefix contains other's
  uint16_t lastPort() const { return static_cast<uint16_t>(port | ((1u << (16 - port_bits)) - 1)); }
  friend bool operator==(const Entry&, const Entry&) = default;
};

// [lo, hi] as the fewest aligned power-of-two blocks: (first port, fixed bits).
std::vector<std::pair<uint16_t, uint8_t>> portPrefixes(uint16_t lo, uint16_t hi);

// Selector -> identities, kept current as identities come and go (each change touches every cached selector
// once; a selector is evaluated against all identities only when first seen).
class SelectorCache {
 public:
  void upsertIdentity(uint32_t id, std::vector<Label> labels);
  void removeIdentity(uint32_t id);
  // Replaces the identity set with `all`, touching only what changed.
  void syncIdentities(const std::map<uint32_t, std::vector<std::string>>& all);
  const std::set<uint32_t>& select(const Selector& s);
  const std::vector<Label>* labelsOf(uint32_t id) const;
  const std::map<uint32_t, std::vector<Label>>& identities() const { return identities_; }
  size_t selectorCount() const { return selections_.size(); }

 private:
  std::map<uint32_t, std::vector<Label>> identities_;
  std::map<std::string, std::pair<Selector, std::set<uint32_t>>> selections_;
};

// What the compiler needs to know about the endpoint it compiles for.
struct EndpointInfo {
  uint32_t identity = 0;
  std::vector<Label> labels;
  // The endpoint's own named container ports (ingress named ports resolve here): name -> (port, proto).
  std::multimap<std::string, std::pair<uint16_t, uint8_t>> named_ports;
};

// Egress named ports resolve on the destination: the (port, proto) pairs `name` means on pods with
// identity `id` (id 0: on any pod).
using NamedPortResolver = std::function<std::vector<std::pair<uint16_t, uint8_t>>(uint32_t id, const std::string& name)>;

// Cilium's policy enforcement modes (--enable-policy, Helm policyEnforcementMode): default enforces a direction once a
// policy with rules for it selects the endpoint; always enforces every direction of every endpoint (no rule: deny);
// never enforces nothing (every endpoint allows everything, deny rules included).
enum class EnforcementMode { kDefault, kAlways, kNever };
// "default", "always", "never"; nullopt otherwise.
std::optional<EnforcementMode> parseEnforcementMode(const std::string& text);

struct EndpointPolicy {
  std::vector<Entry> entries;  // sorted by key, unique keys
  bool ingress_enforced = false;
  bool egress_enforced = false;
  std::vector<std::string> selected_by;  // policy keys whose specs select the endpoint
  friend bool operator==(const EndpointPolicy&, const EndpointPolicy&) = default;
};

// Compiles the endpoint's map state. The result does not depend on the order of `policies` or of their rules.
EndpointPolicy compile(const EndpointInfo& ep, const std::vector<const Policy*>& policies, SelectorCache& cache,
                       const NamedPortResolver& named_ports, EnforcementMode mode = EnforcementMode::kDefault);

// Entries to add and keys to remove to go from `before` to `after`.
struct EntryDiff {
  std::vector<Entry> upserts;
  std::vector<Entry> removals;
  bool empty() const { return upserts.empty() && removals.empty(); }
};
EntryDiff diff(const std::vector<Entry>& before, const std::vector<Entry>& after);

// The datapath's verdict for one packet against compiled entries, evaluated in userspace (explain, tests).
struct Verdict {
  bool allowed = false;
  bool explicit_deny = false;   // dropped by a deny rule (else, when dropped: no rule allowed it)
  std::optional<Entry> deciding;  // the entry that decided, when one did
};
Verdict evaluate(const std::vector<Entry>& entries, uint32_t peer, Direction dir, uint8_t proto, uint16_t port);

// Readable form: "ingress 256 TCP/80-95 allow".
std::string describe(const Entry& e);

}  // namespace plexus::policy
