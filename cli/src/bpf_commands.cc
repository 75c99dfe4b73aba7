// plexus bpf <map> list: the kernel's maps, decoded by the agent.
#include "context.h"
#include "plexus/v1/daemon.grpc.pb.h"

namespace plexus::cli {

namespace {

int dump(const Context& c, v1::BpfMap which, const std::string& endpoint) {
  auto stub = v1::Daemon::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::DumpBpfMapRequest req;
  req.set_map(which);
  req.set_endpoint(endpoint);
  v1::DumpBpfMapResponse r;
  grpc::Status s = stub->DumpBpfMap(&ctx, req, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  std::vector<std::string> header(r.key_columns().begin(), r.key_columns().end());
  header.insert(header.end(), r.value_columns().begin(), r.value_columns().end());
  std::vector<std::vector<std::string>> rows;
  for (const auto& row : r.rows()) {
    std::vector<std::string> cells(row.key().begin(), row.key().end());
    cells.insert(cells.end(), row.value().begin(), row.value().end());
    rows.push_back(cells);
  }
  if (c.structured()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& cells : rows) {
      nlohmann::json o = nlohmann::json::object();
      for (size_t i = 0; i < header.size() && i < cells.size(); ++i) {
        o[header[i]] = cellJson(cells[i]);
      }
      a.push_back(o);
    }
    return printDocument(c, a);
  }
  std::vector<std::string> upper;
  for (auto h : header) {
    for (auto& ch : h) {
      ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
    upper.push_back(h);
  }
  std::cout << renderTable(upper, rows);
  return 0;
}

}  // namespace

void addBpfCommands(CLI::App& app, Context& ctx, int& rc) {
  auto* bpf = app.add_subcommand("bpf", "the datapath's BPF maps as the kernel holds them");
  bpf->require_subcommand(1);
  struct Entry {
    const char* name;
    const char* help;
    v1::BpfMap map;
  };
  static const Entry kMaps[] = {
      {"endpoint", "local endpoints (plexus_endpoints_v1)", v1::BPF_MAP_ENDPOINTS},
      {"ipcache", "prefix to identity (plexus_ipcache_v1)", v1::BPF_MAP_IPCACHE},
      {"metrics", "forward/drop counters by reason and direction (plexus_metrics_v1)", v1::BPF_MAP_METRICS},
      {"lb", "service frontends and backend slots (plexus_lb4_services_v1)", v1::BPF_MAP_LB_SERVICES},
      {"backends", "service backends (plexus_lb4_backends_v1)", v1::BPF_MAP_LB_BACKENDS},
      {"lb-source-range", "LoadBalancer source ranges by frontend (plexus_lb4_source_range_v1)",
       v1::BPF_MAP_LB_SOURCE_RANGE},
      {"ct", "connection tracking (plexus_ct4_v2)", v1::BPF_MAP_CONNTRACK},
      {"nat", "masquerade translations (plexus_snat4_v1)", v1::BPF_MAP_NAT},
      {"policy", "an endpoint's policy hash (plexus_policy_v3); needs --endpoint",
       v1::BPF_MAP_POLICY},
  };
  static std::string endpoint;
  for (const auto& e : kMaps) {
    auto* group = bpf->add_subcommand(e.name, e.help);
    group->require_subcommand(1);
    auto* list = group->add_subcommand("list", std::string("list ") + e.help);
    outputOption(list, ctx);
    if (e.map == v1::BPF_MAP_POLICY) {
      list->add_option("--endpoint", endpoint, "endpoint id")->required();
    }
    if (e.map == v1::BPF_MAP_CONNTRACK) {
      // cilium-dbg's `bpf ct list global`: there is one conntrack map, the global one.
      static std::string scope;
      list->add_option("scope", scope, "global (cilium-dbg's form; the only conntrack map)")
          ->check(CLI::IsMember({"global"}));
    }
    v1::BpfMap which = e.map;
    list->callback([&ctx, &rc, which] { rc = dump(ctx, which, endpoint); });
    if (e.map == v1::BPF_MAP_POLICY) {
      auto* get = group->add_subcommand("get", "one endpoint's policy map as the kernel holds it");
      get->add_option("endpoint", endpoint, "endpoint id")->required();
      outputOption(get, ctx);
      get->callback([&ctx, &rc] { rc = dump(ctx, v1::BPF_MAP_POLICY, endpoint); });
    }
  }
}

}  // namespace plexus::cli
