#include "plexus/datapath/sock_datapath.h"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include <fmt/format.h>

#include "plexus/datapath/fd.h"
#include "plexus/datapath/map_migration.h"
#include "plexus_sock.skel.h"

namespace plexus::datapath {

namespace fs = std::filesystem;

Status ensureCgroup2(const std::string& path) {
  auto isCgroup2 = [&] {
    struct statfs st {};
    return statfs(path.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == CGROUP2_SUPER_MAGIC;
  };
  if (isCgroup2()) {
    return Status::Ok();
  }
  // Like Cilium's /run/cilium/cgroupv2: mount the unified hierarchy where we were told to find it.
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec || !fs::is_empty(path, ec)) {
    return makeError(ErrorCode::kFailedPrecondition,
                     fmt::format("cgroup root {} is neither cgroup v2 nor an empty directory to mount it on", path));
  }
  if (mount("none", path.c_str(), "cgroup2", 0, nullptr) != 0 || !isCgroup2()) {
    return errnoError(fmt::format("mount cgroup2 on {}", path), errno);
  }
  return Status::Ok();
}

namespace {
std::string linkDir(const std::string& bpf_root) { return bpf_root + "/links"; }

// Attaches prog to the cgroup through a pinned link, or swaps the program of the link a previous run pinned.
Status attachPinned(bpf_program* prog, int cgroup_fd, const std::string& pin) {
  if (fs::exists(pin)) {
    bpf_link* old = bpf_link__open(pin.c_str());
    if (old) {
      int err = bpf_link__update_program(old, prog);
      bpf_link__disconnect(old);  // keep the pinned link when our handle goes
      bpf_link__destroy(old);
      if (err == 0) {
        return Status::Ok();
      }
    }
    // Stale or for another cgroup: replace it.
    unlink(pin.c_str());
  }
  bpf_link* link = bpf_program__attach_cgroup(prog, cgroup_fd);
  if (!link) {
    return errnoError(fmt::format("attach {} to cgroup", bpf_program__name(prog)), errno);
  }
  int err = bpf_link__pin(link, pin.c_str());
  bpf_link__disconnect(link);
  bpf_link__destroy(link);
  if (err != 0) {
    return errnoError(fmt::format("pin link {}", pin), -err);
  }
  return Status::Ok();
}
}  // namespace

Result<std::unique_ptr<SockDatapath>> SockDatapath::load(const SockConfig& config) {
  PLEXUS_TRY(ensureBpfRoot(config.bpf_root), "load socket programs");
  PLEXUS_TRY(ensureCgroup2(config.cgroup_path), "load socket programs");
  int cg = open(config.cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) {
    return errnoError(fmt::format("open cgroup {}", config.cgroup_path), errno);
  }
  UniqueFd cgroup_fd(cg);
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = config.bpf_root.c_str());
  plexus_sock* skel = plexus_sock__open_opts(&opts);
  if (!skel) {
    return errnoError("load socket programs: open skeleton", errno);
  }
  skel->rodata->cfg_maglev_m = config.maglev_table_size;
  applyMapSizes(skel->obj, config.sizes);
  auto carried = loadPinnedObject(skel->obj, config.bpf_root, [skel] { return plexus_sock__load(skel); });
  if (!carried.ok()) {
    plexus_sock__destroy(skel);
    return carried.error().wrap("load socket programs");
  }
  std::error_code ec;
  fs::create_directories(linkDir(config.bpf_root), ec);
  for (bpf_program* p : {skel->progs.plexus_sock4_connect, skel->progs.plexus_sock4_sendmsg,
                         skel->progs.plexus_sock4_recvmsg, skel->progs.plexus_sock4_getpeername}) {
    Status s = attachPinned(p, cgroup_fd.get(), linkDir(config.bpf_root) + "/" + bpf_program__name(p));
    if (!s.ok()) {
      plexus_sock__destroy(skel);
      return s.error().wrap("socket LB");
    }
  }
  return std::unique_ptr<SockDatapath>(new SockDatapath(skel, config.cgroup_path));
}

SockDatapath::~SockDatapath() { plexus_sock__destroy(skel_); }

std::vector<ProgramHandle> SockDatapath::programs() const {
  std::vector<ProgramHandle> out;
  for (const bpf_program* p : {skel_->progs.plexus_sock4_connect, skel_->progs.plexus_sock4_sendmsg,
                               skel_->progs.plexus_sock4_recvmsg, skel_->progs.plexus_sock4_getpeername}) {
    out.push_back(programHandle(p));
  }
  return out;
}

Status detachSockPrograms(const std::string& bpf_root) {
  std::error_code ec;
  for (const char* name : {"plexus_sock4_connect", "plexus_sock4_sendmsg", "plexus_sock4_recvmsg",
                           "plexus_sock4_getpeername"}) {
    fs::remove(linkDir(bpf_root) + "/" + name, ec);
  }
  return Status::Ok();
}

}  // namespace plexus::datapath
