#include "plexus/datapath/tc.h"

#include <bpf/libbpf.h>

#include <cerrno>

#include <fmt/format.h>

namespace plexus::datapath {

namespace {
// One filter per device and direction, always at the same handle/priority so that a restarted agent
// replaces rather than stacks programs.
constexpr uint32_t kHandle = 0x1;
constexpr uint32_t kPriority = 0x1;

bpf_tc_attach_point toAttachPoint(TcDirection dir) {
  return dir == TcDirection::kIngress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}
const char* dirName(TcDirection dir) { return dir == TcDirection::kIngress ? "ingress" : "egress"; }
}  // namespace

Result<TcAttachResult> tcAttach(int ifindex, TcDirection dir, int prog_fd) {
  TcAttachResult result;
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = toAttachPoint(dir));
  int err = bpf_tc_hook_create(&hook);
  if (err == 0) {
    result.created_qdisc = true;
  } else if (err != -EEXIST) {
    return errnoError(fmt::format("tc {} on ifindex {}: create clsact qdisc", dirName(dir), ifindex), -err);
  }
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = kHandle,
              .priority = kPriority);
  err = bpf_tc_attach(&hook, &opts);
  if (err != 0) {
    return errnoError(fmt::format("tc {} on ifindex {}: attach", dirName(dir), ifindex), -err);
  }
  return result;
}

Status tcDetach(int ifindex, TcDirection dir, bool remove_qdisc) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = toAttachPoint(dir));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kHandle, .priority = kPriority);
  int err = bpf_tc_detach(&hook, &opts);
  if (err != 0 && err != -ENOENT) {
    return errnoError(fmt::format("tc {} on ifindex {}: detach", dirName(dir), ifindex), -err);
  }
  if (remove_qdisc) {
    hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
    err = bpf_tc_hook_destroy(&hook);
    if (err != 0 && err != -ENOENT) {
      return errnoError(fmt::format("tc on ifindex {}: destroy clsact qdisc", ifindex), -err);
    }
  }
  return Status::Ok();
}

Result<uint32_t> tcAttachedProgramId(int ifindex, TcDirection dir) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = toAttachPoint(dir));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kHandle, .priority = kPriority);
  int err = bpf_tc_query(&hook, &opts);
  if (err != 0) {
    return errnoError(fmt::format("tc {} on ifindex {}: query", dirName(dir), ifindex), -err);
  }
  return opts.prog_id;
}

}  // namespace plexus::datapath
