#include "cni_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <ctime>

#include <fmt/format.h>

namespace plexus::cni {

CniLog::CniLog(const std::string& path) : name_(fmt::format("plexus-cni-{}", ::getpid())) {
  if (!path.empty()) {
    fd_.reset(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  }
}

void CniLog::write(std::string_view level, std::string_view line) {
  if (!fd_.valid()) {
    return;
  }
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm local{};
  ::localtime_r(&secs, &local);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &local);
  std::string text = fmt::format("[{}.{:03}] [{}] [{}] {}\n", stamp, ms, name_, level, line);
  // A short or failed write loses a log line, never the CNI call.
  [[maybe_unused]] ssize_t n = ::write(fd_.get(), text.data(), text.size());
}

}  // namespace plexus::cni
