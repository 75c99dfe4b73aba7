#pragma once
// Hubble's flow metrics (the hubble_* families a Hubble Grafana dashboard reads), counted once per flow as the event
// reader decodes it, into a prometheus-cpp registry that the --hubble-metrics-server listener exposes. Names, labels
// and label values are Hubble's (cilium/cilium pkg/hubble/metrics/<name>/handler.go). Pure: no I/O; the counters are
// thread-safe (prometheus-cpp), so the reader thread counts while a scrape collects.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "plexus/agent/flow_store.h"
#include "plexus/common/result.h"

namespace plexus::agent {

// One entry of Cilium's --hubble-metrics list: "name" or "name:option=value;option=value".
struct HubbleMetricSpec {
  std::string name;
  std::map<std::string, std::string> options;
};

// The metrics this agent counts (Hubble's plugin names).
inline constexpr const char* kHubbleMetricsProvided[] = {"flow", "drop",          "tcp", "port-distribution",
                                                         "icmp", "flows-to-world"};

// What became of a --hubble-metrics list: the metrics to count, and a line for each entry or option left out.
struct HubbleMetricsPlan {
  std::vector<HubbleMetricSpec> enabled;
  std::vector<std::string> skipped;  // "dns: ... (skipped)" - logged once at start
};

// Parses Cilium's list syntax: entries separated by spaces (the chart's form, "dns drop tcp flow") or, for entries
// without options, commas (a YAML list in the config file arrives comma-joined); options are "key=value" or "key".
// A Hubble metric Plexus cannot fill (dns, httpV2, kafka, policy, ...: L7 or verdicts our flows do not carry) and
// context options (sourceContext, ...) are skipped with a line saying so; the handler options Plexus has
// (flows-to-world's any-drop, port, syn-only) stay in the spec. A name Hubble does not have either is an
// InvalidArgument naming it.
Result<HubbleMetricsPlan> parseHubbleMetrics(const std::string& list);

// Hubble's label values for a flow, shared by the handlers (and by tests).
std::string hubbleFlowProtocol(const FlowRecord& flow);  // v1.FlowProtocol: "TCP", "UDP", "ICMPv4", "Unknown L4", ...
std::string hubbleVerdictName(uint8_t verdict);          // flow.Verdict's name: "FORWARDED", "DROPPED", "AUDIT", ...
std::string hubbleFlowTypeName(const FlowRecord& flow);  // "Trace", "Drop", "PolicyVerdict"
std::string hubbleFlowSubtype(const FlowRecord& flow);   // a trace's observation point ("to-endpoint"), else ""

class HubbleMetrics {
 public:
  // Registers the families of `plan.enabled` in `registry` (which must outlive this object).
  HubbleMetrics(const std::vector<HubbleMetricSpec>& enabled, prometheus::Registry& registry);

  // Counts one decoded flow in every enabled metric. Thread-safe.
  void process(const FlowRecord& flow);

 private:
  void countToWorld(const FlowRecord& flow, const std::string& protocol);

  prometheus::Family<prometheus::Counter>* flows_ = nullptr;
  prometheus::Family<prometheus::Counter>* drops_ = nullptr;
  prometheus::Family<prometheus::Counter>* tcp_flags_ = nullptr;
  prometheus::Family<prometheus::Counter>* ports_ = nullptr;
  prometheus::Family<prometheus::Counter>* icmp_ = nullptr;
  prometheus::Family<prometheus::Counter>* to_world_ = nullptr;
  struct {
    bool any_drop = false;  // count every drop, not only POLICY_DENIED
    bool port = false;      // a destination port label
    bool syn_only = false;  // TCP: only SYNs that open a connection
  } to_world_options_;
};

}  // namespace plexus::agent
