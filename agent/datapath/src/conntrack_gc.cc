#include "plexus/datapath/conntrack_gc.h"

#include <netinet/in.h>
#include <time.h>

namespace plexus::datapath {

bool conntrackExpired(const plexus_ct4_key& key, const plexus_ct4_value& value, uint64_t now_ns,
                      const CtLifetimes& lifetimes) {
  uint64_t age = now_ns > value.last_seen_ns ? now_ns - value.last_seen_ns : 0;
  if (key.proto != IPPROTO_TCP) {
    return age > lifetimes.non_tcp_ns;
  }
  bool closing = ((value.tx_flags | value.rx_flags) & PLEXUS_CT_CLOSING_FLAGS) != 0;
  return age > (closing ? lifetimes.tcp_closing_ns : lifetimes.tcp_ns);
}

Result<CtGcResult> collectConntrack(BpfMap<plexus_ct4_key, plexus_ct4_value>& ct, uint64_t now_ns,
                                    const CtLifetimes& lifetimes) {
  auto r = collectExpired(ct, [&](const plexus_ct4_key& k, const plexus_ct4_value& v) {
    return conntrackExpired(k, v, now_ns, lifetimes);
  });
  return r.ok() ? r : Result<CtGcResult>(r.error().wrap("conntrack gc"));
}

bool natExpired(const plexus_snat4_key& key, const plexus_snat4_value& value, uint64_t now_ns,
                const CtLifetimes& lifetimes) {
  uint64_t age = now_ns > value.last_seen_ns ? now_ns - value.last_seen_ns : 0;
  if (key.proto != IPPROTO_TCP) {
    return age > lifetimes.non_tcp_ns;
  }
  return age > ((value.flags & PLEXUS_SNAT_F_CLOSING) ? lifetimes.tcp_closing_ns : lifetimes.tcp_ns);
}

Result<CtGcResult> collectNat(BpfMap<plexus_snat4_key, plexus_snat4_value>& nat, uint64_t now_ns,
                              const CtLifetimes& lifetimes) {
  auto r = collectExpired(nat, [&](const plexus_snat4_key& k, const plexus_snat4_value& v) {
    return natExpired(k, v, now_ns, lifetimes);
  });
  return r.ok() ? r : Result<CtGcResult>(r.error().wrap("masquerade gc"));
}

uint64_t monotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * PLEXUS_NSEC_PER_SEC + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace plexus::datapath
