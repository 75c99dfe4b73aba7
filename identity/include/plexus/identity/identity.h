#pragma once
// Security identities (pure): the identity-relevant labels of a pod, the label filter that keeps churning labels
// out, reserved identities with Cilium's numbers, and a reference-counted allocator in which equal label sets get
// the same identity whatever their order. The allocator's state can be saved and restored so that identities
// stay stable across agent restarts.

#include <cstdint>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/result.h"
#include "plexus/identity.h"  // the numbers, shared with the datapath (bpf/include/plexus/identity.h)

namespace plexus::identity {

// Reserved identities (Cilium's numbering).
enum Reserved : uint32_t {
  kUnknown = PLEXUS_IDENTITY_UNKNOWN,
  kHost = PLEXUS_IDENTITY_HOST,
  kWorld = PLEXUS_IDENTITY_WORLD,
  kUnmanaged = PLEXUS_IDENTITY_UNMANAGED,
  kHealth = PLEXUS_IDENTITY_HEALTH,
  kInit = PLEXUS_IDENTITY_INIT,
  kRemoteNode = PLEXUS_IDENTITY_REMOTE_NODE,
  kKubeApiserver = PLEXUS_IDENTITY_KUBE_APISERVER,
  kIngress = PLEXUS_IDENTITY_INGRESS,
};
inline constexpr uint32_t kFirstClusterIdentity = PLEXUS_IDENTITY_CLUSTER_MIN;
inline constexpr uint32_t kLastClusterIdentity = PLEXUS_IDENTITY_CLUSTER_MAX;
// Node-local identities (policy CIDRs) have this bit set; they never leave the node.
inline constexpr uint32_t kFirstLocalIdentity = PLEXUS_IDENTITY_LOCAL_FLAG;
// The largest identity that fits a tunnel header's 24-bit VNI (reserved and cluster identities).
inline constexpr uint32_t kMaxVniIdentity = PLEXUS_IDENTITY_VNI_MAX;
const char* reservedName(uint32_t id);  // "host", "world", ...; nullptr when not reserved
// The reserved identities there are (those reservedName() names): what Cilium's cilium_identity{type="reserved"}
// counts.
size_t reservedIdentityCount();
// Cilium's type of an identity, as its identity metric labels it: "reserved", "cluster_local" (256-65535) or
// "node_local" (the local flag set: CIDR identities); nullptr for a number in no scope (0, 9-255, ...).
const char* identityType(uint32_t id);

// A label set in canonical form: "source:key=value" strings, sorted, no duplicates.
using Labels = std::set<std::string>;
std::string canonical(const Labels& labels);

// Keeps identity-relevant labels. Defaults follow Cilium's: everything except keys known to churn (pod-template
// hash, controller revision, job and statefulset pod names...), while io.kubernetes.pod.namespace and the
// io.cilium.k8s.* labels are always kept. Patterns are ECMAScript regexes over the key.
class LabelFilter {
 public:
  static LabelFilter defaults();
  // Each pattern "!re" excludes, "re" includes (when any include is given, only included keys pass).
  static Result<LabelFilter> parse(const std::vector<std::string>& patterns);
  bool keep(const std::string& key) const;

 private:
  std::vector<std::regex> include_;
  std::vector<std::regex> exclude_;
  std::vector<std::string> patterns_;
};

struct PodIdentityInput {
  std::string ns;
  std::map<std::string, std::string> pod_labels;
  std::map<std::string, std::string> namespace_labels;
  std::string service_account;
  std::string cluster = "default";
};

// The pod's identity labels: k8s:<pod label>, k8s:io.kubernetes.pod.namespace, the namespace's labels as
// k8s:io.cilium.k8s.namespace.labels.<key>, k8s:io.cilium.k8s.policy.serviceaccount and ...policy.cluster.
Labels podIdentityLabels(const PodIdentityInput& in, const LabelFilter& filter);

class Allocator {
 public:
  // New identities from a hash of the labels instead of a counter: nodes that allocate on their own (standalone
  // clusters, where the same manifests are applied to every node) then agree on the numbers, which travel in
  // tunnel headers. A collision takes the next free number, so agreement holds while nodes know the same sets.
  void setHashed(bool hashed) { hashed_ = hashed; }
  // Equal label sets share an identity; each acquire is one reference.
  uint32_t acquire(const Labels& labels);
  // The same with an id chosen elsewhere (cluster-wide allocation): the labels get `id` unless they already
  // hold one, which is returned. Fails when `id` is held by other labels.
  Result<uint32_t> acquireWithId(const Labels& labels, uint32_t id);
  // Drops one reference; the identity is freed (and may be reused later) when none is left. Returns whether it
  // was freed. Reserved identities are never released.
  bool release(uint32_t id);
  std::optional<Labels> labelsOf(uint32_t id) const;
  // The identity these labels hold, if any.
  std::optional<uint32_t> find(const Labels& labels) const;
  size_t size() const { return by_labels_.size(); }
  // Every allocated identity with its labels.
  std::map<uint32_t, Labels> all() const;
  uint32_t refcount(uint32_t id) const;

  nlohmann::json snapshot() const;
  Status restore(const nlohmann::json& snapshot);

 private:
  std::map<std::string, uint32_t> by_labels_;
  std::map<uint32_t, std::pair<Labels, uint32_t>> by_id_;  // labels, refcount
  uint32_t next_ = kFirstClusterIdentity;
  bool hashed_ = false;
};

}  // namespace plexus::identity
