// plexus policy get|explain, plexus identity list|get, and the policy part of plexus endpoint get.
#include <fmt/format.h>

#include "context.h"
#include "plexus/v1/policy.grpc.pb.h"

namespace plexus::cli {

namespace {

std::string portText(const v1::PolicyEntry& e) {
  if (e.protocol() == "ANY") {
    return "ANY";
  }
  if (e.port() == 0) {
    return e.protocol() + "/all";
  }
  return e.port() == e.end_port() ? fmt::format("{}/{}", e.protocol(), e.port())
                                  : fmt::format("{}/{}-{}", e.protocol(), e.port(), e.end_port());
}

std::string peerText(const v1::PolicyEntry& e) {
  if (e.identity() == 0) {
    return "any";
  }
  std::string labels;
  for (const auto& l : e.peer_labels()) {
    // The namespace-label copies are noise in a one-line view; the namespace itself stays.
    if (l.find("io.cilium.k8s.namespace.labels.") != std::string::npos ||
        l.find("io.cilium.k8s.policy.") != std::string::npos) {
      continue;
    }
    labels += (labels.empty() ? "" : ",") + l;
  }
  return fmt::format("{} ({})", e.identity(), labels);
}

int policyGet(const Context& c, const std::string& name) {
  auto stub = v1::Policy::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::ListPoliciesRequest req;
  req.set_name(name);
  v1::ListPoliciesResponse r;
  grpc::Status s = stub->ListPolicies(&ctx, req, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.structured()) {
    return printDocument(c, toJson(r));
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : r.policies()) {
    std::string eps;
    for (uint32_t id : p.endpoints()) {
      eps += (eps.empty() ? "" : ",") + std::to_string(id);
    }
    rows.push_back({p.key(), p.valid() ? "valid" : "invalid", std::to_string(p.rules()), eps.empty() ? "-" : eps,
                    p.reason()});
  }
  std::cout << renderTable({"POLICY", "STATUS", "RULES", "ENDPOINTS", "REASON"}, rows);
  return 0;
}

int explain(const Context& c, const std::string& from, const std::string& to, const std::string& port) {
  auto slash = port.find('/');
  v1::ExplainRequest req;
  req.set_from(from);
  req.set_to(to);
  try {
    req.set_port(static_cast<uint32_t>(std::stoul(port.substr(0, slash))));
  } catch (const std::exception&) {
    std::cerr << "error: --port " << port << ": expected PORT[/PROTOCOL] or TYPE/icmp, e.g. 80/tcp\n";
    return 2;
  }
  req.set_protocol(slash == std::string::npos ? "TCP" : port.substr(slash + 1));
  auto stub = v1::Policy::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::ExplainResponse r;
  grpc::Status s = stub->Explain(&ctx, req, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.structured()) {
    return printDocument(c, toJson(r));
  }
  std::cout << (r.allowed() ? "ALLOWED" : "DENIED") << "\n";
  for (const auto& step : r.steps()) {
    std::cout << "  " << step << "\n";
  }
  return 0;
}

int identityList(const Context& c) {
  auto stub = v1::Policy::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::ListIdentitiesResponse r;
  grpc::Status s = stub->ListIdentities(&ctx, v1::ListIdentitiesRequest{}, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.structured()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& i : r.identities()) {
      a.push_back(toJson(i));
    }
    return printDocument(c, a);
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : r.identities()) {
    std::string labels;
    for (const auto& l : i.labels()) {
      labels += (labels.empty() ? "" : " ") + l;
    }
    rows.push_back({std::to_string(i.id()), i.scope(), labels});
  }
  std::cout << renderTable({"ID", "SCOPE", "LABELS"}, rows);
  return 0;
}

int identityGet(const Context& c, uint32_t id) {
  auto stub = v1::Policy::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::GetIdentityRequest req;
  req.set_id(id);
  v1::IdentityInfo r;
  grpc::Status s = stub->GetIdentity(&ctx, req, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.structured()) {
    return printDocument(c, toJson(r));
  }
  std::cout << fmt::format("identity {} ({})\n", r.id(), r.scope());
  for (const auto& l : r.labels()) {
    std::cout << "  " << l << "\n";
  }
  return 0;
}

}  // namespace

Result<v1::GetEndpointPolicyResponse> endpointPolicy(const Context& c, const std::string& selector) {
  auto stub = v1::Policy::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::GetEndpointPolicyRequest req;
  req.set_endpoint(selector);
  v1::GetEndpointPolicyResponse r;
  grpc::Status s = stub->GetEndpointPolicy(&ctx, req, &r);
  if (!s.ok()) {
    return Error{ErrorCode::kUnavailable, s.error_message()};
  }
  return r;
}

void printEndpointPolicy(const v1::GetEndpointPolicyResponse& p) {
  std::cout << fmt::format("policy: ingress {}, egress {}{}\n", p.ingress_enforced() ? "enforced" : "allow-all",
                           p.egress_enforced() ? "enforced" : "allow-all",
                           p.selected_by().empty() ? "" : " (selected by " + [&] {
                             std::string s;
                             for (const auto& k : p.selected_by()) {
                               s += (s.empty() ? "" : ", ") + k;
                             }
                             return s;
                           }() + ")");
  if (!p.error().empty()) {
    std::cout << "policy install error (previous state kept): " << p.error() << "\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : p.entries()) {
    rows.push_back({e.direction(), peerText(e), portText(e), e.deny() ? "deny" : "allow",
                    e.rule().empty() ? "(no policy selects this direction)" : e.rule()});
  }
  std::cout << renderTable({"DIRECTION", "PEER", "PORT", "VERDICT", "RULE"}, rows);
}

void addPolicyCommands(CLI::App& app, Context& ctx, int& rc) {
  auto* pol = app.add_subcommand("policy", "network policies: status, and why a connection is allowed or denied");
  pol->require_subcommand(1);
  auto* get = pol->add_subcommand("get", "policies with their status (valid, or the reason they were refused)");
  static std::string name;
  get->add_option("name", name, "substring of the policy key (Kind namespace/name)");
  outputOption(get, ctx);
  get->callback([&] { rc = policyGet(ctx, name); });

  auto* ex = pol->add_subcommand("explain", "the verdict for a connection, and the rules that decide it");
  static std::string from, to, port;
  ex->add_option("--from", from, "namespace/pod, endpoint id, IP, world or host")->required();
  ex->add_option("--to", to, "namespace/pod, endpoint id, IP, world or host")->required();
  ex->add_option("--port", port, "PORT[/PROTOCOL] or TYPE/icmp, e.g. 80/tcp, 8/icmp (echo request)")->required();
  outputOption(ex, ctx);
  ex->callback([&] { rc = explain(ctx, from, to, port); });

  auto* id = app.add_subcommand("identity", "security identities");
  id->require_subcommand(1);
  auto* list = id->add_subcommand("list", "every identity this node knows, with its labels");
  outputOption(list, ctx);
  list->callback([&] { rc = identityList(ctx); });
  auto* iget = id->add_subcommand("get", "one identity");
  static uint32_t which = 0;
  iget->add_option("id", which, "numeric identity")->required();
  outputOption(iget, ctx);
  iget->callback([&] { rc = identityGet(ctx, which); });
}

}  // namespace plexus::cli
