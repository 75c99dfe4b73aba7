#pragma once
// Loads the pod-veth programs (bpf_lxc.c) from the embedded skeleton, reusing the maps pinned under the
// configured BPF root so that state survives agent restarts, and exposes typed handles to those maps.

#include <memory>
#include <string>
#include <vector>

#include "plexus/common/result.h"
#include "plexus/datapath/bpf_map.h"
#include "plexus/endpoint.h"
#include "plexus/metrics.h"

struct plexus_lxc;

namespace plexus::datapath {

struct LxcConfig {
  std::string bpf_root;       // a directory on a bpffs; created if missing
  bool redirect_peer = true;  // same-node pod-to-pod with bpf_redirect_peer
  bool arp_responder = true;
};

struct ProgramHandle {
  std::string name;
  uint32_t id = 0;
};

struct PinnedMapInfo {
  std::string name;
  std::string pin_path;
  MapInfo info;
};

class LxcDatapath {
 public:
  // Loads the programs and creates or reuses the pinned maps. Fails with a clear error when a pinned map's
  // layout differs from this build's (a layout never changes in place; see docs/datapath.md).
  static Result<std::unique_ptr<LxcDatapath>> load(const LxcConfig& config);
  ~LxcDatapath();
  LxcDatapath(const LxcDatapath&) = delete;
  LxcDatapath& operator=(const LxcDatapath&) = delete;

  // Attaches from-container (tc ingress) and to-container (tc egress) on a host-side veth.
  Status attachEndpoint(int host_ifindex);

  BpfMap<plexus_endpoint_key, plexus_endpoint_value>& endpoints() { return endpoints_; }
  BpfMap<plexus_ipcache_key, plexus_ipcache_value>& ipcache() { return ipcache_; }
  PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value>& metrics() { return metrics_; }

  int fromContainerFd() const;
  int toContainerFd() const;
  std::vector<ProgramHandle> programs() const;
  std::vector<PinnedMapInfo> maps() const;

 private:
  LxcDatapath(plexus_lxc* skel, std::string root, BpfMap<plexus_endpoint_key, plexus_endpoint_value> eps,
              BpfMap<plexus_ipcache_key, plexus_ipcache_value> ipc,
              PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value> met);

  plexus_lxc* skel_;
  std::string root_;
  BpfMap<plexus_endpoint_key, plexus_endpoint_value> endpoints_;
  BpfMap<plexus_ipcache_key, plexus_ipcache_value> ipcache_;
  PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value> metrics_;
};

// Checks that path is on a bpffs (statfs magic) and creates it if missing.
Status ensureBpfRoot(const std::string& path);

}  // namespace plexus::datapath
