// libFuzzer target: the agent's gRPC request validation (docs/fuzzing.md).
//
// Input: one byte naming the method, then the request message in protobuf wire format, as a client on the
// agent's socket may send it (plexus-cni, the CLI, or anything else that can reach the socket). The message is
// parsed with the generated code and handed to the pure check the handler calls first
// (plexus/agent/requests.h); what the check accepts is what the reconcile thread would be asked to do.
//
//   0 Cni.Add  1 Cni.Del  2 Cni.Gc  3 Daemon.GetEndpoint  4 Observer.GetFlows  5 Policy.Explain
//   6 Resources.Apply

#include <cstddef>
#include <cstdint>

#include "plexus/agent/requests.h"
#include "plexus/common/manifest.h"
#include "plexus/policy/policy.h"

namespace {

template <typename Message>
bool parse(const uint8_t* data, size_t size, Message* m) {
  return m->ParseFromArray(data, static_cast<int>(size));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace plexus;
  using namespace plexus::agent;
  if (size < 1) {
    return 0;
  }
  uint8_t method = data[0] % 7;
  ++data;
  --size;
  switch (method) {
    case 0: {
      v1::CniAddRequest req;
      if (parse(data, size, &req)) {
        auto add = addRequestFromProto(req);
        if (add.ok() && add->chained) {
          // Every kept CIDR has its address.
          if (add->chained->ips.size() != add->chained->addresses.size()) {
            __builtin_trap();
          }
        }
      }
      break;
    }
    case 1: {
      v1::CniDelRequest req;
      if (parse(data, size, &req)) {
        (void)delRequestFromProto(req);
      }
      break;
    }
    case 2: {
      v1::CniGcRequest req;
      if (parse(data, size, &req)) {
        (void)gcOwnersFromProto(req);
      }
      break;
    }
    case 3: {
      v1::GetEndpointRequest req;
      if (parse(data, size, &req)) {
        (void)endpointSelectorFromProto(req);
      }
      break;
    }
    case 4: {
      v1::GetFlowsRequest req;
      if (parse(data, size, &req)) {
        (void)flowQueryFromProto(req);
      }
      break;
    }
    case 5: {
      v1::ExplainRequest req;
      if (parse(data, size, &req)) {
        // Port 0 only as ICMP type 0 (echo reply).
        auto q = explainFromProto(req);
        if (q.ok() && q->port == 0 && q->proto != policy::kProtoIcmp) {
          __builtin_trap();
        }
      }
      break;
    }
    case 6: {
      v1::ApplyRequest req;
      if (parse(data, size, &req)) {
        // As Resources.Apply reads it: one object at a time until the end or the first error.
        ManifestStream stream(req.manifest());
        for (auto next = stream.next(); next.ok() && *next; next = stream.next()) {
          (void)describeObject(**next);
        }
      }
      break;
    }
  }
  return 0;
}
