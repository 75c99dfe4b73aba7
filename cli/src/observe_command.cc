// plexus observe: recent and live flows, with hubble observe's flags and output habits.
#include <ctime>

#include <fmt/format.h>

#include "context.h"
#include "plexus/cli/since.h"
#include "plexus/v1/flows.grpc.pb.h"

namespace plexus::cli {

namespace {

struct ObserveArgs {
  std::vector<std::string> namespaces, pods, from_pods, to_pods, labels, ips, verdicts, protocols;
  std::vector<uint32_t> identities, ports;
  uint32_t last = 20;
  bool follow = false;
  bool all = false;
  std::string since;
  std::string output = "compact";
};

std::string timeText(int64_t ns, bool rfc3339) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  if (rfc3339) {
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    return fmt::format("{}.{:09d}Z", buf, ns % 1000000000);
  }
  strftime(buf, sizeof(buf), "%b %e %H:%M:%S", &tm);
  return fmt::format("{}.{:03d}", buf, (ns / 1000000) % 1000);
}

std::vector<std::string> tcpFlags(uint32_t f) {
  std::vector<std::string> out;
  static const std::pair<uint32_t, const char*> kFlags[] = {{0x02, "SYN"}, {0x10, "ACK"}, {0x01, "FIN"},
                                                            {0x04, "RST"}, {0x08, "PSH"}, {0x20, "URG"}};
  for (const auto& [bit, name] : kFlags) {
    if (f & bit) {
      out.push_back(name);
    }
  }
  return out;
}

std::string peerText(const v1::FlowEndpoint& e) {
  std::string who = e.pod_name().empty() ? e.ip() : e.namespace_() + "/" + e.pod_name();
  std::string port = e.port() ? fmt::format(":{}", e.port()) : "";
  return fmt::format("{}{} (ID:{})", who, port, e.identity());
}

nlohmann::json peerJson(const v1::FlowEndpoint& e) {
  nlohmann::json j = {{"identity", e.identity()}, {"labels", std::vector<std::string>(e.labels().begin(), e.labels().end())}};
  if (!e.pod_name().empty()) {
    j["namespace"] = e.namespace_();
    j["pod_name"] = e.pod_name();
  }
  if (e.endpoint_id()) {
    j["ID"] = e.endpoint_id();
  }
  return j;
}

// The shape of `hubble observe -o json`: {"flow": {...}, "node_name": ..., "time": ...}.
nlohmann::json flowJson(const v1::Flow& f) {
  std::string time = timeText(f.time_unix_nano(), true);
  nlohmann::json flow = {{"time", time},
                         {"verdict", f.verdict()},
                         {"IP", {{"source", f.source().ip()}, {"destination", f.destination().ip()}, {"ipVersion", "IPv4"}}},
                         {"source", peerJson(f.source())},
                         {"destination", peerJson(f.destination())},
                         {"traffic_direction", f.traffic_direction()},
                         {"is_reply", f.is_reply()},
                         {"node_name", f.node_name()},
                         {"Type", "L3_L4"}};
  if (f.verdict() == "DROPPED") {
    flow["drop_reason"] = f.drop_reason();
    flow["drop_reason_desc"] = f.drop_reason_desc();
  }
  if (f.protocol() == "TCP" || f.protocol() == "UDP" || f.protocol() == "SCTP") {
    nlohmann::json l4 = {{"source_port", f.source().port()}, {"destination_port", f.destination().port()}};
    if (f.protocol() == "TCP") {
      nlohmann::json flags = nlohmann::json::object();
      for (const auto& name : tcpFlags(f.tcp_flags())) {
        flags[name] = true;
      }
      l4["flags"] = flags;
    }
    flow["l4"] = {{f.protocol(), l4}};
  } else if (f.protocol() == "ICMP") {
    flow["l4"] = {{"ICMPv4", nlohmann::json::object()}};
  }
  if (!f.service().empty() || !f.service_frontend().empty()) {
    auto slash = f.service().find('/');
    flow["destination_service"] = {{"name", slash == std::string::npos ? f.service() : f.service().substr(slash + 1)},
                                   {"namespace", slash == std::string::npos ? "" : f.service().substr(0, slash)},
                                   {"frontend", f.service_frontend()}};
  }
  return {{"flow", flow}, {"node_name", f.node_name()}, {"time", time}};
}

std::string compact(const v1::Flow& f) {
  std::string verdict = f.verdict();
  std::string what = f.verdict() == "DROPPED" ? f.drop_reason_desc() + " DROPPED" : verdict;
  std::string flags;
  if (f.protocol() == "TCP") {
    auto names = tcpFlags(f.tcp_flags());
    std::string joined;
    for (const auto& n : names) {
      joined += (joined.empty() ? "" : ", ") + n;
    }
    flags = fmt::format(" (TCP Flags: {})", joined);
  } else {
    flags = fmt::format(" ({})", f.protocol());
  }
  std::string svc = f.service_frontend().empty() ? "" : fmt::format(" via {}", f.service().empty() ? f.service_frontend() : f.service());
  // Like Hubble: a reply is printed from the client's side with the arrow reversed.
  const auto& left = f.is_reply() ? f.destination() : f.source();
  const auto& right = f.is_reply() ? f.source() : f.destination();
  return fmt::format("{}: {} {} {} {}{} {}{}", timeText(f.time_unix_nano(), false), peerText(left),
                     f.is_reply() ? "<-" : "->", peerText(right), f.traffic_direction(), svc, what, flags);
}

int observe(const Context& c, const ObserveArgs& a) {
  v1::GetFlowsRequest req;
  req.set_last(a.all ? 0 : a.last);
  req.set_follow(a.follow);
  auto* f = req.mutable_filter();
  for (const auto& v : a.namespaces) f->add_namespace_(v);
  for (const auto& v : a.pods) f->add_pod(v);
  for (const auto& v : a.from_pods) f->add_from_pod(v);
  for (const auto& v : a.to_pods) f->add_to_pod(v);
  for (const auto& v : a.labels) f->add_label(v);
  for (const auto& v : a.ips) f->add_ip(v);
  for (const auto& v : a.verdicts) f->add_verdict(v);
  for (const auto& v : a.protocols) f->add_protocol(v);
  for (auto v : a.identities) f->add_identity(v);
  for (auto v : a.ports) f->add_port(v);
  if (!a.since.empty()) {
    int64_t since = 0;
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    if (!parseSince(a.since, static_cast<int64_t>(now.tv_sec), &since)) {
      std::cerr << "error: --since " << a.since << ": use a duration (30s, 5m, 2h) or 2006-01-02T15:04:05Z\n";
      return 1;
    }
    f->set_since_unix_nano(since);
  }
  auto stub = v1::Observer::NewStub(c.channel());
  grpc::ClientContext ctx;
  if (!a.follow) {
    c.deadline(&ctx);
  }
  auto reader = stub->GetFlows(&ctx, req);
  v1::GetFlowsResponse r;
  std::vector<std::vector<std::string>> rows;
  while (reader->Read(&r)) {
    const auto& flow = r.flow();
    if (a.output == "json" || a.output == "jsonpb") {
      std::cout << flowJson(flow).dump() << std::endl;
    } else if (a.output == "table") {
      rows.push_back({timeText(flow.time_unix_nano(), false), peerText(flow.source()), peerText(flow.destination()),
                      flow.traffic_direction(), flow.protocol(), flow.verdict(), flow.drop_reason_desc()});
    } else {
      std::cout << compact(flow) << std::endl;
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (a.output == "table") {
    std::cout << renderTable({"TIMESTAMP", "SOURCE", "DESTINATION", "DIRECTION", "PROTOCOL", "VERDICT", "REASON"}, rows);
  }
  return 0;
}

}  // namespace

void addObserveCommand(CLI::App& app, Context& ctx, int& rc) {
  static ObserveArgs a;
  auto* o = app.add_subcommand("observe", "show flows (like hubble observe)");
  o->add_option("-n,--namespace", a.namespaces, "flows from or to this namespace");
  o->add_option("--pod", a.pods, "flows from or to this pod ([namespace/]name)");
  o->add_option("--from-pod", a.from_pods, "flows from this pod");
  o->add_option("--to-pod", a.to_pods, "flows to this pod");
  o->add_option("-l,--label", a.labels, "flows from or to endpoints with this label (key or key=value)");
  o->add_option("--identity", a.identities, "flows from or to this security identity");
  o->add_option("--ip", a.ips, "flows from or to this IP");
  o->add_option("--verdict", a.verdicts, "FORWARDED, DROPPED or TRANSLATED");
  o->add_option("--protocol", a.protocols, "TCP, UDP, ICMP or SCTP");
  o->add_option("--port", a.ports, "flows from or to this port");
  o->add_option("--last", a.last, "the last N flows (default 20)");
  o->add_flag("--all", a.all, "every stored flow");
  o->add_flag("-f,--follow", a.follow, "keep streaming new flows");
  o->add_option("--since", a.since, "flows since a duration ago (30s, 5m) or a time (2006-01-02T15:04:05Z)");
  o->add_option("-o,--output", a.output, "compact, json or table")
      ->check(CLI::IsMember({"compact", "json", "jsonpb", "table"}));
  o->callback([&] { rc = observe(ctx, a); });
}

}  // namespace plexus::cli
