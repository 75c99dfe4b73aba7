// plexus status, plexus endpoint list|get.
#include <fmt/format.h>

#include "context.h"
#include "plexus/v1/daemon.grpc.pb.h"

namespace plexus::cli {

namespace {

int status(const Context& c) {
  auto stub = v1::Daemon::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::GetStatusResponse r;
  grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest{}, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.format() == Output::kJson) {
    std::cout << toJson(r).dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("Agent:       {} ({})\n", r.healthy() ? "Ok" : "Not ready", r.message());
  std::cout << fmt::format("Node:        {}   mode {}   version {}\n", r.node_name(), r.mode(), r.version());
  std::cout << fmt::format("BPF root:    {}\n", r.bpf_root());
  std::cout << fmt::format("Endpoints:   {}\n", r.endpoint_count());
  std::cout << fmt::format("IPAM:        {} used, {} free of {} in {}\n", r.ipam().used(), r.ipam().free(),
                           r.ipam().size(), r.ipam().cidr());
  std::cout << fmt::format("Routing:     {}   host routing {}   pod MTU {}\n", r.routing_mode(),
                           r.host_routing() ? "BPF" : "legacy", r.pod_mtu());
  std::string devices;
  for (const auto& d : r.devices()) {
    devices += (devices.empty() ? "" : ", ") + d;
  }
  std::cout << fmt::format("Devices:     {}\n", devices.empty() ? "none (NodePort from outside is off)" : devices);
  std::cout << fmt::format("Nodes:       {}/{} reachable   probes: {}\n", r.nodes_reachable(), r.nodes_total(),
                           r.health_probes());
  for (const auto& p : r.problems()) {
    std::cout << fmt::format("Problem:     {}\n", p);
  }
  std::cout << "Programs:\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : r.programs()) {
    rows.push_back({"  " + p.name(), std::to_string(p.id()), p.attach_point()});
  }
  std::cout << renderTable({"  NAME", "ID", "ATTACHED"}, rows);
  std::cout << "Maps:\n";
  rows.clear();
  for (const auto& m : r.maps()) {
    // Arrays always hold max_entries keys: their fill says nothing.
    bool array = m.type().find("array") != std::string::npos;
    double fill = m.max_entries() ? 100.0 * m.entries() / m.max_entries() : 0;
    rows.push_back({"  " + m.name(), m.type(), array ? "-" : std::to_string(m.entries()),
                    std::to_string(m.max_entries()), array ? "-" : fmt::format("{:.1f}%", fill)});
  }
  std::cout << renderTable({"  NAME", "TYPE", "ENTRIES", "MAX", "FILL"}, rows);
  return r.healthy() ? 0 : 1;
}

std::vector<std::string> endpointRow(const v1::Endpoint& e) {
  std::string pod = e.pod_name().empty() ? "-" : e.pod_namespace() + "/" + e.pod_name();
  return {std::to_string(e.id()), pod, e.ipv4(), std::to_string(e.identity()), e.host_ifname(),
          e.chained() ? "chained" : "veth", v1::EndpointState_Name(e.state()).substr(15)};
}

const std::vector<std::string> kEndpointHeader = {"ID", "POD", "IPV4", "IDENTITY", "HOST IF", "MODE", "STATE"};

int endpointList(const Context& c) {
  auto stub = v1::Daemon::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::ListEndpointsResponse r;
  grpc::Status s = stub->ListEndpoints(&ctx, v1::ListEndpointsRequest{}, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.format() == Output::kJson) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& e : r.endpoints()) {
      a.push_back(toJson(e));
    }
    std::cout << a.dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : r.endpoints()) {
    rows.push_back(endpointRow(e));
  }
  std::cout << renderTable(kEndpointHeader, rows);
  for (const auto& e : r.endpoints()) {
    if (!e.status().empty()) {
      std::cout << fmt::format("endpoint {}: {}\n", e.id(), e.status());
    }
  }
  return 0;
}

