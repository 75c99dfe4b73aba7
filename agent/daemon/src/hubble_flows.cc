#include "plexus/agent/hubble_flows.h"

#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <tuple>

#include <fmt/format.h>
#include <google/protobuf/unknown_field_set.h>

#include "plexus/agent/flow_hubble.h"
#include "plexus/agent/reason_names.h"
#include "plexus/events.h"
#include "plexus/reasons.h"

namespace plexus::agent {

namespace {

Error invalid(const std::string& message) { return Error{ErrorCode::kInvalidArgument, message}; }

google::protobuf::Timestamp timestamp(int64_t unix_nano) {
  google::protobuf::Timestamp t;
  t.set_seconds(unix_nano / 1000000000);
  t.set_nanos(static_cast<int32_t>(unix_nano % 1000000000));
  return t;
}

// A request's time bound in nanoseconds since the epoch. google.protobuf.Timestamp's valid range (years 1 to 9999,
// nanos 0 to 999,999,999) is checked; bounds past what int64 nanoseconds reach (1677 to 2262) saturate, which keeps
// their meaning for a flow store of present-day flows.
Result<int64_t> unixNano(const google::protobuf::Timestamp& t, const char* field) {
  constexpr int64_t kMinSeconds = -62135596800;  // 0001-01-01T00:00:00Z
  constexpr int64_t kMaxSeconds = 253402300799;  // 9999-12-31T23:59:59Z
  if (t.seconds() < kMinSeconds || t.seconds() > kMaxSeconds || t.nanos() < 0 || t.nanos() > 999999999) {
    return invalid(fmt::format("{}: {}s {}ns is not a valid timestamp", field, t.seconds(), t.nanos()));
  }
  constexpr int64_t kLimit = std::numeric_limits<int64_t>::max() / 1000000000 - 1;
  if (t.seconds() > kLimit) {
    return std::numeric_limits<int64_t>::max();
  }
  if (t.seconds() < -kLimit) {
    return std::numeric_limits<int64_t>::min();
  }
  return t.seconds() * 1000000000LL + t.nanos();
}

void toHubble(const FlowPeer& p, const std::string& cluster, flow::Endpoint* out) {
  out->set_id(p.endpoint_id);
  out->set_identity(p.identity);
  out->set_namespace_(p.podNamespace());
  out->set_pod_name(p.podName());
  if (!p.podNamespace().empty()) {
    out->set_cluster_name(cluster);
  }
  // A peer outside the pods (the world, the host, another node) carries Hubble's reserved label.
  for (const auto& l : p.labels().empty() ? reservedLabels(p.identity) : p.labels()) {
    out->add_labels(l);
  }
}

flow::Verdict toHubbleVerdict(uint8_t verdict) {
  switch (verdict) {
    case PLEXUS_VERDICT_FORWARDED: return flow::FORWARDED;
    case PLEXUS_VERDICT_DROPPED: return flow::DROPPED;
    case PLEXUS_VERDICT_TRANSLATED: return flow::TRANSLATED;
    case PLEXUS_VERDICT_AUDIT: return flow::AUDIT;
    default: return flow::VERDICT_UNKNOWN;
  }
}

flow::TrafficDirection toHubbleDirection(uint8_t direction) {
  switch (direction) {
    case PLEXUS_DIR_INGRESS: return flow::INGRESS;
    case PLEXUS_DIR_EGRESS: return flow::EGRESS;
    default: return flow::TRAFFIC_DIRECTION_UNKNOWN;
  }
}

void toHubbleL4(const FlowRecord& f, flow::Layer4* out) {
  switch (f.protocol) {
    case IPPROTO_TCP: {
      auto* tcp = out->mutable_tcp();
      tcp->set_source_port(f.source.port);
      tcp->set_destination_port(f.destination.port);
      auto* flags = tcp->mutable_flags();
      flags->set_fin(f.tcp_flags & 0x01);
      flags->set_syn(f.tcp_flags & 0x02);
      flags->set_rst(f.tcp_flags & 0x04);
      flags->set_psh(f.tcp_flags & 0x08);
      flags->set_ack(f.tcp_flags & 0x10);
      flags->set_urg(f.tcp_flags & 0x20);
      flags->set_ece(f.tcp_flags & 0x40);
      flags->set_cwr(f.tcp_flags & 0x80);
      break;
    }
    case IPPROTO_UDP:
      out->mutable_udp()->set_source_port(f.source.port);
      out->mutable_udp()->set_destination_port(f.destination.port);
      break;
    case IPPROTO_SCTP:
      out->mutable_sctp()->set_source_port(f.source.port);
      out->mutable_sctp()->set_destination_port(f.destination.port);
      break;
    case IPPROTO_ICMP:
      // Both 0 for a later fragment (no ICMP header) and for events of programs older than the 56-byte layout.
      out->mutable_icmpv4()->set_type(f.icmp_type);
      out->mutable_icmpv4()->set_code(f.icmp_code);
      break;
    default: break;
  }
}

Result<std::vector<uint32_t>> ports(const google::protobuf::RepeatedPtrField<std::string>& texts, const char* field) {
  std::vector<uint32_t> out;
  for (const auto& t : texts) {
    uint32_t port = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), port);
    if (ec != std::errc() || end != t.data() + t.size() || port == 0 || port > 65535) {
      return invalid(fmt::format("{} {:?}: must be a port, 1-65535", field, t));
    }
    out.push_back(port);
  }
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

uint8_t tcpFlagBits(const flow::TCPFlags& f) {
  return static_cast<uint8_t>((f.fin() ? 0x01 : 0) | (f.syn() ? 0x02 : 0) | (f.rst() ? 0x04 : 0) |
                              (f.psh() ? 0x08 : 0) | (f.ack() ? 0x10 : 0) | (f.urg() ? 0x20 : 0) |
                              (f.ece() ? 0x40 : 0) | (f.cwr() ? 0x80 : 0));
}

}  // namespace

