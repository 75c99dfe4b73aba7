#pragma once
// In-memory fakes of the control layer's seams (agent/control/include/plexus/agent/seams.h): no kernel, no
// network, no filesystem. Each fake records what it was asked and has knobs that make its next calls fail, so
// the [unit] tests can check that the managers roll back, keep failed writes pending and retry them.

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "plexus/agent/ipcache_manager.h"
#include "plexus/agent/map_encoding.h"
#include "plexus/agent/resource_state.h"
#include "plexus/agent/seams.h"
#include "plexus/agent/service_sync.h"

namespace plexus::agent::testing {

// Kernel maps compare keys as raw bytes; so does the fake.
template <typename T>
struct BytesLess {
  bool operator()(const T& a, const T& b) const { return std::memcmp(&a, &b, sizeof(T)) < 0; }
};

template <typename T>
bool sameBytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename K, typename V>
class FakeMap final : public MapWriter<K, V> {
 public:
  Result<std::optional<V>> lookup(const K& key) const override {
    if (fail_next_lookups > 0) {
      --fail_next_lookups;
      return makeError(fail_code, "fake map: lookup refused");
    }
    auto it = data.find(key);
    return it == data.end() ? std::optional<V>() : std::optional<V>(it->second);
  }
  Status update(const K& key, const V& value) override {
    if (fail_next_updates > 0) {
      --fail_next_updates;
      ++failed_updates;
      return makeError(fail_code, "fake map: update refused");
    }
    if (capacity && !data.count(key) && data.size() >= *capacity) {
      ++failed_updates;
      return makeError(ErrorCode::kResourceExhausted, "fake map is full");
    }
    if (on_update) {
      on_update(key, value);
    }
    ++updates;
    data[key] = value;
    return Status::Ok();
  }
  Status erase(const K& key) override {
    if (fail_next_erases > 0) {
      --fail_next_erases;
      return makeError(fail_code, "fake map: erase refused");
    }
    ++erases;
    if (data.erase(key) == 0) {
      return makeError(ErrorCode::kNotFound, "fake map: no such key");
    }
    return Status::Ok();
  }
  Result<std::vector<std::pair<K, V>>> entries() const override {
    return std::vector<std::pair<K, V>>(data.begin(), data.end());
  }

  std::map<K, V, BytesLess<K>> data;
  int fail_next_updates = 0;
  int fail_next_erases = 0;
  mutable int fail_next_lookups = 0;
  ErrorCode fail_code = ErrorCode::kInternal;  // or kResourceExhausted: a full map
  std::optional<size_t> capacity;              // a new key beyond it is refused, as a full kernel map does
  int updates = 0;                             // successful writes
  int failed_updates = 0;
  int erases = 0;
  std::function<void(const K&, const V&)> on_update;  // called before a successful write lands
};

using FakeEndpointMap = FakeMap<plexus_endpoint_key, plexus_endpoint_value>;
using FakeIpcacheMap = FakeMap<plexus_ipcache_key, plexus_ipcache_value>;

// The ipcache fake's contents in the manager's terms.
inline std::map<Ipv4Prefix, IpcacheEntry> decodeIpcache(const FakeIpcacheMap& m) {
  std::map<Ipv4Prefix, IpcacheEntry> out;
  for (const auto& [k, v] : m.data) {
    out[Ipv4Prefix(Ipv4::fromNetwork(k.ip), static_cast<int>(k.prefixlen))] =
        IpcacheEntry{v.identity, Ipv4::fromNetwork(v.tunnel_endpoint)};
  }
  return out;
}

inline std::optional<plexus_endpoint_value> endpointEntry(const FakeEndpointMap& m, Ipv4 ip) {
  auto it = m.data.find(encodeEndpointKey(ip));
  return it == m.data.end() ? std::nullopt : std::optional<plexus_endpoint_value>(it->second);
}

inline std::optional<IpcacheEntry> ipcacheEntry(const FakeIpcacheMap& m, Ipv4Prefix prefix) {
  auto it = m.data.find(encodeIpcacheKey(prefix));
  if (it == m.data.end()) {
    return std::nullopt;
  }
  return IpcacheEntry{it->second.identity, Ipv4::fromNetwork(it->second.tunnel_endpoint)};
}

class FakePolicyMap final : public PolicyMap {
 public:
  Status set(uint16_t endpoint_id, const PolicyEntries& entries) override {
    if (fail_next_sets > 0) {
      --fail_next_sets;
      return makeError(fail_code, "fake policy map: set refused");
    }
    ++sets;
    tries[endpoint_id] = entries;
    return Status::Ok();
  }
  Status clear(uint16_t endpoint_id) override {
    ++clears;
    if (tries.erase(endpoint_id) == 0) {
      return makeError(ErrorCode::kNotFound, "fake policy map: no trie");
    }
    return Status::Ok();
  }

