#include "plexus/cli/hubble_request.h"

#include <time.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

namespace plexus::cli {

namespace {

using Strings = google::protobuf::RepeatedPtrField<std::string>;

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

// The values of one side of a filter, before they are put on a side.
struct Side {
  std::vector<std::string> namespaces, pods, labels, ips;
  std::vector<uint32_t> identities, ports;
  bool empty() const {
    return namespaces.empty() && pods.empty() && labels.empty() && ips.empty() && identities.empty() && ports.empty();
  }
};

template <typename T>
std::vector<T> list(const google::protobuf::RepeatedField<T>& r) {
  return {r.begin(), r.end()};
}
std::vector<std::string> list(const Strings& r) { return {r.begin(), r.end()}; }

// -n NS with --pod PREFIX: the pod in each namespace ("NS/PREFIX"); a pod naming its own namespace keeps it when
// that namespace is one of NS.
bool podsOf(const Side& s, std::vector<std::string>* out, std::string* error) {
  if (s.namespaces.empty()) {
    *out = s.pods;
    return true;
  }
  if (s.pods.empty()) {
    for (const auto& ns : s.namespaces) {
      out->push_back(ns + "/");
    }
    return true;
  }
  for (const auto& p : s.pods) {
    auto slash = p.find('/');
    for (const auto& ns : s.namespaces) {
      if (slash == std::string::npos) {
        out->push_back(ns + "/" + p);
      } else if (p.substr(0, slash) == ns) {
        out->push_back(p);
      }
    }
  }
  if (out->empty()) {
    *error = "--pod names no pod in the namespaces of --namespace";
    return false;
  }
  return true;
}

// Puts `s` on one side of `h`; false when a field of that side already holds values of another flag.
bool place(const Side& s, bool source, const char* flags, flow::FlowFilter* h, std::string* error) {
  std::vector<std::string> pods;
  if (!podsOf(s, &pods, error)) {
    return false;
  }
  Strings* h_pods = source ? h->mutable_source_pod() : h->mutable_destination_pod();
  Strings* h_labels = source ? h->mutable_source_label() : h->mutable_destination_label();
  Strings* h_ips = source ? h->mutable_source_ip() : h->mutable_destination_ip();
  Strings* h_ports = source ? h->mutable_source_port() : h->mutable_destination_port();
  auto* h_ids = source ? h->mutable_source_identity() : h->mutable_destination_identity();
  if ((!pods.empty() && !h_pods->empty()) || (!s.labels.empty() && !h_labels->empty()) ||
      (!s.ips.empty() && !h_ips->empty()) || (!s.ports.empty() && !h_ports->empty()) ||
      (!s.identities.empty() && !h_ids->empty())) {
    *error = fmt::format("{} cannot be combined with the same flag with --from-/--to- (both would filter the {} {})",
                         flags, source ? "source" : "destination", "side");
    return false;
  }
  for (const auto& p : pods) {
    h_pods->Add(std::string(p));
  }
  for (const auto& l : s.labels) {
    h_labels->Add(std::string(l));
  }
  for (const auto& ip : s.ips) {
    h_ips->Add(std::string(ip));
  }
  for (uint32_t port : s.ports) {
    h_ports->Add(std::to_string(port));
  }
  for (uint32_t id : s.identities) {
    h_ids->Add(id);
  }
  return true;
}

bool eventType(const std::string& text, flow::EventTypeFilter* out, std::string* error) {
  static const std::map<std::string, int32_t> kTypes = {
      {"drop", 1},     {"debug", 2},      {"capture", 3}, {"trace", 4}, {"policy-verdict", 5},
      {"recorder", 6}, {"trace-sock", 7}, {"sock", 7},    {"l7", 129},  {"agent", 130}};
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto it = kTypes.find(t);
  if (it == kTypes.end()) {
    *error = fmt::format(
        "type {:?}: must be trace, drop or policy-verdict (or another of Hubble's types; subtypes "
        "are not supported)",
        text);
    return false;
  }
  out->set_type(it->second);
  return true;
}

bool tcpFlags(const std::string& text, flow::TCPFlags* out, std::string* error) {
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string name = upper(text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    if (name == "FIN") {
      out->set_fin(true);
    } else if (name == "SYN") {
      out->set_syn(true);
    } else if (name == "RST") {
      out->set_rst(true);
    } else if (name == "PSH") {
      out->set_psh(true);
    } else if (name == "ACK") {
      out->set_ack(true);
    } else if (name == "URG") {
      out->set_urg(true);
    } else if (name == "ECE") {
      out->set_ece(true);
    } else if (name == "CWR") {
      out->set_cwr(true);
    } else {
      *error = fmt::format("tcp flags {:?}: {:?} is not one of FIN, SYN, RST, PSH, ACK, URG, ECE, CWR", text, name);
      return false;
    }
    if (comma == std::string::npos) {
      break;
    }
    pos = comma + 1;
  }
  return true;
}

}  // namespace

bool hubbleFilters(const v1::FlowFilter& f, std::vector<flow::FlowFilter>* out, std::string* error) {
  flow::FlowFilter base;
  Side from{list(f.from_namespace()), list(f.from_pod()),      list(f.from_label()),
            list(f.from_ip()),        list(f.from_identity()), list(f.from_port())};
  Side to{list(f.to_namespace()), list(f.to_pod()),      list(f.to_label()),
          list(f.to_ip()),        list(f.to_identity()), list(f.to_port())};
  Side either{list(f.namespace_()), list(f.pod()), list(f.label()), list(f.ip()), list(f.identity()), list(f.port())};
  if (!place(from, true, "--from-*", &base, error) || !place(to, false, "--to-*", &base, error)) {
    return false;
  }
  for (const auto& v : f.verdict()) {
    flow::Verdict verdict = flow::VERDICT_UNKNOWN;
    std::string u = upper(v);
    if ((u != "FORWARDED" && u != "DROPPED" && u != "TRANSLATED" && u != "AUDIT") || !flow::Verdict_Parse(u, &verdict)) {
      *error = fmt::format("verdict {:?}: must be one of FORWARDED, DROPPED, TRANSLATED, AUDIT", v);
      return false;
    }
    base.add_verdict(verdict);
  }
  for (const auto& p : f.protocol()) {
    base.add_protocol(p);
  }
  for (const auto& t : f.event_type()) {
    if (!eventType(t, base.add_event_type(), error)) {
      return false;
    }
  }
  for (const auto& t : f.tcp_flags()) {
    if (!tcpFlags(t, base.add_tcp_flags(), error)) {
      return false;
    }
  }
  for (const auto& n : f.node_name()) {
    base.add_node_name(n);
  }
  if (either.empty()) {
    out->push_back(std::move(base));
    return true;
  }
  // The sideless flags hold together on the source, or together on the destination.
  for (bool source : {true, false}) {
    flow::FlowFilter h = base;
    if (!place(either, source, "--pod/--namespace/--label/--ip/--port/--identity", &h, error)) {
      return false;
    }
    out->push_back(std::move(h));
  }
  return true;
}

std::string timeText(const google::protobuf::Timestamp& t, bool rfc3339) {
  time_t secs = static_cast<time_t>(t.seconds());
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  if (rfc3339) {
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    return fmt::format("{}.{:09d}Z", buf, t.nanos());
  }
  strftime(buf, sizeof(buf), "%b %e %H:%M:%S", &tm);
  return fmt::format("{}.{:03d}", buf, t.nanos() / 1000000);
}

std::string peerText(const flow::Endpoint& e, const std::string& ip, uint32_t port) {
  std::string who = e.pod_name().empty() ? ip : e.namespace_() + "/" + e.pod_name();
  std::string p = port ? fmt::format(":{}", port) : "";
  // A reserved peer is named as Hubble names it: (world), (host), (remote-node).
  for (const auto& l : e.labels()) {
    if (e.pod_name().empty() && l.rfind("reserved:", 0) == 0) {
      return fmt::format("{}{} ({})", who, p, l.substr(9));
    }
  }
  return fmt::format("{}{} (ID:{})", who, p, e.identity());
}

std::string dropReasonText(uint32_t code) {
  // Cilium's descriptions of its drop reasons (pkg/monitor/api drop reasons), as hubble observe prints them.
  static const std::map<uint32_t, const char*> kText = {
      {130, "Invalid source mac"},
      {131, "Invalid destination mac"},
      {132, "Invalid source ip"},
      {133, "Policy denied"},
      {134, "Invalid packet"},
      {135, "CT: Truncated or invalid header"},
      {136, "Fragmentation needed"},
      {137, "CT: Unknown L4 protocol"},
      {138, "CT: Can't create entry from packet"},
      {139, "Unsupported L3 protocol"},
      {140, "Missed tail call"},
      {141, "Error writing to packet"},
      {142, "Unknown L4 protocol"},
      {143, "Unknown ICMPv4 code"},
      {144, "Unknown ICMPv4 type"},
      {151, "Stale or unroutable IP"},
      {155, "CT: Map insertion failed"},
      {158, "Service backend not found"},
      {160, "No tunnel/encapsulation endpoint (datapath BUG!)"},
      {167, "No mapping for NAT masquerade"},
      {168, "Unsupported protocol for NAT masquerade"},
      {169, "FIB lookup failed"},
      {171, "Invalid identity"},
      {177, "Denied by LB src range check"},
      {181, "Policy denied by denylist"},
      {191, "No nat map found"},
      {196, "TTL exceeded"},
  };
  auto it = kText.find(code);
  return it != kText.end() ? it->second : fmt::format("Unknown drop reason {}", code);
}

std::string observationPointText(flow::TraceObservationPoint p) {
  std::string what = flow::TraceObservationPoint_Name(p);
  if (p == flow::UNKNOWN_POINT || what.empty()) {
    return "unknown";
  }
  std::transform(what.begin(), what.end(), what.begin(),
                 [](unsigned char c) { return c == '_' ? '-' : static_cast<char>(std::tolower(c)); });
  return what;
}

std::string policyMatchText(uint32_t match) {
  // Cilium's PolicyMatchType names (pkg/monitor/api), numbered as the policy verdict event carries them.
  static const char* const kNames[] = {"none", "L3-Only", "L3-L4", "L4-Only", "all", "L3-Proto", "Proto-Only"};
  return match < std::size(kNames) ? kNames[match] : "unknown";
}

std::string flowTypeText(const flow::Flow& f) {
  constexpr int32_t kPolicyVerdict = 5;
  if (f.verdict() == flow::DROPPED) {
    uint32_t code = f.drop_reason_desc() != 0 ? static_cast<uint32_t>(f.drop_reason_desc()) : f.drop_reason();
    return dropReasonText(code);
  }
  if (f.event_type().type() == kPolicyVerdict || f.verdict() == flow::AUDIT) {
    return fmt::format("policy-verdict:{} {}", policyMatchText(f.policy_match_type()),
                       flow::TrafficDirection_Name(f.traffic_direction()));
  }
  return observationPointText(f.trace_observation_point());
}

namespace {

uint32_t sourcePort(const flow::Flow& f) {
  return f.l4().has_tcp()    ? f.l4().tcp().source_port()
         : f.l4().has_udp()  ? f.l4().udp().source_port()
         : f.l4().has_sctp() ? f.l4().sctp().source_port()
                             : 0;
}

uint32_t destinationPort(const flow::Flow& f) {
  return f.l4().has_tcp()    ? f.l4().tcp().destination_port()
         : f.l4().has_udp()  ? f.l4().udp().destination_port()
         : f.l4().has_sctp() ? f.l4().sctp().destination_port()
                             : 0;
}

// hubble observe's host names: "namespace/pod:port" or "ip:port".
std::string hostText(const flow::Endpoint& e, const std::string& ip, uint32_t port) {
  std::string who = e.pod_name().empty() ? ip : e.namespace_() + "/" + e.pod_name();
  return port ? fmt::format("{}:{}", who, port) : who;
}

}  // namespace

std::string compactText(const flow::Flow& f) {
  std::string src = peerText(f.source(), f.ip().source(), sourcePort(f));
  std::string dst = peerText(f.destination(), f.ip().destination(), destinationPort(f));
  // As Hubble: a reply is printed from the client's side with the arrow reversed; a trace names its point
  // ("to-endpoint"), a drop its reason ("Policy denied").
  bool reply = f.has_is_reply() && f.is_reply().value();
  std::string svc = f.has_destination_service() ? fmt::format(" via {}/{}", f.destination_service().namespace_(),
                                                              f.destination_service().name())
                                                : "";
  return fmt::format("{}: {} {} {} {}{} {} ({})", timeText(f.time(), false), reply ? dst : src, reply ? "<-" : "->",
                     reply ? src : dst, flowTypeText(f), svc, flow::Verdict_Name(f.verdict()), f.summary());
}

std::string dictText(const flow::Flow& f) {
  return fmt::format(
      "  TIMESTAMP: {}\n     SOURCE: {}\nDESTINATION: {}\n       TYPE: {}\n    VERDICT: {}\n    SUMMARY: {}\n",
      timeText(f.time(), false), hostText(f.source(), f.ip().source(), sourcePort(f)),
      hostText(f.destination(), f.ip().destination(), destinationPort(f)), flowTypeText(f),
      flow::Verdict_Name(f.verdict()), f.summary());
}

std::vector<std::string> tableRow(const flow::Flow& f) {
  return {timeText(f.time(), false),
          hostText(f.source(), f.ip().source(), sourcePort(f)),
          hostText(f.destination(), f.ip().destination(), destinationPort(f)),
          flowTypeText(f),
          flow::Verdict_Name(f.verdict()),
          f.summary()};
}

std::string jsonText(const observer::GetFlowsResponse& r, bool proto_names) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = proto_names;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(r, &out, opts);
  return out;
}

}  // namespace plexus::cli
