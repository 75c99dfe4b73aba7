#pragma once
// Wires pods and owns the endpoints map: allocates the address, has the pod network set up (veth pair,
// addresses, routes, programs), installs the endpoint's first policy, its ipcache statement and its endpoints
// map entry, and tears all of it down again. Runs only on the reconcile thread (STYLE.md rule 16). Every step
// that fails rolls back the steps before it, and the in-memory model and state files change only after the
// kernel side succeeded (rule 10). The identity is decided by the caller (the controller); this class never
// asks anyone else for anything.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "plexus/agent/endpoint_record.h"
#include "plexus/agent/ipam.h"
#include "plexus/agent/ipcache_manager.h"
#include "plexus/agent/seams.h"
#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"

namespace plexus::agent {

struct ChainedSpec {
  std::string host_ifname;
  std::string container_ifname;
  std::optional<Mac> container_mac;
  std::vector<Ipv4Prefix> ips;  // addresses the previous plugin assigned (the prefix keeps the address bits)
  std::vector<Ipv4> addresses;  // the same addresses, unmasked
};

struct AddRequest {
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_uid;
  std::optional<Ipv4> requested_ip;
  std::optional<Mac> requested_mac;
  int mtu = 0;
  std::optional<ChainedSpec> chained;
};

struct EndpointManagerConfig {
  int default_mtu = 1500;
};

struct EndpointManagerDeps {
  PodNetwork& network;
  EndpointMap& map;
  IpcacheManager& ipcache;
  EndpointPolicyInstaller& policy;
  AgentStore& store;
};

class EndpointManager {
 public:
  EndpointManager(EndpointManagerDeps deps, Ipam& ipam, EndpointManagerConfig config, std::function<int64_t()> clock);

  // Prepares the node (gateway) and re-adopts endpoints from the state dir: programs are replaced in place,
  // entries rewritten, endpoints whose veth is gone are cleaned up, and endpoints map entries no record explains
  // are removed. A restored endpoint keeps the identity its record holds (the allocator's references were
  // persisted with it); a pod event regenerates it if its labels changed meanwhile.
  Status start(std::vector<std::string>* problems);

  // Wires a pod with the given identity and labels (init while the pod's labels are not known).
  Result<EndpointRecord> add(const AddRequest& req, uint32_t identity, const std::vector<std::string>& labels);
  // Idempotent: deleting an unknown attachment succeeds. The removed record, if there was one.
  Result<std::optional<EndpointRecord>> del(const std::string& container_id, const std::string& ifname);
  Status check(const std::string& container_id, const std::string& ifname);
  // Releases every endpoint whose owner is not in valid; returns the removed records, and in *released the
  // number of endpoints and leaked allocations freed.
  std::vector<EndpointRecord> gc(const std::set<std::string>& valid_owners, uint32_t* released);
  // Moves an endpoint to another identity (its labels changed): endpoints map and ipcache.
  Status updateIdentity(uint16_t id, uint32_t identity, std::vector<std::string> labels);
  // An existing attachment for this owner whose veth still exists.
  std::optional<EndpointRecord> live(const std::string& owner);

  std::vector<EndpointRecord> list() const;
  std::optional<EndpointRecord> find(const std::string& selector) const;
  std::optional<EndpointRecord> get(uint16_t id) const;
  Ipv4 gateway() const { return ipam_.gateway(); }
  const Ipam& ipam() const { return ipam_; }

 private:
  Result<EndpointRecord> addVeth(const AddRequest& req, EndpointRecord rec);
  Result<EndpointRecord> addChained(const AddRequest& req, EndpointRecord rec);
  Status writeMaps(const EndpointRecord& rec);
  void eraseMaps(const EndpointRecord& rec);
  Result<uint16_t> allocateId() const;
  Status persistIpam();
  void forget(const EndpointRecord& rec);
  const EndpointRecord* byOwner(const std::string& owner) const;

  EndpointManagerDeps deps_;
  Ipam& ipam_;
  EndpointManagerConfig config_;
  std::function<int64_t()> clock_;
  std::map<uint16_t, EndpointRecord> endpoints_;
};

}  // namespace plexus::agent
