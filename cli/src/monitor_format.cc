#include "plexus/cli/monitor_format.h"

#include <netinet/in.h>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include "plexus/cli/hubble_request.h"

namespace plexus::cli {

namespace {

constexpr uint32_t kPolicyDenied = 133;  // Hubble's POLICY_DENIED
constexpr uint32_t kPolicyDeny = 181;    // Hubble's POLICY_DENY (a deny rule)

bool isReply(const flow::Flow& f) { return f.has_is_reply() && f.is_reply().value(); }

uint32_t dropCode(const flow::Flow& f) {
  return f.drop_reason_desc() != 0 ? static_cast<uint32_t>(f.drop_reason_desc()) : f.drop_reason();
}

bool ingress(const flow::Flow& f) { return f.traffic_direction() == flow::INGRESS; }

// The local endpoint whose policy applies: the destination on ingress, the source on egress.
uint32_t localEndpoint(const flow::Flow& f) { return ingress(f) ? f.destination().id() : f.source().id(); }
uint32_t remoteIdentity(const flow::Flow& f) { return ingress(f) ? f.source().identity() : f.destination().identity(); }

int protocolNumber(const flow::Flow& f) {
  return f.l4().has_tcp()      ? IPPROTO_TCP
         : f.l4().has_udp()    ? IPPROTO_UDP
         : f.l4().has_icmpv4() ? IPPROTO_ICMP
         : f.l4().has_sctp()   ? IPPROTO_SCTP
                               : 0;
}

// A policy decision happens for a connection's first packet in its direction of enforcement; replies and later
// packets ride on conntrack. Without conntrack state in the flow, a TCP SYN (no ACK) or a non-reply packet of
// another protocol stands for it.
bool newConnection(const flow::Flow& f) {
  if (isReply(f)) {
    return false;
  }
  if (f.l4().has_tcp()) {
    return f.l4().tcp().flags().syn() && !f.l4().tcp().flags().ack();
  }
  return true;
}

std::string tcpFlags(const flow::TCPFlags& fl) {
  std::vector<std::string> out;
  auto add = [&](bool on, const char* n) {
    if (on) {
      out.emplace_back(n);
    }
  };
  add(fl.syn(), "SYN");
  add(fl.ack(), "ACK");
  add(fl.fin(), "FIN");
  add(fl.rst(), "RST");
  add(fl.psh(), "PSH");
  add(fl.urg(), "URG");
  add(fl.ece(), "ECE");
  add(fl.cwr(), "CWR");
  std::string s;
  for (const auto& x : out) {
    s += (s.empty() ? "" : ", ") + x;
  }
  return s;
}

std::string icmpText(const flow::ICMPv4& i) {
  switch (i.type()) {
    case 0: return "EchoReply";
    case 3: return fmt::format("DestinationUnreachable(code {})", i.code());
    case 8: return "EchoRequest";
    case 11: return "TimeExceeded";
    default: return fmt::format("icmp type {} code {}", i.type(), i.code());
  }
}

// cilium monitor's connection summary: "10.0.0.1:40000 -> 10.0.0.2:80 tcp SYN".
std::string connection(const flow::Flow& f) {
  const auto& l4 = f.l4();
  auto hp = [](const std::string& ip, uint32_t port) { return fmt::format("{}:{}", ip, port); };
  if (l4.has_tcp()) {
    return fmt::format("{} -> {} tcp {}", hp(f.ip().source(), l4.tcp().source_port()),
                       hp(f.ip().destination(), l4.tcp().destination_port()), tcpFlags(l4.tcp().flags()));
  }
  if (l4.has_udp()) {
    return fmt::format("{} -> {} udp", hp(f.ip().source(), l4.udp().source_port()),
                       hp(f.ip().destination(), l4.udp().destination_port()));
  }
  if (l4.has_sctp()) {
    return fmt::format("{} -> {} sctp", hp(f.ip().source(), l4.sctp().source_port()),
                       hp(f.ip().destination(), l4.sctp().destination_port()));
  }
  if (l4.has_icmpv4()) {
    return fmt::format("{} -> {} {}", f.ip().source(), f.ip().destination(), icmpText(l4.icmpv4()));
  }
  return fmt::format("{} -> {}", f.ip().source(), f.ip().destination());
}

// "to-endpoint" as cilium monitor's trace summary: "-> endpoint 12", "-> stack", "<- network".
std::string traceSummary(const flow::Flow& f) {
  std::string point = observationPointText(f.trace_observation_point());
  bool to = point.rfind("to-", 0) == 0;
  std::string where = point.substr(point.find('-') + 1);
  if (point == "unknown") {
    return "-> unknown";
  }
  if (where == "endpoint") {
    uint32_t ep = to ? f.destination().id() : f.source().id();
    return fmt::format("{} endpoint {}", to ? "->" : "<-", ep);
  }
  return fmt::format("{} {}", to ? "->" : "<-", where);
}

std::string connectionState(const flow::Flow& f) {
  if (isReply(f)) {
    return "reply";
  }
  if (f.l4().has_tcp()) {
    return newConnection(f) ? "new" : "established";
  }
  return "";
}

// The policy match type, and the policies that decided when the flow names them (Flow.*_allowed_by / *_denied_by).
// A deny with no match type is cilium's "none" (no rule allowed it); an allow or audit without one is "unknown":
// the flow does not say which kind of rule matched.
std::string matchText(const flow::Flow& f, const std::string& action) {
  // Either side's list: a same-node flow is seen at the sender's egress but may name the receiver's ingress rule.
  bool allowed = f.verdict() == flow::FORWARDED;
  std::string names;
  for (const auto* by : {allowed ? &f.ingress_allowed_by() : &f.ingress_denied_by(),
                         allowed ? &f.egress_allowed_by() : &f.egress_denied_by()}) {
    for (const auto& p : *by) {
      std::string n = p.namespace_().empty() ? p.name() : p.namespace_() + "/" + p.name();
      names += (names.empty() ? "" : ",") + n;
    }
  }
  std::string match =
      f.policy_match_type() == 0 && action != "deny" ? "unknown" : policyMatchText(f.policy_match_type());
  return names.empty() ? match : fmt::format("{} ({})", match, names);
}

std::string peerLine(const char* side, const flow::Endpoint& e, const std::string& ip) {
  std::string labels;
  for (const auto& l : e.labels()) {
    labels += (labels.empty() ? "" : ",") + l;
  }
  std::string pod = e.pod_name().empty() ? "-" : e.namespace_() + "/" + e.pod_name();
  return fmt::format("  {}: {} pod {} endpoint {} identity {} labels [{}]\n", side, ip, pod, e.id(), e.identity(),
                     labels);
}

}  // namespace

bool parseMonitorType(const std::string& text, MonitorType* out) {
  if (text == "drop") {
    *out = MonitorType::kDrop;
  } else if (text == "trace") {
    *out = MonitorType::kTrace;
  } else if (text == "policy-verdict") {
    *out = MonitorType::kPolicyVerdict;
  } else {
    return false;
  }
  return true;
}

const char* monitorTypeName(MonitorType t) {
  switch (t) {
    case MonitorType::kDrop: return "drop";
    case MonitorType::kTrace: return "trace";
    case MonitorType::kPolicyVerdict: return "policy-verdict";
  }
  return "unknown";
}

std::vector<MonitorEvent> monitorEvents(const flow::Flow& f) {
  std::vector<MonitorEvent> out;
  if (f.verdict() == flow::AUDIT) {
    out.push_back({MonitorType::kPolicyVerdict, "audit", &f});
    return out;
  }
  if (f.verdict() == flow::DROPPED) {
    uint32_t code = dropCode(f);
    if (code == kPolicyDenied || code == kPolicyDeny) {
      out.push_back({MonitorType::kPolicyVerdict, "deny", &f});
    }
    out.push_back({MonitorType::kDrop, "", &f});
    return out;
  }
  // Policy is enforced where a packet leaves a local endpoint (egress) or enters one (ingress, at to-endpoint).
  bool enforcement = ingress(f) ? f.trace_observation_point() == flow::TO_ENDPOINT && f.destination().id() != 0
                                : f.traffic_direction() == flow::EGRESS && f.source().id() != 0;
  if (enforcement && newConnection(f) && f.event_type().type() != 5) {
    out.push_back({MonitorType::kPolicyVerdict, "allow", &f});
  }
  out.push_back({MonitorType::kTrace, "", &f});
  return out;
}

std::string monitorText(const MonitorEvent& e, bool verbose) {
  const flow::Flow& f = *e.flow;
  std::string ifname = f.interface().name().empty() ? std::to_string(f.interface().index()) : f.interface().name();
  std::string line;
  switch (e.type) {
    case MonitorType::kDrop:
      line = fmt::format("xx drop ({}) to endpoint {}, ifindex {}, identity {}->{}: {}", dropReasonText(dropCode(f)),
                         f.destination().id(), f.interface().index(), f.source().identity(), f.destination().identity(),
                         connection(f));
      break;
    case MonitorType::kTrace: {
      std::string state = connectionState(f);
      line = fmt::format("{} identity {}->{}{} ifindex {}: {}", traceSummary(f), f.source().identity(),
                         f.destination().identity(), state.empty() ? "" : " state " + state, ifname, connection(f));
      break;
    }
    case MonitorType::kPolicyVerdict:
      line = fmt::format("Policy verdict log: local EP ID {}, remote ID {}, proto {}, {}, action {}, match {}, {}",
                         localEndpoint(f), remoteIdentity(f), protocolNumber(f), ingress(f) ? "ingress" : "egress",
                         e.action, matchText(f, e.action), connection(f));
      break;
  }
  line += "\n";
  if (!verbose) {
    return line;
  }
  line += fmt::format("  time: {}  node: {}  interface: {} ({})\n", timeText(f.time(), true), f.node_name(), ifname,
                      f.interface().index());
  line += peerLine("source", f.source(), f.ip().source());
  line += peerLine("destination", f.destination(), f.ip().destination());
  line += fmt::format("  hubble: {} {} {} ({})\n", flowTypeText(f), flow::Verdict_Name(f.verdict()),
                      flow::TrafficDirection_Name(f.traffic_direction()), f.summary());
  return line;
}

nlohmann::json monitorJson(const MonitorEvent& e) {
  const flow::Flow& f = *e.flow;
  nlohmann::json j;
  j["type"] = monitorTypeName(e.type);
  j["time"] = timeText(f.time(), true);
  j["node_name"] = f.node_name();
  j["source"] = {{"ip", f.ip().source()},
                 {"endpoint", f.source().id()},
                 {"identity", f.source().identity()},
                 {"pod", f.source().pod_name().empty() ? "" : f.source().namespace_() + "/" + f.source().pod_name()}};
  j["destination"] = {
      {"ip", f.ip().destination()},
      {"endpoint", f.destination().id()},
      {"identity", f.destination().identity()},
      {"pod",
       f.destination().pod_name().empty() ? "" : f.destination().namespace_() + "/" + f.destination().pod_name()}};
  j["protocol"] = protocolNumber(f);
  j["summary"] = connection(f);
  j["ifindex"] = f.interface().index();
  switch (e.type) {
    case MonitorType::kDrop:
      j["reason"] = dropReasonText(dropCode(f));
      j["reason_code"] = dropCode(f);
      break;
    case MonitorType::kTrace:
      j["observation_point"] = observationPointText(f.trace_observation_point());
      j["state"] = connectionState(f);
      break;
    case MonitorType::kPolicyVerdict:
      j["action"] = e.action;
      j["direction"] = ingress(f) ? "ingress" : "egress";
      j["local_endpoint"] = localEndpoint(f);
      j["remote_identity"] = remoteIdentity(f);
      j["match"] = matchText(f, e.action);
      break;
  }
  std::string text;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(f, &text, opts);
  j["flow"] = nlohmann::json::parse(text, nullptr, false);
  return j;
}

}  // namespace plexus::cli
