#include "plexus/datapath/lxc_datapath.h"

#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <filesystem>

#include <fmt/format.h>

#include "plexus/datapath/tc.h"
#include "plexus_lxc.skel.h"

namespace plexus::datapath {

Status ensureBpfRoot(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) {
    return makeError(ErrorCode::kFailedPrecondition, fmt::format("bpf root {}: {}", path, ec.message()));
  }
  struct statfs st {};
  if (statfs(path.c_str(), &st) != 0) {
    return errnoError(fmt::format("bpf root {}: statfs", path), errno);
  }
  if (static_cast<unsigned long>(st.f_type) != BPF_FS_MAGIC) {
    return makeError(ErrorCode::kFailedPrecondition,
                     fmt::format("bpf root {} is not on a bpf filesystem (mount -t bpf bpf <dir>)", path));
  }
  return Status::Ok();
}

Result<std::unique_ptr<LxcDatapath>> LxcDatapath::load(const LxcConfig& config) {
  PLEXUS_TRY(ensureBpfRoot(config.bpf_root), "load lxc programs");
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = config.bpf_root.c_str());
  plexus_lxc* skel = plexus_lxc__open_opts(&opts);
  if (!skel) {
    return errnoError("load lxc programs: open skeleton", errno);
  }
  skel->rodata->cfg_redirect_peer = config.redirect_peer ? 1 : 0;
  skel->rodata->cfg_arp_responder = config.arp_responder ? 1 : 0;
  int err = plexus_lxc__load(skel);
  if (err != 0) {
    plexus_lxc__destroy(skel);
    return errnoError(fmt::format("load lxc programs (pinned maps under {} must match this build's layouts)",
                                  config.bpf_root),
                      -err);
  }
  auto eps = BpfMap<plexus_endpoint_key, plexus_endpoint_value>::fromFd(bpf_map__fd(skel->maps.plexus_endpoints_v1));
  auto ipc = BpfMap<plexus_ipcache_key, plexus_ipcache_value>::fromFd(bpf_map__fd(skel->maps.plexus_ipcache_v1));
  auto met =
      PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value>::fromFd(bpf_map__fd(skel->maps.plexus_metrics_v1));
  if (!eps.ok() || !ipc.ok() || !met.ok()) {
    Error e = !eps.ok() ? eps.error() : !ipc.ok() ? ipc.error() : met.error();
    plexus_lxc__destroy(skel);
    return e.wrap("load lxc programs");
  }
  return std::unique_ptr<LxcDatapath>(new LxcDatapath(skel, config.bpf_root, std::move(eps.value()),
                                                      std::move(ipc.value()), std::move(met.value())));
}

LxcDatapath::LxcDatapath(plexus_lxc* skel, std::string root, BpfMap<plexus_endpoint_key, plexus_endpoint_value> eps,
                         BpfMap<plexus_ipcache_key, plexus_ipcache_value> ipc,
                         PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value> met)
    : skel_(skel), root_(std::move(root)), endpoints_(std::move(eps)), ipcache_(std::move(ipc)),
      metrics_(std::move(met)) {}

// Destroying the skeleton closes our fds only: tc filters keep their programs and the maps stay pinned.
LxcDatapath::~LxcDatapath() { plexus_lxc__destroy(skel_); }

int LxcDatapath::fromContainerFd() const { return bpf_program__fd(skel_->progs.plexus_from_container); }
int LxcDatapath::toContainerFd() const { return bpf_program__fd(skel_->progs.plexus_to_container); }

Status LxcDatapath::attachEndpoint(int host_ifindex) {
  auto in = tcAttach(host_ifindex, TcDirection::kIngress, fromContainerFd());
  if (!in.ok()) {
    return in.error().wrap("attach from-container");
  }
  auto out = tcAttach(host_ifindex, TcDirection::kEgress, toContainerFd());
  if (!out.ok()) {
    return out.error().wrap("attach to-container");
  }
  return Status::Ok();
}

std::vector<ProgramHandle> LxcDatapath::programs() const {
  std::vector<ProgramHandle> out;
  for (bpf_program* p : {skel_->progs.plexus_from_container, skel_->progs.plexus_to_container}) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    ProgramHandle h{bpf_program__name(p), 0};
    if (bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len) == 0) {
      h.id = info.id;
    }
    out.push_back(h);
  }
  return out;
}

std::vector<PinnedMapInfo> LxcDatapath::maps() const {
  std::vector<PinnedMapInfo> out;
  for (bpf_map* m : {skel_->maps.plexus_endpoints_v1, skel_->maps.plexus_ipcache_v1, skel_->maps.plexus_metrics_v1}) {
    auto info = mapInfo(bpf_map__fd(m));
    PinnedMapInfo p{bpf_map__name(m), root_ + "/" + bpf_map__name(m), info.ok() ? info.value() : MapInfo{}};
    out.push_back(p);
  }
  return out;
}

}  // namespace plexus::datapath
