// plexus observe: recent and live flows, with hubble observe's flags and output habits. It asks the agent's
// Hubble API (observer.Observer, also served on the main socket) exactly as hubble observe would, so the flows and
// -o json are Hubble's own.
#include <ctime>

#include <fmt/format.h>

#include "context.h"
#include "observer/observer.grpc.pb.h"
#include "plexus/cli/hubble_request.h"
#include "plexus/cli/since.h"

namespace plexus::cli {

namespace {

// The flags as hubble observe reads them: every filter flag goes into `filter`, or, right after --not, into a
// filter of its own in `deny`; hubbleFilters() turns each into Hubble's filters. The agent matches (flow_store.h).
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
bool buildRequest(ObserveArgs& a, observer::GetFlowsRequest* req) {
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
  std::string error;
  std::vector<flow::FlowFilter> allow;
  if (!hubbleFilters(a.filter, &allow, &error)) {
    std::cerr << "error: " << error << "\n";
    return false;
  }
  // A filter with no flag matches every flow: no whitelist at all.
  if (!(allow.size() == 1 && allow[0].ByteSizeLong() == 0)) {
    for (auto& f : allow) {
      *req->add_whitelist() = std::move(f);
    }
  }
  for (const auto& d : a.deny) {
    std::vector<flow::FlowFilter> deny;
    if (!hubbleFilters(d, &deny, &error)) {
      std::cerr << "error: " << error << "\n";
      return false;
    }
    for (auto& f : deny) {
      *req->add_blacklist() = std::move(f);
    }
  }
  auto stamp = [](int64_t ns, google::protobuf::Timestamp* t) {
    t->set_seconds(ns / 1000000000);
    t->set_nanos(static_cast<int32_t>(ns % 1000000000));
  };
  if (!a.since.empty()) {
    stamp(since, req->mutable_since());
  }
  if (!a.until.empty()) {
    stamp(until, req->mutable_until());
  }
  req->set_follow(a.follow);
  if (has_first) {
    req->set_number(a.first);
    req->set_first(true);
  } else if (a.all) {
    req->set_number(UINT64_MAX);  // as hubble observe --all: every stored flow
  } else if (has_last) {
    req->set_number(a.last);  // --last 0 -f: only new flows
  } else if (!a.since.empty() || !a.until.empty()) {
    req->set_number(0);
  } else if (!a.follow) {
    req->set_number(kDefaultLast);
  }
  return true;
}

int observe(const Context& c, ObserveArgs& a) {
  observer::GetFlowsRequest req;
  if (!buildRequest(a, &req)) {
    return 1;
  }
  auto stub = observer::Observer::NewStub(c.channel());
  grpc::ClientContext ctx;
  if (!a.follow) {
    c.deadline(&ctx);
  }
  auto reader = stub->GetFlows(&ctx, req);
  observer::GetFlowsResponse r;
  std::vector<std::vector<std::string>> rows;
  const std::string& form = c.out.text_form;
  size_t printed = 0;
  while (reader->Read(&r)) {
    if (c.structured() || form == "jsonpb") {
      if (c.out.kind == Output::kJson || form == "jsonpb") {
        std::cout << jsonText(r, c.out.kind == Output::kJson) << std::endl;
        continue;
      }
      // yaml and jsonpath: each response on its own, as the json form prints one per line.
      auto doc = nlohmann::json::parse(jsonText(r, true), nullptr, false);
      if (c.out.kind == Output::kYaml && printed++ > 0) {
        std::cout << "---\n";
      }
      if (printDocument(c, doc) != 0) {
        return 1;
      }
      std::cout << std::flush;
      continue;
    }
    if (r.has_lost_events()) {
      // As hubble observe: a gap in the stream is printed where it happened.
      std::cout << fmt::format("EVENTS LOST: {} {}", flow::LostEventSource_Name(r.lost_events().source()),
                               r.lost_events().num_events_lost())
                << std::endl;
      continue;
    }
    if (!r.has_flow()) {
      continue;
    }
    const flow::Flow& f = r.flow();
    if (form == "table") {
      rows.push_back(tableRow(f));
    } else if (form == "dict") {
      // As hubble observe -o dict: a separator line between flows.
      std::cout << (printed++ > 0 ? "------------\n" : "") << dictText(f) << std::flush;
    } else {
      std::cout << compactText(f) << std::endl;
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (form == "table") {
    std::cout << renderTable({"TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"}, rows);
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
  // hubble observe's forms: compact (default), dict, jsonpb (lowerCamelCase), table; json is Hubble's own
  // (the .proto's field names, one response per line); yaml and jsonpath= take each response alike.
  outputOption(o, ctx, {"compact", "dict", "jsonpb", "table"});
  o->callback([&] { rc = observe(ctx, a); });
}

}  // namespace plexus::cli
