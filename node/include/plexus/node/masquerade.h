#pragma once
// The legacy masquerade, with netfilter (--enable-ipv4-masquerade without --enable-bpf-masquerade), as Cilium installs
// it: pods' traffic leaving the node towards destinations outside the cluster gets the outgoing device's address
// from one MASQUERADE rule, in a nat chain of ours that POSTROUTING jumps to. Pure: builds the iptables-restore input.

#include <optional>
#include <string>

#include "plexus/common/ipv4.h"

namespace plexus::node {

inline constexpr const char* kMasqueradeChain = "PLEXUS_POST_nat";

struct MasqueradeRules {
  Ipv4Prefix pod_cidr;                     // this node's pods: the sources masqueraded
  std::optional<Ipv4Prefix> native_cidr;  // --ipv4-native-routing-cidr: destinations reached with the pod's address
};

// The chain's whole content for `iptables-restore --noflush` (the rest of the nat table stays): traffic to local
// pods (lxc*) and into our devices (the tunnel) keeps its source, so does traffic to the native routing CIDR; the
// rest from the pod CIDR is masqueraded.
std::string masqueradeRestoreInput(const MasqueradeRules& rules);

}  // namespace plexus::node
