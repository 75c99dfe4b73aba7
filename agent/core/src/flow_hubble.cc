#include "plexus/agent/flow_hubble.h"

#include <netinet/in.h>

#include <map>

#include <fmt/format.h>

#include "plexus/agent/reason_names.h"
#include "plexus/events.h"
#include "plexus/reasons.h"

namespace plexus::agent {

namespace {

ObservationPoint tracePoint(const FlowRecord& f) {
  if (f.reason == PLEXUS_REASON_FORWARDED_TUNNEL) {
    return ObservationPoint::kToOverlay;
  }
  if (f.reason == PLEXUS_REASON_FORWARDED_FIB) {
    return ObservationPoint::kToNetwork;
  }
  if (f.observed_endpoint == 0) {
    return f.direction == PLEXUS_DIR_INGRESS ? ObservationPoint::kFromNetwork : ObservationPoint::kToNetwork;
  }
  if (f.direction == PLEXUS_DIR_INGRESS || f.destination.endpoint_id != 0) {
    return ObservationPoint::kToEndpoint;
  }
  return ObservationPoint::kToStack;
}

}  // namespace

HubbleEvent hubbleEvent(const FlowRecord& flow) {
  HubbleEvent e;
  if (flow.verdict == PLEXUS_VERDICT_DROPPED) {
    e.type = kMonitorDrop;
    e.sub_type = static_cast<int32_t>(hubbleReasonCode(flow.reason));
    return e;
  }
  if (flow.verdict == PLEXUS_VERDICT_AUDIT) {
    e.type = kMonitorPolicyVerdict;  // as Hubble reports audit mode: a policy verdict, verdict AUDIT
    return e;
  }
  e.type = kMonitorTrace;
  e.point = tracePoint(flow);
  e.sub_type = e.point == ObservationPoint::kToEndpoint ? 0 : static_cast<int32_t>(e.point);
  return e;
}

std::vector<std::string> reservedLabels(uint32_t identity) {
  // Reserved identities per Cilium (docs/architecture.md): 1 host ... 8 ingress.
  static const char* const kNames[] = {nullptr, "host",        "world",          "unmanaged", "health",
                                       "init",  "remote-node", "kube-apiserver", "ingress"};
  if (identity == 0 || identity >= std::size(kNames)) {
    return {};
  }
  std::vector<std::string> out{std::string("reserved:") + kNames[identity]};
  if (identity == 7) {
    out.emplace_back("reserved:host");  // Cilium gives the API server on the node both labels
  }
  return out;
}

std::string icmpV4TypeCode(uint8_t type, uint8_t code) {
  struct Names {
    const char* type;
    std::map<uint8_t, const char*> codes;  // empty: the type uses no code
  };
  // RFC 792 and RFC 950 types, with the names gopacket gives them and their codes.
  static const std::map<uint8_t, Names> kTypes = {
      {0, {"EchoReply", {}}},
      {3,
       {"DestinationUnreachable",
        {{0, "Net"},
         {1, "Host"},
         {2, "Protocol"},
         {3, "Port"},
         {4, "FragmentationNeeded"},
         {5, "SourceRoutingFailed"},
         {6, "NetUnknown"},
         {7, "HostUnknown"},
         {8, "SourceIsolated"},
         {9, "NetAdminProhibited"},
         {10, "HostAdminProhibited"},
         {11, "NetTOS"},
         {12, "HostTOS"},
         {13, "CommAdminProhibited"},
         {14, "HostPrecedence"},
         {15, "PrecedenceCutoff"}}}},
      {4, {"SourceQuench", {}}},
      {5, {"Redirect", {{0, "Network"}, {1, "Host"}, {2, "TOS+Network"}, {3, "TOS+Host"}}}},
      {8, {"EchoRequest", {}}},
      {9, {"RouterAdvertisement", {}}},
      {10, {"RouterSolicitation", {}}},
      {11, {"TimeExceeded", {{0, "TTLExceeded"}, {1, "FragmentReassemblyTimeExceeded"}}}},
      {12, {"ParameterProblem", {{0, "PointerIndicatesError"}, {1, "MissingOption"}, {2, "BadLength"}}}},
      {13, {"TimestampRequest", {}}},
      {14, {"TimestampReply", {}}},
      {15, {"InfoRequest", {}}},
      {16, {"InfoReply", {}}},
      {17, {"AddressMaskRequest", {}}},
      {18, {"AddressMaskReply", {}}}};
  auto t = kTypes.find(type);
  if (t == kTypes.end()) {
    return fmt::format("{}({})", type, code);
  }
  auto c = t->second.codes.find(code);
  if (c != t->second.codes.end()) {
    return fmt::format("{}({})", t->second.type, c->second);
  }
  if (t->second.codes.empty() && code == 0) {
    return t->second.type;
  }
  return fmt::format("{}(Code: {})", t->second.type, code);
}

std::string flowSummary(const FlowRecord& f) {
  switch (f.protocol) {
    case IPPROTO_TCP: {
      static const std::pair<uint8_t, const char*> kFlags[] = {{0x02, "SYN"}, {0x10, "ACK"}, {0x01, "FIN"},
                                                               {0x04, "RST"}, {0x08, "PSH"}, {0x20, "URG"},
                                                               {0x40, "ECE"}, {0x80, "CWR"}};
      std::string names;
      for (const auto& [bit, name] : kFlags) {
        if (f.tcp_flags & bit) {
          names += (names.empty() ? "" : ", ") + std::string(name);
        }
      }
      return "TCP Flags: " + names;
    }
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_ICMP: return f.has_icmp ? "ICMPv4 " + icmpV4TypeCode(f.icmp_type, f.icmp_code) : "ICMPv4";
    case IPPROTO_SCTP: return "SCTP";
    default: return fmt::format("IP protocol {}", f.protocol);
  }
}

std::string flowUuid(uint64_t instance, uint64_t sequence) {
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", static_cast<uint32_t>(instance >> 32),
                     static_cast<uint32_t>((instance >> 16) & 0xffff),
                     static_cast<uint32_t>(0x4000 | (instance & 0x0fff)),
                     static_cast<uint32_t>(0x8000 | ((sequence >> 48) & 0x3fff)), sequence & 0xffffffffffffULL);
}

}  // namespace plexus::agent
