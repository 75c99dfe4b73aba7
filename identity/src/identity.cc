#include "plexus/identity/identity.h"

#include <fmt/format.h>

namespace plexus::identity {

const char* reservedName(uint32_t id) {
  switch (id) {
    case kHost: return "host";
    case kWorld: return "world";
    case kUnmanaged: return "unmanaged";
    case kHealth: return "health";
    case kInit: return "init";
    case kRemoteNode: return "remote-node";
    case kKubeApiserver: return "kube-apiserver";
    case kIngress: return "ingress";
    default: return nullptr;
  }
}

size_t reservedIdentityCount() {
  size_t n = 0;
  for (uint32_t id = 1; id < kFirstClusterIdentity; ++id) {
    n += reservedName(id) != nullptr ? 1 : 0;
  }
  return n;
}

const char* identityType(uint32_t id) {
  if (reservedName(id) != nullptr) {
    return "reserved";
  }
  if (id >= kFirstClusterIdentity && id <= kLastClusterIdentity) {
    return "cluster_local";
  }
  if (id >= kFirstLocalIdentity) {
    return "node_local";
  }
  return nullptr;
}

std::string canonical(const Labels& labels) {
  std::string out;
  for (const auto& l : labels) {
    out += l;
    out += ';';
  }
  return out;
}

LabelFilter LabelFilter::defaults() {
  // Keys that change with every rollout or pod and would make each pod its own identity.
  auto f = parse({"!pod-template-hash", "!controller-revision-hash", "!pod-template-generation",
                  "!statefulset\\.kubernetes\\.io/pod-name", "!controller-uid", "!batch\\.kubernetes\\.io/.*",
                  "!job-name", "!apps\\.kubernetes\\.io/pod-index", "!annotation\\..*"});
  return *f;
}

Result<LabelFilter> LabelFilter::parse(const std::vector<std::string>& patterns) {
  LabelFilter f;
  f.patterns_ = patterns;
  for (const auto& p : patterns) {
    bool exclude = !p.empty() && p[0] == '!';
    std::string re = exclude ? p.substr(1) : p;
    try {
      (exclude ? f.exclude_ : f.include_).emplace_back("^(" + re + ")$");
    } catch (const std::regex_error& e) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("label filter {:?}: {}", p, e.what()));
    }
  }
  return f;
}

bool LabelFilter::keep(const std::string& key) const {
  if (key == "io.kubernetes.pod.namespace" || key.rfind("io.cilium.k8s.", 0) == 0) {
    return true;
  }
  for (const auto& re : exclude_) {
    if (std::regex_match(key, re)) {
      return false;
    }
  }
  if (include_.empty()) {
    return true;
  }
  for (const auto& re : include_) {
    if (std::regex_match(key, re)) {
      return true;
    }
  }
  return false;
}

Labels podIdentityLabels(const PodIdentityInput& in, const LabelFilter& filter) {
  Labels out;
  for (const auto& [k, v] : in.pod_labels) {
    if (filter.keep(k)) {
      out.insert(fmt::format("k8s:{}={}", k, v));
    }
  }
  out.insert(fmt::format("k8s:io.kubernetes.pod.namespace={}", in.ns));
  for (const auto& [k, v] : in.namespace_labels) {
    if (filter.keep(k)) {
      out.insert(fmt::format("k8s:io.cilium.k8s.namespace.labels.{}={}", k, v));
    }
  }
  if (!in.service_account.empty()) {
    out.insert(fmt::format("k8s:io.cilium.k8s.policy.serviceaccount={}", in.service_account));
  }
  out.insert(fmt::format("k8s:io.cilium.k8s.policy.cluster={}", in.cluster));
  return out;
}

uint32_t Allocator::acquire(const Labels& labels) {
  std::string key = canonical(labels);
  auto it = by_labels_.find(key);
  if (it != by_labels_.end()) {
    by_id_[it->second].second += 1;
    return it->second;
  }
  uint32_t id = 0;
  if (hashed_) {
    // The same labels give the same number on every node that knows the same label sets, with no coordination
    // (standalone clusters): FNV-1a of the canonical labels over the cluster range, then the next free number.
    uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : key) {
      h = (h ^ c) * 1099511628211ULL;
    }
    constexpr uint32_t kSpan = kLastClusterIdentity - kFirstClusterIdentity + 1;
    id = kFirstClusterIdentity + static_cast<uint32_t>(h % kSpan);
    for (uint32_t i = 0; i < kSpan && by_id_.count(id); ++i) {
      id = id == kLastClusterIdentity ? kFirstClusterIdentity : id + 1;
    }
  } else {
    // Next free id after the last one handed out, so a freed identity is not reused at once (a stale ipcache or
    // policy entry must not apply to a different workload).
    while (by_id_.count(next_)) {
      ++next_;
    }
    id = next_++;
  }
  by_labels_[key] = id;
  by_id_[id] = {labels, 1};
  return id;
}

Result<uint32_t> Allocator::acquireWithId(const Labels& labels, uint32_t id) {
  std::string key = canonical(labels);
  auto it = by_labels_.find(key);
  if (it != by_labels_.end()) {
    by_id_[it->second].second += 1;
    return it->second;
  }
  if (by_id_.count(id)) {
    return makeError(ErrorCode::kAlreadyExists,
                     fmt::format("identity {} is held by {}", id, canonical(by_id_[id].first)));
  }
  by_labels_[key] = id;
  by_id_[id] = {labels, 1};
  return id;
}

bool Allocator::release(uint32_t id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    return false;
  }
  if (--it->second.second > 0) {
    return false;
  }
  by_labels_.erase(canonical(it->second.first));
  by_id_.erase(it);
  return true;
}

std::map<uint32_t, Labels> Allocator::all() const {
  std::map<uint32_t, Labels> out;
  for (const auto& [id, entry] : by_id_) {
    out.emplace(id, entry.first);
  }
  return out;
}

std::optional<uint32_t> Allocator::find(const Labels& labels) const {
  auto it = by_labels_.find(canonical(labels));
  return it == by_labels_.end() ? std::nullopt : std::optional<uint32_t>(it->second);
}

std::optional<Labels> Allocator::labelsOf(uint32_t id) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    return std::nullopt;
  }
  return it->second.first;
}

uint32_t Allocator::refcount(uint32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? 0 : it->second.second;
}

nlohmann::json Allocator::snapshot() const {
  nlohmann::json ids = nlohmann::json::array();
  for (const auto& [id, v] : by_id_) {
    ids.push_back({{"id", id}, {"labels", v.first}, {"refs", v.second}});
  }
  return {{"next", next_}, {"identities", ids}};
}

Status Allocator::restore(const nlohmann::json& j) {
  try {
    std::map<std::string, uint32_t> by_labels;
    std::map<uint32_t, std::pair<Labels, uint32_t>> by_id;
    for (const auto& e : j.at("identities")) {
      uint32_t id = e.at("id");
      if (id < kFirstClusterIdentity) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("identity snapshot: {} is reserved", id));
      }
      Labels labels = e.at("labels").get<Labels>();
      by_labels[canonical(labels)] = id;
      by_id[id] = {labels, e.value("refs", 1u)};
    }
    by_labels_ = std::move(by_labels);
    by_id_ = std::move(by_id);
    next_ = std::max<uint32_t>(j.value("next", kFirstClusterIdentity), kFirstClusterIdentity);
  } catch (const nlohmann::json::exception& e) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("identity snapshot: {}", e.what()));
  }
  return Status::Ok();
}

}  // namespace plexus::identity
