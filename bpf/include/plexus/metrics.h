/* Per-CPU forward/drop counters keyed by {reason, direction}. */
#pragma once
#include "plexus/types.h"

/* {reason, direction} pairs: PLEXUS_REASON_MAX_ x PLEXUS_DIR_MAX_ with room to append reasons. */
#define PLEXUS_METRICS_MAX 1024

/* plexus_metrics_v1: PERCPU_HASH, {reason, direction} -> {packets, bytes}. Written by BPF only. */
struct plexus_metrics_key {
  __u8 reason;    /* enum plexus_reason */
  __u8 direction; /* enum plexus_direction */
  __u8 pad[2];    /* zero */
};

struct plexus_metrics_value {
  __u64 packets;
  __u64 bytes;
};
