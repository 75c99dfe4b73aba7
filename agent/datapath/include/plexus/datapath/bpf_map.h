#pragma once
// Typed access to a BPF map (STYLE.md rule 11). The factory checks key and value sizes against the
// kernel's view of the map; lookup returns "absent" distinctly from "error"; there is no operator[].

#include <bpf/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "plexus/common/result.h"
#include "plexus/datapath/fd.h"

namespace plexus::datapath {

struct MapInfo {
  std::string name;
  uint32_t type = 0;
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  uint32_t max_entries = 0;
  uint32_t id = 0;
  uint32_t map_flags = 0;
};

Result<MapInfo> mapInfo(int fd);
const char* mapTypeName(uint32_t type);
// Number of keys in any map, walked with get_next_key (bounded by max_entries). Works for every map type whose
// keys can be iterated (arrays report max_entries).
uint32_t countKeys(int fd);
int possibleCpus();

namespace detail {
// Opens (dups) a map fd and checks its layout; shared by the typed wrappers.
Result<UniqueFd> openChecked(int borrowed_fd, uint32_t key_size, uint32_t value_size, uint32_t value_multiplier);
// The error of a failed update. A full map (E2BIG from hash maps, ENOSPC from LPM tries) is ResourceExhausted
// naming the map and its size, so that the operator knows which --bpf-*-map-max to raise.
Error updateError(const std::string& what, const std::string& map_name, uint32_t max_entries, int err);
}  // namespace detail

template <typename K, typename V>
class BpfMap {
  static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>);

 public:
  // Takes its own reference (dup) to a map fd owned elsewhere, e.g. by a skeleton. `name` names the map in
  // errors (the kernel keeps only 15 characters of it); empty: the kernel's name.
  static Result<BpfMap> fromFd(int borrowed_fd, std::string name = {}) {
    auto fd = detail::openChecked(borrowed_fd, sizeof(K), sizeof(V), 0);
    if (!fd.ok()) {
      return fd.error();
    }
    return BpfMap(std::move(fd.value()), std::move(name));
  }

  Result<std::optional<V>> lookup(const K& key) const {
    V value{};
    if (bpf_map_lookup_elem(fd_.get(), &key, &value) == 0) {
      return std::optional<V>(value);
    }
    if (errno == ENOENT) {
      return std::optional<V>();
    }
    return errnoError("bpf map lookup", errno);
  }

  Status update(const K& key, const V& value, uint64_t flags = BPF_ANY) {
    if (bpf_map_update_elem(fd_.get(), &key, &value, flags) != 0) {
      return detail::updateError("bpf map update", name_, max_entries_, errno);
    }
    return Status::Ok();
  }

  // Deleting an absent key is a NotFound error; callers that want idempotence check for it.
  Status erase(const K& key) {
    if (bpf_map_delete_elem(fd_.get(), &key) != 0) {
      return errnoError("bpf map delete", errno);
    }
    return Status::Ok();
  }

  // Writes the pairs in order with one BPF_MAP_UPDATE_BATCH call per chunk instead of a syscall per entry. Falls
  // back to single updates on kernels or map types without batch support. On failure, the pairs before the
  // failing one are written.
  Status updateBatch(const std::vector<std::pair<K, V>>& pairs) {
    constexpr size_t kChunk = 4096;
    std::vector<K> keys;
    std::vector<V> values;
    for (size_t at = 0; at < pairs.size(); at += kChunk) {
      size_t n = std::min(kChunk, pairs.size() - at);
      keys.resize(n);
      values.resize(n);
      for (size_t i = 0; i < n; ++i) {
        keys[i] = pairs[at + i].first;
        values[i] = pairs[at + i].second;
      }
      uint32_t count = static_cast<uint32_t>(n);
      if (batch_ && bpf_map_update_batch(fd_.get(), keys.data(), values.data(), &count, nullptr) == 0) {
        continue;
      }
      if (batch_ && !batchUnsupported(errno)) {
        return detail::updateError("bpf map batch update", name_, max_entries_, errno);
      }
      batch_ = false;
      for (size_t i = 0; i < n; ++i) {
        if (Status s = update(keys[i], values[i]); !s.ok()) {
          return s;
        }
      }
    }
    return Status::Ok();
  }

  // Deletes the keys with one BPF_MAP_DELETE_BATCH call per chunk (one at a time where the kernel has no batch).
  // Keys already gone are skipped. Returns how many were deleted.
  Result<size_t> eraseBatch(const std::vector<K>& keys) {
    constexpr size_t kChunk = 4096;
    size_t deleted = 0;
    size_t at = 0;
    // Bounded: each round either finishes a chunk or steps over one missing key.
    for (size_t round = 0; at < keys.size() && round <= 2 * keys.size(); ++round) {
      uint32_t count = static_cast<uint32_t>(std::min(kChunk, keys.size() - at));
      int err = 0;
      if (batch_) {
        err = bpf_map_delete_batch(fd_.get(), keys.data() + at, &count, nullptr) == 0 ? 0 : errno;
        if (batchUnsupported(err) && count == 0) {
          batch_ = false;
        }
      }
      if (!batch_) {
        count = 1;
        err = bpf_map_delete_elem(fd_.get(), &keys[at]) == 0 ? 0 : errno;
        count = err == 0 ? 1 : 0;
      }
      deleted += count;
      at += count;
      if (err == ENOENT) {
        ++at;  // the key at `at` is already gone (the datapath or LRU removed it)
      } else if (err != 0) {
        return errnoError("bpf map batch delete", err);
      }
    }
    return deleted;
  }

