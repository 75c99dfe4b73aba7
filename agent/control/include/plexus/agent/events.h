#pragma once
// The typed events that reach the reconcile thread from below: watchers (Kubernetes informers), and the
// answers of the cluster API worker. Producers post them into an EventSink (the reconciler's queue); nothing
// that produces an event calls into the managers.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "plexus/common/resource.h"
#include "plexus/identity/identity.h"

namespace plexus::agent {

// Objects that changed in the cluster (a watch batch, or a pod fetched for a CNI ADD).
struct ResourcesChanged {
  std::vector<ResourceEvent> events;
};
// The cluster's answer to an identity allocation.
struct IdentityAllocated {
  identity::Labels labels;
  uint32_t id = 0;
};
struct IdentityFailed {
  identity::Labels labels;
  std::string error;
};
// PlexusIdentity objects: every node's identities.
struct RemoteIdentities {
  std::vector<ResourceEvent> events;
};

using AgentEvent = std::variant<ResourcesChanged, IdentityAllocated, IdentityFailed, RemoteIdentities>;

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Never blocks on the consumer.
  virtual void post(AgentEvent event) = 0;
};

}  // namespace plexus::agent
