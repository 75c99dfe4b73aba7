#include "plexus/datapath/host_datapath.h"

#include <arpa/inet.h>
#include <bpf/libbpf.h>

#include <cerrno>

#include <fmt/format.h>

#include "plexus/datapath/map_migration.h"
#include "plexus/datapath/tc.h"
#include "plexus_host.skel.h"
#include "plexus_overlay.skel.h"

namespace plexus::datapath {

Result<std::unique_ptr<HostDatapath>> HostDatapath::load(const LxcConfig& config) {
  PLEXUS_TRY(ensureBpfRoot(config.bpf_root), "load host programs");
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = config.bpf_root.c_str());
  plexus_host* skel = plexus_host__open_opts(&opts);
  if (!skel) {
    return errnoError("load host programs: open skeleton", errno);
  }
  skel->rodata->cfg_maglev_m = config.maglev_table_size;
  // Drops and translations at the devices go to the same flow-event ring as the lxc programs' (shared by pinning,
  // so its size must match theirs), under the same switches.
  skel->rodata->cfg_enable_events = config.enable_events ? 1 : 0;
  skel->rodata->cfg_monitor_aggregation = config.monitor_aggregation;
  // BPF host routing delivers local pods' traffic here, after their ingress policy, and forwards translated NodePort
  // packets by the FIB (never into the tunnel device, which needs a key).
  skel->rodata->cfg_host_routing = config.host_routing ? 1 : 0;
  skel->rodata->cfg_tunnel_ifindex = config.tunnel_ifindex;
  skel->rodata->cfg_tunnel_port = htons(config.tunnel_port);
  skel->rodata->cfg_enable_policy = config.enable_policy ? 1 : 0;
  skel->rodata->cfg_masquerade = config.masquerade ? 1 : 0;
  skel->rodata->cfg_policy_audit = config.policy_audit ? 1 : 0;
  skel->rodata->cfg_lb_mode = config.lb_mode;
  if (config.native_cidr.length() > 0) {
    skel->rodata->cfg_native_cidr_addr = config.native_cidr.network().networkOrder();
    skel->rodata->cfg_native_cidr_mask = htonl(config.native_cidr.mask());
  }
  applyMapSizes(skel->obj, config.sizes);
  auto carried = loadPinnedObject(skel->obj, config.bpf_root, [skel] { return plexus_host__load(skel); });
  if (!carried.ok()) {
    plexus_host__destroy(skel);
    return carried.error().wrap("load host programs");
  }
  return std::unique_ptr<HostDatapath>(new HostDatapath(skel));
}

HostDatapath::~HostDatapath() { plexus_host__destroy(skel_); }

int HostDatapath::fromNetdevFd() const { return bpf_program__fd(skel_->progs.plexus_from_netdev); }

int HostDatapath::toNetdevFd() const { return bpf_program__fd(skel_->progs.plexus_to_netdev); }

Status HostDatapath::setMasqueradeAddress(int ifindex, Ipv4 address) {
  uint32_t key = static_cast<uint32_t>(ifindex);
  plexus_device_value v{};
  v.ipv4 = address.networkOrder();
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.plexus_devices_v1), &key, &v, BPF_ANY) != 0) {
    return detail::updateError(fmt::format("masquerade address of ifindex {}", ifindex), "plexus_devices_v1",
                               PLEXUS_DEVICES_MAX, errno);
  }
  return Status::Ok();
}

Status HostDatapath::attachDevice(int ifindex, std::optional<Ipv4> masquerade_address) {
  if (masquerade_address) {
    PLEXUS_TRY(setMasqueradeAddress(ifindex, *masquerade_address), "attach");
  }
  auto in = tcAttach(ifindex, TcDirection::kIngress, fromNetdevFd());
  if (!in.ok()) {
    return in.error().wrap(fmt::format("attach from-netdev on ifindex {}", ifindex));
  }
  auto out = tcAttach(ifindex, TcDirection::kEgress, toNetdevFd());
  if (!out.ok()) {
    return out.error().wrap(fmt::format("attach to-netdev on ifindex {}", ifindex));
  }
  return Status::Ok();
}

std::vector<ProgramHandle> HostDatapath::programs() const {
  return {programHandle(skel_->progs.plexus_from_netdev), programHandle(skel_->progs.plexus_to_netdev)};
}

Result<std::unique_ptr<OverlayDatapath>> OverlayDatapath::load(const LxcConfig& config) {
  PLEXUS_TRY(ensureBpfRoot(config.bpf_root), "load overlay programs");
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = config.bpf_root.c_str());
  plexus_overlay* skel = plexus_overlay__open_opts(&opts);
  if (!skel) {
    return errnoError("load overlay programs: open skeleton", errno);
  }
  skel->rodata->cfg_enable_policy = config.enable_policy ? 1 : 0;
  skel->rodata->cfg_enable_events = config.enable_events ? 1 : 0;
  skel->rodata->cfg_monitor_aggregation = config.monitor_aggregation;
  skel->rodata->cfg_routing_mode = static_cast<uint8_t>(config.routing_mode);
  skel->rodata->cfg_tunnel_ifindex = config.tunnel_ifindex;
  skel->rodata->cfg_tunnel_port = htons(config.tunnel_port);
  skel->rodata->cfg_lb_mode = config.lb_mode;
  skel->rodata->cfg_policy_audit = config.policy_audit ? 1 : 0;
  applyMapSizes(skel->obj, config.sizes);
  auto carried = loadPinnedObject(skel->obj, config.bpf_root, [skel] { return plexus_overlay__load(skel); });
  if (!carried.ok()) {
    plexus_overlay__destroy(skel);
    return carried.error().wrap(
        fmt::format("load overlay programs (pinned maps under {} must match this build's layouts)", config.bpf_root));
  }
  return std::unique_ptr<OverlayDatapath>(new OverlayDatapath(skel));
}

OverlayDatapath::~OverlayDatapath() { plexus_overlay__destroy(skel_); }

int OverlayDatapath::fromOverlayFd() const { return bpf_program__fd(skel_->progs.plexus_from_overlay); }
int OverlayDatapath::toOverlayFd() const { return bpf_program__fd(skel_->progs.plexus_to_overlay); }

Status OverlayDatapath::attachOverlay(int ifindex) {
  auto in = tcAttach(ifindex, TcDirection::kIngress, fromOverlayFd());
  if (!in.ok()) {
    return in.error().wrap(fmt::format("attach from-overlay on ifindex {}", ifindex));
  }
  auto out = tcAttach(ifindex, TcDirection::kEgress, toOverlayFd());
  if (!out.ok()) {
    return out.error().wrap(fmt::format("attach to-overlay on ifindex {}", ifindex));
  }
  return Status::Ok();
}

std::vector<ProgramHandle> OverlayDatapath::programs() const {
  return {programHandle(skel_->progs.plexus_from_overlay), programHandle(skel_->progs.plexus_to_overlay)};
}

}  // namespace plexus::datapath
