#include "plexus/agent/service_manager.h"

#include <arpa/inet.h>

#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace plexus::agent {

namespace {
// How flow decoding names a frontend: "ip:port/PROTO".
std::string frontendName(const lb::FrontendView& f) {
  return fmt::format("{}:{}/{}", f.address.toString(), f.port, lb::protoName(f.proto));
}
}  // namespace

ServiceManager::ServiceManager(datapath::LbMaps& maps, lb::PlannerConfig config, FlowDirectory* directory)
    : maps_(maps), planner_(std::move(config)), directory_(directory) {}

Status ServiceManager::apply(const lb::Plan& plan) {
  auto ignoreMissing = [](const Status& s) { return s.ok() || s.error().code == ErrorCode::kNotFound; };
  for (const auto& [id, b] : plan.backend_upserts) {
    PLEXUS_TRY(maps_.backends.update(id, b), fmt::format("backend {}", id));
  }
  for (const auto& [id, r] : plan.revnat_upserts) {
    PLEXUS_TRY(maps_.revnat.update(id, r), fmt::format("reverse NAT {}", id));
  }
  for (const auto& [id, t] : plan.maglev_upserts) {
    PLEXUS_TRY(maps_.setMaglevTable(id, t), fmt::format("maglev table {}", id));
  }
  for (const auto& [k, v] : plan.service_upserts) {
    PLEXUS_TRY(maps_.services.update(k, v), "service entry");
  }
  for (const auto& k : plan.service_deletes) {
    Status s = maps_.services.erase(k);
    if (!ignoreMissing(s)) {
      return s.error().wrap("service entry");
    }
  }
  for (uint16_t id : plan.maglev_deletes) {
    PLEXUS_TRY(maps_.eraseMaglevTable(id), fmt::format("maglev table {}", id));
  }
  for (uint16_t id : plan.revnat_deletes) {
    Status s = maps_.revnat.erase(id);
    if (!ignoreMissing(s)) {
      return s.error().wrap(fmt::format("reverse NAT {}", id));
    }
  }
  for (uint32_t id : plan.backend_deletes) {
    Status s = maps_.backends.erase(id);
    if (!ignoreMissing(s)) {
      return s.error().wrap(fmt::format("backend {}", id));
    }
  }
  return Status::Ok();
}

Status ServiceManager::sync(const std::vector<lb::Service>& services, const std::vector<lb::EndpointSlice>& slices) {
  auto t0 = std::chrono::steady_clock::now();
  lb::MapState desired = planner_.compute(services, slices);
  auto t1 = std::chrono::steady_clock::now();
  lb::Plan plan = lb::Planner::diff(installed_, desired);
  spdlog::debug("services: full compute {:.1f} ms, diff {:.1f} ms",
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count());
  last_plan_size_ = plan.size();
  if (plan.size() > 0) {
    if (Status s = apply(plan); !s.ok()) {
      needs_full_ = true;
      return s.error().wrap("service maps");
    }
  }
  installed_ = std::move(desired);
  needs_full_ = false;
  if (plan.size() > 0) {
    publishNames();
    spdlog::info("services: {} map operations, {} frontends", plan.size(), installed_.frontends.size());
  }
  return Status::Ok();
}

Status ServiceManager::update(const std::map<std::string, std::optional<lb::Service>>& changed,
                              const std::map<std::string, std::vector<lb::EndpointSlice>>& slices) {
  auto change = planner_.update(changed, slices);
  lb::Plan plan = planner_.plan(change);
  last_plan_size_ = plan.size();
  if (plan.size() == 0) {
    return Status::Ok();
  }
  if (Status s = apply(plan); !s.ok()) {
    needs_full_ = true;  // the planner moved on; the next sync recomputes everything against installed_
    return s.error().wrap("service maps");
  }
  lb::Planner::commit(&installed_, change, plan);
  std::vector<std::string> gone;
  std::map<std::string, std::string> added;
  for (const auto& f : change.before.frontends) {
    gone.push_back(frontendName(f));
  }
  for (const auto& f : change.after.frontends) {
    added[frontendName(f)] = f.service;
  }
  directory_->updateServices(gone, added);
  spdlog::info("services: {} changed, {} map operations, {} frontends", changed.size(), plan.size(),
               installed_.frontends.size());
  return Status::Ok();
}

void ServiceManager::publishNames() {
  std::map<std::string, std::string> names;
  for (const auto& f : installed_.frontends) {
    names[frontendName(f)] = f.service;
  }
  directory_->setServices(std::move(names));
}

}  // namespace plexus::agent
