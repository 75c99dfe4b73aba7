#pragma once
// The agent's ring of recent flows (Hubble's "flow buffer"): decoded datapath events, enriched with what the
// agent knew about the endpoints when the event arrived, so the enrichment outlives the pods. Pure and
// thread-safe; the event reader adds, gRPC readers query and follow.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/policy/selector.h"

namespace plexus::agent {

// What the agent knew of a pod when one of its flows was seen. Immutable and shared: the flows of a pod hold the same
// one (a flow costs a reference, not a copy of the labels), and keep it after the pod is gone.
struct FlowPod {
  std::string pod_namespace;
  std::string pod_name;
  std::vector<std::string> labels;  // "k8s:key=value" (or "key=value")
};

struct FlowPeer {
  Ipv4 ip;
  uint16_t port = 0;
  uint32_t identity = 0;
  std::shared_ptr<const FlowPod> pod;  // null: no pod the agent knows (the world, a node, a pod it never heard of)
  uint16_t endpoint_id = 0;

  const std::string& podNamespace() const;  // "" without a pod
  const std::string& podName() const;
  const std::vector<std::string>& labels() const;
};

// The policy whose rule decided a flow (Hubble's flow.Policy).
struct FlowPolicy {
  std::string kind;           // "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy", "NetworkPolicy"
  std::string pod_namespace;  // empty for a clusterwide policy
  std::string name;
  bool ingress = false;     // the deciding rule's direction (an ingress or an egress rule of the policy)
  uint8_t match_type = 0;   // what the rule matches on, as Cilium's policy verdicts number it (1 L3-only, 2 L3-L4,
                            // 3 L4-only, 4 all, 5 L3-proto, 6 proto-only)
  friend bool operator==(const FlowPolicy&, const FlowPolicy&) = default;
};

struct FlowRecord {
  int64_t time_unix_nano = 0;
  uint8_t verdict = 0;    // enum plexus_verdict
  uint8_t reason = 0;     // enum plexus_reason
  uint8_t direction = 0;  // enum plexus_direction
  uint8_t protocol = 0;   // IPPROTO_*
  uint8_t tcp_flags = 0;
  bool is_reply = false;
  FlowPeer source;
  FlowPeer destination;
  std::string service;           // "namespace/name" when translated
  std::string service_frontend;  // "ip:port"
  uint16_t observed_endpoint = 0;
  uint32_t length = 0;
  std::string node_name;  // the node that observed it (hubble observe --node-name)
  std::string uuid;       // Hubble's Flow.uuid: set on the flows FlowStore hands out (it keeps the sequence number)
  std::string interface_name;  // the host-side device of the observing endpoint ("" at a host device)
  uint32_t interface_index = 0;
  bool has_icmp = false;  // icmp_type and icmp_code are the packet's
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;
  uint32_t rule_id = 0;                      // the policy rule that allowed, denied or audited it (0: none)
  std::shared_ptr<const FlowPolicy> policy;  // that rule's policy, when the agent knew it (shared, immutable)
};

const char* verdictName(uint8_t verdict);
const char* protocolName(uint8_t protocol);

// hubble observe --pod: "namespace/prefix", "prefix" (namespace "default") or "namespace/" (every pod in it).
struct PodPrefix {
  std::string pod_namespace;
  std::string prefix;
};

// What one endpoint of a flow must satisfy. Each field is an OR of its values; fields are ANDed.
struct PeerFilter {
  std::vector<std::string> namespaces;
  std::vector<PodPrefix> pods;
  std::vector<policy::Selector> labels;  // Kubernetes selectors; "app=web" matches a "k8s:app=web" label
  std::vector<uint32_t> identities;
  std::vector<Ipv4Prefix> ips;           // an address is a /32
  std::vector<uint16_t> ports;
  bool empty() const;
  bool matches(const FlowPeer& peer) const;
};

// Hubble's event types as far as our events have them (hubble observe --type).
enum class FlowType : uint8_t {
  kTrace,          // a forwarded or translated packet
  kDrop,           // a dropped packet
  kPolicyVerdict,  // a packet whose fate policy decided: today the policy drops (POLICY_DENIED, POLICY_DENY)
  kNeverEmitted,   // a Hubble type the datapath does not report (l7, capture, debug, ...): matches no flow
};

// Hubble's event_type filter (flow.EventTypeFilter): Cilium's monitor message type, and optionally its sub_type
// (a drop's reason code, a trace's observation point), as hubbleEvent() (flow_hubble.h) gives them for a flow.
struct EventTypeMatch {
  int32_t type = 0;
  bool match_sub_type = false;
  int32_t sub_type = 0;
};

// One filter, as one `hubble observe` command line (without --not) builds it. `source` and `destination`
// constrain their side. `either` holds the flags without a side (--pod, --ip, -l, ...): every one of them must
// hold on the same side, source or destination, as Hubble pairs them (--ip A --port 80: A:80 on one side).
struct FlowFilter {
  PeerFilter either, source, destination;
  std::vector<uint8_t> verdicts;
  std::vector<uint8_t> protocols;
  std::vector<FlowType> types;
  std::vector<uint8_t> tcp_flags;        // each entry: flags that must all be set (SYN,ACK); entries OR
  std::vector<std::string> node_names;   // '*' globs; a "cluster/" prefix is ignored
  std::vector<EventTypeMatch> event_types;  // Hubble's FlowFilter.event_type (the API's numeric form of `types`)
  std::vector<bool> replies;             // is_reply (Hubble's FlowFilter.reply)
  std::vector<uint8_t> directions;       // enum plexus_direction (Hubble's FlowFilter.traffic_direction)
  std::vector<std::string> uuids;
  std::vector<PodPrefix> destination_services;  // "namespace/name-prefix" of a translated flow's frontend
  bool never = false;  // asks for what our flows never carry (Hubble's L7, FQDN, IPv6 filters): matches nothing
  int64_t since_unix_nano = 0;
  int64_t until_unix_nano = 0;           // 0: no upper bound
};

// A request's filters: a flow passes when it matches `filter`, one of `allow` (or `allow` is empty) and none of
// `deny`.
struct FlowQuery {
  FlowFilter filter{};
  std::vector<FlowFilter> allow{};
  std::vector<FlowFilter> deny{};
};

// Raw fields as the API and the CLI carry them, before validation.
struct PeerFilterSpec {
  std::vector<std::string> namespaces{}, pods{}, labels{}, ips{};
  std::vector<uint32_t> identities{}, ports{};
};
struct FlowFilterSpec {
  PeerFilterSpec either{}, source{}, destination{};
  std::vector<std::string> verdicts{}, protocols{}, types{}, tcp_flags{}, node_names{};
  int64_t since_unix_nano = 0;
  int64_t until_unix_nano = 0;
};

// Rejects unknown verdict, protocol, type and TCP flag names, malformed pods, label selectors, IPs and ports,
// naming the bad value.
Result<FlowFilter> parseFlowFilter(const FlowFilterSpec& spec);
Result<PodPrefix> parsePodPrefix(const std::string& text);
bool matches(const FlowRecord& flow, const FlowFilter& filter);
bool matches(const FlowRecord& flow, const FlowQuery& query);

class FlowStore {
 public:
  // instance: distinguishes this store's flow UUIDs from another agent's (and another run's); chosen at random
  // by the composition root, fixed in tests.
  explicit FlowStore(size_t capacity, uint64_t instance = 0);

