#include "plexus/datapath/lxc_datapath.h"

#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/datapath/map_migration.h"
#include "plexus/datapath/tc.h"
#include "plexus/reasons.h"
#include "plexus_lxc.skel.h"

namespace plexus::datapath {

Status ensureBpfRoot(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) {
    return makeError(ErrorCode::kFailedPrecondition, fmt::format("bpf root {}: {}", path, ec.message()));
  }
  struct statfs st {};
  if (statfs(path.c_str(), &st) != 0) {
    return errnoError(fmt::format("bpf root {}: statfs", path), errno);
  }
  if (static_cast<unsigned long>(st.f_type) != BPF_FS_MAGIC) {
    return makeError(ErrorCode::kFailedPrecondition,
                     fmt::format("bpf root {} is not on a bpf filesystem (mount -t bpf bpf <dir>)", path));
  }
  return Status::Ok();
}

void applyMapSizes(bpf_object* obj, const MapSizes& sizes) {
  const std::pair<const char*, uint32_t> table[] = {
      {"plexus_ct4_v2", sizes.ct},
      {"plexus_events_v1", sizes.events_ring_bytes},
      {"plexus_ipcache_v1", sizes.ipcache},
      {"plexus_lb4_services_v1", sizes.lb},
      {"plexus_lb4_backends_v1", sizes.lb},
      {"plexus_lb4_reverse_nat_v1", sizes.lb},
      {"plexus_lb4_maglev_v1", sizes.lb},
      {"plexus_lb4_affinity_v1", sizes.lb},
      {"plexus_lb4_source_range_v1", sizes.lb},
      {"plexus_snat4_v1", sizes.nat},
  };
  for (const auto& [name, size] : table) {
    if (bpf_map* m = bpf_object__find_map_by_name(obj, name)) {
      bpf_map__set_max_entries(m, size);
    }
  }
}

namespace {
// A skeleton's map, named by its full name in errors.
template <typename K, typename V>
Result<BpfMap<K, V>> openMap(const bpf_map* m) {
  return BpfMap<K, V>::fromFd(bpf_map__fd(m), bpf_map__name(m));
}

Result<std::unique_ptr<LbMaps>> openLbMaps(plexus_lxc* skel, uint32_t maglev_m) {
  auto svc = openMap<plexus_lb4_key, plexus_lb4_service>(skel->maps.plexus_lb4_services_v1);
  auto be = openMap<uint32_t, plexus_lb4_backend>(skel->maps.plexus_lb4_backends_v1);
  auto rn = openMap<uint16_t, plexus_lb4_reverse_nat>(skel->maps.plexus_lb4_reverse_nat_v1);
  auto ct = openMap<plexus_ct4_key, plexus_ct4_value>(skel->maps.plexus_ct4_v2);
  auto aff = openMap<plexus_lb4_affinity_key, plexus_lb4_affinity_value>(skel->maps.plexus_lb4_affinity_v1);
  auto ranges = openMap<plexus_lb4_src_range_key, uint8_t>(skel->maps.plexus_lb4_source_range_v1);
  if (!svc.ok() || !be.ok() || !rn.ok() || !ct.ok() || !aff.ok() || !ranges.ok()) {
    const Error& e = !svc.ok() ? svc.error()
                     : !be.ok() ? be.error()
                     : !rn.ok() ? rn.error()
                     : !ct.ok() ? ct.error()
                     : !aff.ok() ? aff.error()
                                 : ranges.error();
    return e.wrap("service maps");
  }
  int outer = dup(bpf_map__fd(skel->maps.plexus_lb4_maglev_v1));
  if (outer < 0) {
    return errnoError("service maps: maglev outer map", errno);
  }
  return std::make_unique<LbMaps>(LbMaps{std::move(svc.value()), std::move(be.value()), std::move(rn.value()),
                                         std::move(ct.value()), std::move(aff.value()), std::move(ranges.value()),
                                         UniqueFd(outer), maglev_m});
}
}  // namespace

