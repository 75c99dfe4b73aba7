#include "plexus/agent/hubble_metrics.h"

#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>

#include <fmt/format.h>

#include "plexus/agent/flow_hubble.h"
#include "plexus/agent/reason_names.h"
#include "plexus/events.h"
#include "plexus/identity.h"
#include "plexus/reasons.h"

namespace plexus::agent {

namespace {

// Hubble's metric plugins that Plexus does not fill, with the reason given when one is asked for.
const std::map<std::string, const char*>& notProvided() {
  static const std::map<std::string, const char*> kNotProvided = {
      {"dns", "DNS (L7) flows need a DNS proxy"},
      {"http", "HTTP (L7) flows need an L7 proxy"},
      {"httpV2", "HTTP (L7) flows need an L7 proxy"},
      {"kafka", "Kafka (L7) flows need an L7 proxy"},
      {"policy", "policy verdict events of allowed flows are not emitted"},
      {"flows-per-pod", "not built yet"},
      {"sctp", "the datapath does not parse SCTP"},
      {"nld", "DNS (L7) flows need a DNS proxy"},
  };
  return kNotProvided;
}

bool provided(const std::string& name) {
  return std::any_of(std::begin(kHubbleMetricsProvided), std::end(kHubbleMetricsProvided),
                     [&](const char* p) { return name == p; });
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Options a handler itself reads (Hubble matches them case-insensitively), as opposed to the context options.
bool isHandlerOption(const std::string& metric, const std::string& key) {
  std::string k = lower(key);
  return metric == "flows-to-world" && (k == "any-drop" || k == "port" || k == "syn-only");
}

Result<HubbleMetricSpec> parseEntry(const std::string& entry) {
  HubbleMetricSpec spec;
  auto colon = entry.find(':');
  spec.name = entry.substr(0, colon);
  if (colon == std::string::npos) {
    return spec;
  }
  std::stringstream options(entry.substr(colon + 1));
  std::string option;
  while (std::getline(options, option, ';')) {
    if (option.empty()) {
      continue;
    }
    auto eq = option.find('=');
    if (eq == 0) {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("--hubble-metrics {:?}: option {:?} has no name", entry, option));
    }
    // "key" alone is an option without a value, as Hubble's parser takes it (flows-to-world:any-drop;port).
    spec.options[option.substr(0, eq)] = eq == std::string::npos ? "" : option.substr(eq + 1);
  }
  return spec;
}

// Cilium's TraceObservationPoints, by Cilium's TRACE_* number (the event sub-type of a trace).
const char* tracePointName(int32_t sub_type) {
  static const char* const kNames[] = {"to-endpoint", "to-proxy",      "to-host",      "to-stack",
                                       "to-overlay",  "from-endpoint", "from-proxy",   "from-host",
                                       "from-stack",  "from-overlay",  "from-network", "to-network"};
  return sub_type >= 0 && sub_type < static_cast<int32_t>(std::size(kNames)) ? kNames[sub_type] : "";
}

prometheus::Family<prometheus::Counter>* counter(prometheus::Registry& r, const char* name, const char* help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

}  // namespace

Result<HubbleMetricsPlan> parseHubbleMetrics(const std::string& list) {
  HubbleMetricsPlan plan;
  std::stringstream words(list);
  std::string word;
  std::vector<std::string> entries;
  while (words >> word) {
    if (word.find(':') != std::string::npos) {
      entries.push_back(word);  // options may hold commas (labelsContext=source_ip,source_namespace)
      continue;
    }
    std::stringstream parts(word);
    std::string part;
    while (std::getline(parts, part, ',')) {
      if (!part.empty()) {
        entries.push_back(part);
      }
    }
  }
  for (const auto& entry : entries) {
    auto spec = parseEntry(entry);
    if (!spec.ok()) {
      return spec.error();
    }
    if (auto it = notProvided().find(spec->name); it != notProvided().end()) {
      plan.skipped.push_back(fmt::format("{}: not provided by Plexus ({}); skipped", spec->name, it->second));
      continue;
    }
    if (!provided(spec->name)) {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("--hubble-metrics: unknown metric {:?} (Plexus counts flow, drop, tcp, "
                                   "port-distribution, icmp and flows-to-world)",
                                   spec->name));
    }
    bool duplicate = std::any_of(plan.enabled.begin(), plan.enabled.end(),
                                 [&](const HubbleMetricSpec& s) { return s.name == spec->name; });
    if (duplicate) {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("--hubble-metrics: metric {:?} given twice", spec->name));
    }
    HubbleMetricSpec kept{spec->name, {}};
    for (const auto& [key, value] : spec->options) {
      if (isHandlerOption(spec->name, key)) {
        kept.options[key] = value;
        continue;
      }
      // Hubble's context options (sourceContext, destinationContext, labelsContext, ...) add per-pod labels.
      plan.skipped.push_back(
          fmt::format("{}: option {}={} ignored (context labels are not supported; the metric "
                      "keeps Hubble's base labels)",
                      spec->name, key, value));
    }
    plan.enabled.push_back(std::move(kept));
  }
  return plan;
}

