/* Fixed-width kernel types for ABI headers. BPF C includes vmlinux.h (which defines them) first;
 * C++ gets them from the UAPI header. */
#pragma once
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define PLEXUS_NSEC_PER_SEC 1000000000ULL /* timestamps are CLOCK_MONOTONIC (bpf_ktime_get_ns, or coarse) */
