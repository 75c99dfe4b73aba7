#pragma once
// Loads the external-device program (bpf_host.c) for NodePort/LoadBalancer/externalIPs from outside the node
// and attaches it at tc ingress of the configured devices. It shares the service, conntrack, metrics and flow-event
// maps with the lxc programs through pinning, so its drops are counted and observed with theirs.

#include <memory>
#include <string>
#include <vector>

#include "plexus/common/result.h"
#include "plexus/datapath/lxc_datapath.h"

struct plexus_host;

namespace plexus::datapath {

class HostDatapath {
 public:
  // ct_map_size, events_ring_bytes and maglev_table_size must match the lxc programs' (the pinned maps are shared).
  static Result<std::unique_ptr<HostDatapath>> load(const LxcConfig& config);
  ~HostDatapath();
  HostDatapath(const HostDatapath&) = delete;
  HostDatapath& operator=(const HostDatapath&) = delete;

  Status attachDevice(int ifindex);
  int fromNetdevFd() const;
  std::vector<ProgramHandle> programs() const;

 private:
  explicit HostDatapath(plexus_host* skel) : skel_(skel) {}
  plexus_host* skel_;
};

}  // namespace plexus::datapath
