#include "plexus/agent/reason_names.h"

#include <cstring>
#include <map>

#include <fmt/format.h>

#include "plexus/reasons.h"

namespace plexus::agent {

const char* reasonName(uint8_t reason) {
  switch (reason) {
#define PLEXUS_REASON_NAME_(name, value, hubble, code, desc) \
  case value:                                          \
    return #name;
    PLEXUS_REASONS(PLEXUS_REASON_NAME_)
#undef PLEXUS_REASON_NAME_
    default:
      return "UNKNOWN";
  }
}

const char* hubbleReasonName(uint8_t reason) {
  switch (reason) {
#define PLEXUS_REASON_HUBBLE_(name, value, hubble, code, desc) \
  case value:                                            \
    return hubble;
    PLEXUS_REASONS(PLEXUS_REASON_HUBBLE_)
#undef PLEXUS_REASON_HUBBLE_
    default:
      return "UNKNOWN_REASON";
  }
}

uint32_t hubbleReasonCode(uint8_t reason) {
  switch (reason) {
#define PLEXUS_REASON_CODE_(name, value, hubble, code, desc) \
  case value:                                                \
    return code;
    PLEXUS_REASONS(PLEXUS_REASON_CODE_)
#undef PLEXUS_REASON_CODE_
    default:
      return 0;
  }
}

const char* reasonDescription(uint8_t reason) {
  switch (reason) {
#define PLEXUS_REASON_DESC_(name, value, hubble, code, desc) \
  case value:                                          \
    return desc;
    PLEXUS_REASONS(PLEXUS_REASON_DESC_)
#undef PLEXUS_REASON_DESC_
    default:
      return "unknown";
  }
}

std::string ciliumDropReason(uint8_t reason) {
  // Cilium's texts (pkg/monitor/api/drop.go) for the Hubble codes our reasons map to. Keyed by Hubble's number, which
  // the one reason list gives (PLEXUS_REASONS): a reason added there with a new code needs its text here.
  static const std::map<uint32_t, const char*> kCilium = {
      {132, "Invalid source ip"},
      {133, "Policy denied"},
      {134, "Invalid packet"},
      {139, "Unsupported L3 protocol"},
      {141, "Error writing to packet"},
      {142, "Unknown L4 protocol"},
      {155, "CT: Map insertion failed"},
      {158, "Service backend not found"},
      {160, "No tunnel/encapsulation endpoint (datapath BUG!)"},
      {167, "No mapping for NAT masquerade"},
      {169, "FIB lookup failed"},
      {171, "Invalid identity"},
      {177, "Denied by LB src range check"},
      {181, "Policy denied by denylist"},
      {196, "TTL exceeded"},
  };
  uint32_t code = hubbleReasonCode(reason);
  if (code == 0) {
    return "";
  }
  auto it = kCilium.find(code);
  return it != kCilium.end() ? it->second : fmt::format("{}, 0", code);  // Cilium's form for a code it has no text for
}

const char* directionName(uint8_t direction) {
  switch (direction) {
    case PLEXUS_DIR_INGRESS: return "INGRESS";
    case PLEXUS_DIR_EGRESS: return "EGRESS";
    default: return "UNSPECIFIED";
  }
}

// A reason whose Hubble name is "FORWARDED" is not a drop (bpf/include/plexus/reasons.h), so a reason added to the
// list is classified where it is defined.
bool isDropReason(uint8_t reason) { return std::strcmp(hubbleReasonName(reason), "FORWARDED") != 0; }

}  // namespace plexus::agent
