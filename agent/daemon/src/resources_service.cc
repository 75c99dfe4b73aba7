// The Resources API: `plexus apply -f` / `delete -f` into the standalone store.
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/grpc_services.h"
#include "plexus/agent/requests.h"
#include "plexus/common/manifest.h"

namespace plexus::agent {

namespace {
constexpr size_t kTrimAfter = 1000;  // objects in one request
constexpr size_t kGroupsInFlight = 2;  // handed to the reconcile thread and not committed yet
}  // namespace

grpc::Status ResourcesService::run(const v1::ApplyRequest* req, v1::ApplyResponse* resp, bool remove) {
  if (state_.kube) {
    return grpc::Status(grpc::FAILED_PRECONDITION,
                        fmt::format("this agent watches the Kubernetes API at {}: use kubectl {} instead",
                                    state_.kube->client().config().server, remove ? "delete" : "apply"));
  }
  auto start = std::chrono::steady_clock::now();
  // A pipeline over two threads: this one parses, normalises and validates the objects, a group at a time; the
  // reconcile thread commits each group (store, journal, services, policies) while the next one is parsed. The
  // objects commit in the order they are written. A malformed document ends the request there: the objects before
  // it are applied (their outcomes come back with the error), nothing after it.
  Controller& controller = *state_.controller;
  ManifestStream stream(req->manifest());
  std::deque<std::future<std::vector<ApplyOutcome>>> commits;
  std::vector<ApplyOutcome> outcomes;
  std::vector<PreparedObject> group;
  group.reserve(Controller::kApplyGroup);
  auto collect = [&] {
    auto part = commits.front().get();
    commits.pop_front();
    outcomes.insert(outcomes.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  };
  auto handOn = [&] {
    if (commits.size() == kGroupsInFlight) {
      collect();  // the parser runs at most this far ahead: its objects wait in memory until they commit
    }
    commits.push_back(state_.reconciler.submit(
        [&controller, remove, g = std::move(group)]() mutable { return controller.commit(std::move(g), remove); }));
    group = {};
    group.reserve(Controller::kApplyGroup);
  };
  size_t count = 0;
  std::optional<Error> malformed;
  for (;;) {
    auto next = stream.next();
    if (!next.ok()) {
      malformed = next.error();
      break;
    }
    if (!*next) {
      break;
    }
    group.push_back(controller.prepare(std::move(**next), remove));
    ++count;
    if (group.size() == Controller::kApplyGroup) {
      handOn();
    }
  }
  if (!group.empty()) {
    handOn();
  }
  while (!commits.empty()) {
    collect();
  }
  // One fsync for the whole request, before it is answered. Until then a crash can lose the journal's tail while
  // the maps already hold it: the restarted agent's first full sync removes what the restored store lacks.
  state_.reconciler.submit([&controller] { controller.flush(); }).get();
  std::string source = req->source().empty() ? "manifest" : req->source();
  if (malformed && count == 0) {
    return toGrpc(makeError(ErrorCode::kInvalidArgument, fmt::format("{}: {}", source, malformed->message)));
  }
  if (malformed) {
    resp->set_error(fmt::format("{}: {} (the {} objects before it were applied, nothing after it)", source,
                                malformed->message, count));
  }
  resp->set_agent_ms(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  if (count >= kTrimAfter) {
    // A bulk apply leaves the parsed objects' memory free in this thread's and the reconcile thread's malloc arenas;
    // handed back to the kernel after the response, or the agent's RSS keeps the peak of the largest apply it saw.
    state_.trim_heap = true;
  }
  // The log names every object of a small request; a bulk one gets a line per action instead (and one per rejected
  // object), not ten thousand lines.
  bool bulk = count >= kTrimAfter;
  std::map<ApplyAction, size_t> actions;
  for (const auto& o : outcomes) {
    auto* out = resp->add_outcomes();
    out->set_object(o.object);
    out->set_action(toString(o.action));
    out->set_message(o.message);
    ++actions[o.action];
    if (o.action == ApplyAction::kRejected) {
      spdlog::warn("{}: rejected: {}", o.object, o.message);
    } else if (!bulk) {
      spdlog::info("{} {}", o.object, toString(o.action));
    }
  }
  if (bulk) {
    std::string summary;
    for (const auto& [action, n] : actions) {
      summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", n, toString(action));
    }
    spdlog::info("{}: {} objects: {}", source, count, summary);
  }
  if (malformed) {
    spdlog::warn("{}", resp->error());
  }
  return grpc::Status::OK;
}

grpc::Status ResourcesService::Apply(grpc::ServerContext*, const v1::ApplyRequest* req, v1::ApplyResponse* resp) {
  return run(req, resp, false);
}

grpc::Status ResourcesService::Delete(grpc::ServerContext*, const v1::ApplyRequest* req, v1::ApplyResponse* resp) {
  return run(req, resp, true);
}

namespace {

void fillService(const lb::Service& svc, const std::vector<lb::FrontendView>& frontends, v1::ServiceInfo* out) {
  out->set_namespace_(svc.ns);
  out->set_name(svc.name);
  out->set_type(lb::toString(svc.type));
  out->set_session_affinity(svc.affinity_client_ip ? "ClientIP" : "None");
  out->set_affinity_timeout_seconds(svc.affinity_client_ip ? svc.affinity_timeout : 0);
  out->set_external_traffic_policy(svc.external_traffic_local ? "Local" : "Cluster");
  out->set_internal_traffic_policy(svc.internal_traffic_local ? "Local" : "Cluster");
  out->set_endpoints_source(svc.selector.empty() ? "EndpointSlice" : "EndpointSlice or pods (selector)");
  out->set_source_ranges_set(svc.source_ranges_set);
  for (const auto& r : svc.source_ranges) {
    out->add_load_balancer_source_ranges(r.toString());
  }
  out->set_health_check_node_port(svc.health_check_node_port);
  for (const auto& f : frontends) {
    auto* fe = out->add_frontends();
    fe->set_address(f.address.toString());
    fe->set_port(f.port);
    fe->set_protocol(lb::protoName(f.proto));
    fe->set_type(f.type);
    fe->set_scope(f.scope == PLEXUS_LB_SCOPE_INTERNAL ? "internal" : "external");
    fe->set_rev_nat_index(f.rev_nat_index);
    fe->set_maglev(f.maglev);
    uint32_t active = 0;
    for (const auto& b : f.backends) {
      auto* be = fe->add_backends();
      be->set_id(b.id);
      be->set_address(b.ip.toString());
      be->set_port(b.port);
      be->set_state(b.terminating ? "terminating" : "active");
      be->set_node_name(b.node_name);
      be->set_weight(100);
      active += b.terminating ? 0 : 1;
    }
    fe->set_active_backends(active);
  }
}

}  // namespace

grpc::Status ResourcesService::ListServices(grpc::ServerContext*, const v1::ListServicesRequest*,
                                            v1::ListServicesResponse* resp) {
  if (!state_.services) {
    return grpc::Status(grpc::FAILED_PRECONDITION, "kube-proxy replacement is off (--kube-proxy-replacement=false)");
  }
  state_.reconciler
      .submit([&] {
        for (const auto& svc : state_.service_sync->services()) {
          fillService(svc, state_.services->frontends(svc.key()), resp->add_services());
        }
      })
      .get();
  return grpc::Status::OK;
}

grpc::Status ResourcesService::GetService(grpc::ServerContext*, const v1::GetServiceRequest* req,
                                          v1::GetServiceResponse* resp) {
  if (!state_.services) {
    return grpc::Status(grpc::FAILED_PRECONDITION, "kube-proxy replacement is off (--kube-proxy-replacement=false)");
  }
  std::string name = req->name();
  if (name.find('/') == std::string::npos) {
    name = "default/" + name;
  }
  bool found = false;
  std::string error;
  state_.reconciler
      .submit([&] {
        for (const auto& svc : state_.service_sync->services()) {
          if (svc.key() != name) {
            continue;
          }
          found = true;
          auto frontends = state_.services->frontends(name);
          fillService(svc, frontends, resp->mutable_service());
          if (!req->with_maglev()) {
            return;
          }
          for (const auto& f : frontends) {
            if (!f.maglev) {
              continue;
            }
            // Read back what the kernel holds, not what we meant to write.
            auto table = state_.lxc->lb().maglevTable(f.rev_nat_index);
            if (!table.ok()) {
              error = table.error().message;
              return;
            }
            std::map<uint32_t, std::string> addr;
            for (const auto& b : f.backends) {
              addr[b.id] = fmt::format("{}:{}", b.ip.toString(), b.port);
            }
            auto* t = resp->add_maglev();
            t->set_rev_nat_index(f.rev_nat_index);
            t->set_frontend(fmt::format("{}:{}/{}", f.address.toString(), f.port, lb::protoName(f.proto)));
            for (uint32_t id : *table) {
              t->add_slots(addr.count(id) ? addr[id] : fmt::format("backend {}", id));
            }
          }
        }
      })
      .get();
  if (!error.empty()) {
    return grpc::Status(grpc::INTERNAL, error);
  }
  if (!found) {
    return grpc::Status(grpc::NOT_FOUND, fmt::format("service {} not found", name));
  }
  return grpc::Status::OK;
}

}  // namespace plexus::agent
