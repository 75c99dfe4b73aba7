#include "plexus/agent/grpc_services.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <ctime>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/map_dump.h"
#include "plexus/agent/requests.h"

namespace plexus::agent {

grpc::Status toGrpc(const Error& e) {
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (e.code) {
    case ErrorCode::kInvalidArgument: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case ErrorCode::kNotFound: code = grpc::StatusCode::NOT_FOUND; break;
    case ErrorCode::kAlreadyExists: code = grpc::StatusCode::ALREADY_EXISTS; break;
    case ErrorCode::kFailedPrecondition: code = grpc::StatusCode::FAILED_PRECONDITION; break;
    case ErrorCode::kResourceExhausted: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
    case ErrorCode::kUnavailable: code = grpc::StatusCode::UNAVAILABLE; break;
    case ErrorCode::kPermissionDenied: code = grpc::StatusCode::PERMISSION_DENIED; break;
    case ErrorCode::kInternal: code = grpc::StatusCode::INTERNAL; break;
  }
  return grpc::Status(code, e.message);
}

namespace {

grpc::Status notReady() { return grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent is starting"); }

// `policy_error`: why the endpoint's desired policy is not installed (empty: it is).
void toProto(const EndpointRecord& r, const std::string& policy_error, v1::Endpoint* out) {
  out->set_id(r.id);
  out->set_container_id(r.container_id);
  out->set_ifname(r.ifname);
  out->set_netns(r.netns);
  out->set_pod_namespace(r.pod_namespace);
  out->set_pod_name(r.pod_name);
  out->set_ipv4(r.ip.toString());
  out->set_mac(r.mac.toString());
  out->set_host_ifname(r.host_ifname);
  out->set_host_ifindex(static_cast<uint32_t>(r.host_ifindex));
  out->set_host_mac(r.host_mac.toString());
  out->set_identity(r.identity);
  for (const auto& l : r.labels) {
    out->add_labels(l);
  }
  out->set_state(policy_error.empty() ? v1::ENDPOINT_STATE_READY : v1::ENDPOINT_STATE_NOT_READY);
  if (!policy_error.empty()) {
    out->set_status("policy: " + policy_error);
  }
  out->set_chained(r.chained);
  out->set_created_unix(r.created_unix);
}

}  // namespace

grpc::Status CniService::Add(grpc::ServerContext*, const v1::CniAddRequest* req, v1::CniAddResponse* resp) {
  if (!state_.ready) {
    return notReady();
  }
  auto parsed = addRequestFromProto(*req);
  if (!parsed.ok()) {
    return toGrpc(parsed.error());
  }
  const AddRequest& add = *parsed;
  auto result = state_.reconciler.submit([&] { return state_.controller->addEndpoint(add); }).get();
  if (!result.ok()) {
    spdlog::warn("CNI ADD {}/{} (pod {}/{}): {}", add.container_id, add.ifname, add.pod_namespace, add.pod_name,
                 result.error().message);
    return toGrpc(result.error());
  }
  const EndpointRecord& r = *result;
  auto* host = resp->add_interfaces();
  host->set_name(r.host_ifname);
  host->set_mac(r.host_mac.toString());
  auto* pod = resp->add_interfaces();
  pod->set_name(r.ifname);
  pod->set_mac(r.mac.toString());
  pod->set_sandbox(r.netns);
  auto* ip = resp->add_ips();
  ip->set_address(r.ip.toString() + "/32");
  ip->set_interface_index(1);
  if (!r.chained) {
    std::string gw = state_.endpoints->gateway().toString();
    ip->set_gateway(gw);
    auto* route = resp->add_routes();
    route->set_dst("0.0.0.0/0");
    route->set_gw(gw);
  }
  resp->set_endpoint_id(r.id);
  return grpc::Status::OK;
}

grpc::Status CniService::Del(grpc::ServerContext*, const v1::CniDelRequest* req, v1::CniDelResponse*) {
  if (!state_.ready) {
    return notReady();
  }
  auto del = delRequestFromProto(*req);
  if (!del.ok()) {
    return toGrpc(del.error());
  }
  plexus::Status s =
      state_.reconciler.submit([&] { return state_.controller->deleteEndpoint(del->container_id, del->ifname); }).get();
  if (!s.ok()) {
    spdlog::warn("CNI DEL {}/{}: {}", del->container_id, del->ifname, s.error().message);
    return toGrpc(s.error());
  }
  return grpc::Status::OK;
}

grpc::Status CniService::Check(grpc::ServerContext*, const v1::CniCheckRequest* req, v1::CniCheckResponse*) {
  if (!state_.ready) {
    return notReady();
  }
  plexus::Status s =
      state_.reconciler.submit([&] { return state_.endpoints->check(req->container_id(), req->ifname()); }).get();
  return s.ok() ? grpc::Status::OK : toGrpc(s.error());
}

grpc::Status CniService::Gc(grpc::ServerContext*, const v1::CniGcRequest* req, v1::CniGcResponse* resp) {
  if (!state_.ready) {
    return notReady();
  }
  if (!req->valid_attachments_present() && req->valid_attachments_size() == 0) {
    // No list is not an empty list: read as one, it would release every endpoint of the node. (A client from
    // before valid_attachments_present that sends a list is still heard: a non-empty list cannot be a missing one.)
    resp->set_skipped(true);
    resp->set_message(
        "no list of valid attachments (neither cni.dev/valid-attachments nor cni.dev/attachments): nothing removed");
    spdlog::warn("CNI GC: {}", resp->message());
    return grpc::Status::OK;
  }
  std::set<std::string> valid = gcOwnersFromProto(*req);
  resp->set_released(state_.reconciler.submit([&] { return state_.controller->gcEndpoints(valid); }).get());
  resp->set_message(fmt::format("{} attachments valid, {} endpoints and allocations released", valid.size(),
                                resp->released()));
  spdlog::info("CNI GC: {}", resp->message());
  return grpc::Status::OK;
}

grpc::Status CniService::Status(grpc::ServerContext*, const v1::CniStatusRequest*, v1::CniStatusResponse* resp) {
  resp->set_ready(state_.ready);
  resp->set_message(state_.ready ? "ready" : "starting");
  return grpc::Status::OK;
}

namespace {

// Maps the agent fills from its model (the rest are written by the datapath: conntrack, NAT, counters, affinity,
// socket reverse NAT, lost events).
bool agentWritten(const std::string& map) {
  static const char* const kKernelWritten[] = {"plexus_ct4_", "plexus_snat4_", "plexus_metrics_",
                                               "plexus_lb4_affinity_", "plexus_lb4_sock_revnat_", "plexus_events"};
  for (const char* prefix : kKernelWritten) {
    if (map.rfind(prefix, 0) == 0) {
      return false;
    }
  }
  return true;
}

// What cilium-dbg status shows beside the datapath: kube-proxy replacement, Hubble, Kubernetes, masquerading. From
// the configuration and the components' own counters; no reconcile-thread state.
void featureStatus(const AgentState& state, v1::GetStatusResponse* resp) {
  const AgentConfig& c = state.config;
  auto* kpr = resp->mutable_kube_proxy_replacement();
  kpr->set_enabled(c.kube_proxy_replacement);
  kpr->set_socket_lb(state.sock != nullptr);
  kpr->set_mode(c.lb_mode);
  kpr->set_dsr_dispatch(c.lb_mode == "snat" ? "" : c.lb_dsr_dispatch);
  kpr->set_algorithm(c.lb_algorithm);
  kpr->set_maglev_table_size(c.lb_algorithm == "maglev" ? static_cast<uint32_t>(c.maglev_table_size) : 0);
  for (const auto& d : state.devices()) {
    kpr->add_devices(d);
  }
  kpr->set_host_routing(state.host_routing);

  auto* hubble = resp->mutable_hubble();
  hubble->set_enabled(state.flows != nullptr);
  hubble->set_socket_path(c.hubble_socket_path);
  hubble->set_listen_address(c.hubble_listen_address);
  if (state.flows) {
    hubble->set_current_flows(state.flows->size());
    hubble->set_max_flows(state.flows->capacity());
    hubble->set_seen_flows(state.flows->seen());
    auto now = std::chrono::system_clock::now().time_since_epoch();
    hubble->set_flows_per_second(
        state.flows->rate(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()));
  }

  auto* kube = resp->mutable_kubernetes();
  kube->set_enabled(state.kube != nullptr);
  kube->set_state("Disabled");
  if (state.kube) {
    kube->set_api_server(state.kube->client().config().server);
    auto stats = state.kube->stats();
    uint32_t synced = 0;
    std::string error;
    for (const auto& st : stats) {
      synced += st.synced ? 1 : 0;
      if (!st.last_error.empty()) {
        error = st.last_error;
      }
    }
    kube->set_resources(static_cast<uint32_t>(stats.size()));
    kube->set_resources_synced(synced);
    bool ok = synced == stats.size();
    kube->set_state(ok ? "Ok" : "Warning");
    if (!ok) {
      kube->set_message(error.empty() ? "waiting for the first list" : error);
    }
  }

  auto* masq = resp->mutable_masquerading();
  masq->set_enabled(c.enable_bpf_masquerade || c.enable_ipv4_masquerade);
  masq->set_mode(c.enable_bpf_masquerade ? "BPF" : c.enable_ipv4_masquerade ? "IPTables" : "");
  masq->set_native_routing_cidr(c.ipv4_native_routing_cidr);
  resp->set_tunnel_protocol(state.routing_mode == node::RoutingMode::kTunnel ? c.tunnel_protocol : "");
}

}  // namespace

grpc::Status DaemonService::GetConfig(grpc::ServerContext*, const v1::GetConfigRequest*,
                                      v1::GetConfigResponse* resp) {
  // The configuration is fixed once the agent runs: no reconcile-thread state is read.
  const nlohmann::json config = toJson(state_.config);
  for (const auto& [key, value] : config.items()) {
    (*resp->mutable_options())[key] = value.dump();
  }
  return grpc::Status::OK;
}

grpc::Status DaemonService::GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                                      v1::GetStatusResponse* resp) {
  resp->set_healthy(state_.ready);
  resp->set_message(state_.ready ? "Ok" : "starting");
  resp->set_node_name(state_.config.node_name);
  resp->set_mode(state_.kube ? "kubernetes" : "standalone");
  featureStatus(state_, resp);
  resp->set_version(PLEXUS_VERSION);
  resp->set_bpf_root(state_.config.bpf_root);
  resp->set_started_unix(state_.started_unix);
  resp->set_verifier_insn_limit(datapath::kVerifierInsnLimit);
  state_.reconciler
      .submit([&] {
        auto add = [&](const datapath::ProgramHandle& p, std::string attach_point) {
          auto* out = resp->add_programs();
          out->set_name(p.name);
          out->set_id(p.id);
          out->set_attach_point(std::move(attach_point));
          out->set_verified_insns(p.verified_insns);
        };
        for (const auto& p : state_.lxc->programs()) {
          add(p, p.name == "plexus_from_container" ? "tc ingress, lxc* (per endpoint)" : "tc egress, lxc* (per endpoint)");
        }
        if (state_.host) {
          for (const auto& p : state_.host->programs()) {
            add(p, p.name == "plexus_from_netdev" ? "tc ingress, --devices" : "tc egress, --devices");
          }
        }
        if (state_.overlay) {
          for (const auto& p : state_.overlay->programs()) {
            add(p, fmt::format("tc {}, {}", p.name == "plexus_from_overlay" ? "ingress" : "egress", kTunnelDevice));
          }
        }
        if (state_.sock) {
          for (const auto& p : state_.sock->programs()) {
            add(p, "cgroup " + state_.sock->cgroupPath());
          }
        }
        for (const auto& m : state_.lxc->maps()) {
          auto* out = resp->add_maps();
          out->set_name(m.name);
          out->set_type(datapath::mapTypeName(m.info.type));
          out->set_max_entries(m.info.max_entries);
          out->set_entries(m.entries);
          out->set_pin_path(m.pin_path);
          out->set_cache_enabled(agentWritten(m.name));
        }
        resp->set_endpoint_count(static_cast<uint32_t>(state_.endpoints->list().size()));
        for (const auto& p : state_.controller->problems()) {
          resp->add_problems(p);
        }
        resp->set_routing_mode(state_.routing_mode == node::RoutingMode::kTunnel ? "tunnel (vxlan)" : "native");
        for (const auto& d : state_.devices()) {
          resp->add_devices(d);
        }
        resp->set_pod_mtu(static_cast<uint32_t>(state_.pod_mtu));
        resp->set_host_routing(state_.host_routing);
        auto nodes = state_.nodes->nodes();
        auto probes = state_.health ? state_.health->results() : std::map<std::string, NodeProbe>{};
        uint32_t reachable = 0;
        bool self_known = false;
        for (const auto& n : nodes) {
          bool self = n.name == state_.config.node_name;
          self_known = self_known || self;
          auto it = probes.find(n.name);
          reachable += self || (it != probes.end() && it->second.reachable()) ? 1 : 0;
        }
        resp->set_nodes_total(static_cast<uint32_t>(nodes.size() + (self_known ? 0 : 1)));
        resp->set_nodes_reachable(reachable + (self_known ? 0 : 1));
        resp->set_health_probes(state_.health ? fmt::format("ICMP echo ({}) and TCP port {}", state_.health->icmpMode(),
                                                            state_.config.health_port)
                                              : "off (--health-port 0)");
        const Ipam& ipam = state_.endpoints->ipam();
        auto* ip = resp->mutable_ipam();
        ip->set_cidr(ipam.cidr().toString());
        ip->set_size(ipam.capacity());
        ip->set_used(ipam.used());
        ip->set_free(ipam.available());
      })
      .get();
  return grpc::Status::OK;
}

std::string DaemonService::policyError(uint16_t id) const {
  auto view = state_.policies->endpointPolicy(id);
  return view ? view->error : "";
}

grpc::Status DaemonService::ListEndpoints(grpc::ServerContext*, const v1::ListEndpointsRequest*,
                                          v1::ListEndpointsResponse* resp) {
  state_.reconciler
      .submit([&] {
        for (const auto& r : state_.endpoints->list()) {
          toProto(r, policyError(r.id), resp->add_endpoints());
        }
      })
      .get();
  return grpc::Status::OK;
}

grpc::Status DaemonService::GetEndpoint(grpc::ServerContext*, const v1::GetEndpointRequest* req, v1::Endpoint* resp) {
  auto selector = endpointSelectorFromProto(*req);
  if (!selector.ok()) {
    return toGrpc(selector.error());
  }
  bool found = state_.reconciler
                   .submit([&] {
                     auto rec = state_.endpoints->find(*selector);
                     if (rec) {
                       toProto(*rec, policyError(rec->id), resp);
                     }
                     return rec.has_value();
                   })
                   .get();
  if (!found) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, fmt::format("no endpoint matches {:?}", *selector));
  }
  return grpc::Status::OK;
}

