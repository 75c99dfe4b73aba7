#pragma once
// Routing mode, tunnel protocol and the pod MTU they imply (pure).

#include <string_view>

#include "plexus/common/result.h"

namespace plexus::node {

enum class RoutingMode { kNative, kTunnel };
enum class TunnelProtocol { kVxlan, kGeneve };

// Encapsulation overhead: outer IPv4 (20) + UDP (8) + VXLAN or option-less Geneve header (8) + inner Ethernet
// (14) = 50 bytes (RFC 7348 §5; RFC 8926 §3.4 for Geneve's base header).
inline constexpr int kEncapOverhead = 50;
// The smallest datagram every IPv4 host must accept (RFC 791); a pod MTU below it breaks ordinary traffic.
inline constexpr int kMinPodMtu = 576;
// IPv4's total-length field caps any MTU.
inline constexpr int kMaxMtu = 65535;

const char* toString(RoutingMode mode);      // "native", "tunnel"
const char* toString(TunnelProtocol proto);  // "vxlan", "geneve"
// Exactly "native"/"tunnel" and "vxlan"/"geneve" (the Cilium spellings); anything else is InvalidArgument.
[[nodiscard]] Result<RoutingMode> parseRoutingMode(std::string_view text);
[[nodiscard]] Result<TunnelProtocol> parseTunnelProtocol(std::string_view text);

// The MTU to give pod interfaces. device_mtu: the smallest MTU among the native devices. Native: device_mtu.
// Tunnel (VXLAN or Geneve without options): device_mtu - 50. override_mtu > 0 replaces the computed value
// (0 = automatic). Refused: a device MTU outside 1..65535, a negative override, an override larger than what
// the device can carry in this mode (device_mtu, less the encapsulation in tunnel mode: a larger one would be
// silently dropped on the wire), and a result below 576. proto is ignored in native mode.
[[nodiscard]] Result<int> podMtu(int device_mtu, RoutingMode mode, TunnelProtocol proto, int override_mtu);

}  // namespace plexus::node
