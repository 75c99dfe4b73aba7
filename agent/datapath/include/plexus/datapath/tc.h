#pragma once
// tc (clsact) attachment of BPF programs with libbpf's bpf_tc_* API (libbpf 1.1 has no tcx).
// Attachments deliberately outlive the agent: the datapath keeps forwarding while the agent is down, and
// a restarted agent replaces the programs in place (BPF_TC_F_REPLACE on the same handle and priority).

#include <cstdint>

#include "plexus/common/result.h"

namespace plexus::datapath {

enum class TcDirection { kIngress, kEgress };

struct TcAttachResult {
  bool created_qdisc = false;  // true when we created the clsact qdisc (remove it only then)
};

// Attaches (or atomically replaces) our filter on the device.
Result<TcAttachResult> tcAttach(int ifindex, TcDirection dir, int prog_fd);
// Removes our filter; when remove_qdisc, also the clsact qdisc (only if we created it).
Status tcDetach(int ifindex, TcDirection dir, bool remove_qdisc);
// The kernel id of the program attached by us, or NotFound.
Result<uint32_t> tcAttachedProgramId(int ifindex, TcDirection dir);

}  // namespace plexus::datapath
