#pragma once
// What Hubble says of a flow that our datapath events leave implicit: its Cilium event type and sub-type, its trace
// observation point, the labels of reserved peers, its summary and its UUID. Pure; shared by the flow filters
// (flow_store.cc) and the Hubble API (hubble_flows.cc), so that a filter on event_type matches what the API shows.

#include <cstdint>
#include <string>
#include <vector>

#include "plexus/agent/flow_store.h"

namespace plexus::agent {

// Cilium's monitor message types (flow.CiliumEventType.type).
inline constexpr int32_t kMonitorDrop = 1;
inline constexpr int32_t kMonitorTrace = 4;
inline constexpr int32_t kMonitorPolicyVerdict = 5;

// flow.TraceObservationPoint. TO_ENDPOINT is 101 in the API, but Cilium's TRACE_TO_LXC (0) in event sub-types.
enum class ObservationPoint : int32_t {
  kUnknown = 0,
  kToProxy = 1,
  kToHost = 2,
  kToStack = 3,
  kToOverlay = 4,
  kToEndpoint = 101,
  kFromEndpoint = 5,
  kFromProxy = 6,
  kFromHost = 7,
  kFromStack = 8,
  kFromOverlay = 9,
  kFromNetwork = 10,
  kToNetwork = 11,
};

struct HubbleEvent {
  int32_t type = 0;                                     // kMonitorDrop, kMonitorTrace or kMonitorPolicyVerdict
  int32_t sub_type = 0;                                 // a drop: Hubble's reason code; a trace: Cilium's TRACE_* point
  ObservationPoint point = ObservationPoint::kUnknown;  // traces only
};

// Drops are drop events with Hubble's reason code; audited flows (policy audit mode) policy-verdict events. Forwards are trace events whose point follows from where the event
// was taken: an endpoint's to-container, or its from-container with the destination a local endpoint (delivered with
// bpf_redirect_peer) -> TO_ENDPOINT; a from-container to anything else -> TO_STACK; the tunnel -> TO_OVERLAY; BPF host
// routing -> TO_NETWORK; a host device -> FROM_NETWORK in, TO_NETWORK out.
HubbleEvent hubbleEvent(const FlowRecord& flow);

// Hubble's labels for a peer Plexus knows only by a reserved identity ("reserved:world", "reserved:host", ...); empty
// for other identities.
std::vector<std::string> reservedLabels(uint32_t identity);

// An ICMPv4 type and code as Hubble writes them (gopacket's ICMPv4TypeCode text, in its summary and the `type` label
// of hubble_icmp_total): "EchoRequest", "DestinationUnreachable(Port)", "TimeExceeded(TTLExceeded)"; a code the type
// does not name "Redirect(Code: 9)"; an unknown type "42(0)".
std::string icmpV4TypeCode(uint8_t type, uint8_t code);

// Hubble's Flow.Summary of an L3/L4 flow: "TCP Flags: SYN, ACK", "UDP", "ICMPv4 EchoRequest" ("ICMPv4" when the
// event has no ICMP header).
std::string flowSummary(const FlowRecord& flow);

// An RFC 4122 version-4-shaped UUID from the store's instance and the flow's sequence number: unique per flow and
// stable across queries.
std::string flowUuid(uint64_t instance, uint64_t sequence);

}  // namespace plexus::agent