  std::map<uint16_t, PolicyEntries> tries;
  int fail_next_sets = 0;
  ErrorCode fail_code = ErrorCode::kResourceExhausted;
  int sets = 0;
  int clears = 0;
};

// Applies plans into a MapState, as the kernel maps would hold them; read() gives back what maps can tell
// (no frontend views).
class FakeServiceMaps final : public ServiceMaps {
 public:
  Status apply(const lb::Plan& plan) override {
    if (fail_next_applies > 0) {
      --fail_next_applies;
      return makeError(ErrorCode::kInternal, "fake service maps: apply refused");
    }
    ++applies;
    for (const auto& [id, b] : plan.backend_upserts) {
      state.backends[id] = b;
    }
    for (const auto& [id, r] : plan.revnat_upserts) {
      state.revnat[id] = r;
    }
    for (const auto& [id, t] : plan.maglev_upserts) {
      state.maglev[id] = lb::MaglevTable::of(t);
    }
    for (const auto& k : plan.source_range_upserts) {
      if (source_range_capacity && !state.source_ranges.count(k) &&
          state.source_ranges.size() >= *source_range_capacity) {
        return makeError(ErrorCode::kResourceExhausted, "fake source range map is full");
      }
      state.source_ranges.insert(k);
    }
    for (const auto& [k, v] : plan.service_upserts) {
      if (service_capacity && !state.services.count(k) && state.services.size() >= *service_capacity) {
        return makeError(ErrorCode::kResourceExhausted, "fake services map is full");  // the writes before stay
      }
      state.services[k] = v;
    }
    for (const auto& k : plan.service_deletes) {
      state.services.erase(k);
    }
    for (const auto& k : plan.source_range_deletes) {
      state.source_ranges.erase(k);
    }
    for (uint16_t id : plan.maglev_deletes) {
      state.maglev.erase(id);
    }
    for (uint16_t id : plan.revnat_deletes) {
      state.revnat.erase(id);
    }
    for (uint32_t id : plan.backend_deletes) {
      state.backends.erase(id);
    }
    return Status::Ok();
  }
  Result<lb::MapState> read() const override {
    if (fail_reads) {
      return makeError(ErrorCode::kInternal, "fake service maps: read refused");
    }
    lb::MapState out = state;
    out.frontends.clear();
    return out;
  }

  lb::MapState state;
  int fail_next_applies = 0;
  std::optional<size_t> service_capacity;  // service entries the map holds; a plan stops at the first beyond
  std::optional<size_t> source_range_capacity;  // the same for the source range trie
  bool fail_reads = false;
  int applies = 0;
};

class FakePodNetwork final : public PodNetwork {
 public:
  Status prepareNode(Ipv4 gateway) override {
    if (fail_prepare) {
      return makeError(ErrorCode::kPermissionDenied, "fake network: prepare refused");
    }
    prepared_gateway = gateway;
    return Status::Ok();
  }
  Result<PodLink> createPod(const PodLinkSpec& spec) override {
    if (fail_next_creates > 0) {
      --fail_next_creates;
      return makeError(ErrorCode::kInternal, "fake network: create veth refused");
    }
    created.push_back(spec.host_ifname);
    specs.push_back(spec);
    veths.insert(spec.host_ifname);
    return link();
  }
  Result<PodLink> attach(const std::string& host_ifname) override {
    if (!veths.count(host_ifname)) {
      return makeError(ErrorCode::kNotFound, "fake network: no veth " + host_ifname);
    }
    if (fail_next_attaches > 0) {
      --fail_next_attaches;
      return makeError(ErrorCode::kInternal, "fake network: attach refused");
    }
    attached.push_back(host_ifname);
    return link();
  }
  void removePod(const std::string& host_ifname) override {
    removed.push_back(host_ifname);
    veths.erase(host_ifname);
  }
  void detach(const std::string& host_ifname) override { detached.push_back(host_ifname); }
  bool exists(const std::string& host_ifname) override { return veths.count(host_ifname) > 0; }
  Status check(const EndpointRecord& rec) override {
    if (fail_checks) {
      return makeError(ErrorCode::kFailedPrecondition, "fake network: check refused");
    }
    return exists(rec.host_ifname) ? Status::Ok() : Status(makeError(ErrorCode::kNotFound, "veth gone"));
  }

