// The Resources API: `plexus apply -f` / `delete -f` into the standalone store.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/grpc_services.h"
#include "plexus/common/manifest.h"

namespace plexus::agent {

grpc::Status ResourcesService::run(const v1::ApplyRequest* req, v1::ApplyResponse* resp, bool remove) {
  auto objects = parseManifests(req->manifest());
  if (!objects.ok()) {
    std::string source = req->source().empty() ? "manifest" : req->source();
    return grpc::Status(grpc::INVALID_ARGUMENT, fmt::format("{}: {}", source, objects.error().message));
  }
  auto outcomes = state_.reconciler
                      .submit([&] {
                        return remove ? state_.cluster->remove(*objects) : state_.cluster->apply(*objects);
                      })
                      .get();
  for (const auto& o : outcomes) {
    auto* out = resp->add_outcomes();
    out->set_object(o.object);
    out->set_action(toString(o.action));
    out->set_message(o.message);
    if (o.action == ApplyAction::kRejected) {
      spdlog::warn("{}: rejected: {}", o.object, o.message);
    } else {
      spdlog::info("{} {}", o.object, toString(o.action));
    }
  }
  return grpc::Status::OK;
}

grpc::Status ResourcesService::Apply(grpc::ServerContext*, const v1::ApplyRequest* req, v1::ApplyResponse* resp) {
  return run(req, resp, false);
}

grpc::Status ResourcesService::Delete(grpc::ServerContext*, const v1::ApplyRequest* req, v1::ApplyResponse* resp) {
  return run(req, resp, true);
}

grpc::Status ResourcesService::ListServices(grpc::ServerContext*, const v1::ListServicesRequest*,
                                            v1::ListServicesResponse*) {
  return grpc::Status(grpc::UNIMPLEMENTED, "services are not handled by this agent build yet");
}

grpc::Status ResourcesService::GetService(grpc::ServerContext*, const v1::GetServiceRequest*,
                                          v1::GetServiceResponse*) {
  return grpc::Status(grpc::UNIMPLEMENTED, "services are not handled by this agent build yet");
}

}  // namespace plexus::agent