Status LbMaps::setMaglevTable(uint16_t rev_nat_index, const std::vector<uint32_t>& table) {
  if (table.size() != maglev_table_size) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("maglev table for service {} has {} slots, the datapath expects {}", rev_nat_index,
                                 table.size(), maglev_table_size));
  }
  // Inner maps must carry the template's flags (the kernel compares them on insert).
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_INNER_MAP);
  int inner = bpf_map_create(BPF_MAP_TYPE_ARRAY, "plexus_maglev_i", sizeof(uint32_t), sizeof(uint32_t),
                             maglev_table_size, &opts);
  if (inner < 0) {
    return errnoError(fmt::format("maglev table for service {}: create", rev_nat_index), errno);
  }
  UniqueFd inner_fd(inner);
  // One batched write of the whole table (keys 0..M-1).
  std::vector<uint32_t> keys(table.size());
  for (uint32_t i = 0; i < keys.size(); ++i) {
    keys[i] = i;
  }
  uint32_t count = static_cast<uint32_t>(table.size());
  if (bpf_map_update_batch(inner_fd.get(), keys.data(), table.data(), &count, nullptr) != 0) {
    return errnoError(fmt::format("maglev table for service {}: fill", rev_nat_index), errno);
  }
  uint32_t key = rev_nat_index;
  int fd_value = inner_fd.get();
  if (bpf_map_update_elem(maglev_outer.get(), &key, &fd_value, BPF_ANY) != 0) {
    return errnoError(fmt::format("maglev table for service {}: swap", rev_nat_index), errno);
  }
  return Status::Ok();
}

Status LbMaps::eraseMaglevTable(uint16_t rev_nat_index) {
  uint32_t key = rev_nat_index;
  if (bpf_map_delete_elem(maglev_outer.get(), &key) != 0 && errno != ENOENT) {
    return errnoError(fmt::format("maglev table for service {}: delete", rev_nat_index), errno);
  }
  return Status::Ok();
}

Result<std::vector<uint16_t>> LbMaps::maglevIndexes() const {
  // The outer map reads as rev_nat_index -> inner map id.
  auto outer = BpfMap<uint32_t, uint32_t>::fromFd(maglev_outer.get());
  if (!outer.ok()) {
    return outer.error().wrap("maglev outer map");
  }
  auto entries = outer->entries();
  if (!entries.ok()) {
    return entries.error().wrap("maglev outer map");
  }
  std::vector<uint16_t> out;
  for (const auto& [index, inner_id] : *entries) {
    out.push_back(static_cast<uint16_t>(index));
  }
  return out;
}

Result<std::vector<uint32_t>> LbMaps::maglevTable(uint16_t rev_nat_index) const {
  uint32_t key = rev_nat_index;
  uint32_t inner_id = 0;
  if (bpf_map_lookup_elem(maglev_outer.get(), &key, &inner_id) != 0) {
    if (errno == ENOENT) {
      return std::vector<uint32_t>{};
    }
    return errnoError("maglev outer lookup", errno);
  }
  int inner = bpf_map_get_fd_by_id(inner_id);
  if (inner < 0) {
    return errnoError("maglev inner map", errno);
  }
  UniqueFd inner_fd(inner);
  auto map = BpfMap<uint32_t, uint32_t>::fromFd(inner_fd.get());
  if (!map.ok()) {
    return map.error().wrap("maglev inner map");
  }
  auto slots = map->entries();  // batched: a few calls for the whole table
  if (!slots.ok()) {
    return slots.error().wrap("maglev inner map");
  }
  // The table as installed, whatever M it was built for (a restart may come with another --maglev-table-size).
  std::vector<uint32_t> out(slots->size());
  for (const auto& [slot, backend] : *slots) {
    if (slot < out.size()) {
      out[slot] = backend;
    }
  }
  return out;
}

