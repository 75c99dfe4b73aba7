#pragma once
// The agent's own events, as Hubble's GetAgentEvents serves them (`hubble observe agent-events`): the agent started,
// a policy was added, changed or deleted, an endpoint was created, regenerated (its policy installed, or not) or
// deleted, an ipcache entry or a service frontend was written or removed. The managers that make each change report it; the log keeps the newest ones in a ring.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace plexus::agent {

// Hubble's AgentEventType numbers.
enum class NotificationType : uint8_t {
  kAgentStarted = 2,
  kPolicyUpdated = 3,
  kPolicyDeleted = 4,
  kEndpointRegenerateSuccess = 5,
  kEndpointRegenerateFailure = 6,
  kEndpointCreated = 7,
  kEndpointDeleted = 8,
  kIpcacheUpserted = 9,
  kIpcacheDeleted = 10,
  kServiceUpserted = 11,
  kServiceDeleted = 12,
};

struct NotificationAddress {
  std::string ip;
  uint16_t port = 0;
  friend bool operator==(const NotificationAddress&, const NotificationAddress&) = default;
};

// One event; the fields of its type are set, the rest stay empty.
struct AgentNotification {
  NotificationType type = NotificationType::kAgentStarted;
  int64_t time_unix_nano = 0;  // stamped by the log when 0
  // policies: the policy's labels (derived-from, name, namespace), the policy set's revision and its rule count;
  // endpoints: the endpoint's labels
  std::vector<std::string> labels{};
  uint64_t revision = 0;
  int64_t rule_count = 0;
  uint64_t id = 0;  // endpoint id; service: the frontend's id (its reverse-NAT index)
  std::string pod_name{}, pod_namespace{};  // endpoints; ipcache entries of pods
  std::string error{};                      // a failed endpoint regeneration: why
  // ipcache
  std::string cidr{};
  uint32_t identity = 0;
  std::optional<uint32_t> old_identity{};
  std::string host_ip{}, old_host_ip{};  // tunnel endpoint (the hosting node) of the new and the old entry
  // services
  NotificationAddress frontend{};
  std::vector<NotificationAddress> backends{};
  std::string service_type{}, service_name{}, service_namespace{}, ext_traffic_policy{}, int_traffic_policy{};
};

// The newest `capacity` events. Thread-safe: managers add on the reconcile thread, API calls read on theirs.
class NotificationLog {
 public:
  // 1,024 by default: the events of a bulk apply (one per service frontend) would otherwise hold megabytes.
  explicit NotificationLog(size_t capacity = 1024) : capacity_(capacity) {}

  void add(AgentNotification n);
  // The stored events in [since, until] (0: unbounded), oldest first: the first n (oldest) or the last n (newest);
  // n = 0 gives all.
  std::vector<AgentNotification> select(size_t n, bool oldest, int64_t since_unix_nano, int64_t until_unix_nano) const;
  // Events added after sequence number `after` (follow); waits up to `timeout` for the first. Updates `after`.
  std::vector<AgentNotification> waitNewer(uint64_t* after, std::chrono::milliseconds timeout) const;
  uint64_t sequence() const;
  size_t size() const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<AgentNotification> ring_;
  uint64_t seq_ = 0;  // events ever added; the ring's last one has this number
};

}  // namespace plexus::agent
