#include "plexus/lb/planner.h"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>
#include <set>
#include <string_view>

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
// How the planner names a backend or a frontend for its ids.
uint64_t endpointKey(Ipv4 ip, uint16_t port, uint8_t proto) { return packEndpoint(ip, port, proto); }
uint64_t endpointKey(__be32 address, __be16 port, uint8_t proto) {
  return packEndpoint(Ipv4::fromNetwork(address), ntohs(port), proto);
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
      used_revnat_ids_[v.rev_nat_index] = true;
      next_revnat_id_ = std::max<uint16_t>(next_revnat_id_, static_cast<uint16_t>(v.rev_nat_index + 1));
    }
  }
}

uint32_t Planner::backendId(EndpointKey key) {
  auto it = backend_ids_.find(key);
  if (it != backend_ids_.end()) {
    return it->second.id;
  }
  if (auto id = claim(&restored_backend_ids_, key)) {
    backend_ids_[key].id = *id;
    return *id;
  }
  // Next free id after the last one handed out (ids are not reused at once, like the IPAM).
  while (next_backend_id_ == 0 || used_backend_ids_.count(next_backend_id_)) {
    ++next_backend_id_;
  }
  uint32_t id = next_backend_id_++;
  used_backend_ids_.insert(id);
  backend_ids_[key].id = id;
  return id;
}

uint16_t Planner::revNatIndex(EndpointKey key) {
  auto it = revnat_ids_.find(key);
  if (it != revnat_ids_.end()) {
    return static_cast<uint16_t>(it->second.id);
  }
  if (auto id = claim(&restored_revnat_ids_, key)) {
    revnat_ids_[key].id = *id;
    return *id;
  }
  // Bounded: at most 65535 candidates; 0 is never an index.
  for (uint32_t tries = 0; tries < 65536 && (next_revnat_id_ == 0 || used_revnat_ids_[next_revnat_id_]); ++tries) {
    ++next_revnat_id_;
  }
  uint16_t id = next_revnat_id_++;
  used_revnat_ids_[id] = true;
  revnat_ids_[key].id = id;
  return id;
}

uint32_t Planner::nodeIndex(const std::string& name) {
  auto [it, added] = node_index_.try_emplace(name, static_cast<uint32_t>(node_names_.size()));
  if (added) {
    node_names_.push_back(name);
  }
  return it->second;
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

Planner::Fragment Planner::computeService(const std::string& key, const Service& svc,
                                          const std::vector<const EndpointSlice*>& slices, MapState* after) {
  // Built in a MapState (the master entries' flags are amended as the scopes are added), then flattened.
  Fragment f;
  MapState st;
  std::map<uint32_t, uint32_t> nodes;  // backend id -> node index
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
          BackendView b{backendId(endpointKey(a.ip, ep.port, ep.proto)), a.ip, ep.port, terminating, a.node_name};
          if (std::none_of(all.begin(), all.end(), [&](const BackendView& x) { return x.id == b.id; })) {
            all.push_back(b);
          }
          plexus_lb4_backend be{};
          be.address = a.ip.networkOrder();
          be.port = htons(ep.port);
          be.proto = ep.proto;
          be.state = terminating ? PLEXUS_BACKEND_TERMINATING : PLEXUS_BACKEND_ACTIVE;
          st.backends[b.id] = be;
          nodes[b.id] = nodeIndex(a.node_name);
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

    auto add = [&](Ipv4 addr, uint16_t port, FrontendType type, uint16_t flag, bool north_south) {
      uint16_t rid = revNatIndex(endpointKey(addr, port, sp.proto));
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
            st.maglev[rid] = MaglevTable::of(std::move(*table));
          }
        }
        st.services[makeLbKey(addr, port, sp.proto, scope, 0)] = master;
        for (size_t i = 0; i < active.size(); ++i) {
          plexus_lb4_service slot{};
          slot.backend_id = active[i];
          slot.rev_nat_index = rid;
          st.services[makeLbKey(addr, port, sp.proto, scope, static_cast<uint16_t>(i + 1))] = slot;
        }
        Frontend fe{addr, port, rid, sp.proto, scope, type, (master.flags & PLEXUS_SVC_F_MAGLEV) != 0, {}};
        for (const auto& b : bes) {
          fe.backends.push_back(b.id);
        }
        f.frontends.push_back(std::move(fe));
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
      add(*svc.cluster_ip, sp.port, FrontendType::kClusterIP, PLEXUS_SVC_F_CLUSTERIP, false);
    }
    if (svc.type != ServiceType::kClusterIP) {
      std::string npkey = fmt::format("{}:{}/{}", svc.key(), sp.port, protoName(sp.proto));
      f.nodeport_keys.push_back(npkey);
      uint16_t np = allocateNodePort(npkey, sp.node_port);
      for (const auto& ip : config_.node_ips) {
        add(ip, np, FrontendType::kNodePort, PLEXUS_SVC_F_NODEPORT, true);
      }
    }
    if (svc.type == ServiceType::kLoadBalancer) {
      for (const auto& ip : svc.lb_ingress_ips) {
        add(ip, sp.port, FrontendType::kLoadBalancer, PLEXUS_SVC_F_LOADBALANCER, true);
      }
    }
    for (const auto& ip : svc.external_ips) {
      add(ip, sp.port, FrontendType::kExternalIP, PLEXUS_SVC_F_EXTERNAL_IP, true);
    }
  }
  f.services.assign(st.services.begin(), st.services.end());
  for (const auto& [id, be] : st.backends) {
    f.backends.push_back({id, be, nodes[id]});
  }
  f.revnat.assign(st.revnat.begin(), st.revnat.end());
  for (const auto& [rid, t] : st.maglev) {
    f.maglev.emplace_back(rid, t.digest);
  }
  f.source_ranges.assign(st.source_ranges.begin(), st.source_ranges.end());
  f.frontends.shrink_to_fit();
  f.nodeport_keys.shrink_to_fit();
  mergeInto(after, key, f);
  for (auto& [rid, t] : st.maglev) {
    after->maglev[rid] = std::move(t);  // with its slots, for the plan
  }
  return f;
}

