#include "plexus/agent/hubble_service.h"

#include <time.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "plexus/agent/grpc_services.h"
#include "plexus/agent/hubble_flows.h"

namespace plexus::agent {

namespace {

grpc::Status hubbleOff() {
  return grpc::Status(grpc::FAILED_PRECONDITION, "flow observability is off (--enable-hubble=false)");
}

int64_t realtimeNs() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return now.tv_sec * 1000000000LL + now.tv_nsec;
}

google::protobuf::Timestamp timestamp(int64_t unix_nano) {
  google::protobuf::Timestamp t;
  t.set_seconds(unix_nano / 1000000000);
  t.set_nanos(static_cast<int32_t>(unix_nano % 1000000000));
  return t;
}

bool send(const FlowRecord& f, const AgentConfig& config, grpc::ServerWriter<observer::GetFlowsResponse>* writer) {
  observer::GetFlowsResponse r;
  toHubbleFlow(f, config.node_name, config.cluster_name, r.mutable_flow());
  r.set_node_name(r.flow().node_name());
  *r.mutable_time() = r.flow().time();
  return writer->Write(r);
}

}  // namespace

uint64_t HubbleObserverService::uptimeNs() const {
  int64_t up = realtimeNs() - state_.started_unix * 1000000000LL;
  return up > 0 ? static_cast<uint64_t>(up) : 0;
}

grpc::Status HubbleObserverService::GetFlows(grpc::ServerContext* ctx, const observer::GetFlowsRequest* req,
                                             grpc::ServerWriter<observer::GetFlowsResponse>* writer) {
  if (!state_.flows) {
    return hubbleOff();
  }
  auto query = flowQueryFromHubble(*req);
  if (!query.ok()) {
    return toGrpc(query.error());
  }
  const std::string& node = state_.config.node_name;
  state_.events.flush();  // events the datapath has submitted so far are in the store before we answer
  uint64_t after = state_.flows->sequence();
  uint64_t lost = state_.lxc->lostEvents();
  StoredSelection sel = storedSelection(*req);
  if (!sel.none) {
    auto stored = sel.oldest ? state_.flows->first(sel.count, *query) : state_.flows->last(sel.count, *query);
    for (const auto& f : stored) {
      if (!send(f, state_.config, writer)) {
        return grpc::Status::OK;
      }
    }
  }
  // Follow until the client goes away, the agent stops or `until` has passed; each wait is bounded so all three are
  // noticed.
  int64_t until = query->filter.until_unix_nano;
  while (req->follow() && !ctx->IsCancelled() && state_.ready && (until == 0 || realtimeNs() <= until)) {
    for (const auto& f : state_.flows->waitNewer(&after, *query, std::chrono::milliseconds(200))) {
      if (!send(f, state_.config, writer)) {
        return grpc::Status::OK;
      }
    }
    // Events the full ring refused while following: told as Hubble tells them, so the gap is visible.
    uint64_t now_lost = state_.lxc->lostEvents();
    if (now_lost > lost) {
      observer::GetFlowsResponse r;
      r.mutable_lost_events()->set_source(flow::PERF_EVENT_RING_BUFFER);
      r.mutable_lost_events()->set_num_events_lost(now_lost - lost);
      r.set_node_name(node);
      *r.mutable_time() = timestamp(realtimeNs());
      lost = now_lost;
      if (!writer->Write(r)) {
        return grpc::Status::OK;
      }
    }
  }
  return grpc::Status::OK;
}

grpc::Status HubbleObserverService::GetAgentEvents(grpc::ServerContext* ctx, const observer::GetAgentEventsRequest* req,
                                                   grpc::ServerWriter<observer::GetAgentEventsResponse>* writer) {
  if (!state_.flows) {
    return hubbleOff();
  }
  auto window = eventWindow(*req);
  if (!window.ok()) {
    return toGrpc(window.error());
  }
  auto send = [&](const AgentNotification& n) {
    if (window->until_unix_nano != 0 && n.time_unix_nano > window->until_unix_nano) {
      return true;  // past the window: not sent, and following stops below
    }
    observer::GetAgentEventsResponse r;
    toHubbleAgentEvent(n, r.mutable_agent_event());
    r.set_node_name(state_.config.node_name);
    *r.mutable_time() = timestamp(n.time_unix_nano);
    return writer->Write(r);
  };
  uint64_t after = state_.notices.sequence();
  StoredSelection sel = storedSelection(*req);
  if (!sel.none) {
    for (const auto& n : state_.notices.select(sel.count, sel.oldest, window->since_unix_nano, window->until_unix_nano)) {
      if (!send(n)) {
        return grpc::Status::OK;
      }
    }
  }
  int64_t until = window->until_unix_nano;
  while (req->follow() && !ctx->IsCancelled() && state_.ready && (until == 0 || realtimeNs() <= until)) {
    for (const auto& n : state_.notices.waitNewer(&after, std::chrono::milliseconds(200))) {
      if (!send(n)) {
        return grpc::Status::OK;
      }
    }
  }
  return grpc::Status::OK;
}

