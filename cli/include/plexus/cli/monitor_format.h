#pragma once
// `plexus monitor`: the agent's live flows as cilium-dbg monitor prints datapath events, one line per event.
// Pure: unit-tested anywhere.
//
// The agent streams Hubble flows (GetFlows with follow); each flow becomes the events cilium monitor would have
// shown for the same packet: a drop is a drop event; a forwarded packet a trace event; and a packet whose policy
// was decided at an enforcement point (a policy drop, an AUDIT flow, or the first packet of a connection into or out
// of a local endpoint) also a policy-verdict event, shown before the drop or trace it led to.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "flow/flow.pb.h"

namespace plexus::cli {

enum class MonitorType { kDrop, kTrace, kPolicyVerdict };

// The --type names cilium monitor uses: "drop", "trace", "policy-verdict". False for any other.
bool parseMonitorType(const std::string& text, MonitorType* out);
const char* monitorTypeName(MonitorType t);
// The --type values, for help and errors.
inline const std::vector<std::string> kMonitorTypes = {"drop", "trace", "policy-verdict"};

struct MonitorEvent {
  MonitorType type = MonitorType::kTrace;
  std::string action;  // policy-verdict: "allow", "deny" or "audit"
  const flow::Flow* flow = nullptr;
};

// The events one flow stands for, in the order cilium monitor prints them.
std::vector<MonitorEvent> monitorEvents(const flow::Flow& f);

// cilium monitor's line for an event, e.g.
//   xx drop (Policy denied) to endpoint 12, ifindex 7, identity 300->301: 10.0.0.1:40000 -> 10.0.0.2:80 tcp SYN
//   -> endpoint 12 identity 300->301 state new ifindex lxc1a2b: 10.0.0.1:40000 -> 10.0.0.2:80 tcp SYN
//   Policy verdict log: local EP ID 12, remote ID 300, proto 6, ingress, action deny, match none, 10.0.0.1:...
// With `verbose`, indented lines follow with the time, node, interface, both peers (pod, identity, labels) and
// Hubble's type, verdict and summary.
std::string monitorText(const MonitorEvent& e, bool verbose);

// The event as one JSON object (-o json): type, time, node, the fields of its line, and the Hubble flow.
nlohmann::json monitorJson(const MonitorEvent& e);

}  // namespace plexus::cli
