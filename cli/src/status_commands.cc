// plexus status, plexus endpoint list|get.
#include <fmt/format.h>

#include "context.h"
#include "plexus/v1/daemon.grpc.pb.h"

namespace plexus::cli {

namespace {

// One status line as cilium-dbg status aligns them: the label in 25 columns, then the value.
void line(const std::string& label, const std::string& value) {
  std::cout << fmt::format("{:<25}{}\n", label + ":", value);
}

std::string joined(const google::protobuf::RepeatedPtrField<std::string>& list, const std::string& sep = ", ") {
  std::string out;
  for (const auto& x : list) {
    out += (out.empty() ? "" : sep) + x;
  }
  return out;
}

std::string upperFirst(std::string s) {
  if (!s.empty()) {
    s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  }
  return s;
}

std::string kubernetesText(const v1::KubernetesStatus& k) {
  if (!k.enabled()) {
    return "Disabled";
  }
  std::string out =
      fmt::format("{}   {}   {}/{} resources synced", k.state(), k.api_server(), k.resources_synced(), k.resources());
  return k.message().empty() ? out : out + "   (" + k.message() + ")";
}

std::string kprText(const v1::KubeProxyReplacementStatus& k) {
  if (!k.enabled()) {
    return "False";
  }
  return k.devices().empty() ? "True" : fmt::format("True   [{}]", joined(k.devices()));
}

std::string routingText(const v1::GetStatusResponse& r) {
  bool tunnel = !r.tunnel_protocol().empty() || r.routing_mode().rfind("tunnel", 0) == 0;
  std::string protocol = r.tunnel_protocol().empty() ? "vxlan" : r.tunnel_protocol();
  return fmt::format("Network: {}   Host: {}", tunnel ? "Tunnel [" + protocol + "]" : std::string("Native"),
                     r.host_routing() ? "BPF" : "Legacy");
}

std::string masqueradingText(const v1::GetStatusResponse& r) {
  const auto& m = r.masquerading();
  if (!m.enabled()) {
    return "Disabled";
  }
  std::string out = m.mode();
  if (!r.devices().empty()) {
    out += "   [" + joined(r.devices()) + "]";
  }
  return m.native_routing_cidr().empty() ? out : out + "   " + m.native_routing_cidr();
}

std::string hubbleText(const v1::HubbleStatus& h) {
  if (!h.enabled()) {
    return "Disabled";
  }
  double fill = h.max_flows() ? 100.0 * static_cast<double>(h.current_flows()) / static_cast<double>(h.max_flows()) : 0;
  return fmt::format("Ok   Current/Max Flows: {}/{} ({:.2f}%), Flows/s: {:.2f}   Socket: {}{}", h.current_flows(),
                     h.max_flows(), fill, h.flows_per_second(), h.socket_path(),
                     h.listen_address().empty() ? "" : "   Listen: " + h.listen_address());
}

// cilium-dbg status --verbose's "KubeProxyReplacement Details".
void kprDetails(const v1::KubeProxyReplacementStatus& k) {
  auto enabled = [](bool on) { return on ? "Enabled" : "Disabled"; };
  std::cout << "KubeProxyReplacement Details:\n";
  auto detail = [](const std::string& label, const std::string& value) {
    std::cout << fmt::format("  {:<23}{}\n", label + ":", value);
  };
  detail("Status", k.enabled() ? "True" : "False");
  detail("Socket LB", enabled(k.socket_lb()));
  detail("Devices", k.devices().empty() ? "none" : joined(k.devices()));
  std::string mode = k.mode() == "snat"     ? "SNAT"
                     : k.mode() == "dsr"    ? "DSR"
                     : k.mode() == "hybrid" ? "Hybrid"
                                            : k.mode();
  detail("Mode", k.dsr_dispatch().empty() ? mode : fmt::format("{} (dispatch {})", mode, k.dsr_dispatch()));
  detail("Backend Selection", k.algorithm() == "maglev" ? fmt::format("Maglev (Table Size: {})", k.maglev_table_size())
                                                        : upperFirst(k.algorithm()));
  detail("Host Routing", k.host_routing() ? "BPF" : "Legacy");
  std::cout << "  Services:\n";
  for (const char* s : {"ClusterIP", "NodePort", "LoadBalancer", "externalIPs"}) {
    std::cout << fmt::format("  - {:<14}{}\n", std::string(s) + ":", enabled(k.enabled()));
  }
}

int status(const Context& c, bool verbose) {
  auto stub = v1::Daemon::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::GetStatusResponse r;
  grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest{}, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.structured()) {
    return printDocument(c, toJson(r));
  }
  line("Plexus", fmt::format("{}   {}   node {}   mode {}", r.healthy() ? "Ok" : "Not ready", r.version(),
                             r.node_name(), r.mode()) +
                     (r.message() == "Ok" ? "" : "   (" + r.message() + ")"));
  line("Kubernetes", kubernetesText(r.kubernetes()));
  line("KubeProxyReplacement", kprText(r.kube_proxy_replacement()));
  line("Routing", routingText(r));
  line("Masquerading", masqueradingText(r));
  line("Hubble", hubbleText(r.hubble()));
  line("IPAM", fmt::format("IPv4: {}/{} allocated from {} ({} free)", r.ipam().used(), r.ipam().size(), r.ipam().cidr(),
                           r.ipam().free()));
  line("Endpoints", std::to_string(r.endpoint_count()));
  line("Pod MTU", std::to_string(r.pod_mtu()));
  line("Devices", r.devices().empty() ? "none (NodePort from outside is off)" : joined(r.devices()));
  line("Cluster health",
       fmt::format("{}/{} reachable   probes: {}", r.nodes_reachable(), r.nodes_total(), r.health_probes()));
  line("BPF root", r.bpf_root());
  for (const auto& p : r.problems()) {
    line("Problem", p);
  }
  if (verbose) {
    kprDetails(r.kube_proxy_replacement());
  }
  std::cout << "Programs:\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : r.programs()) {
    // The verifier's work at load, against its limit of processed instructions.
    double share = r.verifier_insn_limit() ? 100.0 * p.verified_insns() / r.verifier_insn_limit() : 0;
    rows.push_back({"  " + p.name(), std::to_string(p.id()), p.attach_point(),
                    fmt::format("{} ({:.1f}%)", p.verified_insns(), share)});
  }
  std::cout << renderTable({"  NAME", "ID", "ATTACHED", "VERIFIED INSNS"}, rows);
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
  return {std::to_string(e.id()),
          pod,
          e.ipv4(),
          std::to_string(e.identity()),
          e.host_ifname(),
          e.chained() ? "chained" : "veth",
          v1::EndpointState_Name(e.state()).substr(15)};
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
  if (c.structured()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& e : r.endpoints()) {
      a.push_back(toJson(e));
    }
    return printDocument(c, a);
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
  if (c.structured()) {
    auto j = toJson(e);
    j["policy"] = pol.ok() ? toJson(*pol) : nlohmann::json{{"error", pol.error().message}};
    return printDocument(c, j);
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
  if (c.structured()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& n : r.nodes()) {
      a.push_back(toJson(n));
    }
    return printDocument(c, a);
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

}  // namespace

void addStatusCommands(CLI::App& app, Context& ctx, int& rc) {
  auto* st = app.add_subcommand("status",
                                "agent health, kube-proxy replacement, routing, Hubble, Kubernetes, "
                                "programs, maps and their fill, endpoints, IPAM (as cilium-dbg status)");
  outputOption(st, ctx);
  static bool verbose = false;
  st->add_flag("--verbose", verbose, "also the KubeProxyReplacement details");
  st->callback([&] { rc = status(ctx, verbose); });

  auto* ep = app.add_subcommand("endpoint", "endpoints managed by the agent");
  ep->require_subcommand(1);
  auto* list = ep->add_subcommand("list", "list endpoints");
  outputOption(list, ctx);
  list->callback([&] { rc = endpointList(ctx); });
  auto* get = ep->add_subcommand("get", "one endpoint by id, container id, namespace/pod or IP");
  static std::string selector;
  get->add_option("selector", selector, "endpoint id, container id, namespace/pod or IP")->required();
  outputOption(get, ctx);
  get->callback([&] { rc = endpointGet(ctx, selector); });

  auto* node = app.add_subcommand("node", "the cluster's nodes as this agent knows them");
  node->require_subcommand(1);
  auto* nlist = node->add_subcommand("list", "nodes: addresses, pod CIDRs, reachability (ICMP and TCP health probes)");
  outputOption(nlist, ctx);
  nlist->callback([&] { rc = nodeList(ctx); });
}

}  // namespace plexus::cli
