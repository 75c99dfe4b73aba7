#include "plexus/agent/reason_names.h"

#include <cstring>

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
