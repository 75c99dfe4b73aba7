#include "plexus/datapath/map_migration.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/datapath/bpf_map.h"

namespace plexus::datapath {

namespace {

// bpffs refuses names with a dot (reserved for the kernel's own files), so "_old"; map names end in "_v<N>".
constexpr const char* kAsideSuffix = "_old";

bool isPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}
bool isLru(uint32_t type) { return type == BPF_MAP_TYPE_LRU_HASH || type == BPF_MAP_TYPE_LRU_PERCPU_HASH; }
bool isArray(uint32_t type) {
  return type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_ARRAY_OF_MAPS;
}
bool isMapInMap(uint32_t type) { return type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS; }
// Maps whose entries a syscall can read and write back (a map of maps: inner map ids in, fds out).
bool holdsEntries(uint32_t type) {
  switch (type) {
    case BPF_MAP_TYPE_HASH:
    case BPF_MAP_TYPE_LRU_HASH:
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
    case BPF_MAP_TYPE_ARRAY:
    case BPF_MAP_TYPE_PERCPU_ARRAY:
    case BPF_MAP_TYPE_LPM_TRIE:
      return true;
    default:
      return isMapInMap(type);
  }
}

// A syscall moves one value per possible CPU for per-CPU maps, each rounded up to 8 bytes.
size_t valueBytes(const MapInfo& info) {
  if (!isPerCpu(info.type)) {
    return info.value_size;
  }
  return ((info.value_size + 7) / 8 * 8) * static_cast<size_t>(possibleCpus());
}

bool pinExists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

// A map whose entries go into `target` once the object is loaded.
struct Source {
  std::string name;       // the report's "from"
  std::string found_at;   // where it was pinned when found (put back there if the load fails)
  std::string pinned_at;  // where it is pinned now; empty: nowhere (only our fd holds it)
  UniqueFd fd;
  MapInfo info;
  EntryConverter convert;
  bpf_map* target = nullptr;
};

// libbpf reuses a pin only when type, key and value sizes, max_entries and flags all match. Same key and value
// sizes with other parameters: the same layout, recreated and its entries carried. Different key or value sizes
// are a layout change, which needs a new map name (a row of mapMigrations()); those are left for libbpf to refuse.
bool needsRecreate(const MapInfo& pinned, const bpf_map* map) {
  uint32_t type = bpf_map__type(map);
  // Values must mean the same: per-CPU slots, inner maps and plain bytes are not interchangeable.
  if (pinned.key_size != bpf_map__key_size(map) || pinned.value_size != bpf_map__value_size(map) ||
      isPerCpu(pinned.type) != isPerCpu(type) || isMapInMap(pinned.type) != isMapInMap(type) ||
      holdsEntries(pinned.type) != holdsEntries(type) || bpf_map__max_entries(map) == 0) {
    return false;
  }
  return pinned.type != type || pinned.max_entries != bpf_map__max_entries(map) ||
         pinned.map_flags != bpf_map__map_flags(map);
}

// Every entry, batched where the kernel supports it (hash maps), else key by key. Bounded by max_entries.
Result<std::vector<RawEntry>> readEntries(int fd, const MapInfo& info) {
  const size_t vbytes = valueBytes(info);
  std::vector<RawEntry> out;
  constexpr uint32_t kChunk = 4096;
  std::vector<uint8_t> keys(size_t{kChunk} * info.key_size);
  std::vector<uint8_t> values(size_t{kChunk} * vbytes);
  // The batch cursor is opaque (a bucket index for hash maps): at least 8 bytes.
  std::vector<uint8_t> in(std::max<size_t>(8, info.key_size));
  std::vector<uint8_t> next(in.size());
  for (uint32_t round = 0; round <= info.max_entries; ++round) {
    uint32_t count = kChunk;
    int rc = bpf_map_lookup_batch(fd, round == 0 ? nullptr : in.data(), next.data(), keys.data(), values.data(),
                                  &count, nullptr);
    int err = rc == 0 ? 0 : errno;
    if (err != 0 && err != ENOENT) {
      break;  // no batch support for this type (or a bucket larger than a chunk): walk key by key
    }
    for (uint32_t i = 0; i < count; ++i) {
      out.push_back(RawEntry{{keys.begin() + i * info.key_size, keys.begin() + (i + 1) * info.key_size},
                             {values.begin() + i * vbytes, values.begin() + (i + 1) * vbytes}});
    }
    if (err == ENOENT) {
      return out;
    }
    in.swap(next);
  }
  out.clear();
  std::vector<uint8_t> key(info.key_size);
  std::vector<uint8_t> next_key(info.key_size);
  const void* prev = nullptr;
  for (uint32_t i = 0; i <= info.max_entries; ++i) {
    if (bpf_map_get_next_key(fd, prev, next_key.data()) != 0) {
      if (errno == ENOENT) {
        return out;
      }
      return errnoError("read old map", errno);
    }
    RawEntry e{next_key, std::vector<uint8_t>(vbytes)};
    if (bpf_map_lookup_elem(fd, next_key.data(), e.value.data()) == 0) {  // ENOENT: an empty slot
      out.push_back(std::move(e));
    }
    key.swap(next_key);
    prev = key.data();
  }
  return out;
}

// Finds what the object's maps must take in, moving aside the pins libbpf could not reuse.
std::vector<Source> collectSources(bpf_object* obj, const std::string& bpf_root,
                                   const std::vector<MapMigration>& migrations) {
  std::vector<Source> sources;
  auto add = [&](const std::string& name, const std::string& path, const EntryConverter& convert, bpf_map* target) {
    UniqueFd fd(bpf_obj_get(path.c_str()));
    auto info = fd.valid() ? mapInfo(fd.get()) : Result<MapInfo>(makeError(ErrorCode::kNotFound, path));
    if (info.ok()) {
      sources.push_back(Source{name, path, path, std::move(fd), *info, convert, target});
    }
  };
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, obj) {
    const char* pin = bpf_map__pin_path(map);
    if (pin == nullptr) {
      continue;
    }
    const std::string name = bpf_map__name(map);
    const std::string aside = std::string(pin) + kAsideSuffix;
    add(name, aside, copyEntry, map);  // left by an interrupted carry
    UniqueFd fd(bpf_obj_get(pin));
    auto info = fd.valid() ? mapInfo(fd.get()) : Result<MapInfo>(makeError(ErrorCode::kNotFound, pin));
    if (info.ok() && needsRecreate(*info, map)) {
      bool moved = std::rename(pin, aside.c_str()) == 0;
      if (moved) {
        // Renaming over an older "<pin>_old" unpinned that one; its fd is held, so it is carried all the same.
        for (Source& s : sources) {
          if (s.pinned_at == aside) {
            s.pinned_at.clear();
          }
        }
      } else {
        spdlog::warn("bpf: move {} aside: {}; its entries are carried but would be lost if the agent stopped now",
                     pin, std::strerror(errno));
        (void)unlink(pin);
      }
      sources.push_back(Source{name, pin, moved ? aside : "", std::move(fd), *info, copyEntry, map});
    }
    for (const MapMigration& m : migrations) {
      if (m.to == name) {
        add(m.from, bpf_root + "/" + m.from, m.convert, map);
      }
    }
  }
  return sources;
}

