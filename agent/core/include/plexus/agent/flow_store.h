#pragma once
// The agent's ring of recent flows (Hubble's "flow buffer"): decoded datapath events, enriched with what the
// agent knew about the endpoints when the event arrived, so the enrichment outlives the pods. Pure and
// thread-safe; the event reader adds, gRPC readers query and follow.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/policy/selector.h"

namespace plexus::agent {

struct FlowPeer {
  Ipv4 ip;
  uint16_t port = 0;
  uint32_t identity = 0;
  std::string pod_namespace;
  std::string pod_name;
  std::vector<std::string> labels;  // "k8s:key=value" (or "key=value")
  uint16_t endpoint_id = 0;
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
  explicit FlowStore(size_t capacity);

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

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<std::pair<uint64_t, FlowRecord>> ring_;
  uint64_t seq_ = 0;
};

}  // namespace plexus::agent