PolicyEntries allowAllPolicy() {
  PolicyEntries out;
  for (uint8_t dir : {uint8_t{PLEXUS_DIR_INGRESS}, uint8_t{PLEXUS_DIR_EGRESS}}) {
    plexus_policy_key k{};
    k.prefixlen = PLEXUS_POLICY_FIXED_PREFIX;
    k.identity = 0;
    k.direction = dir;
    out.emplace_back(k, plexus_policy_value{});
  }
  return out;
}

class PolicyMaps::Busy {
 public:
  Busy(PolicyMaps& maps, uint16_t id) : maps_(maps), id_(id) {
    std::unique_lock lock(maps_.mu_);
    maps_.cv_.wait(lock, [&] { return maps_.preparing_ != id_ && maps_.busy_.count(id_) == 0; });
    maps_.busy_.insert(id_);
  }
  ~Busy() {
    {
      std::lock_guard lock(maps_.mu_);
      maps_.busy_.erase(id_);
    }
    maps_.cv_.notify_all();
  }
  // The spare trie at this id, if there is one (it is no spare any more).
  std::optional<UniqueFd> takeSpare() {
    std::lock_guard lock(maps_.mu_);
    auto it = maps_.spares_.find(id_);
    if (it == maps_.spares_.end()) {
      return std::nullopt;
    }
    UniqueFd fd = std::move(it->second);
    maps_.spares_.erase(it);
    maps_.cv_.notify_all();  // the thread makes another
    return fd;
  }

 private:
  PolicyMaps& maps_;
  uint16_t id_;
};

PolicyMaps::~PolicyMaps() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

namespace {
Result<UniqueFd> createPolicyMap(bpf_map_type type, const char* name, uint16_t endpoint_id, uint32_t entries) {
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
  int fd = bpf_map_create(type, name, sizeof(plexus_policy_key), sizeof(plexus_policy_value),
                          std::max<uint32_t>(entries, 1), &opts);
  if (fd < 0) {
    return errnoError(fmt::format("policy for endpoint {}: create {}", endpoint_id, name), errno);
  }
  return UniqueFd(fd);
}

Status fillPolicyMap(int fd, uint16_t endpoint_id, const PolicyEntries& entries) {
  for (const auto& [k, v] : entries) {
    if (bpf_map_update_elem(fd, &k, &v, BPF_ANY) != 0) {
      return errnoError(fmt::format("policy for endpoint {}: fill", endpoint_id), errno);
    }
  }
  return Status::Ok();
}

Result<PolicyEntries> innerEntries(int outer, uint16_t endpoint_id) {
  uint32_t key = endpoint_id;
  uint32_t inner_id = 0;
  if (bpf_map_lookup_elem(outer, &key, &inner_id) != 0) {
    if (errno == ENOENT) {
      return makeError(ErrorCode::kNotFound, fmt::format("endpoint {} has no policy map", endpoint_id));
    }
    return errnoError("policy outer lookup", errno);
  }
  int inner = bpf_map_get_fd_by_id(inner_id);
  if (inner < 0) {
    return errnoError("policy inner map", errno);
  }
  auto map = BpfMap<plexus_policy_key, plexus_policy_value>::fromFd(inner);
  close(inner);
  if (!map.ok()) {
    return map.error();
  }
  return map->entries();
}
}  // namespace

// Each map is sized to what it holds: set() never adds to an installed map, it builds a new one.
Result<UniqueFd> PolicyMaps::createHash(uint16_t endpoint_id, uint32_t entries) const {
  return createPolicyMap(BPF_MAP_TYPE_HASH, "plexus_policy_i", endpoint_id, entries);
}

void PolicyMaps::keepSpares(size_t count) {
  std::lock_guard lock(mu_);
  want_ = count;
  if (!thread_.joinable() && count > 0) {
    thread_ = std::thread([this] { spareLoop(); });
  }
  cv_.notify_all();
}

size_t PolicyMaps::spares() const {
  std::lock_guard lock(mu_);
  return spares_.size();
}

