#pragma once
// Shared fixture for [bpf] tests: the real bpf_lxc programs loaded on a private bpffs, with two pods and the
// gateway seeded in the endpoint map, and a BPF_PROG_TEST_RUN wrapper.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include <catch2/catch.hpp>

#include <memory>

#include "packet.h"
#include "plexus/datapath/host_datapath.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/identity.h"
#include "plexus/reasons.h"
#include "prog_run.h"
#include "testing.h"

namespace plexus::testing {

inline const Mac kPodAMac = *Mac::parse("02:00:00:00:00:0a");
inline const Mac kNodeAMac = *Mac::parse("02:00:00:00:01:0a");
inline const Mac kPodBMac = *Mac::parse("02:00:00:00:00:0b");
inline const Mac kNodeBMac = *Mac::parse("02:00:00:00:01:0b");
inline const Ipv4 kPodA = *Ipv4::parse("10.244.0.5");
inline const Ipv4 kPodB = *Ipv4::parse("10.244.0.6");
inline const Ipv4 kGateway = *Ipv4::parse("10.244.0.1");
// BPF_PROG_TEST_RUN runs on the loopback device unless told otherwise: pod A "lives" behind ifindex 1.
// A conntrack key (ports in host order).
inline plexus_ct4_key ctKey(Ipv4 saddr, Ipv4 daddr, uint16_t sport, uint16_t dport, uint8_t proto, uint8_t dir) {
  plexus_ct4_key k{};
  k.saddr = saddr.networkOrder();
  k.daddr = daddr.networkOrder();
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = proto;
  k.dir = dir;
  return k;
}

inline constexpr uint32_t kPodAIfindex = 1;
inline constexpr uint32_t kPodBIfindex = 4242;

struct Fixture {
  TempDir tmp;
  BpffsMount bpffs{tmp.path() + "/bpffs"};
  std::unique_ptr<datapath::LxcDatapath> dp;

  explicit Fixture(datapath::LxcConfig cfg = {}) {
    cfg.bpf_root = bpffs.path() + "/plexus";
    auto loaded = datapath::LxcDatapath::load(cfg);
    REQUIRE(loaded.ok());
    dp = std::move(loaded.value());
    addEndpoint(kPodA, kPodAIfindex, 1, kPodAMac, kNodeAMac, 0);
    addEndpoint(kPodB, kPodBIfindex, 2, kPodBMac, kNodeBMac, 0);
    addEndpoint(kGateway, 0, 0, Mac{}, Mac{}, PLEXUS_EP_F_HOST);
  }

  // The host (device) programs, loaded on the fixture's bpffs so that they share its pinned maps.
  std::unique_ptr<datapath::HostDatapath> loadHost(datapath::LxcConfig cfg = {}) {
    cfg.bpf_root = bpffs.path() + "/plexus";
    auto loaded = datapath::HostDatapath::load(cfg);
    INFO((loaded.ok() ? std::string() : loaded.error().message));
    REQUIRE(loaded.ok());
    return std::move(loaded.value());
  }

  void addEndpoint(Ipv4 ip, uint32_t ifindex, uint16_t id, const Mac& pod, const Mac& node, uint16_t flags) {
    REQUIRE(seedEndpoint(*dp, ip, ifindex, id, pod, node, flags));
  }

  using Run = ProgRun;

  Run run(int prog_fd, const std::vector<uint8_t>& pkt) {
    Run r = progRun(prog_fd, pkt);
    REQUIRE(r.err == 0);
    return r;
  }

  uint64_t counter(uint8_t reason, uint8_t direction) {
    auto entries = dp->metrics().entries();
    REQUIRE(entries.ok());
    uint64_t packets = 0;
    for (const auto& [k, per_cpu] : *entries) {
      if (k.reason == reason && k.direction == direction) {
        for (const auto& v : per_cpu) {
          packets += v.packets;
        }
      }
    }
    return packets;
  }
};

// A policy entry as PolicyMaps::set() takes it: `proto` 0 is every protocol, `port` < 0 every port (ICMP: the type).
inline plexus_policy_key policyKey(uint32_t identity, uint8_t dir, uint8_t proto = 0, int port = -1) {
  plexus_policy_key k{};
  k.identity = identity;
  k.direction = dir;
  k.protocol = proto;
  k.dport = htons(static_cast<uint16_t>(port < 0 ? 0 : port));
  k.prefixlen = port >= 0 ? PLEXUS_POLICY_FULL_PREFIX : proto ? PLEXUS_POLICY_PROTO_PREFIX : PLEXUS_POLICY_FIXED_PREFIX;
  return k;
}

inline plexus_policy_value policyValue(uint32_t rule, bool deny = false) {
  plexus_policy_value v{};
  v.rule_id = rule;
  v.flags = deny ? PLEXUS_POLICY_F_DENY : 0;
  return v;
}

// Reads every flow event waiting in the ring buffer (the programs share one ring through pinning).
inline std::vector<plexus_flow_event> drainEvents(int ring_fd) {
  std::vector<plexus_flow_event> out;
  auto cb = [](void* ctx, void* data, size_t size) -> int {
    if (size >= sizeof(plexus_flow_event)) {
      static_cast<std::vector<plexus_flow_event>*>(ctx)->push_back(*static_cast<plexus_flow_event*>(data));
    }
    return 0;
  };
  ring_buffer* rb = ring_buffer__new(ring_fd, cb, &out, nullptr);
  REQUIRE(rb != nullptr);
  ring_buffer__consume(rb);
  ring_buffer__free(rb);
  return out;
}

inline Mac macAt(const std::vector<uint8_t>& pkt, size_t off) {
  Mac m;
  std::memcpy(m.b, pkt.data() + off, 6);
  return m;
}
}  // namespace plexus::testing
