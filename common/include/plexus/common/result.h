#pragma once
// Result<T>: errors cross module boundaries as values (STYLE.md rule 13).
// An Error carries a canonical code and a context string that grows as it propagates outward,
// e.g. "attach tc ingress on lxc12: create qdisc: EPERM".

#include <string>
#include <utility>
#include <variant>

namespace plexus {

enum class ErrorCode {
  kInvalidArgument,   // the caller's input is malformed
  kNotFound,          // the named object does not exist
  kAlreadyExists,     // the named object exists and cannot be created again
  kFailedPrecondition,
  kResourceExhausted, // a pool or map is full
  kUnavailable,       // a dependency is down; retry later
  kInternal,          // a syscall or library failed
  kPermissionDenied,
};

const char* toString(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  // Returns a copy with "context: " prepended to the message.
  [[nodiscard]] Error wrap(const std::string& context) const { return Error{code, context + ": " + message}; }
};

// Builds an Error from errno-style values: "what: strerror(err)".
Error errnoError(const std::string& what, int err);

// Status: a Result without a value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : err_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design
  static Status Ok() { return Status(); }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_;
  bool ok_ = true;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}      // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }
  // The outcome without the value.
  Status status() const { return ok() ? Status::Ok() : Status(error()); }

 private:
  std::variant<T, Error> v_;
};

inline Error makeError(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }

}  // namespace plexus

// Propagates an error from a Status or Result expression, adding context.
#define PLEXUS_TRY(expr, context)                   \
  do {                                              \
    auto plexus_try_r_ = (expr);                    \
    if (!plexus_try_r_.ok()) {                      \
      return plexus_try_r_.error().wrap(context);   \
    }                                               \
  } while (0)