void PolicyMaps::spareLoop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || spares_.size() < want_; });
    if (stop_ || spares_.size() >= want_) {
      continue;
    }
    // The lowest id without a trie that nobody is writing: where the next endpoint goes.
    std::optional<uint16_t> id;
    for (uint32_t i = 1; i < PLEXUS_POLICY_ENDPOINTS_MAX && !id; ++i) {
      uint32_t key = i;
      uint32_t inner_id = 0;
      if (spares_.count(static_cast<uint16_t>(i)) == 0 && busy_.count(static_cast<uint16_t>(i)) == 0 &&
          bpf_map_lookup_elem(outer_.get(), &key, &inner_id) != 0 && errno == ENOENT) {
        id = static_cast<uint16_t>(i);
      }
    }
    if (!id) {
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_; });
      continue;
    }
    preparing_ = id;
    lock.unlock();
    auto hash = createHash(*id, kSpareEntries);
    bool ok = false;
    if (hash.ok()) {
      uint32_t key = *id;
      int fd_value = hash->get();
      // BPF_ANY: an array has no NOEXIST; the slot was empty and set()/clear() keep off it while it is prepared.
      ok = bpf_map_update_elem(outer_.get(), &key, &fd_value, BPF_ANY) == 0;  // waits for RCU: not on ADD
    }
    lock.lock();
    preparing_.reset();
    if (ok) {
      spares_[*id] = std::move(*hash);
    }
    cv_.notify_all();
    if (!ok) {
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_; });  // a full map: try again later
    }
  }
}

Status PolicyMaps::set(uint16_t endpoint_id, const PolicyEntries& entries) {
  return afterWrite(write(endpoint_id, entries));
}

Status PolicyMaps::afterWrite(Status written) {
  // Moved on whatever the write did (a failed swap may have left some of it): connections judge again.
  Status moved = epoch_ ? epoch_->bump() : Status::Ok();
  return !written.ok() ? written : moved;
}

Status PolicyMaps::write(uint16_t endpoint_id, const PolicyEntries& entries) {
  if (entries.size() > capacity_) {
    return makeError(ErrorCode::kResourceExhausted,
                     fmt::format("policy map of endpoint {} is full: the policy needs {} entries, the map holds {} "
                                 "(--bpf-policy-map-max)",
                                 endpoint_id, entries.size(), capacity_));
  }
  PolicyEntries hash = layoutPolicy(entries);
  Busy busy(*this, endpoint_id);
  auto spare = busy.takeSpare();
  if (spare && hash.size() <= kSpareEntries) {
    PLEXUS_TRY(fillPolicyMap(spare->get(), endpoint_id, hash), "policy");
  } else {
    // A spare too small for this policy is dropped: the swap below replaces it in the outer map.
    auto created = createHash(endpoint_id, static_cast<uint32_t>(hash.size()));
    if (!created.ok()) {
      return created.error();
    }
    PLEXUS_TRY(fillPolicyMap(created->get(), endpoint_id, hash), "policy");
    uint32_t key = endpoint_id;
    int fd_value = created->get();
    if (bpf_map_update_elem(outer_.get(), &key, &fd_value, BPF_ANY) != 0) {
      return detail::updateError(fmt::format("policy for endpoint {}: swap", endpoint_id), "plexus_policy_v3",
                                 PLEXUS_POLICY_ENDPOINTS_MAX, errno);
    }
  }
  return Status::Ok();
}

Status PolicyMaps::clear(uint16_t endpoint_id) {
  Busy busy(*this, endpoint_id);
  (void)busy.takeSpare();
  uint32_t key = endpoint_id;
  if (bpf_map_delete_elem(outer_.get(), &key) != 0 && errno != ENOENT) {
    return afterWrite(errnoError(fmt::format("policy for endpoint {}: clear", endpoint_id), errno));
  }
  return afterWrite(Status::Ok());
}

