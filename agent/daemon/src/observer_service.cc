// The Observer API: the flow store through gRPC, for `plexus observe`.
#include <fmt/format.h>

#include "plexus/agent/grpc_services.h"
#include "plexus/agent/reason_names.h"
#include "plexus/agent/requests.h"

namespace plexus::agent {

namespace {

void toProto(const FlowPeer& p, v1::FlowEndpoint* out) {
  out->set_ip(p.ip.toString());
  out->set_port(p.port);
  out->set_identity(p.identity);
  out->set_namespace_(p.podNamespace());
  out->set_pod_name(p.podName());
  for (const auto& l : p.labels()) {
    out->add_labels(l);
  }
  out->set_endpoint_id(p.endpoint_id);
}

void toProto(const FlowRecord& f, const std::string& node, v1::Flow* out) {
  out->set_time_unix_nano(f.time_unix_nano);
  out->set_verdict(verdictName(f.verdict));
  bool dropped = isDropReason(f.reason);
  out->set_drop_reason(dropped ? f.reason : 0);
  out->set_drop_reason_desc(dropped ? hubbleReasonName(f.reason) : "");
  out->set_traffic_direction(directionName(f.direction));
  out->set_protocol(protocolName(f.protocol));
  out->set_tcp_flags(f.tcp_flags);
  out->set_is_reply(f.is_reply);
  toProto(f.source, out->mutable_source());
  toProto(f.destination, out->mutable_destination());
  out->set_service(f.service);
  out->set_service_frontend(f.service_frontend);
  out->set_observed_endpoint(f.observed_endpoint);
  out->set_length(f.length);
  out->set_node_name(f.node_name.empty() ? node : f.node_name);
}

}  // namespace

grpc::Status ObserverService::GetFlows(grpc::ServerContext* ctx, const v1::GetFlowsRequest* req,
                                       grpc::ServerWriter<v1::GetFlowsResponse>* writer) {
  if (!state_.flows) {
    return grpc::Status(grpc::FAILED_PRECONDITION, "flow observability is off (--enable-hubble=false)");
  }
  auto query = flowQueryFromProto(*req);
  if (!query.ok()) {
    return toGrpc(query.error());
  }
  const std::string& node = state_.config.node_name;
  state_.events.flush();  // events the datapath has submitted so far are in the store before we answer
  uint64_t after = state_.flows->sequence();
  // Stored flows first: none with only_new (hubble observe -f alone), else the oldest `first` or newest `last`.
  std::vector<FlowRecord> stored;
  if (!req->only_new()) {
    stored = req->first() ? state_.flows->first(req->first(), *query) : state_.flows->last(req->last(), *query);
  }
  for (const auto& f : stored) {
    v1::GetFlowsResponse r;
    toProto(f, node, r.mutable_flow());
    if (!writer->Write(r)) {
      return grpc::Status::OK;
    }
  }
  // Follow until the client goes away or the agent stops; each wait is bounded so both are noticed.
  while (req->follow() && !ctx->IsCancelled() && state_.ready) {
    for (const auto& f : state_.flows->waitNewer(&after, *query, std::chrono::milliseconds(200))) {
      v1::GetFlowsResponse r;
      toProto(f, node, r.mutable_flow());
      if (!writer->Write(r)) {
        return grpc::Status::OK;
      }
    }
  }
  return grpc::Status::OK;
}

grpc::Status ObserverService::FlowStatus(grpc::ServerContext*, const v1::FlowStatusRequest*,
                                         v1::FlowStatusResponse* resp) {
  if (!state_.flows) {
    return grpc::Status(grpc::FAILED_PRECONDITION, "flow observability is off (--enable-hubble=false)");
  }
  resp->set_capacity(static_cast<uint32_t>(state_.flows->capacity()));
  resp->set_stored(static_cast<uint32_t>(state_.flows->size()));
  resp->set_seen(state_.flows->seen());
  resp->set_lost(state_.lxc->lostEvents());
  return grpc::Status::OK;
}

}  // namespace plexus::agent
