#pragma once
// The agent's gRPC requests checked and turned into domain requests (pure: no agent state, no kernel). The
// handlers in grpc_services.cc, observer_service.cc, policy_service.cc and resources_service.cc call these
// first and map a refusal (kInvalidArgument, naming the field) with toGrpc(); fuzz/fuzz_grpc_requests.cc calls
// them on protobufs parsed from arbitrary bytes.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/agent/endpoint_manager.h"
#include "plexus/agent/flow_store.h"
#include "plexus/common/result.h"
#include "plexus/v1/cni.pb.h"
#include "plexus/v1/daemon.pb.h"
#include "plexus/v1/flows.pb.h"
#include "plexus/v1/policy.pb.h"
#include "plexus/v1/resources.pb.h"

namespace plexus::agent {

// Cni.Add: container_id and ifname required; netns required unless chained; the requested IP and MAC must
// parse; a chained ADD needs the host-side interface, and keeps only its IPv4 CIDRs.
Result<AddRequest> addRequestFromProto(const v1::CniAddRequest& req);

struct DelRequest {
  std::string container_id;
  std::string ifname;  // "eth0" when the request had none
};
// Cni.Del: container_id required.
Result<DelRequest> delRequestFromProto(const v1::CniDelRequest& req);

// Cni.Gc: the valid attachments as endpoint owners ("container/ifname", ifname defaulting to eth0).
std::set<std::string> gcOwnersFromProto(const v1::CniGcRequest& req);

// Daemon.GetEndpoint: the selector, which must not be empty.
Result<std::string> endpointSelectorFromProto(const v1::GetEndpointRequest& req);

// Observer.GetFlows: the filter, checked by parseFlowFilter(); the message starts with "filter: ".
Result<FlowFilter> flowFilterFromProto(const v1::FlowFilter& filter);
// Observer.GetFlows: the request's filter, allow and deny lists; an error names the list entry.
Result<FlowQuery> flowQueryFromProto(const v1::GetFlowsRequest& req);

struct ExplainQuery {
  std::string from;
  std::string to;
  uint8_t proto = 0;  // IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP
  uint16_t port = 0;  // 1-65535
};
// Policy.Explain: protocol TCP, UDP or SCTP (either case), port 1-65535.
Result<ExplainQuery> explainFromProto(const v1::ExplainRequest& req);

}  // namespace plexus::agent