std::string hubbleFlowProtocol(const FlowRecord& flow) {
  switch (flow.protocol) {
    case IPPROTO_TCP: return "TCP";
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_ICMP: return "ICMPv4";
    case IPPROTO_SCTP: return "SCTP";
    default: return "Unknown L4";
  }
}

std::string hubbleVerdictName(uint8_t verdict) {
  switch (verdict) {
    case PLEXUS_VERDICT_FORWARDED: return "FORWARDED";
    case PLEXUS_VERDICT_DROPPED: return "DROPPED";
    case PLEXUS_VERDICT_TRANSLATED: return "TRANSLATED";
    case PLEXUS_VERDICT_AUDIT: return "AUDIT";
    default: return "VERDICT_UNKNOWN";
  }
}

std::string hubbleFlowTypeName(const FlowRecord& flow) {
  switch (hubbleEvent(flow).type) {
    case kMonitorDrop: return "Drop";
    case kMonitorTrace: return "Trace";
    case kMonitorPolicyVerdict: return "PolicyVerdict";
    default: return "Unknown";
  }
}

std::string hubbleFlowSubtype(const FlowRecord& flow) {
  HubbleEvent e = hubbleEvent(flow);
  return e.type == kMonitorTrace ? tracePointName(e.sub_type) : "";
}

HubbleMetrics::HubbleMetrics(const std::vector<HubbleMetricSpec>& enabled, prometheus::Registry& registry) {
  for (const auto& spec : enabled) {
    if (spec.name == "flow") {
      flows_ = counter(registry, "hubble_flows_processed_total", "Total number of flows processed");
    } else if (spec.name == "drop") {
      drops_ = counter(registry, "hubble_drop_total", "Number of drops");
    } else if (spec.name == "tcp") {
      tcp_flags_ = counter(registry, "hubble_tcp_flags_total", "TCP flag occurrences");
    } else if (spec.name == "port-distribution") {
      ports_ =
          counter(registry, "hubble_port_distribution_total", "Numbers of packets distributed by destination port");
    } else if (spec.name == "icmp") {
      icmp_ = counter(registry, "hubble_icmp_total", "Number of ICMP messages");
    } else if (spec.name == "flows-to-world") {
      to_world_ = counter(registry, "hubble_flows_to_world_total", "Total number of flows to reserved:world");
      for (const auto& [key, value] : spec.options) {
        std::string k = lower(key);
        to_world_options_.any_drop |= k == "any-drop";
        to_world_options_.port |= k == "port";
        to_world_options_.syn_only |= k == "syn-only";
      }
    }
  }
}

