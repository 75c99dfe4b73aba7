// The Policy API: policy status, identities, an endpoint's compiled policy, and explain.
#include <fmt/format.h>

#include "plexus/agent/grpc_services.h"
#include "plexus/agent/requests.h"

namespace plexus::agent {

namespace {
void fillIdentity(uint32_t id, const std::vector<policy::Label>& labels, v1::IdentityInfo* out) {
  out->set_id(id);
  for (const auto& l : labels) {
    out->add_labels(l.value.empty() && l.source == "reserved" ? fmt::format("{}:{}", l.source, l.key)
                                                               : fmt::format("{}:{}={}", l.source, l.key, l.value));
  }
  out->set_scope(id < identity::kFirstClusterIdentity  ? "reserved"
                 : id >= identity::kFirstLocalIdentity ? "local"
                                                       : "cluster");
}
}  // namespace

grpc::Status PolicyService::ListPolicies(grpc::ServerContext*, const v1::ListPoliciesRequest* req,
                                         v1::ListPoliciesResponse* resp) {
  auto list = state_.reconciler.submit([&] { return state_.policies->policies(); }).get();
  for (const auto& p : list) {
    if (!req->name().empty() && p.key.find(req->name()) == std::string::npos) {
      continue;
    }
    auto* out = resp->add_policies();
    out->set_key(p.key);
    out->set_valid(p.valid);
    out->set_reason(p.reason);
    out->set_rules(static_cast<uint32_t>(p.rules));
    for (uint16_t id : p.endpoints) {
      out->add_endpoints(id);
    }
  }
  if (!req->name().empty() && resp->policies().empty()) {
    return grpc::Status(grpc::NOT_FOUND, fmt::format("no policy matches {:?}", req->name()));
  }
  return grpc::Status::OK;
}

grpc::Status PolicyService::ListIdentities(grpc::ServerContext*, const v1::ListIdentitiesRequest*,
                                           v1::ListIdentitiesResponse* resp) {
  auto ids = state_.reconciler.submit([&] { return state_.policies->identities(); }).get();
  for (const auto& [id, labels] : ids) {
    fillIdentity(id, labels, resp->add_identities());
  }
  return grpc::Status::OK;
}

grpc::Status PolicyService::GetIdentity(grpc::ServerContext*, const v1::GetIdentityRequest* req,
                                        v1::IdentityInfo* resp) {
  auto ids = state_.reconciler.submit([&] { return state_.policies->identities(); }).get();
  auto it = ids.find(req->id());
  if (it == ids.end()) {
    return grpc::Status(grpc::NOT_FOUND, fmt::format("identity {} is not in use on this node", req->id()));
  }
  fillIdentity(it->first, it->second, resp);
  return grpc::Status::OK;
}

grpc::Status PolicyService::GetEndpointPolicy(grpc::ServerContext*, const v1::GetEndpointPolicyRequest* req,
                                              v1::GetEndpointPolicyResponse* resp) {
  return state_.reconciler
      .submit([&]() -> grpc::Status {
        auto rec = state_.endpoints->find(req->endpoint());
        if (!rec) {
          return grpc::Status(grpc::NOT_FOUND, fmt::format("endpoint {:?} not found", req->endpoint()));
        }
        resp->set_endpoint_id(rec->id);
        resp->set_identity(rec->identity);
        for (const auto& l : rec->labels) {
          resp->add_labels(l);
        }
        auto view = state_.policies->endpointPolicy(rec->id);
        if (!view) {
          return grpc::Status(grpc::NOT_FOUND, fmt::format("endpoint {} has no compiled policy yet", rec->id));
        }
        resp->set_ingress_enforced(view->compiled.ingress_enforced);
        resp->set_egress_enforced(view->compiled.egress_enforced);
        resp->set_error(view->error);
        for (const auto& k : view->compiled.selected_by) {
          resp->add_selected_by(k);
        }
        const auto& ids = state_.policies->identities();
        for (const auto& e : view->compiled.entries) {
          auto* out = resp->add_entries();
          out->set_direction(policy::toString(e.direction));
          out->set_identity(e.identity);
          if (auto it = ids.find(e.identity); it != ids.end()) {
            v1::IdentityInfo info;
            fillIdentity(it->first, it->second, &info);
            for (const auto& l : info.labels()) {
              out->add_peer_labels(l);
            }
          }
          out->set_protocol(policy::protoName(e.proto));
          out->set_port(e.proto == policy::kProtoAny || e.port_bits == 0 ? 0 : e.port);
          out->set_end_port(e.proto == policy::kProtoAny || e.port_bits == 0 ? 0 : e.lastPort());
          out->set_deny(e.deny);
          out->set_rule_id(e.rule_id);
          out->set_rule(state_.policies->ruleOrigin(e.rule_id));
        }
        return grpc::Status::OK;
      })
      .get();
}

grpc::Status PolicyService::Explain(grpc::ServerContext*, const v1::ExplainRequest* req, v1::ExplainResponse* resp) {
  auto q = explainFromProto(*req);
  if (!q.ok()) {
    return toGrpc(q.error());
  }
  auto r = state_.reconciler
               .submit([&] {
                 auto remote = [&](const std::string& text) -> std::optional<ExplainPeer> {
                   auto peer = state_.nodes->findRemote(text);
                   return peer ? std::optional<ExplainPeer>(ExplainPeer{peer->name, peer->node, peer->identity})
                               : std::nullopt;
                 };
                 return state_.policies->explain(state_.endpoints->list(), q->from, q->to, q->proto, q->port,
                                                 remote);
               })
               .get();
  if (!r.ok()) {
    return toGrpc(r.error());
  }
  resp->set_allowed(r->allowed);
  for (const auto& l : r->lines) {
    resp->add_steps(l);
  }
  return grpc::Status::OK;
}

}  // namespace plexus::agent