int endpointGet(const Context& c, const std::string& selector) {
  auto stub = v1::Daemon::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::GetEndpointRequest req;
  req.set_selector(selector);
  v1::Endpoint e;
  grpc::Status s = stub->GetEndpoint(&ctx, req, &e);
  if (!s.ok()) {
    return reportError(c, s);
  }
  auto pol = endpointPolicy(c, selector);
  if (c.format() == Output::kJson) {
    auto j = toJson(e);
    j["policy"] = pol.ok() ? toJson(*pol) : nlohmann::json{{"error", pol.error().message}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << renderTable(kEndpointHeader, {endpointRow(e)});
  if (!e.status().empty()) {
    std::cout << "status: " << e.status() << "\n";
  }
  std::cout << fmt::format("\ncontainer {}  ifname {}  netns {}\npod MAC {}  host MAC {}  host ifindex {}\n",
                           e.container_id(), e.ifname(), e.netns(), e.mac(), e.host_mac(), e.host_ifindex());
  if (e.labels_size() > 0) {
    std::cout << "labels:";
    for (const auto& l : e.labels()) {
      std::cout << " " << l;
    }
    std::cout << "\n";
  }
  if (pol.ok()) {
    printEndpointPolicy(*pol);
  } else {
    std::cout << "policy: " << pol.error().message << "\n";
  }
  return 0;
}

int nodeList(const Context& c) {
  auto stub = v1::Daemon::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::ListNodesResponse r;
  grpc::Status s = stub->ListNodes(&ctx, v1::ListNodesRequest{}, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.format() == Output::kJson) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& n : r.nodes()) {
      a.push_back(toJson(n));
    }
    std::cout << a.dump(2) << "\n";
    return 0;
  }
  auto join = [](const auto& list) {
    std::string out;
    for (const auto& x : list) {
      out += (out.empty() ? "" : ",") + x;
    }
    return out.empty() ? std::string("-") : out;
  };
  // One probe's cell: "ok 0.21ms", "failed" (the HEALTH column says why), or "-" (self, not probed).
  auto probe = [](bool has, const v1::NodeProbe& p) {
    return !has ? std::string("-") : p.ok() ? fmt::format("ok {:.2f}ms", p.rtt_ms()) : std::string("failed");
  };
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : r.nodes()) {
    rows.push_back({n.name() + (n.self() ? " (self)" : ""), join(n.addresses()), join(n.pod_cidrs()),
                    probe(n.has_icmp(), n.icmp()), probe(n.has_tcp(), n.tcp()), n.reachable() ? "yes" : "no",
                    n.health()});
  }
  std::cout << renderTable({"NAME", "ADDRESSES", "POD CIDRS", "ICMP", "TCP", "REACHABLE", "HEALTH"}, rows);
  return 0;
}

CLI::Option* outputFlag(CLI::App* cmd, Context& ctx) {
  return cmd->add_option("-o,--output", ctx.output, "table or json")->check(CLI::IsMember({"table", "json"}));
}

}  // namespace

void addStatusCommands(CLI::App& app, Context& ctx, int& rc) {
  auto* st = app.add_subcommand("status", "agent health, programs, maps and their fill, endpoints, IPAM");
  outputFlag(st, ctx);
  st->callback([&] { rc = status(ctx); });

  auto* ep = app.add_subcommand("endpoint", "endpoints managed by the agent");
  ep->require_subcommand(1);
  auto* list = ep->add_subcommand("list", "list endpoints");
  outputFlag(list, ctx);
  list->callback([&] { rc = endpointList(ctx); });
  auto* get = ep->add_subcommand("get", "one endpoint by id, container id, namespace/pod or IP");
  static std::string selector;
  get->add_option("selector", selector, "endpoint id, container id, namespace/pod or IP")->required();
  outputFlag(get, ctx);
  get->callback([&] { rc = endpointGet(ctx, selector); });

  auto* node = app.add_subcommand("node", "the cluster's nodes as this agent knows them");
  node->require_subcommand(1);
  auto* nlist = node->add_subcommand("list", "nodes: addresses, pod CIDRs, reachability (ICMP and TCP health probes)");
  outputFlag(nlist, ctx);
  nlist->callback([&] { rc = nodeList(ctx); });
}

}  // namespace plexus::cli