  PodLink link() {
    PodLink l;
    l.host_ifindex = next_ifindex++;
    l.host_mac = Mac{{0x02, 0, 0, 0, 1, static_cast<uint8_t>(l.host_ifindex)}};
    l.pod_mac = Mac{{0x02, 0, 0, 0, 2, static_cast<uint8_t>(l.host_ifindex)}};
    return l;
  }

  std::set<std::string> veths;  // host veths that exist
  std::vector<std::string> created, removed, attached, detached;
  std::vector<PodLinkSpec> specs;
  std::optional<Ipv4> prepared_gateway;
  int next_ifindex = 100;
  bool fail_prepare = false;
  int fail_next_creates = 0;
  int fail_next_attaches = 0;
  bool fail_checks = false;
};

class FakeAgentStore final : public AgentStore {
 public:
  Status saveIpam(const IpamSnapshot& snapshot) override {
    PLEXUS_TRY(failure(), "save ipam");
    ipam = snapshot;
    return Status::Ok();
  }
  Status saveEndpoint(const EndpointRecord& record) override {
    PLEXUS_TRY(failure(), "save endpoint");
    endpoints[record.id] = record;
    return Status::Ok();
  }
  Status removeEndpoint(uint16_t id) override {
    PLEXUS_TRY(failure(), "remove endpoint");
    if (endpoints.erase(id) == 0) {
      return makeError(ErrorCode::kNotFound, "fake store: no endpoint record");
    }
    return Status::Ok();
  }
  std::vector<EndpointRecord> loadEndpoints(std::vector<std::string>* problems) const override {
    for (const auto& p : unreadable) {
      problems->push_back(p);
    }
    std::vector<EndpointRecord> out;
    for (const auto& [id, r] : endpoints) {
      out.push_back(r);
    }
    return out;
  }
  Status saveIdentities(const nlohmann::json& snapshot) override {
    PLEXUS_TRY(failure(), "save identities");
    identities = snapshot;
    ++identity_saves;
    return Status::Ok();
  }
  Result<std::optional<nlohmann::json>> loadIdentities() const override { return identities; }
  Status appendJournal(const std::string& lines, bool durable) override {
    PLEXUS_TRY(failure(), "append journal");
    ++journal_appends;
    journal += lines;
    unsynced = !durable;
    return Status::Ok();
  }
  Status syncJournal() override {
    PLEXUS_TRY(failure(), "sync journal");
    unsynced = false;
    return Status::Ok();
  }
  Status writeSnapshot(const nlohmann::json& s) override {
    PLEXUS_TRY(failure(), "write snapshot");
    snapshot = s;
    journal.clear();
    return Status::Ok();
  }
  Result<StoredResources> loadResources() const override {
    return StoredResources{snapshot, journal, "fake/resources.journal"};
  }

  // Journal entries, read as the agent reads them.
  std::vector<nlohmann::json> journalEntries() const {
    auto read = readJournal(journal, "fake journal");
    if (!read.ok()) {
      throw std::runtime_error(read.error().message);  // fails the test that asked
    }
    return read->entries;
  }

  std::optional<IpamSnapshot> ipam;
  std::map<uint16_t, EndpointRecord> endpoints;
  std::vector<std::string> unreadable;
  std::optional<nlohmann::json> identities;
  std::optional<nlohmann::json> snapshot;
  std::string journal;
  int journal_appends = 0;
  int identity_saves = 0;
  bool unsynced = false;  // appended without the fsync, not synced since
  int fail_next_writes = 0;