  // Every (key, value) pair. The map may change while it is walked; entries are then skipped or repeated
  // at most once, which callers tolerate (they reconcile towards a desired state). Batched where the kernel
  // supports it (hash maps), else one key at a time.
  Result<std::vector<std::pair<K, V>>> entries() const {
    std::vector<std::pair<K, V>> out;
    if (batch_ && lookupBatch(&out)) {
      return out;
    }
    out.clear();
    K key{};
    K next{};
    const K* prev = nullptr;
    // Bounded: a map never holds more than max_entries keys.
    for (uint32_t i = 0; i <= info_max_entries(); ++i) {
      if (bpf_map_get_next_key(fd_.get(), prev, &next) != 0) {
        if (errno == ENOENT) {
          return out;
        }
        return errnoError("bpf map iterate", errno);
      }
      V value{};
      if (bpf_map_lookup_elem(fd_.get(), &next, &value) == 0) {
        out.emplace_back(next, value);
      }
      key = next;
      prev = &key;
    }
    return out;
  }

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  uint32_t maxEntries() const { return max_entries_; }

 private:
  BpfMap(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {
    auto info = mapInfo(fd_.get());
    max_entries_ = info.ok() ? info->max_entries : 0;
    if (name_.empty() && info.ok()) {
      name_ = info->name;
    }
  }
  uint32_t info_max_entries() const { return max_entries_ + 1; }
  static bool batchUnsupported(int err) { return err == EINVAL || err == ENOTSUP || err == 524 /* ENOTSUPP */; }

  // BPF_MAP_LOOKUP_BATCH over the whole map; false when the kernel or map type does not support it or the walk
  // fails (the caller then iterates key by key).
  bool lookupBatch(std::vector<std::pair<K, V>>* out) const {
    constexpr uint32_t kChunk = 4096;
    std::vector<K> keys(kChunk);
    std::vector<V> values(kChunk);
    // The batch cursor is opaque: a bucket index for hash maps, a key for others.
    alignas(8) unsigned char in[sizeof(K) < 8 ? 8 : sizeof(K)] = {};
    alignas(8) unsigned char next[sizeof(in)] = {};
    // Bounded: each round returns at least one entry or ends the walk.
    for (uint32_t round = 0; round <= max_entries_ + 1; ++round) {
      uint32_t count = kChunk;
      int rc = bpf_map_lookup_batch(fd_.get(), round == 0 ? nullptr : in, next, keys.data(), values.data(), &count,
                                    nullptr);
      int err = rc == 0 ? 0 : errno;
      if (err != 0 && err != ENOENT) {
        return false;  // including ENOSPC (a bucket larger than the chunk): the key walk handles it
      }
      for (uint32_t i = 0; i < count; ++i) {
        out->emplace_back(keys[i], values[i]);
      }
      if (err == ENOENT) {
        return true;
      }
      std::memcpy(in, next, sizeof(in));
    }
    return false;
  }

  UniqueFd fd_;
  std::string name_;
  uint32_t max_entries_ = 0;
  bool batch_ = true;  // cleared once the kernel refuses a batch operation on this map
};

// A per-CPU map: one value per possible CPU.
template <typename K, typename V>
class PerCpuBpfMap {
  static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>);
  static_assert(sizeof(V) % 8 == 0, "per-CPU values are laid out in 8-byte slots");

 public:
  static Result<PerCpuBpfMap> fromFd(int borrowed_fd) {
    auto fd = detail::openChecked(borrowed_fd, sizeof(K), sizeof(V), 1);
    if (!fd.ok()) {
      return fd.error();
    }
    return PerCpuBpfMap(std::move(fd.value()));
  }

  // Values of every possible CPU.
  Result<std::vector<std::pair<K, std::vector<V>>>> entries() const {
    std::vector<std::pair<K, std::vector<V>>> out;
    K key{};
    K next{};
    const K* prev = nullptr;
    int ncpus = possibleCpus();
    for (uint32_t i = 0; i <= max_entries_ + 1; ++i) {
      if (bpf_map_get_next_key(fd_.get(), prev, &next) != 0) {
        if (errno == ENOENT) {
          return out;
        }
        return errnoError("bpf map iterate", errno);
      }
      std::vector<V> values(static_cast<size_t>(ncpus));
      if (bpf_map_lookup_elem(fd_.get(), &next, values.data()) == 0) {
        out.emplace_back(next, std::move(values));
      }
      key = next;
      prev = &key;
    }
    return out;
  }

  int fd() const { return fd_.get(); }

 private:
  explicit PerCpuBpfMap(UniqueFd fd) : fd_(std::move(fd)) {
    auto info = mapInfo(fd_.get());
    max_entries_ = info.ok() ? info->max_entries : 0;
  }
  UniqueFd fd_;
  uint32_t max_entries_ = 0;
};

}  // namespace plexus::datapath