  // Stores the flow under the next sequence number; the flows handed out carry their UUID (flowUuid(instance,
  // sequence)).
  void add(FlowRecord flow);
  // The last n matching flows, oldest first (n = 0: every stored match).
  std::vector<FlowRecord> last(size_t n, const FlowQuery& query) const;
  // The first (oldest) n matching flows, oldest first (n = 0: every stored match).
  std::vector<FlowRecord> first(size_t n, const FlowQuery& query) const;
  // Flows added after sequence number `after` (follow mode); waits up to `timeout` for the first one.
  // Returns the flows and updates `after`.
  std::vector<FlowRecord> waitNewer(uint64_t* after, const FlowQuery& query, std::chrono::milliseconds timeout) const;
  uint64_t sequence() const;

  size_t capacity() const { return capacity_; }
  size_t size() const;
  uint64_t seen() const;

  // The pod namespaces of the flows' sources and destinations seen at or after `since_unix_nano`, sorted (Hubble's
  // GetNamespaces: namespaces with flows in the last hour). Remembered apart from the ring, so a namespace stays
  // listed after its flows leave it; those not seen for kNamespaceTtl are forgotten as flows arrive.
  std::vector<std::string> namespacesSince(int64_t since_unix_nano) const;

  // Flows per second over the minute before `now_unix_nano` (Hubble's ServerStatus.flows_rate): the stored flows of
  // that minute over its length, or, when the full ring holds less than that minute, over the time since its oldest
  // flow.
  double rate(int64_t now_unix_nano) const;
  static constexpr std::chrono::hours kNamespaceTtl{1};

 private:
  void noteNamespace(const std::string& ns, int64_t time_unix_nano);  // under mu_
  // Whether the stored flow `seq` matches (with its UUID made first when `by_uuid`: the query names flows by theirs);
  // under mu_.
  bool hit(uint64_t seq, const FlowRecord& flow, const FlowQuery& query, bool by_uuid) const;
  // Appends a copy of stored flow `seq` with its UUID; under mu_.
  void emit(uint64_t seq, const FlowRecord& flow, std::vector<FlowRecord>* out) const;

  size_t capacity_;
  uint64_t instance_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<std::pair<uint64_t, FlowRecord>> ring_;
  uint64_t seq_ = 0;
  std::unordered_map<std::string, int64_t> namespaces_;  // namespace -> its newest flow's time
};

}  // namespace plexus::agent
