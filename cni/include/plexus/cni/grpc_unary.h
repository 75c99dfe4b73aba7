#pragma once
// One unary gRPC call over a unix socket, without grpc++: HTTP/2 framing by libnghttp2, the gRPC mapping per
// grpc/grpc doc/PROTOCOL-HTTP2.md. plexus-cni makes one call per process, so starting grpc++ (its threads, its
// resolver, about 60 shared libraries) cost ten times the call itself (docs/benchmarks.md, "CNI ADD").
//
// The exchange is sans-I/O (bytes in, bytes out), so tests and the fuzz target drive it without a socket;
// callUnary() adds the socket, the deadline and nothing else.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace plexus::cni {

// The canonical status codes (grpc/include/grpcpp/impl/codegen/status_code_enum.h numbering).
enum class GrpcCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

struct GrpcStatus {
  GrpcCode code = GrpcCode::kOk;
  std::string message;
  bool ok() const { return code == GrpcCode::kOk; }
};

// grpc-message is percent-encoded (PROTOCOL-HTTP2.md, "Responses"); a malformed escape is kept as it is.
std::string percentDecode(std::string_view text);
// A response without grpc-status: its HTTP status decides (doc/http-grpc-status-mapping.md).
GrpcCode codeFromHttpStatus(int http_status);
// A stream reset before any grpc-status: the RST_STREAM error code decides (PROTOCOL-HTTP2.md, "Errors").
GrpcCode codeFromHttp2Error(uint32_t error_code);
// The grpc-timeout header's value for a timeout: at most 8 digits and a unit.
std::string grpcTimeoutValue(std::chrono::milliseconds timeout);

// The largest response message accepted (grpc's default receive limit).
inline constexpr size_t kMaxResponseBytes = 4 * 1024 * 1024;

// One call as HTTP/2 bytes: the client preface, SETTINGS, the request's HEADERS and DATA out; whatever the server
// sends in. done() once the call's stream is closed, the connection fails, or the peer sends something it cannot
// take; status() and response() then hold the outcome. Never throws, whatever the bytes fed.
class UnaryExchange {
 public:
  // method_path: "/package.Service/Method". request: the serialized request message (framed here).
  UnaryExchange(const std::string& method_path, const std::string& request, std::chrono::milliseconds timeout);
  ~UnaryExchange();
  UnaryExchange(const UnaryExchange&) = delete;
  UnaryExchange& operator=(const UnaryExchange&) = delete;

  // The bytes to write to the connection now (empty when there is nothing to send).
  std::string takeOutput();
  // Bytes read from the connection.
  void feed(const uint8_t* data, size_t len);
  // The connection ended (EOF, reset, a failed write): `why` is the reason, for the status message.
  void connectionLost(const std::string& why);

  bool done() const;
  const GrpcStatus& status() const;
  // The response message (without its 5-byte prefix) when status() is OK.
  const std::string& response() const;

  struct State;  // nghttp2's callbacks reach it; defined in grpc_unary.cc only

 private:
  std::unique_ptr<State> state_;
};

// Connects to socket_path, makes the call and returns its status. Bounded by `timeout` from the start, connect
// included: past it the status is DEADLINE_EXCEEDED. A socket that refuses or drops the connection is
// UNAVAILABLE. On OK, *response holds the serialized response message.
GrpcStatus callUnary(const std::string& socket_path, const std::string& method_path, const std::string& request,
                     std::chrono::milliseconds timeout, std::string* response);

}  // namespace plexus::cni
