#pragma once
// Keeps the datapath's service maps equal to the planner's desired state: computes, diffs against what is
// installed, and applies the operations through the typed maps. While the writes succeed, the planner's state is
// what the maps hold, and no other copy is kept; after a restart (what restore() read) or a failed write (read
// again) the next, full sync diffs against what the maps hold. Runs on the reconcile thread.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "plexus/agent/agent_notifications.h"
#include "plexus/agent/flow_decoder.h"
#include "plexus/common/result.h"
#include "plexus/agent/seams.h"
#include "plexus/lb/planner.h"

namespace plexus::agent {

class ServiceManager {
 public:
  ServiceManager(ServiceMaps& maps, lb::PlannerConfig config, FlowDirectory* directory);
  // Where update() reports each changed frontend (SERVICE_UPSERTED, SERVICE_DELETED); null: nowhere. A full sync
  // (start-up, recovery) reports nothing: it changes no service the user touched.
  void setNotifications(NotificationLog* log) { notices_ = log; }

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
  // What the services hold (the views of `plexus service list`, the metrics' counts).
  std::vector<lb::FrontendView> frontends(const std::string& service) const { return planner_.frontends(service); }
  lb::Planner::Counts counts() const { return planner_.counts(); }
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
  void publishNames(const lb::MapState& st);
  void notify(const lb::Planner::Change& change, const std::map<std::string, std::optional<lb::Service>>& changed);

  ServiceMaps& maps_;
  lb::Planner planner_;
  FlowDirectory* directory_;
  NotificationLog* notices_ = nullptr;
  // What restore() read, until the first full sync diffs against it.
  std::optional<lb::MapState> restored_;
  // After a failed write the maps may hold something else than the planner's state: the next full sync reads them
  // back and diffs against that.
  bool read_maps_ = false;
  SyncRecord last_full_;
  SyncRecord last_incremental_;
  bool needs_full_ = false;
};

}  // namespace plexus::agent
