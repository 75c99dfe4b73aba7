// plexus apply -f / delete -f (standalone cluster state) and plexus service list|get.
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "context.h"
#include "plexus/cli/manifest_chunks.h"
#include "plexus/v1/resources.grpc.pb.h"

namespace plexus::cli {

namespace {

bool readManifest(const std::string& path, std::string* out) {
  if (path == "-") {
    out->assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    return true;
  }
  // One read of the whole file into its string (a stringstream took 60 ms of a 5 MB apply, in small reads and copies).
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) {
    std::cerr << "error: cannot read " << path << "\n";
    return false;
  }
  out->resize(static_cast<size_t>(f.tellg()));
  f.seekg(0);
  if (!f.read(out->data(), static_cast<std::streamsize>(out->size()))) {
    std::cerr << "error: cannot read " << path << "\n";
    return false;
  }
  return true;
}

// Requests carry at most this much manifest text (the agent takes messages up to 64 MiB); a larger file goes in
// several requests, cut at document boundaries. The agent parses a request while it commits its first objects, and
// each request boundary stalls that pipeline once: fewer, larger requests apply faster.
constexpr size_t kChunkBytes = 16u << 20;

int applyOrDelete(const Context& c, const std::vector<std::string>& files, bool remove) {
  auto stub = v1::Resources::NewStub(c.channel());
  int rc = 0;
  for (const auto& file : files) {
    std::string manifest;
    if (!readManifest(file, &manifest)) {
      return 1;
    }
    v1::ApplyResponse r;  // the outcomes of every piece, in order
    for (auto& piece : manifestChunks(manifest, kChunkBytes)) {
      v1::ApplyRequest req;
      *req.mutable_manifest() = std::move(piece);
      req.set_source(file);
      grpc::ClientContext ctx;
      c.deadline(&ctx);
      v1::ApplyResponse part;
      grpc::Status s = remove ? stub->Delete(&ctx, req, &part) : stub->Apply(&ctx, req, &part);
      if (!s.ok()) {
        reportError(c, s);
        rc = 1;
        break;  // later pieces may depend on this one (a Namespace before its Pods)
      }
      double agent_ms = r.agent_ms() + part.agent_ms();
      r.MergeFrom(part);
      r.set_agent_ms(agent_ms);
      if (!part.error().empty()) {
        break;  // a malformed document: the agent applied what came before it and stopped
      }
    }
    if (c.structured() && printDocument(c, toJson(r)) != 0) {
      rc = 1;
    }
    std::string lines;  // one write for a bulk apply's 20,000 lines, not one each
    for (const auto& o : r.outcomes()) {
      if (o.action() == "rejected") {
        std::cerr << "error: " << o.message() << "\n";
        rc = 1;
      } else if (!c.structured()) {
        fmt::format_to(std::back_inserter(lines), "{} {}\n", o.object(), o.action());
      }
    }
    std::cout << lines << std::flush;
    if (!r.error().empty()) {
      std::cerr << "error: " << r.error() << "\n";
      rc = 1;
    }
  }
  return rc;
}

std::string backendsText(const v1::ServiceFrontend& f) {
  std::string out;
  for (const auto& b : f.backends()) {
    out += fmt::format("{}{}:{} ({})", out.empty() ? "" : ", ", b.address(), b.port(), b.state());
  }
  return out.empty() ? "(none)" : out;
}

int serviceList(const Context& c) {
  auto stub = v1::Resources::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::ListServicesResponse r;
  grpc::Status s = stub->ListServices(&ctx, v1::ListServicesRequest{}, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.structured()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& svc : r.services()) {
      a.push_back(toJson(svc));
    }
    return printDocument(c, a);
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& svc : r.services()) {
    for (const auto& f : svc.frontends()) {
      rows.push_back({svc.namespace_() + "/" + svc.name(), fmt::format("{}:{}/{}", f.address(), f.port(), f.protocol()),
                      f.type(), backendsText(f)});
    }
  }
  std::cout << renderTable({"SERVICE", "FRONTEND", "TYPE", "BACKENDS"}, rows);
  return 0;
}

int serviceGet(const Context& c, const std::string& name) {
  auto stub = v1::Resources::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::GetServiceRequest req;
  req.set_name(name);
  req.set_with_maglev(true);
  v1::GetServiceResponse r;
  grpc::Status s = stub->GetService(&ctx, req, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  if (c.structured()) {
    return printDocument(c, toJson(r));
  }
  const auto& svc = r.service();
  std::cout << fmt::format("Service {}/{}  type {}  affinity {}  externalTrafficPolicy {}  endpoints from {}\n",
                           svc.namespace_(), svc.name(), svc.type(), svc.session_affinity(),
                           svc.external_traffic_policy(), svc.endpoints_source());
  if (svc.health_check_node_port() != 0) {
    std::cout << fmt::format("  healthCheckNodePort {}\n", svc.health_check_node_port());
  }
  if (svc.source_ranges_set()) {
    std::string ranges;
    for (const auto& r : svc.load_balancer_source_ranges()) {
      ranges += (ranges.empty() ? "" : ", ") + r;
    }
    std::cout << fmt::format("  loadBalancerSourceRanges {}\n", ranges.empty() ? "(none usable: closed)" : ranges);
  }
  for (const auto& f : svc.frontends()) {
    std::cout << fmt::format("  {}:{}/{} {} ({}){}  ->  {}\n", f.address(), f.port(), f.protocol(), f.type(),
                             f.scope(), f.maglev() ? " maglev" : "", backendsText(f));
  }
  for (const auto& t : r.maglev()) {
    std::map<std::string, int> share;
    for (const auto& slot : t.slots()) {
      share[slot]++;
    }
    std::cout << fmt::format("  Maglev table for {} ({} slots):", t.frontend(), t.slots_size());
    for (const auto& [b, n] : share) {
      std::cout << fmt::format(" {}={}", b, n);
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

void addResourceCommands(CLI::App& app, Context& ctx, int& rc) {
  static std::vector<std::string> apply_files;
  auto* apply = app.add_subcommand("apply", "apply Kubernetes manifests to the standalone store");
  apply->add_option("-f,--filename", apply_files, "manifest file (YAML or JSON, multi-document; - for stdin)")
      ->required();
  outputOption(apply, ctx);
  apply->callback([&] { rc = applyOrDelete(ctx, apply_files, false); });

  static std::vector<std::string> delete_files;
  auto* del = app.add_subcommand("delete", "delete the objects a manifest names");
  del->add_option("-f,--filename", delete_files, "manifest file (- for stdin)")->required();
  del->callback([&] { rc = applyOrDelete(ctx, delete_files, true); });

  auto* svc = app.add_subcommand("service", "services and their backends");
  svc->require_subcommand(1);
  auto* list = svc->add_subcommand("list", "frontends, types and backends with state");
  outputOption(list, ctx);
  list->callback([&] { rc = serviceList(ctx); });
  static std::string name;
  auto* get = svc->add_subcommand("get", "one service, with its Maglev tables");
  get->add_option("name", name, "[namespace/]name")->required();
  outputOption(get, ctx);
  get->callback([&] { rc = serviceGet(ctx, name); });
}

}  // namespace plexus::cli