void toHubbleFlow(const FlowRecord& f, const std::string& node, const std::string& cluster, flow::Flow* out) {
  *out->mutable_time() = timestamp(f.time_unix_nano);
  out->set_uuid(f.uuid);
  out->set_verdict(toHubbleVerdict(f.verdict));
  if (f.verdict == PLEXUS_VERDICT_DROPPED || f.verdict == PLEXUS_VERDICT_AUDIT) {
    // An audited flow keeps the reason it would have been dropped for.
    uint32_t code = hubbleReasonCode(f.reason);
    out->set_drop_reason(code);
    out->set_drop_reason_desc(static_cast<flow::DropReason>(code));
  }
  auto* ip = out->mutable_ip();
  ip->set_source(f.source.ip.toString());
  ip->set_destination(f.destination.ip.toString());
  ip->set_ipversion(flow::IPv4);
  toHubbleL4(f, out->mutable_l4());
  toHubble(f.source, cluster, out->mutable_source());
  toHubble(f.destination, cluster, out->mutable_destination());
  out->set_type(flow::L3_L4);
  out->set_node_name(f.node_name.empty() ? node : f.node_name);
  out->set_reply(f.is_reply);
  out->mutable_is_reply()->set_value(f.is_reply);
  HubbleEvent e = hubbleEvent(f);
  out->mutable_event_type()->set_type(e.type);
  out->mutable_event_type()->set_sub_type(e.sub_type);
  if (e.type == kMonitorTrace) {
    out->set_trace_observation_point(static_cast<flow::TraceObservationPoint>(e.point));
  }
  if (!f.service.empty()) {
    auto slash = f.service.find('/');
    auto* svc = out->mutable_destination_service();
    svc->set_namespace_(slash == std::string::npos ? "" : f.service.substr(0, slash));
    svc->set_name(slash == std::string::npos ? f.service : f.service.substr(slash + 1));
  }
  out->set_traffic_direction(toHubbleDirection(f.direction));
  if (!f.interface_name.empty() || f.interface_index != 0) {
    out->mutable_interface()->set_index(f.interface_index);
    out->mutable_interface()->set_name(f.interface_name);
  }
  out->set_summary(flowSummary(f));
  if (f.policy) {
    // Cilium's policy-verdict fields: who allowed (forwarded or audited) or denied (a deny rule) the packet, where.
    bool ingress = f.policy->ingress;
    bool denied = f.reason == PLEXUS_REASON_POLICY_DENY;
    auto* p = denied ? (ingress ? out->add_ingress_denied_by() : out->add_egress_denied_by())
                     : (ingress ? out->add_ingress_allowed_by() : out->add_egress_allowed_by());
    out->set_policy_match_type(f.policy->match_type);
    p->set_kind(f.policy->kind);
    p->set_name(f.policy->name);
    p->set_namespace_(f.policy->pod_namespace);
    p->add_labels("k8s:io.cilium.k8s.policy.derived-from=" + f.policy->kind);
    p->add_labels("k8s:io.cilium.k8s.policy.name=" + f.policy->name);
    if (!f.policy->pod_namespace.empty()) {
      p->add_labels("k8s:io.cilium.k8s.policy.namespace=" + f.policy->pod_namespace);
    }
  }
}

