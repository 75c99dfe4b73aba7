#pragma once
// The cluster objects the agent knows (from `plexus apply` or the Kubernetes watches), validated and kept in a
// ResourceStore, made durable through a journal in the state directory (one appended record per change, folded
// into a snapshot when it outgrows the store), and the pod facts other managers ask about: identity labels and
// named ports. Reconcile thread only, but for prepare().

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plexus/agent/resource_store.h"
#include "plexus/agent/seams.h"
#include "plexus/common/result.h"
#include "plexus/identity/identity.h"

namespace plexus::agent {

using NamedPorts = std::multimap<std::string, std::pair<uint16_t, uint8_t>>;  // name -> (port, protocol)

class ResourceState {
 public:
  explicit ResourceState(AgentStore& store);

  void setValidator(ResourceKind kind, Validator validator, VerdictHook on_verdict = {}) {
    store_.setValidator(kind, std::move(validator), std::move(on_verdict));
  }
  void setDecoder(ResourceKind kind, Decoder decoder, VerdictHook on_verdict = {}) {
    store_.setDecoder(kind, std::move(decoder), std::move(on_verdict));
  }
  // The persisted objects (snapshot, then the journal replayed over it), as the events that replay them. A
  // corrupt file is reported, never guessed at; a cut last journal line (a crash mid-write) is ignored.
  Result<std::vector<ResourceEvent>> restore();
  // `plexus apply` / `plexus delete`: each object judged on its own. The changes are journaled before they are
  // returned in *changed.
  std::vector<ApplyOutcome> apply(std::vector<nlohmann::json> objects, std::vector<ResourceEvent>* changed);
  std::vector<ApplyOutcome> remove(std::vector<nlohmann::json> objects, std::vector<ResourceEvent>* changed);
  // The same in two steps: prepare() is pure and may run on any thread; commit() journals without waiting for the
  // disk, and flush() makes what the commits journaled durable (one fsync for a whole request).
  PreparedObject prepare(nlohmann::json object, bool remove) const {
    return store_.prepare(std::move(object), remove);
  }
  std::vector<ApplyOutcome> commit(std::vector<PreparedObject> objects, bool remove,
                                   std::vector<ResourceEvent>* changed);
  void flush();
  // Watch events: upserts validated like apply (an invalid object is logged by name and skipped), deletes, and
  // kSynced markers passed through. Returns what changed.
  std::vector<ResourceEvent> ingest(const std::vector<ResourceEvent>& events);

  const ResourceStore& store() const { return store_; }
  std::optional<nlohmann::json> pod(const std::string& ns, const std::string& name) const;
  // The identity labels of a pod now (empty while the pod is unknown).
  identity::Labels podIdentityLabels(const std::string& ns, const std::string& name) const;
  bool namespaceKnown(const std::string& ns) const;
  NamedPorts namedPorts(const std::string& ns, const std::string& name) const;

 private:
  void persist(const std::vector<ResourceEvent>& events, bool durable = true);

  AgentStore& files_;
  ResourceStore store_;
  size_t journal_entries_ = 0;
  bool unsynced_ = false;  // journaled by commit() and not made durable yet
  identity::LabelFilter filter_ = identity::LabelFilter::defaults();
  std::string cluster_name_ = "default";
};

// The resource journal's records, in order. Each is a JSON text line ({"op":"upsert","object":{...}} or
// {"op":"delete","key":"Kind/namespace/name"}), or a binary upsert: the byte 0x01, the length of the object's CBOR
// (4 bytes, little-endian), the CBOR (the store's own bytes, so that journaling an object does not encode it again).
// Journals written before the binary records existed are all text lines, and are read the same way.
void appendJournalUpsert(std::string* out, const std::vector<std::uint8_t>& cbor);
struct JournalEntries {
  std::vector<nlohmann::json> entries;  // each {"op": ..., "object" | "key": ...}
  bool cut = false;                     // the last record was incomplete (a write interrupted by a crash): ignored
};
// A damaged record before the last is an error naming it; nothing is guessed at.
Result<JournalEntries> readJournal(std::string_view journal, const std::string& name);

// Named container ports of a pod manifest.
NamedPorts podNamedPorts(const nlohmann::json& pod);
// Checks container ports of a Pod manifest.
Status validatePod(const nlohmann::json& pod);

}  // namespace plexus::agent
