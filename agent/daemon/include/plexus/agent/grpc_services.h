#pragma once
// Thin gRPC handlers (STYLE.md rule 17): translate proto to domain requests, run them on the reconcile thread,
// map errors to canonical status codes. No logic lives here.

#include <grpcpp/grpcpp.h>

#include "plexus/agent/agent_state.h"
#include "plexus/v1/cni.grpc.pb.h"
#include "plexus/v1/daemon.grpc.pb.h"
#include "plexus/v1/flows.grpc.pb.h"
#include "plexus/v1/policy.grpc.pb.h"
#include "plexus/v1/resources.grpc.pb.h"

namespace plexus::agent {

grpc::Status toGrpc(const Error& e);

class CniService final : public plexus::v1::Cni::Service {
 public:
  explicit CniService(AgentState& state) : state_(state) {}
  grpc::Status Add(grpc::ServerContext*, const v1::CniAddRequest*, v1::CniAddResponse*) override;
  grpc::Status Del(grpc::ServerContext*, const v1::CniDelRequest*, v1::CniDelResponse*) override;
  grpc::Status Check(grpc::ServerContext*, const v1::CniCheckRequest*, v1::CniCheckResponse*) override;
  grpc::Status Gc(grpc::ServerContext*, const v1::CniGcRequest*, v1::CniGcResponse*) override;
  grpc::Status Status(grpc::ServerContext*, const v1::CniStatusRequest*, v1::CniStatusResponse*) override;

 private:
  AgentState& state_;
};

class DaemonService final : public plexus::v1::Daemon::Service {
 public:
  explicit DaemonService(AgentState& state) : state_(state) {}
  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*, v1::GetStatusResponse*) override;
  grpc::Status ListEndpoints(grpc::ServerContext*, const v1::ListEndpointsRequest*,
                             v1::ListEndpointsResponse*) override;
  grpc::Status GetEndpoint(grpc::ServerContext*, const v1::GetEndpointRequest*, v1::Endpoint*) override;
  grpc::Status DumpBpfMap(grpc::ServerContext*, const v1::DumpBpfMapRequest*, v1::DumpBpfMapResponse*) override;
  grpc::Status ListNodes(grpc::ServerContext*, const v1::ListNodesRequest*, v1::ListNodesResponse*) override;
  grpc::Status GetConfig(grpc::ServerContext*, const v1::GetConfigRequest*, v1::GetConfigResponse*) override;

 private:
  // Why the endpoint's desired policy is not installed ("" when it is). Reconcile thread.
  std::string policyError(uint16_t id) const;
  AgentState& state_;
};

class ObserverService final : public plexus::v1::Observer::Service {
 public:
  explicit ObserverService(AgentState& state) : state_(state) {}
  grpc::Status GetFlows(grpc::ServerContext*, const v1::GetFlowsRequest*,
                        grpc::ServerWriter<v1::GetFlowsResponse>*) override;
  grpc::Status FlowStatus(grpc::ServerContext*, const v1::FlowStatusRequest*, v1::FlowStatusResponse*) override;

 private:
  AgentState& state_;
};

class ResourcesService final : public plexus::v1::Resources::Service {
 public:
  explicit ResourcesService(AgentState& state) : state_(state) {}
  grpc::Status Apply(grpc::ServerContext*, const v1::ApplyRequest*, v1::ApplyResponse*) override;
  grpc::Status Delete(grpc::ServerContext*, const v1::ApplyRequest*, v1::ApplyResponse*) override;
  grpc::Status ListServices(grpc::ServerContext*, const v1::ListServicesRequest*, v1::ListServicesResponse*) override;
  grpc::Status GetService(grpc::ServerContext*, const v1::GetServiceRequest*, v1::GetServiceResponse*) override;

 private:
  grpc::Status run(const v1::ApplyRequest* req, v1::ApplyResponse* resp, bool remove);
  AgentState& state_;
};

class PolicyService final : public plexus::v1::Policy::Service {
 public:
  explicit PolicyService(AgentState& state) : state_(state) {}
  grpc::Status ListPolicies(grpc::ServerContext*, const v1::ListPoliciesRequest*, v1::ListPoliciesResponse*) override;
  grpc::Status ListIdentities(grpc::ServerContext*, const v1::ListIdentitiesRequest*,
                              v1::ListIdentitiesResponse*) override;
  grpc::Status GetIdentity(grpc::ServerContext*, const v1::GetIdentityRequest*, v1::IdentityInfo*) override;
  grpc::Status GetEndpointPolicy(grpc::ServerContext*, const v1::GetEndpointPolicyRequest*,
                                 v1::GetEndpointPolicyResponse*) override;
  grpc::Status Explain(grpc::ServerContext*, const v1::ExplainRequest*, v1::ExplainResponse*) override;

 private:
  AgentState& state_;
};

}  // namespace plexus::agent