VerdictEpoch::VerdictEpoch(UniqueFd map) : fd_(std::move(map)) {
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(fd_.get(), &zero, &value_) != 0 || value_ == 0) {
    value_ = 0;
    (void)store(1);  // a new map: verdicts are cached from now on (0 caches none); bump() retries a failure
  }
}

Status VerdictEpoch::store(uint32_t next) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(fd_.get(), &zero, &next, BPF_ANY) != 0) {
    return errnoError("policy epoch (plexus_policy_epoch_v1): update", errno);
  }
  value_ = next;
  return Status::Ok();
}

Status VerdictEpoch::bump() {
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t next = value_ + 1;
  return store(next == 0 ? 1 : next);  // 0 means "none cached"
}

uint32_t VerdictEpoch::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return value_;
}

Result<PolicyEntries> PolicyMaps::get(uint16_t endpoint_id) const {
  auto hash = innerEntries(outer_.get(), endpoint_id);
  if (!hash.ok()) {
    return hash.error();
  }
  return policyEntries(*hash);
}

// Older policy layouts -> plexus_policy_v3: plexus_policy_v1 (one LPM trie of every entry per endpoint, until
// 2026-12-06) and plexus_policy_v2 with plexus_policy_range_v1 (a hash, and a trie of the port ranges, that day).
// Each endpoint's entries, read from every map of the old layout, are laid out anew before any program of this
// build is attached, so that endpoints keep their verdicts across the upgrade. The old pins go once every endpoint
// is carried over. names: the layout's outer maps, the first one present for every endpoint with a policy.
namespace {
std::optional<CarryReport> carryPolicy(const std::string& root, const std::vector<std::string>& names,
                                       PolicyMaps& maps) {
  std::vector<UniqueFd> outers;
  for (const auto& name : names) {
    outers.emplace_back(bpf_obj_get((root + "/" + name).c_str()));
  }
  if (!outers[0].valid()) {
    return std::nullopt;
  }
  CarryReport report;
  report.from = names[0];
  report.to = "plexus_policy_v3";
  report.from_max_entries = PLEXUS_POLICY_ENDPOINTS_MAX;
  report.to_max_entries = PLEXUS_POLICY_ENDPOINTS_MAX;
  for (uint32_t id = 1; id < PLEXUS_POLICY_ENDPOINTS_MAX; ++id) {
    auto entries = innerEntries(outers[0].get(), static_cast<uint16_t>(id));
    if (!entries.ok() && entries.error().code == ErrorCode::kNotFound) {
      continue;
    }
    ++report.read;
    for (size_t i = 1; i < outers.size() && entries.ok() && outers[i].valid(); ++i) {
      auto more = innerEntries(outers[i].get(), static_cast<uint16_t>(id));
      if (more.ok()) {
        entries->insert(entries->end(), more->begin(), more->end());
      } else if (more.error().code != ErrorCode::kNotFound) {
        entries = more.error();
      }
    }
    Status st = entries.ok() ? maps.set(static_cast<uint16_t>(id), policyEntries(*entries)) : Status(entries.error());
    if (st.ok()) {
      ++report.carried;
    } else {
      ++report.lost[st.error().message];
    }
  }
  if (report.lossless()) {
    for (const auto& name : names) {
      (void)unlink((root + "/" + name).c_str());
    }
    spdlog::info("bpf: {}", report.summary());
  } else {
    spdlog::warn("bpf: {} (its pins are kept for the next start)", report.summary());
  }
  return report;
}
}  // namespace

Status validateRouting(const LxcConfig& config) {
  if (config.routing_mode == RoutingMode::kTunnel && config.tunnel_ifindex == 0) {
    return makeError(ErrorCode::kInvalidArgument,
                     "routing mode tunnel needs the tunnel device's ifindex (create plexus_vxlan first)");
  }
  return Status::Ok();
}

