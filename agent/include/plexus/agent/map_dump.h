#pragma once
// Decodes pinned map entries into readable rows for `plexus bpf <map> list`.

#include <string>

#include "plexus/common/result.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/v1/daemon.pb.h"

namespace plexus::agent {

Status dumpMap(datapath::LxcDatapath& lxc, v1::BpfMap which, v1::DumpBpfMapResponse* out);
// Names of reasons and directions, from the X-macro list in bpf/include/plexus/reasons.h.
const char* reasonName(uint8_t reason);
const char* directionName(uint8_t direction);

}  // namespace plexus::agent
