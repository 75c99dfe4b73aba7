#pragma once
// Names of datapath reasons and directions, generated from the one list in bpf/include/plexus/reasons.h.

#include <cstdint>
#include <string>

namespace plexus::agent {

const char* reasonName(uint8_t reason);        // e.g. "POLICY_DENIED"
const char* hubbleReasonName(uint8_t reason);  // Hubble's drop_reason_desc, e.g. "POLICY_DENIED"
uint32_t hubbleReasonCode(uint8_t reason);     // Hubble's flow.DropReason number, e.g. 133; 0: not a drop
const char* reasonDescription(uint8_t reason);
// Cilium's text for a drop reason (monitor/api's DropReason of Hubble's code), which Cilium's drop metrics carry as
// their `reason` label: "Policy denied", "Service backend not found". Empty for a reason that is not a drop.
std::string ciliumDropReason(uint8_t reason);
const char* directionName(uint8_t direction);  // "INGRESS", "EGRESS"
bool isDropReason(uint8_t reason);

}  // namespace plexus::agent
