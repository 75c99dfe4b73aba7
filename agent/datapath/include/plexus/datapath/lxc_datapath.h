#pragma once
// Loads the pod-veth programs (bpf_lxc.c) from the embedded skeleton, reusing the maps pinned under the
// configured BPF root so that state survives agent restarts, and exposes typed handles to those maps.

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/datapath/bpf_map.h"
#include "plexus/datapath/map_convert.h"
#include "plexus/datapath/policy_layout.h"
#include "plexus/conntrack.h"
#include "plexus/endpoint.h"
#include "plexus/events.h"
#include "plexus/lb.h"
#include "plexus/nat.h"
#include "plexus/metrics.h"
#include "plexus/policy.h"
#include "plexus/routing.h"

struct plexus_lxc;
struct bpf_program;
struct bpf_object;

namespace plexus::datapath {

// How pod traffic reaches other nodes (docs/datapath.md, "Routing modes").
enum class RoutingMode : uint8_t {
  kNative = PLEXUS_ROUTING_NATIVE,  // unencapsulated; the node's routes reach other nodes' pod CIDRs
  kTunnel = PLEXUS_ROUTING_TUNNEL,  // VXLAN through the collect-metadata device plexus_vxlan
};

// Entries of the maps whose size the operator picks. Every object that shares one of these maps by pinning must
// open it with the same size (applyMapSizes before load), or its load would move the pinned map to its own size.
struct MapSizes {
  uint32_t ct = PLEXUS_CT4_DEFAULT_MAX;                   // --ct-map-size
  uint32_t events_ring_bytes = PLEXUS_EVENTS_RING_BYTES;  // a power of two, at least one page
  uint32_t lb = PLEXUS_LB_MAP_DEFAULT_MAX;    // --bpf-lb-map-max: services, backends, rev-NAT, affinity, Maglev,
                                              // source ranges
  uint32_t policy = PLEXUS_POLICY_MAP_DEFAULT_MAX;  // --bpf-policy-map-max: each endpoint's policy trie
  uint32_t ipcache = PLEXUS_IPCACHE_MAX;      // --bpf-ipcache-map-max
  uint32_t nat = PLEXUS_SNAT4_DEFAULT_MAX;    // --bpf-nat-global-max: the masquerade map
};

// Sets the sizes on the object's maps that have them (before bpf_object__load).
void applyMapSizes(bpf_object* obj, const MapSizes& sizes);

// Load-time switches of the lxc, host and overlay programs (rodata: changing one means loading again). The defaults
// are the single-node datapath.
struct LxcConfig {
  std::string bpf_root;       // a directory on a bpffs; created if missing
  bool redirect_peer = true;  // same-node pod-to-pod with bpf_redirect_peer
  bool arp_responder = true;
  bool lb_per_packet = true;  // translate services at tc as well as in the socket programs
  bool enable_policy = true;  // enforce the per-endpoint policy maps
  bool enable_events = true;  // flow events into the ring buffer (hubble.enabled)
  uint8_t monitor_aggregation = PLEXUS_AGGREGATION_MEDIUM;
  MapSizes sizes;
  uint32_t maglev_table_size = PLEXUS_MAGLEV_DEFAULT_M;
  RoutingMode routing_mode = RoutingMode::kNative;
  // ifindex of plexus_vxlan (in the node's namespace); 0: none. Tunnel mode needs it, so the device must exist before
  // the lxc programs load.
  uint32_t tunnel_ifindex = 0;
  uint16_t tunnel_port = 0;  // its UDP port (host order); the device programs leave the tunnel's packets to it
  // BPF host routing: pods' traffic to other nodes leaves through bpf_fib_lookup + redirect (never dropped: any
  // other FIB answer goes to the stack), and the external devices' traffic for local pods enters them with
  // bpf_redirect_peer after their ingress policy.
  bool host_routing = false;
  // BPF masquerade at the devices' egress (host programs) of pods' traffic to destinations outside the cluster and
  // outside native_cidr (prefix length 0: none).
  bool masquerade = false;
  Ipv4Prefix native_cidr;
  // Policy audit mode: a packet the policy would drop passes, reported with verdict AUDIT.
  bool policy_audit = false;
  // loadBalancer.mode: how a node frontend's flow reaches a backend pod on another node (lib/dsr.h).
  uint8_t lb_mode = PLEXUS_LB_MODE_SNAT;
};

// Refuses a combination the datapath cannot run (tunnel mode without a tunnel device).
Status validateRouting(const LxcConfig& config);

// The service maps (kube-proxy replacement), shared by the tc and the socket programs through pinning.
struct LbMaps {
  BpfMap<plexus_lb4_key, plexus_lb4_service> services;
  BpfMap<uint32_t, plexus_lb4_backend> backends;
  BpfMap<uint16_t, plexus_lb4_reverse_nat> revnat;
  BpfMap<plexus_ct4_key, plexus_ct4_value> ct;
  BpfMap<plexus_lb4_affinity_key, plexus_lb4_affinity_value> affinity;
  BpfMap<plexus_lb4_src_range_key, uint8_t> source_ranges;  // spec.loadBalancerSourceRanges (LPM trie)
  UniqueFd maglev_outer;
  uint32_t maglev_table_size = PLEXUS_MAGLEV_DEFAULT_M;

