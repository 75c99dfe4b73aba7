// Pins every BPF ABI struct at compile time (STYLE.md rule 2): size, field offsets, trivially copyable,
// unique object representations (no hidden padding that could make a hash-map key miss).
#include <cstddef>
#include <type_traits>

#include "plexus/conntrack.h"
#include "plexus/endpoint.h"
#include "plexus/events.h"
#include "plexus/lb.h"
#include "plexus/metrics.h"
#include "plexus/policy.h"

#define PLEXUS_ABI(T, size)                                        \
  static_assert(sizeof(T) == (size), #T " size");                  \
  static_assert(std::is_trivially_copyable_v<T>, #T " copyable");  \
  static_assert(std::has_unique_object_representations_v<T>, #T " has hidden padding")
#define PLEXUS_OFF(T, f, off) static_assert(offsetof(T, f) == (off), #T "." #f " offset")

PLEXUS_ABI(plexus_endpoint_key, 4);
PLEXUS_ABI(plexus_endpoint_value, 28);
PLEXUS_OFF(plexus_endpoint_value, ifindex, 0);
PLEXUS_OFF(plexus_endpoint_value, identity, 4);
PLEXUS_OFF(plexus_endpoint_value, ep_id, 8);
PLEXUS_OFF(plexus_endpoint_value, flags, 10);
PLEXUS_OFF(plexus_endpoint_value, pod_mac, 12);
PLEXUS_OFF(plexus_endpoint_value, node_mac, 18);
PLEXUS_ABI(plexus_ipcache_key, 8);
PLEXUS_OFF(plexus_ipcache_key, ip, 4);
PLEXUS_ABI(plexus_ipcache_value, 12);
PLEXUS_OFF(plexus_ipcache_value, tunnel_endpoint, 4);
PLEXUS_ABI(plexus_metrics_key, 4);
PLEXUS_ABI(plexus_metrics_value, 16);

PLEXUS_ABI(plexus_lb4_key, 12);
PLEXUS_OFF(plexus_lb4_key, dport, 4);
PLEXUS_OFF(plexus_lb4_key, backend_slot, 6);
PLEXUS_OFF(plexus_lb4_key, proto, 8);
PLEXUS_OFF(plexus_lb4_key, scope, 9);
PLEXUS_ABI(plexus_lb4_service, 16);
PLEXUS_OFF(plexus_lb4_service, count, 4);
PLEXUS_OFF(plexus_lb4_service, rev_nat_index, 6);
PLEXUS_OFF(plexus_lb4_service, affinity_timeout, 8);
PLEXUS_OFF(plexus_lb4_service, flags, 12);
PLEXUS_ABI(plexus_lb4_backend, 8);
PLEXUS_OFF(plexus_lb4_backend, port, 4);
PLEXUS_OFF(plexus_lb4_backend, state, 7);
PLEXUS_ABI(plexus_lb4_reverse_nat, 8);
// The DSR option is on the wire (RFC 791 option layout: type, length, then its data), read by other nodes.
PLEXUS_ABI(plexus_dsr_opt4, PLEXUS_DSR_OPT_LEN);
PLEXUS_OFF(plexus_dsr_opt4, len, 1);
PLEXUS_OFF(plexus_dsr_opt4, port, 2);
PLEXUS_OFF(plexus_dsr_opt4, address, 4);
PLEXUS_ABI(plexus_lb4_affinity_key, 16);
PLEXUS_OFF(plexus_lb4_affinity_key, rev_nat_index, 8);
PLEXUS_ABI(plexus_lb4_src_range_key, 12);
PLEXUS_OFF(plexus_lb4_src_range_key, rev_nat_index, 4);
PLEXUS_OFF(plexus_lb4_src_range_key, address, 8);
PLEXUS_ABI(plexus_lb4_sock_revnat_key, 16);
PLEXUS_ABI(plexus_lb4_sock_revnat_value, 8);
PLEXUS_ABI(plexus_ct4_key, 16);
PLEXUS_OFF(plexus_ct4_key, proto, 12);
PLEXUS_ABI(plexus_ct4_value, 24);
PLEXUS_OFF(plexus_ct4_value, backend_id, 8);
PLEXUS_OFF(plexus_ct4_value, rev_nat_index, 12);
PLEXUS_OFF(plexus_ct4_value, tx_flags, 14);
PLEXUS_OFF(plexus_ct4_value, nat_port, 16);
PLEXUS_OFF(plexus_ct4_value, flags, 18);
PLEXUS_OFF(plexus_ct4_value, verdict_epoch, 20);
// The retired v1 value: what a leftover plexus_ct4_v1 pin holds (read by the migration only).
PLEXUS_ABI(plexus_ct4_value_v1, 16);
PLEXUS_OFF(plexus_ct4_value_v1, backend_id, 8);
PLEXUS_OFF(plexus_ct4_value_v1, rev_nat_index, 12);
PLEXUS_OFF(plexus_ct4_value_v1, tx_flags, 14);
PLEXUS_OFF(plexus_ct4_value_v1, rx_flags, 15);
PLEXUS_ABI(plexus_lb4_affinity_value, 16);

PLEXUS_ABI(plexus_policy_key, 12);
PLEXUS_OFF(plexus_policy_key, identity, 4);
PLEXUS_OFF(plexus_policy_key, direction, 8);
PLEXUS_OFF(plexus_policy_key, protocol, 9);
PLEXUS_OFF(plexus_policy_key, dport, 10);
PLEXUS_ABI(plexus_policy_value, 8);
PLEXUS_OFF(plexus_policy_value, rule_id, 4);

PLEXUS_ABI(plexus_flow_event, 56);
PLEXUS_OFF(plexus_flow_event, verdict, 8);
PLEXUS_OFF(plexus_flow_event, endpoint_id, 14);
PLEXUS_OFF(plexus_flow_event, src_identity, 16);
PLEXUS_OFF(plexus_flow_event, saddr, 24);
PLEXUS_OFF(plexus_flow_event, sport, 32);
PLEXUS_OFF(plexus_flow_event, orig_daddr, 36);
PLEXUS_OFF(plexus_flow_event, orig_dport, 40);
PLEXUS_OFF(plexus_flow_event, icmp_type, 42);
PLEXUS_OFF(plexus_flow_event, len, 44);
PLEXUS_OFF(plexus_flow_event, rule_id, PLEXUS_FLOW_EVENT_V1_SIZE);
PLEXUS_OFF(plexus_flow_event, flags, 52);