grpc::Status HubbleObserverService::GetDebugEvents(grpc::ServerContext*, const observer::GetDebugEventsRequest*,
                                                   grpc::ServerWriter<observer::GetDebugEventsResponse>*) {
  return grpc::Status(grpc::UNIMPLEMENTED, "plexus's datapath emits no debug events; use GetFlows");
}

grpc::Status HubbleObserverService::GetNodes(grpc::ServerContext*, const observer::GetNodesRequest*,
                                             observer::GetNodesResponse* resp) {
  if (!state_.flows) {
    return hubbleOff();
  }
  // Each agent answers for itself (there is no Plexus relay).
  auto* n = resp->add_nodes();
  n->set_name(state_.config.node_name);
  n->set_version(PLEXUS_VERSION);
  n->set_address(address_);
  n->set_state(relay::NODE_CONNECTED);
  if (!address_.starts_with("unix://") && state_.config.hubbleTcpTls()) {  // this server's TCP listener
    n->mutable_tls()->set_enabled(true);
    n->mutable_tls()->set_server_name(hubbleTlsServerName(state_.config.node_name, state_.config.cluster_name));
  } else {
    n->mutable_tls()->set_enabled(false);
  }
  n->set_uptime_ns(uptimeNs());
  n->set_num_flows(state_.flows->size());
  n->set_max_flows(state_.flows->capacity());
  n->set_seen_flows(state_.flows->seen());
  return grpc::Status::OK;
}

grpc::Status HubbleObserverService::GetNamespaces(grpc::ServerContext*, const observer::GetNamespacesRequest*,
                                                  observer::GetNamespacesResponse* resp) {
  if (!state_.flows) {
    return hubbleOff();
  }
  int64_t since = realtimeNs() - std::chrono::nanoseconds(FlowStore::kNamespaceTtl).count();
  for (const auto& ns : state_.flows->namespacesSince(since)) {
    auto* n = resp->add_namespaces();
    n->set_cluster(state_.config.cluster_name);
    n->set_namespace_(ns);
  }
  return grpc::Status::OK;
}

grpc::Status HubbleObserverService::ServerStatus(grpc::ServerContext*, const observer::ServerStatusRequest*,
                                                 observer::ServerStatusResponse* resp) {
  if (!state_.flows) {
    return hubbleOff();
  }
  resp->set_num_flows(state_.flows->size());
  resp->set_max_flows(state_.flows->capacity());
  resp->set_seen_flows(state_.flows->seen());
  resp->set_uptime_ns(uptimeNs());
  resp->mutable_num_connected_nodes()->set_value(1);
  resp->mutable_num_unavailable_nodes()->set_value(0);
  resp->set_version(PLEXUS_VERSION);
  resp->set_flows_rate(state_.flows->rate(realtimeNs()));
  return grpc::Status::OK;
}

grpc::Status HubblePeerService::Notify(grpc::ServerContext* ctx, const peer::NotifyRequest*,
                                       grpc::ServerWriter<peer::ChangeNotification>* writer) {
  HubblePeers sent;
  while (!ctx->IsCancelled()) {
    if (state_.ready) {
      auto nodes = state_.reconciler.submit([this] { return state_.nodes->nodes(); }).get();
      HubblePeers now = hubblePeers(nodes, self_);
      for (const auto& c : peerChanges(sent, now, self_)) {
        if (!writer->Write(c)) {
          return grpc::Status::OK;
        }
      }
      sent = std::move(now);
    }
    // Cancellation (the client left, or the server stops) is noticed within 200 ms.
    for (int i = 0; i < 10 && !ctx->IsCancelled(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  return grpc::Status::OK;
}

Result<std::shared_ptr<grpc::ServerCredentials>> hubbleTcpCredentials(const AgentConfig& c) {
  if (c.hubble_disable_tls) {
    return grpc::InsecureServerCredentials();
  }
  std::string ca = c.hubble_tls_client_ca_files.empty() ? "" : c.hubble_tls_client_ca_files.front();
  using Flag = std::pair<const char*, std::string>;
  for (const auto& [flag, path] : {Flag{"--hubble-tls-cert-file", c.hubble_tls_cert_file},
                                   Flag{"--hubble-tls-key-file", c.hubble_tls_key_file},
                                   Flag{"--hubble-tls-client-ca-files", ca}}) {
    if (path.empty()) {
      continue;
    }
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("{} {}: cannot be read", flag, path));
    }
    if (text.find("-----BEGIN ") == std::string::npos) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("{} {}: no PEM block in it", flag, path));
    }
  }
  namespace gx = grpc::experimental;
  auto files = ca.empty() ? std::make_shared<gx::FileWatcherCertificateProvider>(
                                c.hubble_tls_key_file, c.hubble_tls_cert_file, kHubbleTlsRefreshSeconds)
                          : std::make_shared<gx::FileWatcherCertificateProvider>(
                                c.hubble_tls_key_file, c.hubble_tls_cert_file, ca, kHubbleTlsRefreshSeconds);
  gx::TlsServerCredentialsOptions options(files);
  options.watch_identity_key_cert_pairs();
  if (!ca.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return gx::TlsServerCredentials(options);
}

}  // namespace plexus::agent
