#include "plexus/common/result.h"

#include <cstring>

namespace plexus {

const char* toString(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kAlreadyExists: return "already exists";
    case ErrorCode::kFailedPrecondition: return "failed precondition";
    case ErrorCode::kResourceExhausted: return "resource exhausted";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kPermissionDenied: return "permission denied";
  }
  return "unknown";
}

Error errnoError(const std::string& what, int err) {
  if (err < 0) {
    err = -err;
  }
  ErrorCode code = ErrorCode::kInternal;
  switch (err) {
    case ENOENT: code = ErrorCode::kNotFound; break;
    case EEXIST: code = ErrorCode::kAlreadyExists; break;
    case EPERM:
    case EACCES: code = ErrorCode::kPermissionDenied; break;
    case EINVAL: code = ErrorCode::kInvalidArgument; break;
    case ENOSPC:
    case E2BIG: code = ErrorCode::kResourceExhausted; break;
    default: break;
  }
  return Error{code, what + ": " + std::strerror(err)};
}

}  // namespace plexus