  // Builds a complete inner table and swaps it in with one update of the outer map, so lookups see either
  // the old table or the new one, never a half-written one.
  Status setMaglevTable(uint16_t rev_nat_index, const std::vector<uint32_t>& table);
  Status eraseMaglevTable(uint16_t rev_nat_index);
  // The services that have a table installed (keys of the outer map).
  Result<std::vector<uint16_t>> maglevIndexes() const;
  // The backend ids of the installed table (for `plexus service get`); empty when none.
  Result<std::vector<uint32_t>> maglevTable(uint16_t rev_nat_index) const;
};

struct ProgramHandle {
  std::string name;
  uint32_t id = 0;
  // Instructions the verifier processed when the program loaded (bpf_prog_info.verified_insns); its limit is
  // kVerifierInsnLimit, and a load-time switch that enables more code can take a program there.
  uint32_t verified_insns = 0;
};

// The kernel verifier's limit of processed instructions per program (BPF_COMPLEXITY_LIMIT_INSNS).
inline constexpr uint32_t kVerifierInsnLimit = 1000000;

// A loaded program's name, kernel id and verifier cost, for `plexus status`.
ProgramHandle programHandle(const bpf_program* prog);

struct PinnedMapInfo {
  std::string name;
  std::string pin_path;
  MapInfo info;
  uint32_t entries = 0;
};

// The policy epoch (plexus_policy_epoch_v1, bpf/lib/policy.h): conntrack entries keep the epoch of the verdict that
// allowed their connection, and their packets skip the verdict's lookups while it is current. It must move on after
// every write to a map a verdict reads: the policy hashes (PolicyMaps does it), the endpoints map and the ipcache (the
// agent's writers of those). Starts at 1 on a new map. Thread-safe.
class VerdictEpoch {
 public:
  explicit VerdictEpoch(UniqueFd map);
  Status bump();
  uint32_t current() const;

 private:
  Status store(uint32_t next);  // under mu_
  UniqueFd fd_;
  mutable std::mutex mu_;
  uint32_t value_ = 0;
};

// The per-endpoint policy hashes behind plexus_policy_v3 (ARRAY_OF_MAPS indexed by endpoint id), laid out by
// layoutPolicy.
class PolicyMaps {
 public:
  // `capacity`: the most entries one endpoint's policy may have (--bpf-policy-map-max). `epoch`: moved on after each
  // set() and clear() (none: a policy map no program caches verdicts of).
  PolicyMaps(UniqueFd outer, uint32_t capacity, VerdictEpoch* epoch = nullptr)
      : outer_(std::move(outer)), capacity_(capacity), epoch_(epoch) {}
  ~PolicyMaps();
  PolicyMaps(const PolicyMaps&) = delete;
  PolicyMaps& operator=(const PolicyMaps&) = delete;
  // Builds a complete new hash and swaps it in with one update: the endpoint never runs with a half-written, empty or
  // mixed (half old, half new policy) map. Refuses (and changes nothing) when the entries exceed
  // the capacity. For an id with a spare hash (keepSpares) that has room, the hash is filled in place instead: no
  // endpoint uses that id yet.
  Status set(uint16_t endpoint_id, const PolicyEntries& entries);
  Status clear(uint16_t endpoint_id);
  // New endpoints' hashes ready ahead of need: a background thread keeps `count` empty hashes (kSpareEntries each)
  // in the outer map at the lowest ids that have none (where the agent allocates the next endpoint ids), so that a
  // new endpoint's set() fills one in place. Inserting into a map-of-maps waits for an RCU grace period (the
  // kernel's maybe_wait_bpf_programs, about 10 ms here), which CNI ADD then does not wait for.
  void keepSpares(size_t count);
  size_t spares() const;
  static constexpr uint32_t kSpareEntries = 1024;
  // The installed entries (as set() was given them); NotFound when the endpoint has no map.
  Result<PolicyEntries> get(uint16_t endpoint_id) const;
  int outerFd() const { return outer_.get(); }
  uint32_t capacity() const { return capacity_; }

