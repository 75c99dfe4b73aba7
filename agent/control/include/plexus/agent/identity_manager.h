#pragma once
// Security identities of this node's endpoints: a reference-counted allocator (persisted in the state
// directory) and, in cluster mode, the cluster-wide allocation behind it. The first local user of a label set
// asks the cluster (asynchronously, through ClusterApi); until allocated() brings the answer the endpoint runs
// with the reserved init identity, as Cilium's endpoints do while waiting for an identity. Identities other
// nodes allocated arrive through observeRemote() and feed the policy selectors. Reconcile thread only.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "plexus/agent/seams.h"
#include "plexus/identity/identity.h"

namespace plexus::agent {

class IdentityManager {
 public:
  // api: null in standalone mode (identities are allocated locally).
  // Standalone identities are hashed from the labels, so standalone nodes agree on them (identity.h).
  IdentityManager(AgentStore& store, ClusterApi* api) : store_(store), api_(api) { allocator_.setHashed(!api); }

  // Reloads the allocator (a corrupt file is an error: a wrong identity would apply another workload's policy).
  Status restore();
  // The identity an endpoint with these labels runs with now, with one reference taken on it. Empty labels
  // (pod unknown) and identities still being allocated cluster-wide give init, which holds no reference.
  // The allocator is persisted before this returns, unless `durable` is false: then at the next flush() (or the
  // next durable change). Only holders whose use of the identity is rebuilt from the resource store at a restart
  // (remote pods: the ipcache) may defer; an endpoint's identity is in its persisted record and must be durable.
  uint32_t acquire(const identity::Labels& labels, bool durable = true);
  // Gives back one reference; the last local user of a cluster identity tells the cluster.
  void release(uint32_t id, bool durable = true);
  // Persists what acquire()/release() deferred: one snapshot for a whole batch instead of one per change (the
  // snapshot holds every identity, so writing it per change made a batch of n new identities O(n^2)).
  void flush();
  // The cluster's answer to an allocation request.
  void allocated(const identity::Labels& labels, uint32_t id);
  void failed(const identity::Labels& labels, const std::string& error);
  // After an answer was handed to the endpoints that wanted it: an identity no endpoint took is given back.
  void settle(const identity::Labels& labels);
  // PlexusIdentity objects (every node's identities).
  void observeRemote(const std::vector<ResourceEvent>& events);

  // Every identity this node knows with its labels: its own and other nodes'.
  std::map<uint32_t, std::vector<std::string>> all() const;
  const identity::Allocator& local() const { return allocator_; }
  bool waiting(const identity::Labels& labels) const { return requested_.count(identity::canonical(labels)) > 0; }

 private:
  void persist();
  void changedAllocator(bool durable);

  AgentStore& store_;
  ClusterApi* api_;
  identity::Allocator allocator_;
  bool unsaved_ = false;  // changed since the last persist()
  std::map<std::string, uint32_t> granted_;  // canonical labels -> cluster id answered but not yet acquired
  std::set<std::string> requested_;          // canonical labels with an allocation under way
  std::map<uint32_t, identity::Labels> remote_;
};

// Parses a PlexusIdentity object: its name is the numeric id, `security-labels` its labels.
std::optional<std::pair<uint32_t, identity::Labels>> parsePlexusIdentity(const nlohmann::json& obj);

}  // namespace plexus::agent
