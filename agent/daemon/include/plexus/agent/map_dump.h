#pragma once
// Decodes pinned map entries into readable rows for `plexus bpf <map> list`.

#include <string>

#include "plexus/agent/reason_names.h"
#include "plexus/common/result.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/v1/daemon.pb.h"

namespace plexus::agent {

// `endpoint` selects the endpoint for per-endpoint maps (policy).
Status dumpMap(datapath::LxcDatapath& lxc, v1::BpfMap which, const std::string& endpoint,
               v1::DumpBpfMapResponse* out);

}  // namespace plexus::agent