 private:
  Status write(uint16_t endpoint_id, const PolicyEntries& entries);
  Status afterWrite(Status written);  // moves the epoch on, keeping the write's error first
  // A hash for `entries` entries, not yet in an outer map.
  Result<UniqueFd> createHash(uint16_t endpoint_id, uint32_t entries) const;
  // Marks the id as being written by set()/clear() (the spare thread keeps off it) until the guard goes.
  class Busy;
  void spareLoop();

  UniqueFd outer_;
  uint32_t capacity_;
  VerdictEpoch* epoch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint16_t, UniqueFd> spares_;  // empty hashes already in the outer map
  std::optional<uint16_t> preparing_;    // the id the spare thread is inserting a hash at
  std::set<uint16_t> busy_;              // ids set()/clear() are writing
  size_t want_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

// The state of an endpoint that no policy selects: one allow-all entry per direction.
PolicyEntries allowAllPolicy();

class LxcDatapath {
 public:
  // Loads the programs and creates or reuses the pinned maps, carrying the entries of retired layouts and of maps
  // pinned with another size into this build's maps (loadPinnedObject). Fails with a clear error when a pinned
  // map's key or value size differs under the same name (a layout never changes in place; docs/datapath.md).
  static Result<std::unique_ptr<LxcDatapath>> load(const LxcConfig& config);
  ~LxcDatapath();
  LxcDatapath(const LxcDatapath&) = delete;
  LxcDatapath& operator=(const LxcDatapath&) = delete;

  // Attaches from-container (tc ingress) and to-container (tc egress) on a host-side veth.
  Status attachEndpoint(int host_ifindex);

  BpfMap<plexus_endpoint_key, plexus_endpoint_value>& endpoints() { return endpoints_; }
  BpfMap<plexus_ipcache_key, plexus_ipcache_value>& ipcache() { return ipcache_; }
  // The masquerade map (written by the host programs; shared by pinning).
  Result<BpfMap<plexus_snat4_key, plexus_snat4_value>> nat() const;
  PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value>& metrics() { return metrics_; }
  LbMaps& lb() { return *lb_; }
  PolicyMaps& policy() { return *policy_; }
  // Writers of endpoints() and ipcache() move it on after each write (policy() does it itself).
  VerdictEpoch& verdictEpoch() { return *epoch_; }
  // The flow-event ring buffer and the count of events that did not fit it.
  int eventsFd() const;
  uint64_t lostEvents() const;

  int fromContainerFd() const;
  int toContainerFd() const;
  std::vector<ProgramHandle> programs() const;
  std::vector<PinnedMapInfo> maps() const;
  // What the load carried over from old pins (empty when every pin was reused as it was).
  const std::vector<CarryReport>& carried() const { return carried_; }

 private:
  LxcDatapath(plexus_lxc* skel, std::string root, BpfMap<plexus_endpoint_key, plexus_endpoint_value> eps,
              BpfMap<plexus_ipcache_key, plexus_ipcache_value> ipc,
              PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value> met, std::unique_ptr<LbMaps> lb,
              uint32_t policy_capacity);

  plexus_lxc* skel_;
  std::string root_;
  BpfMap<plexus_endpoint_key, plexus_endpoint_value> endpoints_;
  BpfMap<plexus_ipcache_key, plexus_ipcache_value> ipcache_;
  PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value> metrics_;
  std::unique_ptr<LbMaps> lb_;
  std::unique_ptr<VerdictEpoch> epoch_;  // before policy_, which holds it
  std::unique_ptr<PolicyMaps> policy_;
  std::vector<CarryReport> carried_;
};

// Checks that path is on a bpffs (statfs magic) and creates it if missing.
Status ensureBpfRoot(const std::string& path);

}  // namespace plexus::datapath