Result<std::unique_ptr<LxcDatapath>> LxcDatapath::load(const LxcConfig& config) {
  PLEXUS_TRY(validateRouting(config), "load lxc programs");
  PLEXUS_TRY(ensureBpfRoot(config.bpf_root), "load lxc programs");
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = config.bpf_root.c_str());
  plexus_lxc* skel = plexus_lxc__open_opts(&opts);
  if (!skel) {
    return errnoError("load lxc programs: open skeleton", errno);
  }
  skel->rodata->cfg_redirect_peer = config.redirect_peer ? 1 : 0;
  skel->rodata->cfg_arp_responder = config.arp_responder ? 1 : 0;
  skel->rodata->cfg_lb_per_packet = config.lb_per_packet ? 1 : 0;
  skel->rodata->cfg_enable_policy = config.enable_policy ? 1 : 0;
  skel->rodata->cfg_enable_events = config.enable_events ? 1 : 0;
  skel->rodata->cfg_monitor_aggregation = config.monitor_aggregation;
  skel->rodata->cfg_maglev_m = config.maglev_table_size;
  skel->rodata->cfg_routing_mode = static_cast<uint8_t>(config.routing_mode);
  skel->rodata->cfg_tunnel_ifindex = config.tunnel_ifindex;
  skel->rodata->cfg_host_routing = config.host_routing ? 1 : 0;
  skel->rodata->cfg_policy_audit = config.policy_audit ? 1 : 0;
  skel->rodata->cfg_lb_mode = config.lb_mode;
  applyMapSizes(skel->obj, config.sizes);
  // The Maglev inner template keeps its default size: BPF_F_INNER_MAP accepts tables of any size M.
  // Entries of retired layouts (plexus_ct4_v1) and of maps pinned with another size are carried in here, before
  // any program is attached.
  auto carried = loadPinnedObject(skel->obj, config.bpf_root, [skel] { return plexus_lxc__load(skel); });
  if (!carried.ok()) {
    plexus_lxc__destroy(skel);
    return carried.error().wrap(
        fmt::format("load lxc programs (pinned maps under {} must match this build's layouts)", config.bpf_root));
  }
  auto eps = openMap<plexus_endpoint_key, plexus_endpoint_value>(skel->maps.plexus_endpoints_v1);
  auto ipc = openMap<plexus_ipcache_key, plexus_ipcache_value>(skel->maps.plexus_ipcache_v1);
  auto met =
      PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value>::fromFd(bpf_map__fd(skel->maps.plexus_metrics_v1));
  if (!eps.ok() || !ipc.ok() || !met.ok()) {
    Error e = !eps.ok() ? eps.error() : !ipc.ok() ? ipc.error() : met.error();
    plexus_lxc__destroy(skel);
    return e.wrap("load lxc programs");
  }
  auto lb = openLbMaps(skel, config.maglev_table_size);
  if (!lb.ok()) {
    plexus_lxc__destroy(skel);
    return lb.error().wrap("load lxc programs");
  }
  auto dp = std::unique_ptr<LxcDatapath>(new LxcDatapath(skel, config.bpf_root, std::move(eps.value()),
                                                         std::move(ipc.value()), std::move(met.value()),
                                                         std::move(lb.value()), config.sizes.policy));
  dp->carried_ = std::move(carried.value());
  // The older layout first: a v2 pin, if both are there, holds the later state.
  for (const auto& names : {std::vector<std::string>{"plexus_policy_v1"},
                            std::vector<std::string>{"plexus_policy_v2", "plexus_policy_range_v1"}}) {
    if (auto policy = carryPolicy(config.bpf_root, names, dp->policy())) {
      dp->carried_.push_back(std::move(*policy));
    }
  }
  return dp;
}

