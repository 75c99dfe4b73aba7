#pragma once
// The agent's state directory: IPAM allocations, endpoint records, identities and the resource snapshot and
// journal. Files are written atomically (tmp + fsync + rename) so that a crash at any point leaves either the
// old or the new file; the journal is appended with one fsync per batch.

#include <optional>
#include <string>
#include <vector>

#include "plexus/agent/endpoint_record.h"
#include "plexus/agent/ipam.h"
#include "plexus/agent/seams.h"
#include "plexus/common/result.h"
#include "plexus/datapath/files.h"

namespace plexus::agent {

struct PendingDelete {
  std::string path;  // the queue file, removed once handled
  std::string container_id;
  std::string ifname;
  std::string netns;
};

class StateStore final : public AgentStore {
 public:
  explicit StateStore(std::string dir);
  Status init();

  Status saveIpam(const IpamSnapshot& snapshot) override;
  Result<std::optional<IpamSnapshot>> loadIpam() const;

  Status saveEndpoint(const EndpointRecord& record) override;
  Status removeEndpoint(uint16_t id) override;
  // Loads every record; unreadable files are reported in problems and skipped (never fatal).
  std::vector<EndpointRecord> loadEndpoints(std::vector<std::string>* problems) const override;

  Status saveIdentities(const nlohmann::json& snapshot) override;
  Result<std::optional<nlohmann::json>> loadIdentities() const override;
  Status appendJournal(const std::string& lines, bool durable) override;
  Status syncJournal() override;
  Status writeSnapshot(const nlohmann::json& snapshot) override;
  Result<StoredResources> loadResources() const override;

  const std::string& dir() const { return dir_; }

 private:
  std::string endpointPath(uint16_t id) const;
  std::string dir_;
};

// Reads the DEL requests plexus-cni queued while the agent was down. Malformed files are reported and removed.
std::vector<PendingDelete> loadPendingDeletes(const std::string& dir, std::vector<std::string>* problems);

}  // namespace plexus::agent