void Planner::hold(const Fragment& f) {
  for (const auto& b : f.backends) {
    backend_ids_[endpointKey(b.value.address, b.value.port, b.value.proto)].holders++;
  }
  for (const auto& fe : f.frontends) {  // a frontend's two scopes hold its index twice, and drop() releases it twice
    revnat_ids_[endpointKey(fe.address, fe.port, fe.proto)].holders++;
  }
  for (const auto& k : f.nodeport_keys) {
    nodeport_refs_[k]++;
  }
}

void Planner::drop(const Fragment& f) {
  // The id of a key whose last holder went, else 0.
  auto release = [](std::unordered_map<EndpointKey, Held>* ids, EndpointKey key) -> uint32_t {
    auto it = ids->find(key);
    if (it == ids->end() || --it->second.holders > 0) {
      return 0;
    }
    uint32_t id = it->second.id;
    ids->erase(it);
    return id;
  };
  for (const auto& b : f.backends) {
    if (uint32_t id = release(&backend_ids_, endpointKey(b.value.address, b.value.port, b.value.proto))) {
      used_backend_ids_.erase(id);
    }
  }
  for (const auto& fe : f.frontends) {
    if (uint32_t id = release(&revnat_ids_, endpointKey(fe.address, fe.port, fe.proto))) {
      used_revnat_ids_[id] = false;
    }
  }
  for (const auto& k : f.nodeport_keys) {
    auto it = nodeport_refs_.find(k);
    if (it != nodeport_refs_.end() && --it->second == 0) {
      nodeport_refs_.erase(it);
      node_ports_.erase(k);
    }
  }
}

namespace {
const char* typeName(uint8_t type) {
  static constexpr const char* kNames[] = {"ClusterIP", "NodePort", "LoadBalancer", "ExternalIP"};
  return kNames[type];
}
}  // namespace

FrontendView Planner::view(const std::string& key, const Fragment& f, const Frontend& fe) const {
  FrontendView v{key, fe.address, fe.port, fe.proto, typeName(static_cast<uint8_t>(fe.type)), fe.scope,
                 fe.rev_nat_index, fe.maglev, {}};
  for (uint32_t id : fe.backends) {
    auto b = std::lower_bound(f.backends.begin(), f.backends.end(), id,
                              [](const Backend& x, uint32_t want) { return x.id < want; });
    if (b == f.backends.end() || b->id != id) {
      continue;
    }
    v.backends.push_back({id, Ipv4::fromNetwork(b->value.address), ntohs(b->value.port),
                          b->value.state == PLEXUS_BACKEND_TERMINATING, node_names_[b->node]});
  }
  return v;
}