Result<FlowFilter> flowFilterFromHubble(const flow::FlowFilter& h) {
  // A field of a newer Hubble that this file does not know would be dropped silently, widening the filter:
  // refuse it instead.
  const auto& unknown = h.GetReflection()->GetUnknownFields(h);
  if (unknown.field_count() > 0) {
    return invalid(fmt::format("FlowFilter field {} is not supported by Plexus", unknown.field(0).number()));
  }
  FlowFilterSpec spec;
  auto copy = [](const auto& from, std::vector<std::string>* to) { to->assign(from.begin(), from.end()); };
  copy(h.source_ip(), &spec.source.ips);
  copy(h.source_pod(), &spec.source.pods);
  copy(h.source_label(), &spec.source.labels);
  spec.source.identities.assign(h.source_identity().begin(), h.source_identity().end());
  copy(h.destination_ip(), &spec.destination.ips);
  copy(h.destination_pod(), &spec.destination.pods);
  copy(h.destination_label(), &spec.destination.labels);
  spec.destination.identities.assign(h.destination_identity().begin(), h.destination_identity().end());
  copy(h.node_name(), &spec.node_names);
  auto sport = ports(h.source_port(), "source_port");
  auto dport = ports(h.destination_port(), "destination_port");
  if (!sport.ok()) {
    return sport.error();
  }
  if (!dport.ok()) {
    return dport.error();
  }
  spec.source.ports = *sport;
  spec.destination.ports = *dport;
  // Protocols Plexus flows cannot have (L7, ICMPv6) match nothing; unknown names are an error.
  bool never = false;
  bool any_l34 = false;
  for (const auto& p : h.protocol()) {
    std::string l = lower(p);
    if (l == "http" || l == "dns" || l == "kafka" || l == "icmpv6") {
      continue;
    }
    spec.protocols.push_back(l);
    any_l34 = true;
  }
  never = h.protocol_size() > 0 && !any_l34;
  auto parsed = parseFlowFilter(spec);
  if (!parsed.ok()) {
    return parsed.error();
  }
  FlowFilter f = std::move(*parsed);
  for (int v : h.verdict()) {
    switch (v) {
      case flow::FORWARDED: f.verdicts.push_back(PLEXUS_VERDICT_FORWARDED); break;
      case flow::DROPPED: f.verdicts.push_back(PLEXUS_VERDICT_DROPPED); break;
      case flow::TRANSLATED: f.verdicts.push_back(PLEXUS_VERDICT_TRANSLATED); break;
      case flow::AUDIT: f.verdicts.push_back(PLEXUS_VERDICT_AUDIT); break;
      default: f.verdicts.push_back(0); break;  // ERROR, REDIRECTED, TRACED: none of ours
    }
  }
  for (const auto& t : h.event_type()) {
    f.event_types.push_back({t.type(), t.match_sub_type(), t.sub_type()});
  }
  f.replies.assign(h.reply().begin(), h.reply().end());
  for (int d : h.traffic_direction()) {
    f.directions.push_back(d == flow::INGRESS  ? PLEXUS_DIR_INGRESS
                           : d == flow::EGRESS ? PLEXUS_DIR_EGRESS
                                               : PLEXUS_DIR_UNSPECIFIED);
  }
  for (const auto& flags : h.tcp_flags()) {
    f.tcp_flags.push_back(tcpFlagBits(flags));
  }
  f.uuids.assign(h.uuid().begin(), h.uuid().end());
  bool ipv4 = h.ip_version_size() == 0 ||
              std::any_of(h.ip_version().begin(), h.ip_version().end(), [](int v) { return v == flow::IPv4; });
  never = never || !ipv4 || h.source_fqdn_size() || h.destination_fqdn_size() || h.source_service_size() ||
          h.source_workload_size() || h.destination_workload_size() || h.http_status_code_size() ||
          h.http_method_size() || h.http_path_size() || h.dns_query_size() || h.trace_id_size();
  if (h.destination_service_size() > 0) {
    // Services: the frontend of a translated flow ("namespace/name"), with the pod filter's syntax.
    for (const auto& s : h.destination_service()) {
      auto svc = parsePodPrefix(s);
      if (!svc.ok()) {
        return svc.error().wrap("destination_service");
      }
      f.destination_services.push_back(*svc);
    }
  }
  f.never = never;
  return f;
}

