#pragma once
// Hubble's observer.Observer over the flow store, for `hubble` clients and Hubble Relay (docs/hubble.md). Thin:
// hubble_flows.h translates, flow_store.h matches. No handler touches the reconcile thread: GetFlows reads and follows
// the store under its own lock, so a follower never holds up reconciliation.

#include <grpcpp/grpcpp.h>

#include "observer/observer.grpc.pb.h"
#include "peer/peer.grpc.pb.h"
#include "plexus/agent/agent_state.h"
#include "plexus/agent/hubble_peers.h"

namespace plexus::agent {

class HubbleObserverService final : public observer::Observer::Service {
 public:
  // address: where this server is reached (GetNodes' Node.address).
  HubbleObserverService(AgentState& state, std::string address) : state_(state), address_(std::move(address)) {}
  grpc::Status GetFlows(grpc::ServerContext*, const observer::GetFlowsRequest*,
                        grpc::ServerWriter<observer::GetFlowsResponse>*) override;
  grpc::Status GetAgentEvents(grpc::ServerContext*, const observer::GetAgentEventsRequest*,
                              grpc::ServerWriter<observer::GetAgentEventsResponse>*) override;
  grpc::Status GetDebugEvents(grpc::ServerContext*, const observer::GetDebugEventsRequest*,
                              grpc::ServerWriter<observer::GetDebugEventsResponse>*) override;
  grpc::Status GetNodes(grpc::ServerContext*, const observer::GetNodesRequest*, observer::GetNodesResponse*) override;
  grpc::Status GetNamespaces(grpc::ServerContext*, const observer::GetNamespacesRequest*,
                             observer::GetNamespacesResponse*) override;
  grpc::Status ServerStatus(grpc::ServerContext*, const observer::ServerStatusRequest*,
                            observer::ServerStatusResponse*) override;

 private:
  uint64_t uptimeNs() const;
  AgentState& state_;
  std::string address_;
};

// Hubble's peer.Peer: the nodes whose observer API Hubble Relay should read. Notify looks at the node list (a short
// job on the reconcile thread) every 2 s and sends what changed.
class HubblePeerService final : public peer::Peer::Service {
 public:
  HubblePeerService(AgentState& state, HubblePeerSelf self) : state_(state), self_(std::move(self)) {}
  grpc::Status Notify(grpc::ServerContext*, const peer::NotifyRequest*,
                      grpc::ServerWriter<peer::ChangeNotification>*) override;

 private:
  AgentState& state_;
  HubblePeerSelf self_;
};

// The credentials of --hubble-listen-address: plaintext with --hubble-disable-tls, else TLS with the configured
// certificate and key, which gRPC re-reads every kHubbleTlsRefreshSeconds (a rotated certificate is served without a
// restart), and mutual TLS with a client CA. An error names a file that cannot be read or holds no PEM block.
Result<std::shared_ptr<grpc::ServerCredentials>> hubbleTcpCredentials(const AgentConfig& config);
constexpr unsigned kHubbleTlsRefreshSeconds = 5;

}  // namespace plexus::agent
