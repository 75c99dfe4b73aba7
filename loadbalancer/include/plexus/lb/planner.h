#pragma once
// From services and their endpoints to the datapath's map contents, and the difference to what is installed
// (pure). Ids are stable: a backend keeps its id while any frontend uses it, a frontend keeps its reverse-NAT
// index, a NodePort keeps its allocated port. The writer applies a Plan; only then does the caller commit it.

#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "plexus/common/ipv4.h"
#include "plexus/lb.h"
#include "plexus/lb/maglev.h"
#include "plexus/lb/service.h"

namespace plexus::lb {

// Orders service keys field by field (padding is always zero); inlined, unlike a memcmp call per comparison.
struct KeyLess {
  bool operator()(const plexus_lb4_key& a, const plexus_lb4_key& b) const {
    return std::tie(a.address, a.dport, a.backend_slot, a.proto, a.scope) <
           std::tie(b.address, b.dport, b.backend_slot, b.proto, b.scope);
  }
};

// Orders source-range keys (padding is always zero).
struct RangeKeyLess {
  bool operator()(const plexus_lb4_src_range_key& a, const plexus_lb4_src_range_key& b) const {
    return std::tie(a.rev_nat_index, a.prefixlen, a.address) < std::tie(b.rev_nat_index, b.prefixlen, b.address);
  }
};
using SourceRangeSet = std::set<plexus_lb4_src_range_key, RangeKeyLess>;

struct PlannerConfig {
  std::string node_name;
  std::vector<Ipv4> node_ips;  // NodePort frontends
  bool maglev = true;          // loadBalancer.algorithm
  uint32_t maglev_m = kDefaultMaglevTableSize;
  MaglevSeed seed;
};

struct BackendView {
  uint32_t id = 0;
  Ipv4 ip;
  uint16_t port = 0;
  bool terminating = false;
  std::string node_name;
};

struct FrontendView {
  std::string service;  // "ns/name"
  Ipv4 address;
  uint16_t port = 0;
  uint8_t proto = 6;
  std::string type;     // ClusterIP, NodePort, LoadBalancer, ExternalIP
  uint8_t scope = PLEXUS_LB_SCOPE_EXTERNAL;
  uint16_t rev_nat_index = 0;
  bool maglev = false;
  std::vector<BackendView> backends;  // active first, then terminating
};

struct MapState {
  std::map<plexus_lb4_key, plexus_lb4_service, KeyLess> services;
  std::map<uint32_t, plexus_lb4_backend> backends;
  std::map<uint16_t, plexus_lb4_reverse_nat> revnat;
  std::map<uint16_t, std::vector<uint32_t>> maglev;
  SourceRangeSet source_ranges;  // loadBalancerSourceRanges of LoadBalancer frontends (value: always 1)
  std::vector<FrontendView> frontends;
};

struct Plan {
  std::vector<std::pair<uint32_t, plexus_lb4_backend>> backend_upserts;
  std::vector<std::pair<uint16_t, plexus_lb4_reverse_nat>> revnat_upserts;
  std::vector<std::pair<uint16_t, std::vector<uint32_t>>> maglev_upserts;
  std::vector<std::pair<plexus_lb4_key, plexus_lb4_service>> service_upserts;  // slots before masters
  std::vector<plexus_lb4_key> service_deletes;
  std::vector<uint16_t> maglev_deletes;
  std::vector<uint16_t> revnat_deletes;
  std::vector<uint32_t> backend_deletes;
  // Written before the service entries (a master never announces ranges that are not there yet) and deleted after
  // them (the master stops announcing them first).
  std::vector<plexus_lb4_src_range_key> source_range_upserts;
  std::vector<plexus_lb4_src_range_key> source_range_deletes;
  size_t size() const {
    return backend_upserts.size() + revnat_upserts.size() + maglev_upserts.size() + service_upserts.size() +
           service_deletes.size() + maglev_deletes.size() + revnat_deletes.size() + backend_deletes.size() +
           source_range_upserts.size() + source_range_deletes.size();
  }
};

class Planner {
 public:
  explicit Planner(PlannerConfig config) : config_(std::move(config)) {}
  // NodePort frontends' addresses (devices detected later); takes effect at the next compute().
  void setNodeIps(std::vector<Ipv4> ips) { config_.node_ips = std::move(ips); }
  const std::string& nodeName() const { return config_.node_name; }

