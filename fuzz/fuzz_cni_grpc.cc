// libFuzzer target: what the agent's socket may send back to plexus-cni's gRPC client (docs/fuzzing.md).
//
// Input: the bytes of the server's side of the connection, fed to the client's exchange in chunks whose sizes
// come from the input's first byte, then the connection's end. The client must end every call with a status
// (never crash, hang, leak or hit undefined behaviour), and an OK status only with the one framed message.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "plexus/cni/grpc_unary.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using plexus::cni::UnaryExchange;
  size_t chunk = size > 0 ? 1 + data[0] % 64 : 1;
  UnaryExchange call("/plexus.v1.Cni/Add", "request", std::chrono::seconds(1));
  (void)call.takeOutput();
  for (size_t pos = size > 0 ? 1 : 0; pos < size && !call.done(); pos += chunk) {
    call.feed(data + pos, std::min(chunk, size - pos));
    (void)call.takeOutput();
  }
  call.connectionLost("end of input");
  if (!call.done() || (call.status().ok() && call.response().size() > plexus::cni::kMaxResponseBytes)) {
    std::abort();
  }
  return 0;
}
