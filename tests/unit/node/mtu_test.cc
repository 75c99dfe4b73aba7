#include <catch2/catch.hpp>

#include "plexus/node/mtu.h"

using namespace plexus;
using namespace plexus::node;

TEST_CASE("Routing mode and tunnel protocol parse from their Cilium spellings", "[unit][mtu]") {
  CHECK(*parseRoutingMode("native") == RoutingMode::kNative);
  CHECK(*parseRoutingMode("tunnel") == RoutingMode::kTunnel);
  CHECK(*parseTunnelProtocol("vxlan") == TunnelProtocol::kVxlan);
  CHECK(*parseTunnelProtocol("geneve") == TunnelProtocol::kGeneve);
  for (auto m : {RoutingMode::kNative, RoutingMode::kTunnel}) {
    CHECK(*parseRoutingMode(toString(m)) == m);
  }
  for (auto p : {TunnelProtocol::kVxlan, TunnelProtocol::kGeneve}) {
    CHECK(*parseTunnelProtocol(toString(p)) == p);
  }
  auto bad = parseRoutingMode("Native");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == ErrorCode::kInvalidArgument);
  CHECK(bad.error().message == "routing mode \"Native\": must be \"native\" or \"tunnel\"");
  auto bad_proto = parseTunnelProtocol("");
  REQUIRE_FALSE(bad_proto.ok());
  CHECK(bad_proto.error().message == "tunnel protocol \"\": must be \"vxlan\" or \"geneve\"");
  CHECK_FALSE(parseTunnelProtocol("wireguard").ok());
}

TEST_CASE("Pod MTU: device MTU natively, 50 bytes less in a tunnel, an override wins", "[unit][mtu]") {
  CHECK(*podMtu(1500, RoutingMode::kNative, TunnelProtocol::kVxlan, 0) == 1500);
  CHECK(*podMtu(9001, RoutingMode::kNative, TunnelProtocol::kGeneve, 0) == 9001);
  CHECK(*podMtu(1500, RoutingMode::kTunnel, TunnelProtocol::kVxlan, 0) == 1450);
  CHECK(*podMtu(1500, RoutingMode::kTunnel, TunnelProtocol::kGeneve, 0) == 1450);
  CHECK(*podMtu(9000, RoutingMode::kTunnel, TunnelProtocol::kVxlan, 0) == 8950);
  CHECK(*podMtu(1500, RoutingMode::kNative, TunnelProtocol::kVxlan, 1400) == 1400);
  CHECK(*podMtu(1500, RoutingMode::kNative, TunnelProtocol::kVxlan, 1500) == 1500);
  CHECK(*podMtu(1500, RoutingMode::kTunnel, TunnelProtocol::kVxlan, 1450) == 1450);
  CHECK(*podMtu(1500, RoutingMode::kTunnel, TunnelProtocol::kGeneve, 1300) == 1300);
  // The boundary: exactly 576 is accepted.
  CHECK(*podMtu(626, RoutingMode::kTunnel, TunnelProtocol::kVxlan, 0) == 576);
  CHECK(*podMtu(576, RoutingMode::kNative, TunnelProtocol::kVxlan, 0) == 576);
}

TEST_CASE("Pod MTU refuses what would break traffic", "[unit][mtu]") {
  auto err = [](int dev, RoutingMode m, TunnelProtocol p, int ovr) {
    auto r = podMtu(dev, m, p, ovr);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::kInvalidArgument);
    return r.error().message;
  };
  CHECK(err(1500, RoutingMode::kNative, TunnelProtocol::kVxlan, 1501) ==
        "MTU override 1501: above the device MTU 1500 (1500)");
  CHECK(err(1500, RoutingMode::kTunnel, TunnelProtocol::kVxlan, 1451) ==
        "MTU override 1451: above the device MTU 1500 less 50 bytes of vxlan encapsulation (1450)");
  CHECK(err(1500, RoutingMode::kNative, TunnelProtocol::kVxlan, 575) == "MTU override 575: below the minimum 576");
  CHECK(err(625, RoutingMode::kTunnel, TunnelProtocol::kGeneve, 0) ==
        "pod MTU 575 (device MTU 625 less 50 bytes of geneve encapsulation): below the minimum 576");
  CHECK(err(500, RoutingMode::kNative, TunnelProtocol::kVxlan, 0) == "pod MTU 500 (device MTU 500): below the minimum 576");
  CHECK(err(0, RoutingMode::kNative, TunnelProtocol::kVxlan, 0) == "device MTU 0: must be 1-65535");
  CHECK(err(70000, RoutingMode::kNative, TunnelProtocol::kVxlan, 0) == "device MTU 70000: must be 1-65535");
  CHECK(err(1500, RoutingMode::kNative, TunnelProtocol::kVxlan, -1) ==
        "MTU override -1: must be positive (0 = automatic)");
}

// Property: over the whole valid range, a successful result is within [576, device MTU - overhead], and the
// override, when accepted, is returned unchanged.
TEST_CASE("Pod MTU stays within bounds for every device MTU", "[unit][mtu]") {
  for (int dev = 1; dev <= 9216; dev += 7) {
    for (auto mode : {RoutingMode::kNative, RoutingMode::kTunnel}) {
      int overhead = mode == RoutingMode::kTunnel ? kEncapOverhead : 0;
      for (int ovr : {0, 576, 1280, 1450, 1500, 9000}) {
        auto r = podMtu(dev, mode, TunnelProtocol::kVxlan, ovr);
        bool expect_ok = ovr > 0 ? (ovr <= dev - overhead) : (dev - overhead >= kMinPodMtu);
        REQUIRE(r.ok() == expect_ok);
        if (r.ok()) {
          CHECK(*r >= kMinPodMtu);
          CHECK(*r <= dev - overhead);
          CHECK(*r == (ovr > 0 ? ovr : dev - overhead));
        }
      }
    }
  }
}
