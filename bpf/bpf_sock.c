/* Socket-level load balancing: cgroup v2 sock_addr programs translate a service frontend to a backend
 * when the application connects (TCP, connected UDP) or sends (unconnected UDP), so no per-packet NAT is
 * needed for pods and the host. recvmsg4/getpeername4 restore the frontend the application asked for.
 * All programs return 1 (allow, maybe rewritten); a service with no backends is refused at once with
 * ECONNREFUSED, as kube-proxy's REJECT rule would. The logic and the map are in lib/sock.h. */
#include "vmlinux.h"
#include "lib/common.h"
#include "lib/sock.h"

char LICENSE[] SEC("license") = "GPL";

#define ECONNREFUSED_ 111 /* vmlinux.h carries no errno values */

/* The one exit of connect4/sendmsg4: a negative reason refuses the call with ECONNREFUSED (bpf_set_retval, kernel
 * 5.18+: the program's 0 alone would make it EPERM). */
static __always_inline int sock4_exit(int ret) {
  if (ret < 0) {
    bpf_set_retval(-ECONNREFUSED_);
    return 0;
  }
  return 1;
}

SEC("cgroup/connect4")
int plexus_sock4_connect(struct bpf_sock_addr *ctx) { return sock4_exit(sock4_translate(ctx)); }

SEC("cgroup/sendmsg4")
int plexus_sock4_sendmsg(struct bpf_sock_addr *ctx) { return sock4_exit(sock4_translate(ctx)); }

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
