/* Socket-level load balancing (cgroup v2 sock_addr programs, bpf_sock.c): a frontend becomes a backend when the
 * application connects (TCP, connected UDP) or sends (unconnected UDP), and the frontend is put back where the
 * application reads its peer's address. */
#pragma once
#include "plexus/lb.h"
#include "lib/common.h"
#include "lib/lb.h"

/* plexus_lb4_sock_revnat_v1: {socket cookie, backend} -> frontend; written by the socket programs at connect and
 * sendmsg, read at recvmsg and getpeername. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PLEXUS_LB_SOCK_REVNAT_MAX);
  __type(key, struct plexus_lb4_sock_revnat_key);
  __type(value, struct plexus_lb4_sock_revnat_value);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_lb4_sock_revnat_v1 SEC(".maps");

/* Translates a frontend to a backend in place. Returns 0 (translated, or not a frontend), or
 * PLEXUS_DROP(NO_SERVICE_BACKEND) for a service without a usable backend. */
static __always_inline int sock4_translate(struct bpf_sock_addr *ctx) {
  __u8 proto = (__u8)ctx->protocol;
  if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
    return 0;
  }
  __be32 addr = ctx->user_ip4;
  __be16 port = (__be16)ctx->user_port;
  struct plexus_lb4_key key;
  struct plexus_lb4_service *svc = lb4_lookup_service(&key, addr, port, proto, 1);
  if (!svc) {
    return 0;
  }
  __u64 netns = bpf_get_netns_cookie(ctx);
  __u32 id = lb4_select_backend(&key, svc, netns, 1, bpf_get_prandom_u32());
  struct plexus_lb4_backend *be = id ? lb4_backend(id) : 0;
  if (!be) {
    return PLEXUS_DROP(NO_SERVICE_BACKEND);
  }
  struct plexus_lb4_sock_revnat_key rk = {.cookie = bpf_get_socket_cookie(ctx), .address = be->address,
                                          .port = be->port};
  struct plexus_lb4_sock_revnat_value rv = {.address = addr, .port = port, .rev_nat_index = svc->rev_nat_index};
  bpf_map_update_elem(&plexus_lb4_sock_revnat_v1, &rk, &rv, BPF_ANY);
  ctx->user_ip4 = be->address;
  ctx->user_port = (__u32)be->port;
  return 0;
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
