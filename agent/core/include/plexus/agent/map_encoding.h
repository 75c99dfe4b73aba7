#pragma once
// Encoders from the agent's model to the BPF map structs (bpf/include/plexus/endpoint.h). Pure, so the byte
// layout the datapath reads is unit-tested without a kernel.

#include <cstdint>
#include <utility>
#include <vector>

#include "plexus/agent/endpoint_record.h"
#include "plexus/common/ipv4.h"
#include "plexus/endpoint.h"
#include "plexus/identity.h"
#include "plexus/policy.h"
#include "plexus/policy/compiler.h"

namespace plexus::agent {

// Reserved identities the endpoint layer uses (the numbers come from the ABI header).
inline constexpr uint32_t kIdentityHost = PLEXUS_IDENTITY_HOST;  // the node itself
inline constexpr uint32_t kIdentityInit = PLEXUS_IDENTITY_INIT;  // an endpoint whose labels are not known yet

plexus_endpoint_key encodeEndpointKey(Ipv4 ip);
plexus_endpoint_value encodeEndpointValue(const EndpointRecord& rec);
// The node's own gateway address: delivered to the host stack, identity host.
plexus_endpoint_value encodeHostEndpointValue();

plexus_ipcache_key encodeIpcacheKey(Ipv4Prefix prefix);
plexus_ipcache_value encodeIpcacheValue(uint32_t identity, Ipv4 tunnel_endpoint = Ipv4{});

// One endpoint's policy trie as the kernel stores it.
using PolicyEntries = std::vector<std::pair<plexus_policy_key, plexus_policy_value>>;

// A compiled policy entry as the per-endpoint LPM trie stores it.
std::pair<plexus_policy_key, plexus_policy_value> encodePolicyEntry(const policy::Entry& e);

}  // namespace plexus::agent
