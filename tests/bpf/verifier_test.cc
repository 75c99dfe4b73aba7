// Every program passes the kernel's verifier under the heaviest combinations of the load-time switches (rodata):
// a switch turns code on, and the verifier walks each path the enabled code adds, so a change that fits the default
// build can take another past the verifier's limit of 1,000,000 processed instructions. (The policy's range probes
// did, in audit mode with tunnel routing, before they became a subprogram.) Each program must also keep half the
// limit in reserve (kHeadroom), so that a change that eats into it fails here first and not at a user's load:
// `plexus status` shows each program's figure, and docs/datapath.md records them (2026-12-07, heaviest:
// from-container in tunnel mode with audit and SNAT, 180,100 instructions, 18%).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "plexus/datapath/host_datapath.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/events.h"
#include "plexus/lb.h"
#include "testing.h"

using namespace plexus;
using namespace plexus::testing;

namespace {

// The most a program may cost the verifier here: half its limit.
constexpr uint32_t kHeadroom = datapath::kVerifierInsnLimit / 2;

void checkHeadroom(const std::vector<datapath::ProgramHandle>& programs) {
  for (const auto& p : programs) {
    INFO(p.name << ": " << p.verified_insns << " instructions processed by the verifier");
    CHECK(p.verified_insns > 0);
    CHECK(p.verified_insns <= kHeadroom);
  }
}

struct Case {
  std::string name;
  datapath::LxcConfig cfg;
};

std::vector<Case> heaviest() {
  auto base = [] {
    datapath::LxcConfig c;
    c.policy_audit = true;
    c.monitor_aggregation = PLEXUS_AGGREGATION_NONE;
    c.host_routing = true;
    c.masquerade = true;
    c.native_cidr = *Ipv4Prefix::parse("10.0.0.0/8");
    return c;
  };
  std::vector<Case> out;
  for (uint8_t mode : {uint8_t{PLEXUS_LB_MODE_SNAT}, uint8_t{PLEXUS_LB_MODE_DSR}, uint8_t{PLEXUS_LB_MODE_HYBRID}}) {
    for (bool tunnel : {false, true}) {
      datapath::LxcConfig c = base();
      c.lb_mode = mode;
      if (tunnel) {
        c.routing_mode = datapath::RoutingMode::kTunnel;
        c.tunnel_ifindex = 1;  // any device: the programs only redirect to it
      }
      out.push_back({std::string(tunnel ? "tunnel" : "native") + ", audit, host routing, masquerade, lb mode " +
                         std::to_string(mode),
                     c});
    }
  }
  datapath::LxcConfig enforcing = base();
  enforcing.policy_audit = false;
  out.push_back({"native, enforcing, host routing, masquerade", enforcing});
  datapath::LxcConfig bare;
  bare.enable_policy = false;
  bare.enable_events = false;
  bare.lb_per_packet = false;
  bare.redirect_peer = false;
  bare.arp_responder = false;
  out.push_back({"everything optional off", bare});
  return out;
}

}  // namespace

TEST_CASE("every program passes the verifier under the heaviest load-time switches", "[bpf][verifier]") {
  for (auto& c : heaviest()) {
    DYNAMIC_SECTION(c.name) {
      TempDir tmp;
      BpffsMount bpffs(tmp.path() + "/bpffs");
      c.cfg.bpf_root = bpffs.path() + "/plexus";
      auto lxc = datapath::LxcDatapath::load(c.cfg);
      INFO((lxc.ok() ? std::string() : lxc.error().message));
      REQUIRE(lxc.ok());
      checkHeadroom((*lxc)->programs());
      auto host = datapath::HostDatapath::load(c.cfg);
      INFO((host.ok() ? std::string() : host.error().message));
      CHECK(host.ok());
      if (host.ok()) {
        checkHeadroom((*host)->programs());
      }
      if (c.cfg.routing_mode == datapath::RoutingMode::kTunnel) {
        auto overlay = datapath::OverlayDatapath::load(c.cfg);
        INFO((overlay.ok() ? std::string() : overlay.error().message));
        CHECK(overlay.ok());
        if (overlay.ok()) {
          checkHeadroom((*overlay)->programs());
        }
      }
    }
  }
}
