#include "plexus/lb/planner.h"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>
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

plexus_lb4_src_range_key makeSourceRangeKey(uint16_t rev_nat_index, const Ipv4Prefix& range) {
  plexus_lb4_src_range_key k;
  std::memset(&k, 0, sizeof(k));
  k.prefixlen = PLEXUS_LB_SRC_RANGE_FIXED_PREFIX + static_cast<uint32_t>(range.length());
  k.rev_nat_index = rev_nat_index;
  k.address = range.network().networkOrder();
  return k;
}

namespace {
// How the planner names a backend or a frontend for its ids: "ip:port/PROTO".
uint64_t endpointKey(Ipv4 ip, uint16_t port, uint8_t proto) {
  return (static_cast<uint64_t>(ip.networkOrder()) << 24) | (static_cast<uint64_t>(port) << 8) | proto;
}
uint64_t endpointKey(__be32 address, __be16 port, uint8_t proto) {
  return endpointKey(Ipv4::fromNetwork(address), ntohs(port), proto);
}

// Takes the restored id of `key`, if any, out of `restored`.
template <typename Id>
std::optional<Id> claim(std::unordered_map<uint64_t, Id>* restored, uint64_t key) {
  auto it = restored->find(key);
  if (it == restored->end()) {
    return std::nullopt;
  }
  Id id = it->second;
  restored->erase(it);
  return id;
}
}  // namespace

void Planner::restore(const MapState& installed) {
  for (const auto& [id, b] : installed.backends) {
    restored_backend_ids_[endpointKey(b.address, b.port, b.proto)] = id;
    used_backend_ids_.insert(id);
    next_backend_id_ = std::max(next_backend_id_, id + 1);
  }
  // A reverse-NAT entry has no protocol; its master service entries do.
  for (const auto& [k, v] : installed.services) {
    if (k.backend_slot == 0 && v.rev_nat_index != 0) {
      restored_revnat_ids_[endpointKey(k.address, k.dport, k.proto)] = v.rev_nat_index;
      used_revnat_ids_.insert(v.rev_nat_index);
      next_revnat_id_ = std::max<uint16_t>(next_revnat_id_, static_cast<uint16_t>(v.rev_nat_index + 1));
    }
  }
}

