/* Local endpoint table and the ipcache. */
#pragma once

#include "plexus/endpoint.h"
#include "plexus/identity.h"
#include "lib/common.h"

/* plexus_endpoints_v1: pod IPv4 -> local endpoint; written by the agent's endpoint manager. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, PLEXUS_ENDPOINTS_MAX);
  __type(key, struct plexus_endpoint_key);
  __type(value, struct plexus_endpoint_value);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_endpoints_v1 SEC(".maps");

/* plexus_ipcache_v1: IPv4 prefix -> identity; written by the agent. LPM tries must not preallocate. */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, PLEXUS_IPCACHE_MAX);
  __type(key, struct plexus_ipcache_key);
  __type(value, struct plexus_ipcache_value);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} plexus_ipcache_v1 SEC(".maps");

static __always_inline struct plexus_endpoint_value *endpoint_lookup(__be32 ip) {
  struct plexus_endpoint_key key = {.ip = ip};
  return bpf_map_lookup_elem(&plexus_endpoints_v1, &key);
}

/* The ipcache entry of the longest prefix holding ip (identity, and the node hosting it), or 0. */
static __always_inline struct plexus_ipcache_value *ipcache_lookup(__be32 ip) {
  struct plexus_ipcache_key key = {.prefixlen = 32, .ip = ip};
  return bpf_map_lookup_elem(&plexus_ipcache_v1, &key);
}

/* The identity of an address the ipcache knows by its longest prefix; world for anything else. */
static __always_inline __u32 ipcache_identity(__be32 ip) {
  struct plexus_ipcache_value *v = ipcache_lookup(ip);
  return v ? v->identity : PLEXUS_IDENTITY_WORLD;
}

/* The identity of any address: a local endpoint's, else the ipcache's longest prefix, else world. */
static __always_inline __u32 identity_of(__be32 addr) {
  struct plexus_endpoint_value *ep = endpoint_lookup(addr);
  if (ep) {
    return ep->identity;
  }
  return ipcache_identity(addr);
}
