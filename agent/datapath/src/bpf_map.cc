#include "plexus/datapath/bpf_map.h"

#include <bpf/libbpf.h>
#include <fcntl.h>

#include <fmt/format.h>

namespace plexus::datapath {

Result<MapInfo> mapInfo(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
    return errnoError("bpf map info", errno);
  }
  return MapInfo{info.name, info.type, info.key_size, info.value_size, info.max_entries, info.id,
                 info.map_flags};
}

const char* mapTypeName(uint32_t type) {
  const char* name = libbpf_bpf_map_type_str(static_cast<bpf_map_type>(type));
  return name ? name : "unknown";
}

int possibleCpus() {
  int n = libbpf_num_possible_cpus();
  return n > 0 ? n : 1;
}

namespace detail {

Result<UniqueFd> openChecked(int borrowed_fd, uint32_t key_size, uint32_t value_size, uint32_t per_cpu) {
  if (borrowed_fd < 0) {
    return makeError(ErrorCode::kInvalidArgument, "bpf map: invalid fd");
  }
  auto info = mapInfo(borrowed_fd);
  if (!info.ok()) {
    return info.error();
  }
  if (info->key_size != key_size || info->value_size != value_size) {
    return makeError(ErrorCode::kFailedPrecondition,
                     fmt::format("bpf map {}: layout mismatch: kernel key/value {}/{} bytes, expected {}/{}", info->name,
                                 info->key_size, info->value_size, key_size, value_size));
  }
  (void)per_cpu;
  int fd = fcntl(borrowed_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    return errnoError("bpf map dup", errno);
  }
  return UniqueFd(fd);
}

Error updateError(const std::string& what, const std::string& map_name, uint32_t max_entries, int err) {
  if (err == E2BIG || err == ENOSPC) {
    return makeError(ErrorCode::kResourceExhausted,
                     fmt::format("map {} is full ({} entries)", map_name.empty() ? "(unnamed)" : map_name,
                                 max_entries));
  }
  return errnoError(fmt::format("{} {}", what, map_name), err);
}

}  // namespace detail
uint32_t countKeys(int fd) {
  auto info = mapInfo(fd);
  if (!info.ok()) {
    return 0;
  }
  std::vector<uint8_t> key(info->key_size);
  std::vector<uint8_t> next(info->key_size);
  const void* prev = nullptr;
  uint32_t n = 0;
  while (n <= info->max_entries && bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    ++n;
    key.swap(next);
    prev = key.data();
  }
  return n;
}

}  // namespace plexus::datapath
