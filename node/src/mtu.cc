#include "plexus/node/mtu.h"

#include <fmt/format.h>

namespace plexus::node {

namespace {
Error invalid(std::string message) { return makeError(ErrorCode::kInvalidArgument, std::move(message)); }
}  // namespace

const char* toString(RoutingMode mode) {
  switch (mode) {
    case RoutingMode::kNative: return "native";
    case RoutingMode::kTunnel: return "tunnel";
  }
  return "native";
}

const char* toString(TunnelProtocol proto) {
  switch (proto) {
    case TunnelProtocol::kVxlan: return "vxlan";
    case TunnelProtocol::kGeneve: return "geneve";
  }
  return "vxlan";
}

Result<RoutingMode> parseRoutingMode(std::string_view text) {
  if (text == "native") {
    return RoutingMode::kNative;
  }
  if (text == "tunnel") {
    return RoutingMode::kTunnel;
  }
  return invalid(fmt::format("routing mode {:?}: must be \"native\" or \"tunnel\"", text));
}

Result<TunnelProtocol> parseTunnelProtocol(std::string_view text) {
  if (text == "vxlan") {
    return TunnelProtocol::kVxlan;
  }
  if (text == "geneve") {
    return TunnelProtocol::kGeneve;
  }
  return invalid(fmt::format("tunnel protocol {:?}: must be \"vxlan\" or \"geneve\"", text));
}

Result<int> podMtu(int device_mtu, RoutingMode mode, TunnelProtocol proto, int override_mtu) {
  if (device_mtu < 1 || device_mtu > kMaxMtu) {
    return invalid(fmt::format("device MTU {}: must be 1-{}", device_mtu, kMaxMtu));
  }
  if (override_mtu < 0) {
    return invalid(fmt::format("MTU override {}: must be positive (0 = automatic)", override_mtu));
  }
  // Both protocols cost the same 50 bytes without Geneve options; proto only names the overhead in errors.
  int overhead = mode == RoutingMode::kTunnel ? kEncapOverhead : 0;
  int carried = device_mtu - overhead;
  std::string how = mode == RoutingMode::kTunnel
                        ? fmt::format("device MTU {} less {} bytes of {} encapsulation", device_mtu, overhead,
                                      toString(proto))
                        : fmt::format("device MTU {}", device_mtu);
  if (override_mtu > 0) {
    if (override_mtu > carried) {
      return invalid(fmt::format("MTU override {}: above the {} ({})", override_mtu, how, carried));
    }
    if (override_mtu < kMinPodMtu) {
      return invalid(fmt::format("MTU override {}: below the minimum {}", override_mtu, kMinPodMtu));
    }
    return override_mtu;
  }
  if (carried < kMinPodMtu) {
    return invalid(fmt::format("pod MTU {} ({}): below the minimum {}", carried, how, kMinPodMtu));
  }
  return carried;
}

}  // namespace plexus::node