// The load failed: every map is pinned where it was found, and nothing is left aside.
void restorePins(std::vector<Source>& sources) {
  for (Source& s : sources) {
    if (!s.pinned_at.empty() && s.pinned_at != s.found_at) {
      (void)unlink(s.pinned_at.c_str());
      s.pinned_at.clear();
    }
  }
  for (Source& s : sources) {
    if (s.pinned_at.empty() && !pinExists(s.found_at) && bpf_obj_pin(s.fd.get(), s.found_at.c_str()) != 0) {
      spdlog::warn("bpf: could not pin {} back after the failed load: {}", s.found_at, std::strerror(errno));
    }
  }
}

// Writes one entry; returns 0 or the errno. A map of maps reads as inner map ids and is written with fds of them.
int writeEntry(int fd, const RawEntry& e, uint64_t flags, bool inner_maps) {
  if (!inner_maps) {
    return bpf_map_update_elem(fd, e.key.data(), e.value.data(), flags) == 0 ? 0 : errno;
  }
  uint32_t id = 0;
  if (e.value.size() != sizeof(id)) {
    return EINVAL;
  }
  std::memcpy(&id, e.value.data(), sizeof(id));
  UniqueFd inner(bpf_map_get_fd_by_id(id));
  if (!inner.valid()) {
    return errno;
  }
  int value = inner.get();
  return bpf_map_update_elem(fd, e.key.data(), &value, flags) == 0 ? 0 : errno;
}

