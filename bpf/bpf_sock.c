/* Socket-level load balancing: cgroup v2 sock_addr programs translate a service frontend to a backend
 * when the application connects (TCP, connected UDP) or sends (unconnected UDP), so no per-packet NAT is
 * needed for pods and the host. recvmsg4/getpeername4 restore the frontend the application asked for.
 * All programs return 1 (allow, maybe rewritten); a service with no backends is refused at once with
 * ECONNREFUSED, as kube-proxy's REJECT rule would. */
#include "vmlinux.h"
#include "lib/common.h"
#include "lib/lb.h"

char LICENSE[] SEC("license") = "GPL";

#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define ECONNREFUSED_ 111

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct plexus_lb4_sock_revnat_key);
  __type(value, struct plexus_lb4_sock_revnat_value);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_lb4_sock_revnat_v1 SEC(".maps");

/* Returns 1 to let the call proceed (translated or not), 0 to refuse it. */
static __always_inline int sock4_translate(struct bpf_sock_addr *ctx) {
  __u8 proto = (__u8)ctx->protocol;
  if (proto != IPPROTO_TCP_ && proto != IPPROTO_UDP_) {
    return 1;
  }
  __be32 addr = ctx->user_ip4;
  __be16 port = (__be16)ctx->user_port;
  struct plexus_lb4_key key;
  struct plexus_lb4_service *svc = lb4_lookup_service(&key, addr, port, proto, 1);
  if (!svc) {
    return 1;
  }
  __u64 netns = bpf_get_netns_cookie(ctx);
  __u32 id = lb4_select_backend(&key, svc, netns, 1, bpf_get_prandom_u32());
  struct plexus_lb4_backend *be = id ? lb4_backend(id) : 0;
  if (!be) {
    bpf_set_retval(-ECONNREFUSED_);
    return 0;
  }
  struct plexus_lb4_sock_revnat_key rk = {.cookie = bpf_get_socket_cookie(ctx), .address = be->address,
                                          .port = be->port};
  struct plexus_lb4_sock_revnat_value rv = {.address = addr, .port = port, .rev_nat_index = svc->rev_nat_index};
  bpf_map_update_elem(&plexus_lb4_sock_revnat_v1, &rk, &rv, BPF_ANY);
  ctx->user_ip4 = be->address;
  ctx->user_port = (__u32)be->port;
  return 1;
}

/* Puts the frontend back where the application reads the peer address. */
static __always_inline void sock4_restore(struct bpf_sock_addr *ctx) {
  struct plexus_lb4_sock_revnat_key rk = {.cookie = bpf_get_socket_cookie(ctx), .address = ctx->user_ip4,
                                          .port = (__be16)ctx->user_port};
  struct plexus_lb4_sock_revnat_value *rv = bpf_map_lookup_elem(&plexus_lb4_sock_revnat_v1, &rk);
  if (!rv) {
    return;
  }
  ctx->user_ip4 = rv->address;
  ctx->user_port = (__u32)rv->port;
}

SEC("cgroup/connect4")
int plexus_sock4_connect(struct bpf_sock_addr *ctx) { return sock4_translate(ctx); }

SEC("cgroup/sendmsg4")
int plexus_sock4_sendmsg(struct bpf_sock_addr *ctx) { return sock4_translate(ctx); }

SEC("cgroup/recvmsg4")
int plexus_sock4_recvmsg(struct bpf_sock_addr *ctx) {
  sock4_restore(ctx);
  return 1;
}

SEC("cgroup/getpeername4")
int plexus_sock4_getpeername(struct bpf_sock_addr *ctx) {
  sock4_restore(ctx);
  return 1;
}