  // Adopts the ids the maps already hold (an agent restart), before the first compute(): a backend keeps its id and
  // a frontend its reverse-NAT index, so conntrack and affinity entries, which store them, stay valid. Ids that the
  // first compute() does not claim are free again after it.
  void restore(const MapState& installed);
  // The complete desired state. slices: every EndpointSlice (applied or derived), any service.
  MapState compute(const std::vector<Service>& services, const std::vector<EndpointSlice>& slices);
  // Incremental form: replaces the state of the services in `changed` (nullopt: the service is gone) and returns
  // the part of the map state those services held before and hold now. Other services are untouched; ids stay
  // stable and are freed only when no service uses them any more. `slices` holds each changed service's slices.
  struct Change {
    MapState before;
    MapState after;
  };
  Change update(const std::map<std::string, std::optional<Service>>& changed,
                const std::map<std::string, std::vector<EndpointSlice>>& slices);
  // The map operations of a change: its diff, keeping backends other services still use.
  Plan plan(const Change& change) const;
  // Applies a change, once its plan is written, to the installed state it was planned against.
  static void commit(MapState* installed, const Change& change, const Plan& plan);
  // The whole state the services hold now (what compute() returned, kept current by update()).
  MapState current() const;
  // Whether this backend id is used by any service.
  bool backendInUse(uint32_t id) const;
  static Plan diff(const MapState& installed, const MapState& desired);
  // The NodePort a service port got (allocated ones included), 0 when none.
  uint16_t nodePort(const std::string& service, const ServicePort& port) const;

 private:
  // One service's share of the map state, and the id keys it holds.
  // An address, port and protocol packed into one integer (a backend, or a frontend's reverse-NAT key).
  using EndpointKey = uint64_t;
  struct Fragment {
    MapState st;
    std::vector<EndpointKey> backend_keys;
    std::vector<EndpointKey> revnat_keys;
    std::vector<std::string> nodeport_keys;
  };
  // update() on borrowed inputs (a null service: gone), without the Change when out is null (compute() needs only
  // the resulting state).
  using ServiceRefs = std::map<std::string, const Service*>;
  using SliceRefs = std::map<std::string, std::vector<const EndpointSlice*>>;
  void replace(const ServiceRefs& changed, const SliceRefs& slices, Change* out);
  Fragment computeService(const Service& svc, const std::vector<const EndpointSlice*>& slices);
  void registerRequestedNodePorts(const Service& svc);
  // Reference counting of the ids fragments hold: an id is freed when its last holder goes.
  void hold(const Fragment& f);
  void drop(const Fragment& f);
  uint32_t backendId(EndpointKey key);
  uint16_t revNatIndex(EndpointKey key);
  uint16_t allocateNodePort(const std::string& key, uint16_t requested);

  PlannerConfig config_;
  std::map<std::string, Fragment> fragments_;  // by service key
  std::unordered_map<EndpointKey, uint32_t> backend_ids_;
  std::unordered_map<EndpointKey, uint16_t> revnat_ids_;
  std::map<std::string, uint16_t> node_ports_;
  // key -> fragments holding it
  std::unordered_map<EndpointKey, uint32_t> backend_refs_;
  std::unordered_map<EndpointKey, uint32_t> revnat_refs_;
  std::unordered_map<std::string, uint32_t> nodeport_refs_;
  std::map<uint32_t, uint32_t> backend_users_;  // backend id -> fragments using it
  // Ids in use, for O(log n) allocation (a linear rebuild per new id made 10k services quadratic).
  std::set<uint32_t> used_backend_ids_;
  std::set<uint16_t> used_revnat_ids_;
  // Restored ids not yet claimed (key -> id); they count as used until the first compute() ends.
  std::unordered_map<EndpointKey, uint32_t> restored_backend_ids_;
  std::unordered_map<EndpointKey, uint16_t> restored_revnat_ids_;
  uint32_t next_backend_id_ = 1;
  uint16_t next_revnat_id_ = 1;
};

// Zeroed ABI structs (padding included), so map keys never carry garbage.
plexus_lb4_key makeLbKey(Ipv4 addr, uint16_t port, uint8_t proto, uint8_t scope, uint16_t slot);
plexus_lb4_src_range_key makeSourceRangeKey(uint16_t rev_nat_index, const Ipv4Prefix& range);

}  // namespace plexus::lb
