// plexus observe: recent and live flows, with hubble observe's flags and output habits.
#include <ctime>

#include <fmt/format.h>

#include "context.h"
#include "plexus/cli/since.h"
#include "plexus/v1/flows.grpc.pb.h"

namespace plexus::cli {

namespace {

// The flags as hubble observe reads them: every filter flag goes into `filter`, or, right after --not, into a
// filter of its own in `deny`. The agent matches; the CLI only carries the flags (flow_store.h).
struct ObserveArgs {
  v1::FlowFilter filter;
  std::vector<v1::FlowFilter> deny;
  bool negate_next = false;
  uint32_t last = 20;
  uint32_t first = 0;
  bool follow = false;
  bool all = false;
  std::string since;
  std::string until;
  std::string output = "compact";
  CLI::Option* last_flag = nullptr;
  CLI::Option* first_flag = nullptr;

  v1::FlowFilter* target() {
    if (!negate_next) {
      return &filter;
    }
    negate_next = false;
    deny.emplace_back();
    return &deny.back();
  }
};

constexpr uint32_t kDefaultLast = 20;  // hubble observe without --last, --since or --follow

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

// --since/--until: a duration ago or an RFC 3339 time.
bool timeFlag(const std::string& name, const std::string& text, int64_t* out) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  if (!parseSince(text, static_cast<int64_t>(now.tv_sec), out)) {
    std::cerr << "error: " << name << " " << text
              << ": use a duration (30s, 5m, 1h30m) or an RFC 3339 time (2006-01-02T15:04:05Z)\n";
    return false;
  }
  return true;
}

// Which stored flows to send, as hubble observe chooses: --first N, --last N, --all; else every match of a
// --since/--until window; else with --follow none (only new flows); else the last 20.
bool buildRequest(ObserveArgs& a, v1::GetFlowsRequest* req) {
  if (a.negate_next) {
    std::cerr << "error: --not must be followed by a filter flag (--not --pod web)\n";
    return false;
  }
  bool has_last = a.last_flag && a.last_flag->count() > 0;
  bool has_first = a.first_flag && a.first_flag->count() > 0;
  if (has_first && (has_last || a.all)) {
    std::cerr << "error: --first cannot be combined with --last or --all\n";
    return false;
  }
  if (has_first && a.follow) {
    std::cerr << "error: --first cannot be combined with --follow\n";
    return false;
  }
  if (!a.until.empty() && a.follow) {
    std::cerr << "error: --until cannot be combined with --follow\n";
    return false;
  }
  int64_t since = 0;
  int64_t until = 0;
  if (!a.since.empty() && !timeFlag("--since", a.since, &since)) {
    return false;
  }
  if (!a.until.empty() && !timeFlag("--until", a.until, &until)) {
    return false;
  }
  a.filter.set_since_unix_nano(since);
  a.filter.set_until_unix_nano(until);
  *req->mutable_filter() = a.filter;
  for (const auto& d : a.deny) {
    *req->add_deny() = d;
  }
  req->set_follow(a.follow);
  if (has_first) {
    req->set_first(a.first);
  } else if (a.all) {
    req->set_last(0);
  } else if (has_last) {
    req->set_last(a.last);
    req->set_only_new(a.follow && a.last == 0);
  } else if (!a.since.empty() || !a.until.empty()) {
    req->set_last(0);
  } else if (a.follow) {
    req->set_only_new(true);
  } else {
    req->set_last(kDefaultLast);
  }
  return true;
}

int observe(const Context& c, ObserveArgs& a) {
  v1::GetFlowsRequest req;
  if (!buildRequest(a, &req)) {
    return 1;
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
  // Each occurrence is applied as it is parsed, so --not reaches exactly the next filter flag.
  auto text = [&](const std::string& names, const std::string& help, auto add) {
    o->add_option_function<std::string>(names, [add](const std::string& v) { add(a.target(), v); }, help)
        ->trigger_on_parse();
  };
  auto number = [&](const std::string& names, const std::string& help, auto add) {
    o->add_option_function<uint32_t>(names, [add](const uint32_t& v) { add(a.target(), v); }, help)
        ->trigger_on_parse();
  };
  using F = v1::FlowFilter*;
  using S = const std::string&;
  text("-n,--namespace", "flows from or to pods in this namespace", [](F f, S v) { f->add_namespace_(v); });
  text("--from-namespace", "flows from pods in this namespace", [](F f, S v) { f->add_from_namespace(v); });
  text("--to-namespace", "flows to pods in this namespace", [](F f, S v) { f->add_to_namespace(v); });
  text("--pod", "flows from or to pods named [namespace/]prefix (namespace default; ns/ for all)",
       [](F f, S v) { f->add_pod(v); });
  text("--from-pod", "flows from pods named [namespace/]prefix", [](F f, S v) { f->add_from_pod(v); });
  text("--to-pod", "flows to pods named [namespace/]prefix", [](F f, S v) { f->add_to_pod(v); });
  text("-l,--label", "flows from or to endpoints matching a label selector (app=web, 'tier in (a,b)', !key)",
       [](F f, S v) { f->add_label(v); });
  text("--from-label", "flows from endpoints matching a label selector", [](F f, S v) { f->add_from_label(v); });
  text("--to-label", "flows to endpoints matching a label selector", [](F f, S v) { f->add_to_label(v); });
  number("--identity", "flows from or to this security identity", [](F f, uint32_t v) { f->add_identity(v); });
  number("--from-identity", "flows from this security identity", [](F f, uint32_t v) { f->add_from_identity(v); });
  number("--to-identity", "flows to this security identity", [](F f, uint32_t v) { f->add_to_identity(v); });
  text("--ip", "flows from or to this IP or CIDR", [](F f, S v) { f->add_ip(v); });
  text("--from-ip", "flows from this IP or CIDR", [](F f, S v) { f->add_from_ip(v); });
  text("--to-ip", "flows to this IP or CIDR", [](F f, S v) { f->add_to_ip(v); });
  number("--port", "flows from or to this port", [](F f, uint32_t v) { f->add_port(v); });
  number("--from-port", "flows from this port", [](F f, uint32_t v) { f->add_from_port(v); });
  number("--to-port", "flows to this port", [](F f, uint32_t v) { f->add_to_port(v); });
  text("--verdict", "FORWARDED, DROPPED or TRANSLATED", [](F f, S v) { f->add_verdict(v); });
  text("--protocol", "TCP, UDP, ICMP or SCTP", [](F f, S v) { f->add_protocol(v); });
  text("-t,--type", "event type: trace, drop or policy-verdict", [](F f, S v) { f->add_event_type(v); });
  text("--tcp-flags", "TCP flags that must all be set (SYN,ACK); repeat for either", [](F f, S v) { f->add_tcp_flags(v); });
  text("--node-name", "flows seen by this node (a name or a pattern with *)", [](F f, S v) { f->add_node_name(v); });
  o->add_flag_callback("--not", [] { a.negate_next = true; }, "negate the next filter flag (--not --pod web)")
      ->trigger_on_parse();
  a.last_flag = o->add_option("--last", a.last, "the last N matching flows (default 20 without --since or -f)");
  a.first_flag = o->add_option("--first", a.first, "the first (oldest) N matching flows");
  o->add_flag("--all", a.all, "every stored flow");
  o->add_flag("-f,--follow", a.follow, "stream new flows (with --last or --since, stored ones first)");
  o->add_option("--since", a.since, "flows since a duration ago (5m, 1h30m) or a time (2006-01-02T15:04:05Z)");
  o->add_option("--until", a.until, "flows until a duration ago (5m) or a time (2006-01-02T15:04:05Z)");
  o->add_option("-o,--output", a.output, "compact, json or table")
      ->check(CLI::IsMember({"compact", "json", "jsonpb", "table"}));
  o->callback([&] { rc = observe(ctx, a); });
}

}  // namespace plexus::cli
