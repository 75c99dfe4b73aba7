#pragma once
// Typed access to a BPF map (STYLE.md rule 11). The factory checks key and value sizes against the
// kernel's view of the map; lookup returns "absent" distinctly from "error"; there is no operator[].

#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>
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
}  // namespace detail

template <typename K, typename V>
class BpfMap {
  static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>);

 public:
  // Takes its own reference (dup) to a map fd owned elsewhere, e.g. by a skeleton.
  static Result<BpfMap> fromFd(int borrowed_fd) {
    auto fd = detail::openChecked(borrowed_fd, sizeof(K), sizeof(V), 0);
    if (!fd.ok()) {
      return fd.error();
    }
    return BpfMap(std::move(fd.value()));
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
      return errnoError("bpf map update", errno);
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

  // Every (key, value) pair. The map may change while it is walked; entries are then skipped or repeated
  // at most once, which callers tolerate (they reconcile towards a desired state).
  Result<std::vector<std::pair<K, V>>> entries() const {
    std::vector<std::pair<K, V>> out;
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

 private:
  explicit BpfMap(UniqueFd fd) : fd_(std::move(fd)) {
    auto info = mapInfo(fd_.get());
    max_entries_ = info.ok() ? info->max_entries : 0;
  }
  uint32_t info_max_entries() const { return max_entries_ + 1; }

  UniqueFd fd_;
  uint32_t max_entries_ = 0;
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
