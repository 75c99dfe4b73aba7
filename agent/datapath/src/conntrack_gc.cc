#include "plexus/datapath/conntrack_gc.h"

#include <time.h>

namespace plexus::datapath {

namespace {
constexpr uint8_t kTcp = 6;
constexpr uint8_t kFinOrRst = 0x01 | 0x04;
}  // namespace

bool conntrackExpired(const plexus_ct4_key& key, const plexus_ct4_value& value, uint64_t now_ns,
                      const CtLifetimes& lifetimes) {
  uint64_t age = now_ns > value.last_seen_ns ? now_ns - value.last_seen_ns : 0;
  if (key.proto != kTcp) {
    return age > lifetimes.non_tcp_ns;
  }
  bool closing = ((value.tx_flags | value.rx_flags) & kFinOrRst) != 0;
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
  for (const auto& [key, value] : *entries) {
    if (!conntrackExpired(key, value, now_ns, lifetimes)) {
      continue;
    }
    auto again = ct.lookup(key);  // a packet may have refreshed it since the walk
    if (!again.ok() || !again->has_value() || !conntrackExpired(key, **again, now_ns, lifetimes)) {
      continue;
    }
    if (ct.erase(key).ok()) {
      ++out.deleted;
    }
  }
  return out;
}

uint64_t monotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ULL + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace plexus::datapath
