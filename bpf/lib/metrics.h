/* Per-CPU counters keyed by {reason, direction}. */
#pragma once

#include "plexus/metrics.h"
#include "lib/common.h"

/* plexus_metrics_v1: {reason, direction} -> per-CPU {packets, bytes}; written by every tc program's exit
 * (lib/verdict.h), read by the agent. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, PLEXUS_METRICS_MAX);
  __type(key, struct plexus_metrics_key);
  __type(value, struct plexus_metrics_value);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_metrics_v1 SEC(".maps");

static __always_inline void metrics_update(__u8 reason, __u8 direction, __u32 bytes) {
  struct plexus_metrics_key key = {.reason = reason, .direction = direction};
  struct plexus_metrics_value *v = bpf_map_lookup_elem(&plexus_metrics_v1, &key);
  if (v) {
    /* Per-CPU value: no atomics needed. */
    v->packets += 1;
    v->bytes += bytes;
    return;
  }
  struct plexus_metrics_value init = {.packets = 1, .bytes = bytes};
  bpf_map_update_elem(&plexus_metrics_v1, &key, &init, BPF_NOEXIST);
}
