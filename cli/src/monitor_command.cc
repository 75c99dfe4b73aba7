// plexus monitor: live datapath events as cilium-dbg monitor prints them. The events come from the agent's
// Hubble API (GetFlows with follow, only new flows); monitor_format.h turns each flow into drop, trace and
// policy-verdict events.
#include <set>

#include <fmt/format.h>

#include "context.h"
#include "observer/observer.grpc.pb.h"
#include "plexus/cli/monitor_format.h"

namespace plexus::cli {

namespace {

struct MonitorArgs {
  std::vector<std::string> types;
  std::vector<uint32_t> related_to;
  std::vector<uint32_t> from;
  std::vector<uint32_t> to;
  bool verbose = false;
};

// cilium monitor's endpoint filters: --from (source), --to (destination), --related-to (either).
bool wanted(const MonitorArgs& a, const flow::Flow& f) {
  auto has = [](const std::vector<uint32_t>& ids, uint32_t id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
  };
  if (!a.from.empty() && !has(a.from, f.source().id())) {
    return false;
  }
  if (!a.to.empty() && !has(a.to, f.destination().id())) {
    return false;
  }
  return a.related_to.empty() || has(a.related_to, f.source().id()) || has(a.related_to, f.destination().id());
}

int monitor(const Context& c, const MonitorArgs& a) {
  std::set<MonitorType> types;
  for (const auto& t : a.types) {
    MonitorType m;
    if (!parseMonitorType(t, &m)) {
      std::cerr << fmt::format("error: --type {:?}: use drop, trace or policy-verdict\n", t);
      return 1;
    }
    types.insert(m);
  }
  observer::GetFlowsRequest req;
  req.set_follow(true);
  req.set_number(0);  // only events from now on, as cilium monitor
  auto stub = observer::Observer::NewStub(c.channel());
  grpc::ClientContext ctx;
  auto reader = stub->GetFlows(&ctx, req);
  if (!c.structured()) {
    std::cout << fmt::format("Listening for events on {}\nPress Ctrl-C to quit", c.socket) << std::endl;
  }
  observer::GetFlowsResponse r;
  bool first = true;
  while (reader->Read(&r)) {
    if (r.has_lost_events()) {
      if (!c.structured()) {
        std::cout << fmt::format("Lost {} events", r.lost_events().num_events_lost()) << std::endl;
      }
      continue;
    }
    if (!r.has_flow() || !wanted(a, r.flow())) {
      continue;
    }
    for (const auto& e : monitorEvents(r.flow())) {
      if (!types.empty() && types.count(e.type) == 0) {
        continue;
      }
      if (!c.structured()) {
        std::cout << monitorText(e, a.verbose) << std::flush;
        continue;
      }
      if (c.out.kind == Output::kJson) {
        std::cout << monitorJson(e).dump() << std::endl;  // one event per line, as cilium monitor -j
        continue;
      }
      if (c.out.kind == Output::kYaml) {
        std::cout << (first ? "" : "---\n");
      }
      first = false;
      if (printDocument(c, monitorJson(e)) != 0) {
        return 1;
      }
      std::cout << std::flush;
    }
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? 0 : reportError(c, s);
}

}  // namespace

void addMonitorCommand(CLI::App& app, Context& ctx, int& rc) {
  static MonitorArgs a;
  auto* m = app.add_subcommand("monitor", "live datapath events: drops, traces, policy verdicts (cilium-dbg monitor)");
  m->add_option("-t,--type", a.types, "only events of these types: drop, trace, policy-verdict (repeatable)")
      ->check(CLI::IsMember(kMonitorTypes));
  m->add_option("--related-to", a.related_to, "only events from or to this endpoint id (repeatable)");
  m->add_option("--from", a.from, "only events from this endpoint id (repeatable)");
  m->add_option("--to", a.to, "only events to this endpoint id (repeatable)");
  m->add_flag("-v,--verbose", a.verbose, "each event with its time, node, interface, peers and labels");
  outputOption(m, ctx, {"text"});
  m->callback([&] { rc = monitor(ctx, a); });
}

}  // namespace plexus::cli
