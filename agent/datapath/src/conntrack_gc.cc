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
  auto entries = ct.entries();
  if (!entries.ok()) {
    return entries.error().wrap("conntrack gc");
  }
  CtGcResult out;
  out.scanned = entries->size();
  std::vector<plexus_ct4_key> expired;
  for (const auto& [key, value] : *entries) {
    if (conntrackExpired(key, value, now_ns, lifetimes)) {
      expired.push_back(key);
    }
  }
  // A packet between the walk and the delete is lost with its entry; the flow was idle for a whole lifetime, and
  // its next packet starts it again (as with Cilium's collector).
  auto deleted = ct.eraseBatch(expired);
  if (!deleted.ok()) {
    return deleted.error().wrap("conntrack gc");
  }
  out.deleted = *deleted;
  return out;
}

uint64_t monotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * PLEXUS_NSEC_PER_SEC + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace plexus::datapath