void HubbleMetrics::process(const FlowRecord& flow) {
  // Each handler selects flows as Hubble's does (pkg/hubble/metrics/<name>/handler.go).
  std::string protocol = hubbleFlowProtocol(flow);
  bool forwarded = flow.verdict == PLEXUS_VERDICT_FORWARDED;
  if (flows_) {
    flows_
        ->Add({{"protocol", protocol},
               {"type", hubbleFlowTypeName(flow)},
               {"subtype", hubbleFlowSubtype(flow)},
               {"verdict", hubbleVerdictName(flow.verdict)}})
        .Increment();
  }
  if (drops_ && flow.verdict == PLEXUS_VERDICT_DROPPED) {
    drops_->Add({{"reason", hubbleReasonName(flow.reason)}, {"protocol", protocol}}).Increment();
  }
  if (tcp_flags_ && forwarded && flow.protocol == IPPROTO_TCP) {
    constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
    auto count = [&](const char* flag) { tcp_flags_->Add({{"flag", flag}, {"family", "IPv4"}}).Increment(); };
    if (flow.tcp_flags & kFin) {
      count("FIN");
    }
    if (flow.tcp_flags & kSyn) {
      count(flow.tcp_flags & kAck ? "SYN-ACK" : "SYN");
    }
    if (flow.tcp_flags & kRst) {
      count("RST");
    }
  }
  if (ports_ && forwarded && !flow.is_reply) {
    if (flow.protocol == IPPROTO_TCP || flow.protocol == IPPROTO_UDP || flow.protocol == IPPROTO_SCTP) {
      ports_->Add({{"protocol", protocol}, {"port", std::to_string(flow.destination.port)}}).Increment();
    } else if (flow.protocol == IPPROTO_ICMP) {
      ports_->Add({{"protocol", protocol}, {"port", "0"}}).Increment();
    }
  }
  if (to_world_) {
    countToWorld(flow, protocol);
  }
  if (icmp_ && flow.protocol == IPPROTO_ICMP) {
    // Hubble's type label is gopacket's text for the type and code; a later fragment has no ICMP header to read.
    std::string type = flow.has_icmp ? icmpV4TypeCode(flow.icmp_type, flow.icmp_code) : "Unknown";
    icmp_->Add({{"family", "IPv4"}, {"type", type}}).Increment();
  }
}

void HubbleMetrics::countToWorld(const FlowRecord& flow, const std::string& protocol) {
  // Hubble's flows-to-world handler: flows whose destination carries reserved:world and an L4 header Hubble knows;
  // drops only for policy (POLICY_DENIED) unless any-drop; no forwarded replies (ephemeral ports).
  bool l4 = flow.protocol == IPPROTO_TCP || flow.protocol == IPPROTO_UDP || flow.protocol == IPPROTO_ICMP ||
            flow.protocol == IPPROTO_SCTP;
  if (flow.destination.identity != PLEXUS_IDENTITY_WORLD || !l4) {
    return;
  }
  bool dropped = flow.verdict == PLEXUS_VERDICT_DROPPED;
  if (dropped && !to_world_options_.any_drop && flow.reason != PLEXUS_REASON_POLICY_DENIED) {
    return;
  }
  if (!dropped && flow.is_reply) {
    return;
  }
  constexpr uint8_t kSyn = 0x02;
  if (to_world_options_.syn_only && (flow.protocol != IPPROTO_TCP || !(flow.tcp_flags & kSyn) || flow.is_reply)) {
    return;
  }
  prometheus::Labels labels{{"protocol", protocol}, {"verdict", hubbleVerdictName(flow.verdict)}};
  if (to_world_options_.port) {
    bool ports = flow.protocol == IPPROTO_TCP || flow.protocol == IPPROTO_UDP || flow.protocol == IPPROTO_SCTP;
    labels["port"] = ports ? std::to_string(flow.destination.port) : "";
  }
  to_world_->Add(labels).Increment();
}

}  // namespace plexus::agent