void Planner::mergeInto(MapState* into, const std::string& key, const Fragment& f) const {
  into->services.insert(f.services.begin(), f.services.end());
  for (const auto& b : f.backends) {
    into->backends[b.id] = b.value;
  }
  into->revnat.insert(f.revnat.begin(), f.revnat.end());
  for (const auto& [rid, digest] : f.maglev) {
    into->maglev[rid].digest = digest;
  }
  into->source_ranges.insert(f.source_ranges.begin(), f.source_ranges.end());
  for (const auto& fe : f.frontends) {
    into->frontends.push_back(view(key, f, fe));
  }
}

std::vector<FrontendView> Planner::frontends(const std::string& service) const {
  std::vector<FrontendView> out;
  if (auto it = fragments_.find(service); it != fragments_.end()) {
    for (const auto& fe : it->second.frontends) {
      out.push_back(view(service, it->second, fe));
    }
  }
  return out;
}

Planner::Counts Planner::counts() const {
  Counts c;
  for (const auto& [key, f] : fragments_) {
    c.services += f.frontends.empty() ? 0 : 1;
    c.frontends += f.frontends.size();
  }
  c.backends = backend_ids_.size();
  return c;
}

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
  replace(services, by_service, &c, true);
  return c;
}

void Planner::replace(const ServiceRefs& changed, const SliceRefs& slices, Change* out, bool with_before) {
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
      if (with_before) {
        mergeInto(&out->before, key, it->second);
      }
      old.push_back(std::move(it->second));
      fragments_.erase(it);
    }
    if (!svc) {
      continue;
    }
    auto mine = slices.find(key);
    Fragment f = computeService(key, *svc, mine == slices.end() ? kNone : mine->second, &out->after);
    hold(f);  // before the old ones are dropped, so ids shared by both stay
    fragments_.emplace(key, std::move(f));
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

MapState Planner::current() const {
  MapState st;
  for (const auto& [key, f] : fragments_) {
    mergeInto(&st, key, f);
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
  // Every service is in `changed`, so the change's `after` is the whole desired state.
  Change c;
  replace(changed, by_service, &c, false);  // registers every listed service's requested node ports first
  // Restored ids no service claimed are free now.
  for (const auto& [key, id] : restored_backend_ids_) {
    used_backend_ids_.erase(id);
  }
  for (const auto& [key, id] : restored_revnat_ids_) {
    used_revnat_ids_[id] = false;
  }
  restored_backend_ids_.clear();
  restored_revnat_ids_.clear();
  return std::move(c.after);
}

MaglevTable MaglevTable::of(std::vector<uint32_t> slots) {
  MaglevTable t;
  t.digest = std::hash<std::string_view>{}(
      std::string_view(reinterpret_cast<const char*>(slots.data()), slots.size() * sizeof(uint32_t)));
  t.slots = std::move(slots);
  return t;
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
    if (it == installed.maglev.end() || !(it->second == t)) {
      p.maglev_upserts.emplace_back(id, t.slots);
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

void applyPlan(MapState* st, const Plan& plan) {
  for (const auto& [id, b] : plan.backend_upserts) {
    st->backends[id] = b;
  }
  for (const auto& [id, r] : plan.revnat_upserts) {
    st->revnat[id] = r;
  }
  for (const auto& [id, t] : plan.maglev_upserts) {
    st->maglev[id] = MaglevTable::of(t);
  }
  st->source_ranges.insert(plan.source_range_upserts.begin(), plan.source_range_upserts.end());
  for (const auto& [k, v] : plan.service_upserts) {
    st->services[k] = v;
  }
  for (const auto& k : plan.service_deletes) {
    st->services.erase(k);
  }
  for (const auto& k : plan.source_range_deletes) {
    st->source_ranges.erase(k);
  }
  for (uint16_t id : plan.maglev_deletes) {
    st->maglev.erase(id);
  }
  for (uint16_t id : plan.revnat_deletes) {
    st->revnat.erase(id);
  }
  for (uint32_t id : plan.backend_deletes) {
    st->backends.erase(id);
  }
}

}  // namespace plexus::lb
