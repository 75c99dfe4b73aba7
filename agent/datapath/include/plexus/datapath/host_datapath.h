#pragma once
// Loads the host-side programs: the external-device programs (bpf_host.c) and the VXLAN device's (bpf_overlay.c).
// The external-device program (bpf_host.c) for NodePort/LoadBalancer/externalIPs from outside the node
// and attaches it at tc ingress of the configured devices. It shares the service, conntrack, metrics and flow-event
// maps with the lxc programs through pinning, so its drops are counted and observed with theirs.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/datapath/lxc_datapath.h"

struct plexus_host;
struct plexus_overlay;

namespace plexus::datapath {

class HostDatapath {
 public:
  // sizes and maglev_table_size must match the lxc programs' (the pinned maps are shared).
  static Result<std::unique_ptr<HostDatapath>> load(const LxcConfig& config);
  ~HostDatapath();
  HostDatapath(const HostDatapath&) = delete;
  HostDatapath& operator=(const HostDatapath&) = delete;

  // The programs on the device, and its masquerade address (unset: the device's traffic is not masqueraded).
  Status attachDevice(int ifindex, std::optional<Ipv4> masquerade_address = std::nullopt);
  Status setMasqueradeAddress(int ifindex, Ipv4 address);
  int fromNetdevFd() const;
  int toNetdevFd() const;
  std::vector<ProgramHandle> programs() const;

 private:
  explicit HostDatapath(plexus_host* skel) : skel_(skel) {}
  plexus_host* skel_;
};

// The tunnel device's programs (routing mode tunnel): decapsulated traffic for local pods is judged by their ingress
// policy with the identity from the VNI and delivered with bpf_redirect_peer; host traffic routed into the device gets
// its tunnel key. Shares endpoints, ipcache, policy, conntrack, metrics and events with the lxc programs (pinning),
// so the same sizes as theirs apply. Lives here, beside the other host-side loader, to stay in plexus_datapath's
// source list.
class OverlayDatapath {
 public:
  static Result<std::unique_ptr<OverlayDatapath>> load(const LxcConfig& config);
  ~OverlayDatapath();
  OverlayDatapath(const OverlayDatapath&) = delete;
  OverlayDatapath& operator=(const OverlayDatapath&) = delete;

  // Attaches from-overlay (tc ingress) and to-overlay (tc egress) on the VXLAN device (collect-metadata mode).
  Status attachOverlay(int ifindex);
  int fromOverlayFd() const;
  int toOverlayFd() const;
  std::vector<ProgramHandle> programs() const;

 private:
  explicit OverlayDatapath(plexus_overlay* skel) : skel_(skel) {}
  plexus_overlay* skel_;
};

}  // namespace plexus::datapath
