/* Service load balancing (kube-proxy replacement): frontend lookup, backend selection (random slots,
 * per-service Maglev tables, ClientIP affinity) and the address rewrites. Used by the socket programs
 * (bpf_sock.c) and by the per-packet path (bpf_lxc.c, bpf_host.c). */
#pragma once
#include "plexus/lb.h"
#include "lib/common.h"

/* Maglev table size M: the agent sets it before load (--maglev-table-size); tables it writes have M slots. */
const volatile __u32 cfg_maglev_m = PLEXUS_MAGLEV_DEFAULT_M;

/* plexus_lb4_services_v1: {frontend, slot} -> master entry or backend slot; written by the agent (service planner). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, PLEXUS_LB_SERVICES_MAX);
  __type(key, struct plexus_lb4_key);
  __type(value, struct plexus_lb4_service);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_lb4_services_v1 SEC(".maps");

/* plexus_lb4_backends_v1: backend id -> {address, port, state}; written by the agent (service planner). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, PLEXUS_LB_BACKENDS_MAX);
  __type(key, __u32);
  __type(value, struct plexus_lb4_backend);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_lb4_backends_v1 SEC(".maps");

/* plexus_lb4_reverse_nat_v1: rev_nat_index -> frontend {address, port}; written by the agent (service planner). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, PLEXUS_LB_REVNAT_MAX);
  __type(key, __u16);
  __type(value, struct plexus_lb4_reverse_nat);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_lb4_reverse_nat_v1 SEC(".maps");

/* The inner template: BPF_F_INNER_MAP lets the agent insert arrays of its own size M (kernel 5.10+). */
struct plexus_maglev_inner {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, PLEXUS_MAGLEV_DEFAULT_M);
  __type(key, __u32);
  __type(value, __u32);
  __uint(map_flags, BPF_F_INNER_MAP);
};

/* plexus_lb4_maglev_v1: rev_nat_index -> ARRAY[M] of backend id; written by the agent (whole tables swapped in). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
  __uint(max_entries, PLEXUS_LB_MAGLEV_OUTER_MAX);
  __type(key, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
  __array(values, struct plexus_maglev_inner);
} plexus_lb4_maglev_v1 SEC(".maps");

/* plexus_lb4_affinity_v1: {client, rev_nat_index} -> {backend, last use}; written by BPF (lb4_select_backend). */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PLEXUS_LB_AFFINITY_MAX);
  __type(key, struct plexus_lb4_affinity_key);
  __type(value, struct plexus_lb4_affinity_value);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_lb4_affinity_v1 SEC(".maps");

/* Services are looked up with the scope of the traffic: local clients (pods, host) use the internal entry
 * when the service has one (internalTrafficPolicy, or externalTrafficPolicy=Local which only applies to
 * outside clients), which the external master announces with TWO_SCOPES; so traffic to anything else costs one
 * lookup. */
static __always_inline struct plexus_lb4_service *lb4_lookup_service(struct plexus_lb4_key *key, __be32 addr,
                                                                     __be16 port, __u8 proto, int internal) {
  __builtin_memset(key, 0, sizeof(*key));
  key->address = addr;
  key->dport = port;
  key->proto = proto;
  key->scope = PLEXUS_LB_SCOPE_EXTERNAL;
  struct plexus_lb4_service *svc = bpf_map_lookup_elem(&plexus_lb4_services_v1, key);
  if (svc && internal && (svc->flags & PLEXUS_SVC_F_TWO_SCOPES)) {
    key->scope = PLEXUS_LB_SCOPE_INTERNAL;
    struct plexus_lb4_service *in = bpf_map_lookup_elem(&plexus_lb4_services_v1, key);
    if (in) {
      return in;
    }
    key->scope = PLEXUS_LB_SCOPE_EXTERNAL;
  }
  return svc;
}

static __always_inline struct plexus_lb4_backend *lb4_backend(__u32 id) {
  return bpf_map_lookup_elem(&plexus_lb4_backends_v1, &id);
}

/* A deterministic flow hash (the same on every node, unlike the skb hash, whose seed is per boot), so that a
 * flow maps to the same Maglev slot wherever it lands. Mixing steps are the murmur3 32-bit finaliser. */
static __always_inline __u32 hash_mix(__u32 h) {
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}

static __always_inline __u32 lb4_flow_hash(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport, __u8 proto) {
  __u32 h = hash_mix(saddr ^ 0x9e3779b9);
  h = hash_mix(h ^ daddr);
  h = hash_mix(h ^ (((__u32)sport << 16) | dport));
  return hash_mix(h ^ proto);
}

/* Picks an active backend id for a new flow: the service's Maglev table when it has one, otherwise one of
 * the `count` backend slots. Returns 0 when the service has no usable backend. */
static __always_inline __u32 lb4_select_slot(const struct plexus_lb4_key *svc_key, const struct plexus_lb4_service *svc,
                                             __u32 hash) {
  if (svc->count == 0) {
    return 0;
  }
  if (svc->flags & PLEXUS_SVC_F_MAGLEV) {
    __u32 rid = svc->rev_nat_index;
    void *table = bpf_map_lookup_elem(&plexus_lb4_maglev_v1, &rid);
    if (table && cfg_maglev_m) {
      __u32 idx = hash % cfg_maglev_m;
      __u32 *id = bpf_map_lookup_elem(table, &idx);
      if (id && *id) {
        return *id;
      }
    }
  }
  struct plexus_lb4_key slot_key = *svc_key;
  slot_key.backend_slot = (__u16)((hash % svc->count) + 1);
  struct plexus_lb4_service *slot = bpf_map_lookup_elem(&plexus_lb4_services_v1, &slot_key);
  return slot ? slot->backend_id : 0;
}

/* sessionAffinity: ClientIP. A client keeps its backend while it stays active and the entry is younger than
 * the service's timeout. */
static __always_inline __u32 lb4_select_backend(const struct plexus_lb4_key *svc_key,
                                                const struct plexus_lb4_service *svc, __u64 client, __u8 is_cookie,
                                                __u32 hash) {
  struct plexus_lb4_affinity_key akey = {.client = client, .rev_nat_index = svc->rev_nat_index,
                                         .netns_cookie = is_cookie};
  __u64 now = bpf_ktime_get_ns();
  if (svc->flags & PLEXUS_SVC_F_AFFINITY) {
    struct plexus_lb4_affinity_value *av = bpf_map_lookup_elem(&plexus_lb4_affinity_v1, &akey);
    if (av && now - av->last_used_ns <= (__u64)svc->affinity_timeout * PLEXUS_NSEC_PER_SEC) {
      struct plexus_lb4_backend *be = lb4_backend(av->backend_id);
      if (be && be->state == PLEXUS_BACKEND_ACTIVE) {
        av->last_used_ns = now;
        return av->backend_id;
      }
    }
  }
  __u32 id = lb4_select_slot(svc_key, svc, hash);
  if (id && (svc->flags & PLEXUS_SVC_F_AFFINITY)) {
    struct plexus_lb4_affinity_value nv = {.last_used_ns = now, .backend_id = id};
    bpf_map_update_elem(&plexus_lb4_affinity_v1, &akey, &nv, BPF_ANY);
  }
  return id;
}
