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
#include <unordered_set>
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

// A Maglev table as a map state holds it: the digest of its slots always, the slots themselves only where a plan may
// write them (a computed desired state, the maps read back). The planner keeps digests alone between changes: the
// kernel holds the tables (M x 4 bytes each), and one copy there is enough.
struct MaglevTable {
  uint64_t digest = 0;
  std::vector<uint32_t> slots;  // empty: not kept
  static MaglevTable of(std::vector<uint32_t> slots);
  bool operator==(const MaglevTable& o) const { return digest == o.digest; }
};

struct MapState {
  std::map<plexus_lb4_key, plexus_lb4_service, KeyLess> services;
  std::map<uint32_t, plexus_lb4_backend> backends;
  std::map<uint16_t, plexus_lb4_reverse_nat> revnat;
  std::map<uint16_t, MaglevTable> maglev;
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
  // The complete desired state, Maglev slots included. slices: every EndpointSlice (applied or derived), any service.
  MapState compute(const std::vector<Service>& services, const std::vector<EndpointSlice>& slices);
  // Incremental form: replaces the state of the services in `changed` (nullopt: the service is gone) and returns
  // the part of the map state those services held before (Maglev digests only) and hold now (slots included).
  // Other services are untouched; ids stay stable and are freed only when no service uses them any more. `slices`
  // holds each changed service's slices.
  struct Change {
    MapState before;
    MapState after;
  };
  Change update(const std::map<std::string, std::optional<Service>>& changed,
                const std::map<std::string, std::vector<EndpointSlice>>& slices);
  // The map operations of a change: its diff, keeping backends other services still use.
  Plan plan(const Change& change) const;
  // The whole state the services hold now (Maglev digests only): what the maps hold once the plans are written.
  MapState current() const;
  // Whether this backend id is used by any service.
  bool backendInUse(uint32_t id) const { return used_backend_ids_.count(id) > 0; }
  static Plan diff(const MapState& installed, const MapState& desired);
  // The NodePort a service port got (allocated ones included), 0 when none.
  uint16_t nodePort(const std::string& service, const ServicePort& port) const;
  // The frontends of one service ("ns/name"), with their backends.
  std::vector<FrontendView> frontends(const std::string& service) const;
  // Counts for the metrics: services with a frontend, frontends, backends.
  struct Counts {
    size_t services = 0;
    size_t frontends = 0;
    size_t backends = 0;
  };
  Counts counts() const;

 private:
  // An address, port and protocol packed into one integer (a backend, or a frontend's reverse-NAT key).
  using EndpointKey = uint64_t;
  enum class FrontendType : uint8_t { kClusterIP, kNodePort, kLoadBalancer, kExternalIP };
  // What the views need of a frontend; its map entries are in the fragment.
  struct Frontend {
    Ipv4 address;
    uint16_t port = 0;
    uint16_t rev_nat_index = 0;
    uint8_t proto = 6;
    uint8_t scope = PLEXUS_LB_SCOPE_EXTERNAL;
    FrontendType type = FrontendType::kClusterIP;
    bool maglev = false;
    std::vector<uint32_t> backends;  // ids, active first, then terminating
  };
  struct Backend {
    uint32_t id = 0;
    plexus_lb4_backend value{};
    uint32_t node = 0;  // index into node_names_
  };
  // One service's share of the map state, in flat vectors (about a fifth of the memory of a MapState per service).
  // The backend and reverse-NAT keys it holds follow from its backends and frontends.
  struct Fragment {
    std::vector<std::pair<plexus_lb4_key, plexus_lb4_service>> services;
    std::vector<Backend> backends;
    std::vector<std::pair<uint16_t, plexus_lb4_reverse_nat>> revnat;
    std::vector<std::pair<uint16_t, uint64_t>> maglev;  // rev-NAT index -> table digest
    std::vector<plexus_lb4_src_range_key> source_ranges;
    std::vector<Frontend> frontends;
    std::vector<std::string> nodeport_keys;
  };
  // update() on borrowed inputs (a null service: gone), without the Change's `before` when with_before is false
  // (compute() needs only the new state).
  using ServiceRefs = std::map<std::string, const Service*>;
  using SliceRefs = std::map<std::string, std::vector<const EndpointSlice*>>;
  void replace(const ServiceRefs& changed, const SliceRefs& slices, Change* out, bool with_before);
  // The fragment of one service; its state, Maglev slots included, is added to *after.
  Fragment computeService(const std::string& key, const Service& svc, const std::vector<const EndpointSlice*>& slices,
                          MapState* after);
  void registerRequestedNodePorts(const Service& svc);
  // Adds a fragment's entries (and its frontends' views) to a map state.
  void mergeInto(MapState* into, const std::string& key, const Fragment& f) const;
  FrontendView view(const std::string& key, const Fragment& f, const Frontend& fe) const;
  // Reference counting of the ids fragments hold: an id is freed when its last holder goes.
  void hold(const Fragment& f);
  void drop(const Fragment& f);
  uint32_t backendId(EndpointKey key);
  uint16_t revNatIndex(EndpointKey key);
  uint16_t allocateNodePort(const std::string& key, uint16_t requested);
  uint32_t nodeIndex(const std::string& name);

  struct Held {
    uint32_t id = 0;
    uint32_t holders = 0;  // fragments holding the key
  };
  PlannerConfig config_;
  std::map<std::string, Fragment> fragments_;  // by service key
  std::unordered_map<EndpointKey, Held> backend_ids_;
  std::unordered_map<EndpointKey, Held> revnat_ids_;
  std::map<std::string, uint16_t> node_ports_;
  std::unordered_map<std::string, uint32_t> nodeport_refs_;  // key -> fragments holding it
  // Ids in use (held, or restored and not yet released), for allocation and backendInUse().
  std::unordered_set<uint32_t> used_backend_ids_;
  std::vector<bool> used_revnat_ids_ = std::vector<bool>(65536);
  // Restored ids not yet claimed (key -> id); they count as used until the first compute() ends.
  std::unordered_map<EndpointKey, uint32_t> restored_backend_ids_;
  std::unordered_map<EndpointKey, uint16_t> restored_revnat_ids_;
  uint32_t next_backend_id_ = 1;
  uint16_t next_revnat_id_ = 1;
  // The backends' node names, each once (a cluster has few nodes; fragments refer to them by index).
  std::vector<std::string> node_names_;
  std::unordered_map<std::string, uint32_t> node_index_;
};

// What the maps hold after a plan is written into `st` (the model the unit tests check plans against).
void applyPlan(MapState* st, const Plan& plan);

// Zeroed ABI structs (padding included), so map keys never carry garbage.
plexus_lb4_key makeLbKey(Ipv4 addr, uint16_t port, uint8_t proto, uint8_t scope, uint16_t slot);
plexus_lb4_src_range_key makeSourceRangeKey(uint16_t rev_nat_index, const Ipv4Prefix& range);

}  // namespace plexus::lb
