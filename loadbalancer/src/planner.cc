#include "plexus/lb/planner.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>

namespace plexus::lb {

plexus_lb4_key makeLbKey(Ipv4 addr, uint16_t port, uint8_t proto, uint8_t scope, uint16_t slot) {
  plexus_lb4_key k;
  std::memset(&k, 0, sizeof(k));
  k.address = addr.networkOrder();
  k.dport = htons(port);
  k.proto = proto;
  k.scope = scope;
  k.backend_slot = slot;
  return k;
}

uint32_t Planner::backendId(const std::string& key) {
  auto it = backend_ids_.find(key);
  if (it != backend_ids_.end()) {
    return it->second;
  }
  // Next free id after the last one handed out (ids are not reused at once, like the IPAM).
  while (next_backend_id_ == 0 || used_backend_ids_.count(next_backend_id_)) {
    ++next_backend_id_;
  }
  uint32_t id = next_backend_id_++;
  used_backend_ids_.insert(id);
  backend_ids_[key] = id;
  return id;
}

uint16_t Planner::revNatIndex(const std::string& key) {
  auto it = revnat_ids_.find(key);
  if (it != revnat_ids_.end()) {
    return it->second;
  }
  // Bounded: at most 65535 candidates; 0 is never an index.
  for (uint32_t tries = 0; tries < 65536 && (next_revnat_id_ == 0 || used_revnat_ids_.count(next_revnat_id_));
       ++tries) {
    ++next_revnat_id_;
  }
  uint16_t id = next_revnat_id_++;
  used_revnat_ids_.insert(id);
  revnat_ids_[key] = id;
  return id;
}

uint16_t Planner::allocateNodePort(const std::string& key, uint16_t requested) {
  if (requested != 0) {
    node_ports_[key] = requested;
    return requested;
  }
  auto it = node_ports_.find(key);
  if (it != node_ports_.end()) {
    return it->second;
  }
  std::set<uint16_t> used;
  for (const auto& [k, p] : node_ports_) {
    used.insert(p);
  }
  // Deterministic first choice from the name, then the next free port in the range 30000-32767.
  uint32_t h = 2166136261u;
  for (char c : key) {
    h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  }
  for (uint32_t i = 0; i < 2768; ++i) {
    uint16_t p = static_cast<uint16_t>(30000 + (h + i) % 2768);
    if (!used.count(p)) {
      node_ports_[key] = p;
      return p;
    }
  }
  return 0;
}

uint16_t Planner::nodePort(const std::string& service, const ServicePort& port) const {
  auto it = node_ports_.find(fmt::format("{}:{}/{}", service, port.port, protoName(port.proto)));
  return it == node_ports_.end() ? 0 : it->second;
}

MapState Planner::compute(const std::vector<Service>& services, const std::vector<EndpointSlice>& slices) {
  MapState st;
  std::set<std::string> live_backends;
  std::set<std::string> live_revnat;
  std::set<std::string> live_nodeports;
  // Requested node ports first, so allocation never takes one a later service asks for.
  for (const auto& svc : services) {
    if (svc.type == ServiceType::kClusterIP) {
      continue;
    }
    for (const auto& sp : svc.ports) {
      if (sp.node_port) {
        node_ports_[fmt::format("{}:{}/{}", svc.key(), sp.port, protoName(sp.proto))] = sp.node_port;
      }
    }
  }
  for (const auto& svc : services) {
    for (const auto& sp : svc.ports) {
      // Backends of this service port: every slice of the service with a port of the same name.
      std::vector<BackendView> all;
      for (const auto& es : slices) {
        if (es.ns != svc.ns || es.service != svc.name) {
          continue;
        }
        for (const auto& ep : es.ports) {
          if (ep.name != sp.name || ep.proto != sp.proto) {
            continue;
          }
          for (const auto& a : es.endpoints) {
            // Ready endpoints take new flows; terminating ones that still serve keep their existing flows.
            bool active = a.ready && !a.terminating;
            bool terminating = !active && a.serving && a.terminating;
            if (!active && !terminating) {
              continue;
            }
            std::string bkey = fmt::format("{}:{}/{}", a.ip.toString(), ep.port, protoName(ep.proto));
            live_backends.insert(bkey);
            BackendView b{backendId(bkey), a.ip, ep.port, terminating, a.node_name};
            if (std::none_of(all.begin(), all.end(), [&](const BackendView& x) { return x.id == b.id; })) {
              all.push_back(b);
            }
            plexus_lb4_backend be{};
            be.address = a.ip.networkOrder();
            be.port = htons(ep.port);
            be.proto = ep.proto;
            be.state = terminating ? PLEXUS_BACKEND_TERMINATING : PLEXUS_BACKEND_ACTIVE;
            st.backends[b.id] = be;
          }
        }
      }
      std::sort(all.begin(), all.end(), [](const BackendView& a, const BackendView& b) {
        return std::make_pair(a.terminating, a.id) < std::make_pair(b.terminating, b.id);
      });
      std::vector<BackendView> local;
      for (const auto& b : all) {
        if (b.node_name.empty() || b.node_name == config_.node_name) {
          local.push_back(b);
        }
      }

      auto add = [&](Ipv4 addr, uint16_t port, const std::string& type, uint16_t flag, bool north_south) {
        std::string fkey = fmt::format("{}:{}/{}", addr.toString(), port, protoName(sp.proto));
        live_revnat.insert(fkey);
        uint16_t rid = revNatIndex(fkey);
        plexus_lb4_reverse_nat rn{};
        rn.address = addr.networkOrder();
        rn.port = htons(port);
        st.revnat[rid] = rn;
        bool use_maglev = north_south && config_.maglev;
        auto install = [&](uint8_t scope, const std::vector<BackendView>& bes) {
          std::vector<uint32_t> active;
          for (const auto& b : bes) {
            if (!b.terminating) {
              active.push_back(b.id);
            }
          }
          plexus_lb4_service master{};
          master.count = static_cast<uint16_t>(active.size());
          master.rev_nat_index = rid;
          master.flags = flag;
          if (svc.affinity_client_ip) {
            master.flags |= PLEXUS_SVC_F_AFFINITY;
            master.affinity_timeout = svc.affinity_timeout;
          }
          if (svc.external_traffic_local && scope == PLEXUS_LB_SCOPE_EXTERNAL && north_south) {
            master.flags |= PLEXUS_SVC_F_ETP_LOCAL;
          }
          if (use_maglev && scope == PLEXUS_LB_SCOPE_EXTERNAL && !active.empty()) {
            master.flags |= PLEXUS_SVC_F_MAGLEV;
            std::vector<MaglevBackend> mb;
            for (const auto& b : bes) {
              if (!b.terminating) {
                mb.push_back({maglevBackendKey(b.ip.toString(), b.port, protoName(sp.proto)), b.id, 100});
              }
            }
            auto t = buildMaglevTable(mb, config_.maglev_m, config_.seed);
            if (auto* table = std::get_if<std::vector<uint32_t>>(&t)) {
              st.maglev[rid] = *table;
            }
          }
          st.services[makeLbKey(addr, port, sp.proto, scope, 0)] = master;
          for (size_t i = 0; i < active.size(); ++i) {
            plexus_lb4_service slot{};
            slot.backend_id = active[i];
            slot.rev_nat_index = rid;
            st.services[makeLbKey(addr, port, sp.proto, scope, static_cast<uint16_t>(i + 1))] = slot;
          }
          st.frontends.push_back({svc.key(), addr, port, sp.proto, type, scope, rid,
                                  (master.flags & PLEXUS_SVC_F_MAGLEV) != 0, bes});
        };
        // External scope: traffic from outside (and from inside when no internal entry exists).
        bool external_local = north_south && svc.external_traffic_local;
        install(PLEXUS_LB_SCOPE_EXTERNAL, external_local ? local : all);
        // Internal scope, used by local clients, when it differs: ETP=Local never applies to them, ITP=Local
        // always does. The external master then says so (TWO_SCOPES), so others pay a single lookup.
        bool internal_entry = (!north_south && svc.internal_traffic_local) || external_local;
        if (internal_entry) {
          install(PLEXUS_LB_SCOPE_INTERNAL, svc.internal_traffic_local ? local : all);
          st.services[makeLbKey(addr, port, sp.proto, PLEXUS_LB_SCOPE_EXTERNAL, 0)].flags |= PLEXUS_SVC_F_TWO_SCOPES;
        }
      };

      if (svc.cluster_ip) {
        add(*svc.cluster_ip, sp.port, "ClusterIP", PLEXUS_SVC_F_CLUSTERIP, false);
      }
      if (svc.type != ServiceType::kClusterIP) {
        std::string npkey = fmt::format("{}:{}/{}", svc.key(), sp.port, protoName(sp.proto));
        live_nodeports.insert(npkey);
        uint16_t np = allocateNodePort(npkey, sp.node_port);
        for (const auto& ip : config_.node_ips) {
          add(ip, np, "NodePort", PLEXUS_SVC_F_NODEPORT, true);
        }
      }
      if (svc.type == ServiceType::kLoadBalancer) {
        for (const auto& ip : svc.lb_ingress_ips) {
          add(ip, sp.port, "LoadBalancer", PLEXUS_SVC_F_LOADBALANCER, true);
        }
      }
      for (const auto& ip : svc.external_ips) {
        add(ip, sp.port, "ExternalIP", PLEXUS_SVC_F_EXTERNAL_IP, true);
      }
    }
  }
  // Ids no longer used are freed for reuse.
  std::erase_if(backend_ids_, [&](const auto& kv) {
    bool dead = !live_backends.count(kv.first);
    if (dead) {
      used_backend_ids_.erase(kv.second);
    }
    return dead;
  });
  std::erase_if(revnat_ids_, [&](const auto& kv) {
    bool dead = !live_revnat.count(kv.first);
    if (dead) {
      used_revnat_ids_.erase(kv.second);
    }
    return dead;
  });
  std::erase_if(node_ports_, [&](const auto& kv) { return !live_nodeports.count(kv.first); });
  return st;
}

namespace {
bool sameBytes(const void* a, const void* b, size_t n) { return std::memcmp(a, b, n) == 0; }
}  // namespace

Plan Planner::diff(const MapState& installed, const MapState& desired) {
  Plan p;
  for (const auto& [id, b] : desired.backends) {
    auto it = installed.backends.find(id);
    if (it == installed.backends.end() || !sameBytes(&it->second, &b, sizeof(b))) {
      p.backend_upserts.emplace_back(id, b);
    }
  }
  for (const auto& [id, r] : desired.revnat) {
    auto it = installed.revnat.find(id);
    if (it == installed.revnat.end() || !sameBytes(&it->second, &r, sizeof(r))) {
      p.revnat_upserts.emplace_back(id, r);
    }
  }
  for (const auto& [id, t] : desired.maglev) {
    auto it = installed.maglev.find(id);
    if (it == installed.maglev.end() || it->second != t) {
      p.maglev_upserts.emplace_back(id, t);
    }
  }
  // Slots first, then masters: a master never counts a slot that is not there yet.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& [k, v] : desired.services) {
      if ((k.backend_slot == 0) != (pass == 1)) {
        continue;
      }
      auto it = installed.services.find(k);
      if (it == installed.services.end() || !sameBytes(&it->second, &v, sizeof(v))) {
        p.service_upserts.emplace_back(k, v);
      }
    }
  }
  for (const auto& [k, v] : installed.services) {
    if (!desired.services.count(k)) {
      p.service_deletes.push_back(k);
    }
  }
  for (const auto& [id, t] : installed.maglev) {
    if (!desired.maglev.count(id)) {
      p.maglev_deletes.push_back(id);
    }
  }
  for (const auto& [id, r] : installed.revnat) {
    if (!desired.revnat.count(id)) {
      p.revnat_deletes.push_back(id);
    }
  }
  for (const auto& [id, b] : installed.backends) {
    if (!desired.backends.count(id)) {
      p.backend_deletes.push_back(id);
    }
  }
  return p;
}

}  // namespace plexus::lb
