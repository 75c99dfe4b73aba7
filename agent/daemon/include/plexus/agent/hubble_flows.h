#pragma once
// Our flow records as Hubble's flow.Flow, and Hubble's GetFlowsRequest as our flow query: the translation between the
// flow store (flow_store.h, which does all the matching) and Hubble's API; likewise the agent's events
// (agent_notifications.h) as Hubble's AgentEvent. Pure.

#include <string>

#include "flow/flow.pb.h"
#include "observer/observer.pb.h"
#include "plexus/agent/agent_notifications.h"
#include "plexus/agent/flow_store.h"
#include "plexus/common/result.h"

namespace plexus::agent {

// `node` names the flow's node when the record has none; `cluster` is the pods' cluster (Endpoint.cluster_name).
void toHubbleFlow(const FlowRecord& record, const std::string& node, const std::string& cluster, flow::Flow* out);

// One Hubble filter as our filter. Fields that name what Plexus flows never carry (FQDNs, L7, workloads, trace ids,
// services of the source, IPv6) make the filter match nothing, as they would match none of our flows in Hubble.
// Malformed values (an IP, a pod, a label selector, a port) are INVALID_ARGUMENT naming the field.
Result<FlowFilter> flowFilterFromHubble(const flow::FlowFilter& filter);

// whitelist -> allow, blacklist -> deny, since/until -> the query's own filter. Rejects first with follow.
Result<FlowQuery> flowQueryFromHubble(const observer::GetFlowsRequest& request);

// Which stored flows GetFlows answers with before following, as Hubble's server: `number` of them (the oldest with
// `first`); with no number, every flow of a since/until window, none when following (only new flows), else every stored
// flow.
struct StoredSelection {
  bool none = false;
  bool oldest = false;
  size_t count = 0;  // 0: every match
};
StoredSelection storedSelection(uint64_t number, bool first, bool windowed, bool follow);
// GetFlowsRequest, GetAgentEventsRequest: the same fields.
template <typename Request>
StoredSelection storedSelection(const Request& r) {
  return storedSelection(r.number(), r.first(), r.has_since() || r.has_until(), r.follow());
}

// A request's since/until in nanoseconds since the epoch (0: unbounded); INVALID_ARGUMENT for a malformed bound,
// until before since, or first with follow.
struct EventWindow {
  int64_t since_unix_nano = 0;
  int64_t until_unix_nano = 0;
};
Result<EventWindow> eventWindow(bool first, bool follow, const google::protobuf::Timestamp* since,
                                const google::protobuf::Timestamp* until);
template <typename Request>
Result<EventWindow> eventWindow(const Request& r) {
  return eventWindow(r.first(), r.follow(), r.has_since() ? &r.since() : nullptr, r.has_until() ? &r.until() : nullptr);
}

// One agent event as Hubble's flow.AgentEvent (its type and the notification of that type).
void toHubbleAgentEvent(const AgentNotification& notification, flow::AgentEvent* out);

}  // namespace plexus::agent
