#include "plexus/datapath/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

namespace plexus {

Status writeFileAtomic(const std::string& path, const std::string& content, bool durable) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return errnoError(fmt::format("write {}", tmp), errno);
  }
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int err = errno;
      ::close(fd);
      return errnoError(fmt::format("write {}", tmp), err);
    }
    off += static_cast<size_t>(n);
  }
  if (durable && ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return errnoError(fmt::format("fsync {}", tmp), err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return errnoError(fmt::format("rename {}", path), errno);
  }
  return Status::Ok();
}

Status syncFilesystem(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return errnoError(fmt::format("open {}", path), errno);
  }
  int rc = ::syncfs(fd);
  int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : errnoError(fmt::format("syncfs {}", path), err);
}

}  // namespace plexus
