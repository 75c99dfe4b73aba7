// plexus map list and plexus config: cilium-dbg's map list and config.
#include <algorithm>

#include <fmt/format.h>

#include "context.h"
#include "plexus/v1/daemon.grpc.pb.h"

namespace plexus::cli {

namespace {

int mapList(const Context& c, bool verbose) {
  auto stub = v1::Daemon::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::GetStatusResponse r;
  grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest{}, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  // A map's errors are the agent's problems that name it ("map plexus_lb4_services_v1 is full").
  auto errors = [&r](const std::string& name) {
    return static_cast<uint64_t>(std::count_if(r.problems().begin(), r.problems().end(), [&](const std::string& p) {
      return p.find(name) != std::string::npos;
    }));
  };
  std::vector<v1::MapInfo> maps(r.maps().begin(), r.maps().end());
  std::sort(maps.begin(), maps.end(), [](const auto& a, const auto& b) { return a.name() < b.name(); });
  if (c.structured()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& m : maps) {
      bool array = m.type().find("array") != std::string::npos;
      nlohmann::json j = toJson(m);
      j["errors"] = errors(m.name());
      j["usage_percent"] = array || m.max_entries() == 0 ? nlohmann::json(nullptr)
                                                         : nlohmann::json(100.0 * m.entries() / m.max_entries());
      a.push_back(j);
    }
    return printDocument(c, a);
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : maps) {
    // Arrays always hold max_entries keys: their usage says nothing.
    bool array = m.type().find("array") != std::string::npos;
    std::string usage =
        array || m.max_entries() == 0 ? "-" : fmt::format("{:.1f}%", 100.0 * m.entries() / m.max_entries());
    std::vector<std::string> row = {
        m.name(), array ? "-" : std::to_string(m.entries()), std::to_string(m.max_entries()),
        usage,    std::to_string(errors(m.name())),          m.cache_enabled() ? "true" : "false"};
    if (verbose) {
      row.push_back(m.type());
      row.push_back(m.pin_path());
    }
    rows.push_back(std::move(row));
  }
  std::vector<std::string> header = {"Name", "Num entries", "Max entries", "Usage", "Num errors", "Cache enabled"};
  if (verbose) {
    header.emplace_back("Type");
    header.emplace_back("Pin path");
  }
  std::cout << renderTable(header, rows);
  return 0;
}

int config(const Context& c) {
  auto stub = v1::Daemon::NewStub(c.channel());
  grpc::ClientContext ctx;
  c.deadline(&ctx);
  v1::GetConfigResponse r;
  grpc::Status s = stub->GetConfig(&ctx, v1::GetConfigRequest{}, &r);
  if (!s.ok()) {
    return reportError(c, s);
  }
  // nlohmann's object keeps keys sorted: both forms list the options in name order.
  nlohmann::json doc = nlohmann::json::object();
  for (const auto& [key, value] : r.options()) {
    auto v = nlohmann::json::parse(value, nullptr, false);
    doc[key] = v.is_discarded() ? nlohmann::json(value) : v;
  }
  if (c.structured()) {
    return printDocument(c, doc);
  }
  size_t width = 0;
  for (const auto& [key, value] : doc.items()) {
    width = std::max(width, key.size());
  }
  for (const auto& [key, value] : doc.items()) {
    std::string text;
    if (value.is_string()) {
      text = value.get<std::string>();
    } else if (value.is_array()) {
      for (const auto& x : value) {
        text += (text.empty() ? "" : ",") + (x.is_string() ? x.get<std::string>() : x.dump());
      }
    } else {
      text = value.dump();
    }
    std::cout << fmt::format("{:<{}} :{}{}\n", key, width, text.empty() ? "" : " ", text);
  }
  return 0;
}

}  // namespace

void addMapCommands(CLI::App& app, Context& ctx, int& rc) {
  auto* map = app.add_subcommand("map", "the agent's pinned BPF maps (cilium-dbg map)");
  map->require_subcommand(1);
  auto* list = map->add_subcommand("list", "pinned maps: entries, size, usage, errors, cache (cilium-dbg map list)");
  outputOption(list, ctx);
  static bool verbose = false;
  list->add_flag("--verbose", verbose, "also each map's type and pin path");
  list->callback([&] { rc = mapList(ctx, verbose); });

  auto* cfg = app.add_subcommand("config", "the agent's running configuration, by flag name (cilium-dbg config)");
  outputOption(cfg, ctx);
  cfg->callback([&] { rc = config(ctx); });
}

}  // namespace plexus::cli