 private:
  Status failure() {
    if (fail_next_writes > 0) {
      --fail_next_writes;
      return makeError(ErrorCode::kInternal, "fake store: write refused");
    }
    return Status::Ok();
  }
};

// Records the calls; answers nothing by itself (tests post the answers to the controller).
class FakeClusterApi final : public ClusterApi {
 public:
  void fetchPod(const std::string& ns, const std::string& name) override { fetched.push_back(ns + "/" + name); }
  void allocateIdentity(const identity::Labels& labels) override { allocations.push_back(labels); }
  void releaseIdentity(uint32_t id) override { releases.push_back(id); }
  void publishEndpoint(const EndpointRecord& rec, const std::string& node) override {
    published.push_back(rec.pod_namespace + "/" + rec.pod_name + "@" + node + "=" + std::to_string(rec.identity));
  }
  void unpublishEndpoint(const std::string& ns, const std::string& pod) override { unpublished.push_back(ns + "/" + pod); }
  std::vector<std::string> published;
  std::vector<std::string> unpublished;
  void reportPolicy(const nlohmann::json& object, bool ok, const std::string& error) override {
    reports.push_back({object, ok, error});
  }

  struct Report {
    nlohmann::json object;
    bool ok;
    std::string error;
  };
  std::vector<std::string> fetched;
  std::vector<identity::Labels> allocations;
  std::vector<uint32_t> releases;
  std::vector<Report> reports;
};

class FakeHostAddresses final : public HostAddresses {
 public:
  std::set<Ipv4> list() override { return addresses; }
  std::set<Ipv4> addresses;
};

// Kernel routes to other nodes' pod CIDRs: records each call and keeps the resulting table (dst -> via, tunnel).
class FakeNodeRoutes final : public NodeRoutes {
 public:
  struct Call {
    std::string op;  // "replace" or "remove"
    Ipv4Prefix dst;
    Ipv4 via;
    bool tunnel = false;
  };
  Status replace(Ipv4Prefix dst, Ipv4 via, bool tunnel) override {
    if (fail_next_replaces > 0) {
      --fail_next_replaces;
      return makeError(ErrorCode::kInternal, "fake routes: replace refused");
    }
    calls.push_back({"replace", dst, via, tunnel});
    routes[dst] = {via, tunnel};
    return Status::Ok();
  }
  Status remove(Ipv4Prefix dst) override {
    if (fail_next_removes > 0) {
      --fail_next_removes;
      return makeError(ErrorCode::kInternal, "fake routes: remove refused");
    }
    auto it = routes.find(dst);
    calls.push_back({"remove", dst, it == routes.end() ? Ipv4{} : it->second.first,
                     it != routes.end() && it->second.second});
    routes.erase(dst);
    return Status::Ok();
  }
  Result<std::vector<Ipv4Prefix>> installed() override {
    std::vector<Ipv4Prefix> out;
    for (const auto& [dst, r] : routes) {
      out.push_back(dst);
    }
    return out;
  }
  size_t count(const std::string& op) const {
    return static_cast<size_t>(std::count_if(calls.begin(), calls.end(), [&](const Call& c) { return c.op == op; }));
  }

  std::vector<Call> calls;
  std::map<Ipv4Prefix, std::pair<Ipv4, bool>> routes;  // what the kernel holds now
  int fail_next_replaces = 0;
  int fail_next_removes = 0;
};

// The managers log every step; the tests judge by state, not by log lines.
inline const bool kQuietLogs = (spdlog::set_level(spdlog::level::off), true);

inline Ipv4 ip(const char* text) { return *Ipv4::parse(text); }
inline Ipv4Prefix prefix(const char* text) { return *Ipv4Prefix::parse(text); }

// An event as the agent sees it: through the resource store (which ServiceSync reads), then tracked. A delete
// carries the stored object, as the store's own delete events do. True if any resulting event was tracked.
inline bool trackThroughStore(ResourceState& resources, ServiceSync& sync, const ResourceEvent& e) {
  ResourceEvent in = e;
  if (e.type == ResourceEventType::kDelete) {
    in.object = resources.store().get(e.key).value_or(nlohmann::json());
  }
  bool tracked = false;
  for (const auto& changed : resources.ingest({in})) {
    tracked = sync.track(changed) || tracked;
  }
  return tracked;
}

}  // namespace plexus::agent::testing
