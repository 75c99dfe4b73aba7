#include "plexus/agent/service_manager.h"

#include <arpa/inet.h>

#include <chrono>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace plexus::agent {

namespace {
FrontendAddress frontendAddress(const lb::FrontendView& f) { return {f.address, f.port, f.proto}; }
}  // namespace

ServiceManager::ServiceManager(ServiceMaps& maps, lb::PlannerConfig config, FlowDirectory* directory)
    : maps_(maps), planner_(std::move(config)), directory_(directory) {}

Status ServiceManager::restore() {
  auto read = maps_.read();
  if (!read.ok()) {
    return read.error().wrap("read the service maps");
  }
  planner_.restore(*read);
  needs_full_ = true;
  spdlog::info("services: adopted {} service entries, {} backends and {} Maglev tables from the maps",
               read->services.size(), read->backends.size(), read->maglev.size());
  restored_ = std::move(*read);  // the first full sync's reference (nothing else writes these maps meanwhile)
  return Status::Ok();
}

namespace {
void record(ServiceManager::SyncRecord* r, size_t operations, std::chrono::steady_clock::time_point since) {
  r->operations = operations;
  r->milliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
  r->unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  ++r->count;
}
}  // namespace

Status ServiceManager::sync(const std::vector<lb::Service>& services, const std::vector<lb::EndpointSlice>& slices) {
  auto t0 = std::chrono::steady_clock::now();
  lb::MapState installed;
  if (restored_) {
    installed = std::move(*restored_);
    restored_.reset();
  } else if (read_maps_) {
    // Part of an earlier plan may be in the maps (a full map refuses the rest): diffing against what they hold
    // removes entries written for objects deleted meanwhile instead of leaking them.
    auto read = maps_.read();
    if (!read.ok()) {
      return read.error().wrap("read the service maps");
    }
    installed = std::move(*read);
  } else {
    installed = planner_.current();
  }
  lb::MapState desired = planner_.compute(services, slices);
  auto t1 = std::chrono::steady_clock::now();
  lb::Plan plan = lb::Planner::diff(installed, desired);
  auto t2 = std::chrono::steady_clock::now();
  if (plan.size() > 0) {
    if (Status s = maps_.apply(plan); !s.ok()) {
      needs_full_ = read_maps_ = true;
      return s.error().wrap("service maps");
    }
  }
  record(&last_full_, plan.size(), t0);
  needs_full_ = read_maps_ = false;
  publishNames(desired);
  spdlog::info("services: full sync of {} frontends: {} map operations in {:.1f} ms (compute {:.1f}, diff {:.1f})",
               desired.frontends.size(), plan.size(), last_full_.milliseconds,
               std::chrono::duration<double, std::milli>(t1 - t0).count(),
               std::chrono::duration<double, std::milli>(t2 - t1).count());
  return Status::Ok();
}

Status ServiceManager::update(const std::map<std::string, std::optional<lb::Service>>& changed,
                              const std::map<std::string, std::vector<lb::EndpointSlice>>& slices) {
  auto t0 = std::chrono::steady_clock::now();
  auto change = planner_.update(changed, slices);
  lb::Plan plan = planner_.plan(change);
  if (plan.size() == 0) {
    record(&last_incremental_, 0, t0);
    return Status::Ok();
  }
  if (Status s = maps_.apply(plan); !s.ok()) {
    needs_full_ = read_maps_ = true;  // the planner moved on; the next sync diffs everything against the maps
    return s.error().wrap("service maps");
  }
  record(&last_incremental_, plan.size(), t0);
  std::vector<FrontendAddress> gone;
  ServiceNames added;
  for (const auto& f : change.before.frontends) {
    gone.push_back(frontendAddress(f));
  }
  for (const auto& f : change.after.frontends) {
    added.emplace_back(frontendAddress(f), f.service);
  }
  directory_->updateServices(gone, added);
  notify(change, changed);
  spdlog::info("services: {} changed, {} map operations", changed.size(), plan.size());
  return Status::Ok();
}

void ServiceManager::notify(const lb::Planner::Change& change,
                            const std::map<std::string, std::optional<lb::Service>>& changed) {
  if (!notices_) {
    return;
  }
  std::set<uint16_t> kept;
  for (const auto& f : change.after.frontends) {
    kept.insert(f.rev_nat_index);
    AgentNotification n{.type = NotificationType::kServiceUpserted, .id = f.rev_nat_index,
                        .frontend = {f.address.toString(), f.port}, .service_type = f.type};
    for (const auto& b : f.backends) {
      if (!b.terminating) {
        n.backends.push_back({b.ip.toString(), b.port});
      }
    }
    auto slash = f.service.find('/');
    n.service_namespace = f.service.substr(0, slash == std::string::npos ? 0 : slash);
    n.service_name = slash == std::string::npos ? f.service : f.service.substr(slash + 1);
    if (auto it = changed.find(f.service); it != changed.end() && it->second) {
      n.ext_traffic_policy = it->second->external_traffic_local ? "Local" : "Cluster";
      n.int_traffic_policy = it->second->internal_traffic_local ? "Local" : "Cluster";
    }
    notices_->add(std::move(n));
  }
  for (const auto& f : change.before.frontends) {
    if (!kept.count(f.rev_nat_index)) {
      notices_->add({.type = NotificationType::kServiceDeleted, .id = f.rev_nat_index});
    }
  }
}

void ServiceManager::publishNames(const lb::MapState& st) {
  ServiceNames names;
  for (const auto& f : st.frontends) {
    names.emplace_back(frontendAddress(f), f.service);
  }
  directory_->setServices(names);
}

}  // namespace plexus::agent