// Writes one source's entries into its target, as many as fit. Fails only when the old map cannot be read (its pin
// then stays for the next start).
Status carry(const Source& s, CarryReport* report) {
  const int target_fd = bpf_map__fd(s.target);
  auto target = mapInfo(target_fd);
  if (!target.ok()) {
    return target.error();
  }
  std::vector<RawEntry> old;
  if (holdsEntries(s.info.type)) {  // a ring buffer and the like have nothing to carry
    auto read = readEntries(s.fd.get(), s.info);
    if (!read.ok()) {
      return read.error();
    }
    old = std::move(read.value());
  }
  const bool array = isArray(target->type);
  // An LRU map evicts rather than refuses: never write more than its free room.
  size_t room = std::numeric_limits<size_t>::max();
  uint32_t present = 0;
  if (!array) {
    present = countKeys(target_fd);
    room = target->max_entries > present ? target->max_entries - present : 0;
  }
  CarryPlan plan = planCarry(old, s.convert, room);
  *report = std::move(plan.report);
  report->from = s.name;
  report->to = bpf_map__name(s.target);
  report->from_max_entries = s.info.max_entries;
  report->to_max_entries = target->max_entries;
  // Entries the new map already has were written since (by a carry that ran before): they are kept.
  const uint64_t flags = array ? BPF_ANY : BPF_NOEXIST;
  for (const RawEntry& e : plan.entries) {
    int err = writeEntry(target_fd, e, flags, isMapInMap(target->type));
    if (err == 0) {
      ++report->carried;
    } else if (err == EEXIST) {
      ++report->kept_newer;
    } else if (err == E2BIG) {
      ++report->dropped;  // a full hash map, or an array index past the new size
    } else {
      ++report->lost[fmt::format("writing it failed: {}", std::strerror(err))];
    }
  }
  // An LRU map refills a CPU's free list in batches and evicts to complete one, so near max_entries some entries
  // just written may be gone again: count what stayed.
  if (isLru(target->type)) {
    size_t expected = present + report->carried;
    size_t now = countKeys(target_fd);
    if (now < expected) {
      size_t evicted = std::min(expected - now, report->carried);
      report->carried -= evicted;
      report->dropped += evicted;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<CarryReport>> loadPinnedObject(bpf_object* obj, const std::string& bpf_root,
                                                  const std::function<int()>& load,
                                                  const std::vector<MapMigration>& migrations) {
  std::vector<Source> sources = collectSources(obj, bpf_root, migrations);
  int err = load();
  if (err != 0) {
    restorePins(sources);
    return errnoError("libbpf", -err);
  }
  std::vector<CarryReport> reports;
  for (Source& s : sources) {
    CarryReport report;
    if (Status st = carry(s, &report); !st.ok()) {
      spdlog::warn("bpf: {} -> {}: nothing carried over: {} (its pin {} is kept for the next start)", s.name,
                   bpf_map__name(s.target), st.error().message, s.pinned_at);
      continue;
    }
    if (!s.pinned_at.empty()) {
      (void)unlink(s.pinned_at.c_str());
    }
    if (report.lossless()) {
      spdlog::info("bpf: {}", report.summary());
    } else {
      spdlog::warn("bpf: {}", report.summary());
    }
    reports.push_back(std::move(report));
  }
  return reports;
}

}  // namespace plexus::datapath
