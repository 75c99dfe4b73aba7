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

namespace plexus::agent {

struct FlowPeer {
  Ipv4 ip;
  uint16_t port = 0;
  uint32_t identity = 0;
  std::string pod_namespace;
  std::string pod_name;
  std::vector<std::string> labels;  // "key=value"
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
};

const char* verdictName(uint8_t verdict);
const char* protocolName(uint8_t protocol);

struct FlowFilter {
  std::vector<std::string> namespaces;
  std::vector<std::string> pods;       // "ns/name" or "name"
  std::vector<std::string> from_pods;
  std::vector<std::string> to_pods;
  std::vector<std::string> labels;     // "key=value" or "key"
  std::vector<uint32_t> identities;
  std::vector<Ipv4> ips;
  std::vector<uint8_t> verdicts;
  std::vector<uint8_t> protocols;
  std::vector<uint16_t> ports;
  int64_t since_unix_nano = 0;
};

// Raw filter fields as the API and CLI carry them; each field is an OR of its values, fields are ANDed.
struct FlowFilterSpec {
  std::vector<std::string> namespaces, pods, from_pods, to_pods, labels, ips, verdicts, protocols;
  std::vector<uint32_t> identities, ports;
  int64_t since_unix_nano = 0;
};

// Rejects unknown verdict or protocol names, malformed IPs and ports, naming the bad value.
Result<FlowFilter> parseFlowFilter(const FlowFilterSpec& spec);
bool matches(const FlowRecord& flow, const FlowFilter& filter);

class FlowStore {
 public:
  explicit FlowStore(size_t capacity);

  void add(FlowRecord flow);
  // The last n matching flows, oldest first (n = 0: every stored match).
  std::vector<FlowRecord> last(size_t n, const FlowFilter& filter) const;
  // Flows added after sequence number `after` (follow mode); waits up to `timeout` for the first one.
  // Returns the flows and updates `after`.
  std::vector<FlowRecord> waitNewer(uint64_t* after, const FlowFilter& filter, std::chrono::milliseconds timeout) const;
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
