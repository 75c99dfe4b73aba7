#pragma once
// Keeps the datapath's service maps equal to the planner's desired state: computes, diffs against what is
// installed, applies the operations through the typed maps, and only then commits the new state (a failed
// write leaves the previous state as the reference, and the next sync retries). Runs on the reconcile thread.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "plexus/agent/flow_decoder.h"
#include "plexus/common/result.h"
#include "plexus/agent/seams.h"
#include "plexus/lb/planner.h"

namespace plexus::agent {

class ServiceManager {
 public:
  ServiceManager(ServiceMaps& maps, lb::PlannerConfig config, FlowDirectory* directory);

  // Reads what the maps hold (left by a previous run of the agent) as the installed state, and hands its ids to
  // the planner, so that the first full sync keeps every surviving service's ids and writes only the difference:
  // a restart does not disturb established connections, and entries of services deleted meanwhile are removed.
  Status restore();
  // Full: every service and slice.
  Status sync(const std::vector<lb::Service>& services, const std::vector<lb::EndpointSlice>& slices);
  // Incremental: only the services in `changed` (nullopt: deleted), with their slices. The map writes are the
  // difference for those services alone, so one change costs the same with 10 or 10,000 services installed.
  Status update(const std::map<std::string, std::optional<lb::Service>>& changed,
                const std::map<std::string, std::vector<lb::EndpointSlice>>& slices);
  // The node addresses NodePort frontends listen on (the devices'); the next sync is a full one.
  void setNodeAddresses(std::vector<Ipv4> ips) {
    planner_.setNodeIps(std::move(ips));
    needs_full_ = true;
  }
  // After a failed write the planner is ahead of the maps: the next sync must be a full one.
  bool needsFullSync() const { return needs_full_; }
  const lb::MapState& installed() const { return installed_; }
  const std::string& nodeName() const { return planner_.nodeName(); }
  uint16_t nodePort(const std::string& service, const lb::ServicePort& port) const {
    return planner_.nodePort(service, port);
  }
  // The last programming of each kind (full sync, incremental update): map operations and time taken, from the
  // planner's compute to the last map write.
  struct SyncRecord {
    size_t operations = 0;
    double milliseconds = 0;
    uint64_t count = 0;  // how many of this kind so far
    int64_t unix_ms = 0;  // when it finished (wall clock)
  };
  const SyncRecord& lastFull() const { return last_full_; }
  const SyncRecord& lastIncremental() const { return last_incremental_; }

 private:
  // A plan failed half-way: the next sync starts from what the maps hold.
  void failed(const Status& s);
  void publishNames();

  ServiceMaps& maps_;
  lb::Planner planner_;
  FlowDirectory* directory_;
  lb::MapState installed_;
  SyncRecord last_full_;
  SyncRecord last_incremental_;
  bool needs_full_ = false;
};

}  // namespace plexus::agent
