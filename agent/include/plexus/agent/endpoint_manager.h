#pragma once
// Wires pods: veth pair, addresses, routes, tc programs and map entries, and tears them down again.
// Runs only on the reconcile thread (STYLE.md rule 16). Every step that fails rolls back the steps before it,
// and the in-memory model and state files change only after the kernel side succeeded (rule 10).

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "plexus/agent/endpoint_record.h"
#include "plexus/agent/ipam.h"
#include "plexus/agent/state_store.h"
#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/datapath/lxc_datapath.h"

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
  std::string host_device = "plexus_host";  // dummy device holding the gateway address
  int default_mtu = 1500;
};

// Fills an endpoint's security identity and labels from what the agent knows of its pod. Until the pod's
// labels are known the identity is the reserved init identity (5), as in Cilium.
using IdentityResolver = std::function<void(EndpointRecord* rec)>;
// The policy map state an endpoint must run with from its first packet (allow-all until a policy selects it).
using PolicyResolver = std::function<datapath::PolicyEntries(const EndpointRecord&)>;

// Told about every endpoint the datapath starts or stops serving (flow enrichment, metrics, policy).
using EndpointListener = std::function<void(const EndpointRecord& rec, bool removed)>;

class EndpointManager {
 public:
  EndpointManager(datapath::LxcDatapath& dp, Ipam& ipam, StateStore& store, EndpointManagerConfig config,
                  std::function<int64_t()> clock);

  void setIdentityResolver(IdentityResolver resolver) { resolve_identity_ = std::move(resolver); }
  void setPolicyResolver(PolicyResolver resolver) { resolve_policy_ = std::move(resolver); }
  void addListener(EndpointListener listener) { listeners_.push_back(std::move(listener)); }

  // Prepares the host side (gateway device, sysctls) and re-adopts endpoints from the state dir and the
  // pinned maps: programs are replaced in place, endpoints whose veth is gone are cleaned up.
  Status start(std::vector<std::string>* problems);

  Result<EndpointRecord> add(const AddRequest& req);
  // Idempotent: deleting an unknown attachment succeeds.
  Status del(const std::string& container_id, const std::string& ifname);
  Status check(const std::string& container_id, const std::string& ifname);
  // Releases every endpoint whose owner is not in valid; returns how many.
  uint32_t gc(const std::set<std::string>& valid_owners);
  // Rewrites an endpoint's identity (labels changed) in both maps.
  Status updateIdentity(uint16_t id, uint32_t identity, std::vector<std::string> labels);

  std::vector<EndpointRecord> list() const;
  // By endpoint id, container id, "namespace/pod" or pod IP.
  std::optional<EndpointRecord> find(const std::string& selector) const;
  Ipv4 gateway() const { return ipam_.gateway(); }
  const Ipam& ipam() const { return ipam_; }

 private:
  Result<EndpointRecord> addVeth(const AddRequest& req);
  Result<EndpointRecord> addChained(const AddRequest& req);
  Status configurePod(const AddRequest& req, Ipv4 ip, EndpointRecord* rec);
  Status configureHost(EndpointRecord* rec);
  Status writeMaps(const EndpointRecord& rec);
  void eraseMaps(const EndpointRecord& rec);
  Result<uint16_t> allocateId() const;
  Status persistIpam();
  void forget(const EndpointRecord& rec);
  const EndpointRecord* byOwner(const std::string& owner) const;

  datapath::LxcDatapath& dp_;
  Ipam& ipam_;
  StateStore& store_;
  EndpointManagerConfig config_;
  std::function<int64_t()> clock_;
  IdentityResolver resolve_identity_;
  PolicyResolver resolve_policy_;
  std::vector<EndpointListener> listeners_;
  std::map<uint16_t, EndpointRecord> endpoints_;
};

}  // namespace plexus::agent
