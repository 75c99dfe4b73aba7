#pragma once
// What the [bpf] tests and the datapath benches share, without Catch2 (the benches are plain programs): one
// BPF_PROG_TEST_RUN of a tc program on a packet, and a pod's endpoint entry written as the agent writes it.
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "packet.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/identity.h"

namespace plexus::testing {

struct ProgRun {
  int err = 0;               // bpf_prog_test_run_opts()'s return
  int retval = -1;           // the program's verdict
  uint32_t duration = 0;     // the kernel's mean ns per run (the program only, not the syscall)
  std::vector<uint8_t> out;  // the packet as the program left it
  uint32_t mark = 0;         // skb->mark as the program left it
};

// `repeat` runs of the program on `pkt`, arriving on `ifindex` (0: test_run's loopback device, ifindex 1) with
// skb->mark `mark`.
inline ProgRun progRun(int prog_fd, const std::vector<uint8_t>& pkt, uint32_t ifindex = 0, uint32_t repeat = 1,
                       uint32_t mark = 0) {
  ProgRun r;
  r.out.resize(pkt.size() + 256);
  __sk_buff ctx{};
  ctx.ifindex = ifindex;
  ctx.mark = mark;
  __sk_buff ctx_out{};
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data(), .data_out = r.out.data(),
              .data_size_in = static_cast<uint32_t>(pkt.size()), .data_size_out = static_cast<uint32_t>(r.out.size()),
              .ctx_in = &ctx, .ctx_out = &ctx_out, .ctx_size_in = sizeof(ctx), .ctx_size_out = sizeof(ctx_out),
              .repeat = static_cast<int>(repeat));
  r.err = bpf_prog_test_run_opts(prog_fd, &opts);
  r.retval = static_cast<int>(opts.retval);
  r.duration = opts.duration;
  r.mark = ctx_out.mark;
  r.out.resize(std::min<size_t>(opts.data_size_out, r.out.size()));
  return r;
}

// Writes a local endpoint's entry: a pod (cluster identity 256 + id, with an allow-all policy) or, with
// PLEXUS_EP_F_HOST, the node itself (identity host, no policy).
inline bool seedEndpoint(datapath::LxcDatapath& dp, Ipv4 ip, uint32_t ifindex, uint16_t id, const Mac& pod,
                         const Mac& node, uint16_t flags = 0) {
  plexus_endpoint_key k{};
  k.ip = ip.networkOrder();
  plexus_endpoint_value v{};
  v.ifindex = ifindex;
  v.ep_id = id;
  v.identity = (flags & PLEXUS_EP_F_HOST) ? PLEXUS_IDENTITY_HOST : PLEXUS_IDENTITY_CLUSTER_MIN + id;
  v.flags = flags;
  std::memcpy(v.pod_mac, pod.b, 6);
  std::memcpy(v.node_mac, node.b, 6);
  if (!dp.endpoints().update(k, v).ok()) {
    return false;
  }
  return id == 0 || dp.policy().set(id, datapath::allowAllPolicy()).ok();
}

}  // namespace plexus::testing