Result<EventWindow> eventWindow(bool first, bool follow, const google::protobuf::Timestamp* since,
                                const google::protobuf::Timestamp* until) {
  if (first && follow) {
    return invalid("first cannot be combined with follow");
  }
  EventWindow w;
  for (auto [t, field, out] : {std::tuple{since, "since", &w.since_unix_nano}, std::tuple{until, "until", &w.until_unix_nano}}) {
    if (t) {
      auto n = unixNano(*t, field);
      if (!n.ok()) {
        return n.error();
      }
      *out = *n;
    }
  }
  if (w.until_unix_nano != 0 && w.until_unix_nano < w.since_unix_nano) {
    return invalid("until is before since");
  }
  return w;
}

Result<FlowQuery> flowQueryFromHubble(const observer::GetFlowsRequest& r) {
  auto window = eventWindow(r);
  if (!window.ok()) {
    return window.error();
  }
  FlowQuery q;
  q.filter.since_unix_nano = window->since_unix_nano;
  q.filter.until_unix_nano = window->until_unix_nano;
  for (const auto& [from, to] : {std::pair{&r.whitelist(), &q.allow}, std::pair{&r.blacklist(), &q.deny}}) {
    for (const auto& h : *from) {
      auto f = flowFilterFromHubble(h);
      if (!f.ok()) {
        return f.error().wrap(from == &r.whitelist() ? "whitelist" : "blacklist");
      }
      to->push_back(std::move(*f));
    }
  }
  return q;
}

StoredSelection storedSelection(uint64_t number, bool first, bool windowed, bool follow) {
  StoredSelection s;
  if (number > 0) {
    s.oldest = first;
    s.count = static_cast<size_t>(number);
  } else if (!windowed && follow) {
    s.none = true;
  }
  return s;
}

void toHubbleAgentEvent(const AgentNotification& n, flow::AgentEvent* out) {
  out->set_type(static_cast<flow::AgentEventType>(n.type));
  switch (n.type) {
    case NotificationType::kAgentStarted:
      *out->mutable_agent_start()->mutable_time() = timestamp(n.time_unix_nano);
      break;
    case NotificationType::kPolicyUpdated:
    case NotificationType::kPolicyDeleted: {
      auto* p = out->mutable_policy_update();
      p->mutable_labels()->Assign(n.labels.begin(), n.labels.end());
      p->set_revision(n.revision);
      p->set_rule_count(n.rule_count);
      break;
    }
    case NotificationType::kEndpointRegenerateSuccess:
    case NotificationType::kEndpointRegenerateFailure: {
      auto* e = out->mutable_endpoint_regenerate();
      e->set_id(n.id);
      e->mutable_labels()->Assign(n.labels.begin(), n.labels.end());
      e->set_error(n.error);
      break;
    }
    case NotificationType::kEndpointCreated:
    case NotificationType::kEndpointDeleted: {
      auto* e = out->mutable_endpoint_update();
      e->set_id(n.id);
      e->mutable_labels()->Assign(n.labels.begin(), n.labels.end());
      e->set_pod_name(n.pod_name);
      e->set_namespace_(n.pod_namespace);
      break;
    }
    case NotificationType::kIpcacheUpserted:
    case NotificationType::kIpcacheDeleted: {
      auto* i = out->mutable_ipcache_update();
      i->set_cidr(n.cidr);
      i->set_identity(n.identity);
      if (n.old_identity) {
        i->mutable_old_identity()->set_value(*n.old_identity);
      }
      i->set_host_ip(n.host_ip);
      i->set_old_host_ip(n.old_host_ip);
      i->set_namespace_(n.pod_namespace);
      i->set_pod_name(n.pod_name);
      break;
    }
    case NotificationType::kServiceUpserted: {
      auto* s = out->mutable_service_upsert();
      s->set_id(static_cast<uint32_t>(n.id));
      s->mutable_frontend_address()->set_ip(n.frontend.ip);
      s->mutable_frontend_address()->set_port(n.frontend.port);
      for (const auto& b : n.backends) {
        auto* a = s->add_backend_addresses();
        a->set_ip(b.ip);
        a->set_port(b.port);
      }
      s->set_type(n.service_type);
      s->set_name(n.service_name);
      s->set_namespace_(n.service_namespace);
      s->set_ext_traffic_policy(n.ext_traffic_policy);
      s->set_int_traffic_policy(n.int_traffic_policy);
      break;
    }
    case NotificationType::kServiceDeleted:
      out->mutable_service_delete()->set_id(static_cast<uint32_t>(n.id));
      break;
  }
}

}  // namespace plexus::agent
