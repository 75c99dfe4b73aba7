#pragma once
// Loads the socket-LB programs (bpf_sock.c) and attaches them to a cgroup v2 directory with BPF links pinned
// under the BPF root, so they stay attached when the agent stops or dies, and a restart swaps the programs
// in place (bpf_link_update) without a moment where sockets are not translated.

#include <memory>
#include <string>
#include <vector>

#include "plexus/common/result.h"
#include "plexus/datapath/lxc_datapath.h"

struct plexus_sock;

namespace plexus::datapath {

struct SockConfig {
  std::string bpf_root;     // the same root as the lxc programs: the service maps are shared by pinning
  std::string cgroup_path;  // cgroup v2 directory whose processes get socket LB
  uint32_t maglev_table_size = PLEXUS_MAGLEV_DEFAULT_M;
  MapSizes sizes{};  // the lxc programs' (the service maps are shared)
};

class SockDatapath {
 public:
  static Result<std::unique_ptr<SockDatapath>> load(const SockConfig& config);
  ~SockDatapath();
  SockDatapath(const SockDatapath&) = delete;
  SockDatapath& operator=(const SockDatapath&) = delete;

  std::vector<ProgramHandle> programs() const;
  const std::string& cgroupPath() const { return cgroup_; }

 private:
  SockDatapath(plexus_sock* skel, std::string cgroup) : skel_(skel), cgroup_(std::move(cgroup)) {}
  plexus_sock* skel_;
  std::string cgroup_;
};

// Makes sure path is a cgroup v2 directory, mounting the unified hierarchy on it when it is an empty dir.
Status ensureCgroup2(const std::string& path);

// Removes the pinned links (and so detaches the programs) of a bpf root; used when socket LB is turned off.
Status detachSockPrograms(const std::string& bpf_root);

}  // namespace plexus::datapath