uint32_t Planner::backendId(EndpointKey key) {
  auto it = backend_ids_.find(key);
  if (it != backend_ids_.end()) {
    return it->second;
  }
  if (auto id = claim(&restored_backend_ids_, key)) {
    backend_ids_[key] = *id;
    return *id;
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

uint16_t Planner::revNatIndex(EndpointKey key) {
  auto it = revnat_ids_.find(key);
  if (it != revnat_ids_.end()) {
    return it->second;
  }
  if (auto id = claim(&restored_revnat_ids_, key)) {
    revnat_ids_[key] = *id;
    return *id;
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

void Planner::registerRequestedNodePorts(const Service& svc) {
  if (svc.type == ServiceType::kClusterIP) {
    return;
  }
  for (const auto& sp : svc.ports) {
    if (sp.node_port) {
      node_ports_[fmt::format("{}:{}/{}", svc.key(), sp.port, protoName(sp.proto))] = sp.node_port;
    }
  }
}

Planner::Fragment Planner::computeService(const Service& svc, const std::vector<const EndpointSlice*>& slices) {
  Fragment f;
  MapState& st = f.st;
  for (const auto& sp : svc.ports) {
    // Backends of this service port: every slice of the service with a port of the same name.
    std::vector<BackendView> all;
    for (const EndpointSlice* esp : slices) {
      const EndpointSlice& es = *esp;
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
          EndpointKey bkey = endpointKey(a.ip, ep.port, ep.proto);
          if (std::find(f.backend_keys.begin(), f.backend_keys.end(), bkey) == f.backend_keys.end()) {
            f.backend_keys.push_back(bkey);
          }
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
      EndpointKey fkey = endpointKey(addr, port, sp.proto);
      f.revnat_keys.push_back(fkey);
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
      // loadBalancerSourceRanges guard the LoadBalancer addresses only (kube-proxy and Cilium leave the NodePort and
      // the clusterIP open). The flag goes on whenever the field lists anything, so that a service whose ranges are
      // all unusable is closed to every client, never open to all.
      if (flag == PLEXUS_SVC_F_LOADBALANCER && svc.source_ranges_set) {
        st.services[makeLbKey(addr, port, sp.proto, PLEXUS_LB_SCOPE_EXTERNAL, 0)].flags |= PLEXUS_SVC_F_SOURCE_RANGE;
        for (const auto& range : svc.source_ranges) {
          st.source_ranges.insert(makeSourceRangeKey(rid, range));
        }
      }
    };

    if (svc.cluster_ip) {
      add(*svc.cluster_ip, sp.port, "ClusterIP", PLEXUS_SVC_F_CLUSTERIP, false);
    }
    if (svc.type != ServiceType::kClusterIP) {
      std::string npkey = fmt::format("{}:{}/{}", svc.key(), sp.port, protoName(sp.proto));
      f.nodeport_keys.push_back(npkey);
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
  return f;
}

void Planner::hold(const Fragment& f) {
  for (const auto& k : f.backend_keys) {
    backend_refs_[k]++;
  }
  for (const auto& k : f.revnat_keys) {
    revnat_refs_[k]++;
  }
  for (const auto& k : f.nodeport_keys) {
    nodeport_refs_[k]++;
  }
  for (const auto& [id, b] : f.st.backends) {
    backend_users_[id]++;
  }
}

void Planner::drop(const Fragment& f) {
  // True when the key's last holder went.
  auto release = [](auto* refs, const auto& key) {
    auto it = refs->find(key);
    if (it == refs->end() || --it->second > 0) {
      return false;
    }
    refs->erase(it);
    return true;
  };
  for (const auto& k : f.backend_keys) {
    if (release(&backend_refs_, k)) {
      used_backend_ids_.erase(backend_ids_[k]);
      backend_ids_.erase(k);
    }
  }
  for (const auto& k : f.revnat_keys) {
    if (release(&revnat_refs_, k)) {
      used_revnat_ids_.erase(revnat_ids_[k]);
      revnat_ids_.erase(k);
    }
  }
  for (const auto& k : f.nodeport_keys) {
    if (release(&nodeport_refs_, k)) {
      node_ports_.erase(k);
    }
  }
  for (const auto& [id, b] : f.st.backends) {
    if (--backend_users_[id] == 0) {
      backend_users_.erase(id);
    }
  }
}

bool Planner::backendInUse(uint32_t id) const { return backend_users_.count(id) > 0; }

namespace {
void merge(MapState* into, const MapState& part) {
  into->services.insert(part.services.begin(), part.services.end());
  for (const auto& [id, b] : part.backends) {
    into->backends[id] = b;
  }
  into->revnat.insert(part.revnat.begin(), part.revnat.end());
  into->maglev.insert(part.maglev.begin(), part.maglev.end());
  into->source_ranges.insert(part.source_ranges.begin(), part.source_ranges.end());
  into->frontends.insert(into->frontends.end(), part.frontends.begin(), part.frontends.end());
}
}  // namespace

Planner::Change Planner::update(const std::map<std::string, std::optional<Service>>& changed,
                                const std::map<std::string, std::vector<EndpointSlice>>& slices) {
  ServiceRefs services;
  for (const auto& [key, svc] : changed) {
    services[key] = svc ? &*svc : nullptr;
  }
  SliceRefs by_service;
  for (const auto& [key, list] : slices) {
    for (const auto& es : list) {
      by_service[key].push_back(&es);
    }
  }
  Change c;
  replace(services, by_service, &c);
  return c;
}

void Planner::replace(const ServiceRefs& changed, const SliceRefs& slices, Change* out) {
  // Requested node ports first, so allocation never takes one a changed service asks for.
  for (const auto& [key, svc] : changed) {
    if (svc) {
      registerRequestedNodePorts(*svc);
    }
  }
  std::vector<Fragment> old;
  static const std::vector<const EndpointSlice*> kNone;
  for (const auto& [key, svc] : changed) {
    auto it = fragments_.find(key);
    if (it != fragments_.end()) {
      if (out) {
        merge(&out->before, it->second.st);
      }
      old.push_back(std::move(it->second));
      fragments_.erase(it);
    }
    if (!svc) {
      continue;
    }
    auto mine = slices.find(key);
    Fragment f = computeService(*svc, mine == slices.end() ? kNone : mine->second);
    hold(f);  // before the old ones are dropped, so ids shared by both stay
    if (out) {
      merge(&out->after, f.st);
    }
    fragments_[key] = std::move(f);
  }
  for (const auto& f : old) {
    drop(f);
  }
}

Plan Planner::plan(const Change& change) const {
  Plan p = diff(change.before, change.after);
  std::erase_if(p.backend_deletes, [&](uint32_t id) { return backendInUse(id); });
  return p;
}

void Planner::commit(MapState* installed, const Change& change, const Plan& plan) {
  for (const auto& [k, v] : change.before.services) {
    installed->services.erase(k);
  }
  for (const auto& [id, r] : change.before.revnat) {
    installed->revnat.erase(id);
  }
  for (const auto& [id, t] : change.before.maglev) {
    installed->maglev.erase(id);
  }
  for (uint32_t id : plan.backend_deletes) {
    installed->backends.erase(id);
  }
  for (const auto& k : change.before.source_ranges) {
    installed->source_ranges.erase(k);
  }
  std::set<std::string> changed;
  for (const auto& f : change.before.frontends) {
    changed.insert(f.service);
  }
  std::erase_if(installed->frontends, [&](const FrontendView& f) { return changed.count(f.service) > 0; });
  merge(installed, change.after);  // every key of `after` that `before` held was erased above
}

MapState Planner::current() const {
  MapState st;
  for (const auto& [key, f] : fragments_) {
    merge(&st, f.st);
  }
  return st;
}

MapState Planner::compute(const std::vector<Service>& services, const std::vector<EndpointSlice>& slices) {
  ServiceRefs changed;
  for (const auto& [key, f] : fragments_) {
    changed[key] = nullptr;  // gone unless listed below
  }
  for (const auto& svc : services) {
    changed[svc.key()] = &svc;
  }
  SliceRefs by_service;
  for (const auto& es : slices) {
    by_service[es.ns + "/" + es.service].push_back(&es);
  }
  replace(changed, by_service, nullptr);  // registers every listed service's requested node ports first
  // Restored ids no service claimed are free now.
  for (const auto& [key, id] : restored_backend_ids_) {
    used_backend_ids_.erase(id);
  }
  for (const auto& [key, id] : restored_revnat_ids_) {
    used_revnat_ids_.erase(id);
  }
  restored_backend_ids_.clear();
  restored_revnat_ids_.clear();
  return current();
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
  for (const auto& k : desired.source_ranges) {
    if (!installed.source_ranges.count(k)) {
      p.source_range_upserts.push_back(k);
    }
  }
  for (const auto& k : installed.source_ranges) {
    if (!desired.source_ranges.count(k)) {
      p.source_range_deletes.push_back(k);
    }
  }
  return p;
}

}  // namespace plexus::lb