grpc::Status DaemonService::DumpBpfMap(grpc::ServerContext*, const v1::DumpBpfMapRequest* req,
                                       v1::DumpBpfMapResponse* resp) {
  auto result = state_.reconciler.submit([&] { return dumpMap(*state_.lxc, req->map(), req->endpoint(), resp); }).get();
  return result.ok() ? grpc::Status::OK : toGrpc(result.error());
}

grpc::Status DaemonService::ListNodes(grpc::ServerContext*, const v1::ListNodesRequest*, v1::ListNodesResponse* resp) {
  struct Known {
    node::Node node;
    bool claimed = false;  // pod CIDRs from the node's PlexusNode
  };
  auto nodes = state_.reconciler
                   .submit([&] {
                     std::vector<Known> out;
                     for (auto& n : state_.nodes->nodes()) {
                       bool claimed = state_.nodes->cidrsClaimed(n.name);
                       out.push_back({std::move(n), claimed});
                     }
                     return out;
                   })
                   .get();
  auto probes = state_.health ? state_.health->results() : std::map<std::string, NodeProbe>{};
  auto probeToProto = [](const node::ProbeResult& r, v1::NodeProbe* out) {
    out->set_ok(r.ok);
    out->set_rtt_ms(r.milliseconds);
    out->set_message(r.message);
  };
  for (const auto& [n, claimed] : nodes) {
    auto* out = resp->add_nodes();
    out->set_name(n.name);
    for (const auto& ip : n.internal_ips) {
      out->add_addresses(ip.toString());
    }
    for (const auto& c : n.pod_cidrs) {
      out->add_pod_cidrs(c.toString());
    }
    out->set_pod_cidrs_source(n.pod_cidrs.empty() ? "" : claimed ? "PlexusNode" : "Node");
    bool self = n.name == state_.config.node_name;
    out->set_self(self);
    auto it = probes.find(n.name);
    if (self) {
      out->set_reachable(true);
      out->set_health("this node");
    } else if (it != probes.end()) {
      out->set_reachable(it->second.reachable());
      out->set_probe_ms(it->second.tcp.milliseconds);
      out->set_health(node::summary(it->second));
      probeToProto(it->second.icmp, out->mutable_icmp());
      probeToProto(it->second.tcp, out->mutable_tcp());
    } else {
      out->set_health(state_.health ? "not probed yet" : "health probes off (--health-port 0)");
    }
  }
  return grpc::Status::OK;
}

}  // namespace plexus::agent