LxcDatapath::LxcDatapath(plexus_lxc* skel, std::string root, BpfMap<plexus_endpoint_key, plexus_endpoint_value> eps,
                         BpfMap<plexus_ipcache_key, plexus_ipcache_value> ipc,
                         PerCpuBpfMap<plexus_metrics_key, plexus_metrics_value> met, std::unique_ptr<LbMaps> lb,
                         uint32_t policy_capacity)
    : skel_(skel), root_(std::move(root)), endpoints_(std::move(eps)), ipcache_(std::move(ipc)),
      metrics_(std::move(met)), lb_(std::move(lb)),
      epoch_(std::make_unique<VerdictEpoch>(UniqueFd(dup(bpf_map__fd(skel->maps.plexus_policy_epoch_v1))))),
      policy_(std::make_unique<PolicyMaps>(UniqueFd(dup(bpf_map__fd(skel->maps.plexus_policy_v3))),
                                           policy_capacity, epoch_.get())) {}

// Destroying the skeleton closes our fds only: tc filters keep their programs and the maps stay pinned.
LxcDatapath::~LxcDatapath() { plexus_lxc__destroy(skel_); }

int LxcDatapath::eventsFd() const { return bpf_map__fd(skel_->maps.plexus_events_v1); }

uint64_t LxcDatapath::lostEvents() const {
  int ncpus = possibleCpus();
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpus > 0 ? ncpus : 1));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.plexus_events_lost_v1), &zero, per_cpu.data()) != 0) {
    return 0;
  }
  uint64_t total = 0;
  for (uint64_t v : per_cpu) {
    total += v;
  }
  return total;
}

int LxcDatapath::fromContainerFd() const { return bpf_program__fd(skel_->progs.plexus_from_container); }
int LxcDatapath::toContainerFd() const { return bpf_program__fd(skel_->progs.plexus_to_container); }

Status LxcDatapath::attachEndpoint(int host_ifindex) {
  auto in = tcAttach(host_ifindex, TcDirection::kIngress, fromContainerFd());
  if (!in.ok()) {
    return in.error().wrap("attach from-container");
  }
  auto out = tcAttach(host_ifindex, TcDirection::kEgress, toContainerFd());
  if (!out.ok()) {
    return out.error().wrap("attach to-container");
  }
  return Status::Ok();
}

ProgramHandle programHandle(const bpf_program* prog) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  ProgramHandle h{bpf_program__name(prog), 0};
  if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) == 0) {
    h.id = info.id;
    h.verified_insns = info.verified_insns;
  }
  return h;
}

std::vector<ProgramHandle> LxcDatapath::programs() const {
  std::vector<ProgramHandle> out;
  for (const bpf_program* p : {skel_->progs.plexus_from_container, skel_->progs.plexus_to_container}) {
    out.push_back(programHandle(p));
  }
  return out;
}

Result<BpfMap<plexus_snat4_key, plexus_snat4_value>> LxcDatapath::nat() const {
  return openMap<plexus_snat4_key, plexus_snat4_value>(skel_->maps.plexus_snat4_v1);
}

std::vector<PinnedMapInfo> LxcDatapath::maps() const {
  std::vector<PinnedMapInfo> out;
  for (bpf_map* m : {skel_->maps.plexus_endpoints_v1, skel_->maps.plexus_ipcache_v1, skel_->maps.plexus_metrics_v1,
                     skel_->maps.plexus_lb4_services_v1, skel_->maps.plexus_lb4_backends_v1,
                     skel_->maps.plexus_lb4_reverse_nat_v1, skel_->maps.plexus_lb4_maglev_v1,
                     skel_->maps.plexus_lb4_affinity_v1, skel_->maps.plexus_ct4_v2, skel_->maps.plexus_policy_v3,
                     skel_->maps.plexus_events_lost_v1, skel_->maps.plexus_snat4_v1}) {
    auto info = mapInfo(bpf_map__fd(m));
    PinnedMapInfo p{bpf_map__name(m), root_ + "/" + bpf_map__name(m), info.ok() ? info.value() : MapInfo{},
                    countKeys(bpf_map__fd(m))};
    out.push_back(p);
  }
  return out;
}

}  // namespace plexus::datapath
