#include "plexus/agent/agent_notifications.h"

#include <time.h>

#include <algorithm>

namespace plexus::agent {

void NotificationLog::add(AgentNotification n) {
  if (n.time_unix_nano == 0) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    n.time_unix_nano = now.tv_sec * 1000000000LL + now.tv_nsec;
  }
  {
    std::lock_guard lock(mu_);
    ring_.push_back(std::move(n));
    if (ring_.size() > capacity_) {
      ring_.pop_front();
    }
    ++seq_;
  }
  cv_.notify_all();
}

std::vector<AgentNotification> NotificationLog::select(size_t n, bool oldest, int64_t since_unix_nano,
                                                       int64_t until_unix_nano) const {
  auto in = [&](const AgentNotification& e) {
    return e.time_unix_nano >= since_unix_nano && (until_unix_nano == 0 || e.time_unix_nano <= until_unix_nano);
  };
  std::vector<AgentNotification> out;
  std::lock_guard lock(mu_);
  if (oldest) {
    for (auto it = ring_.begin(); it != ring_.end() && (n == 0 || out.size() < n); ++it) {
      if (in(*it)) {
        out.push_back(*it);
      }
    }
    return out;
  }
  for (auto it = ring_.rbegin(); it != ring_.rend() && (n == 0 || out.size() < n); ++it) {
    if (in(*it)) {
      out.push_back(*it);
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<AgentNotification> NotificationLog::waitNewer(uint64_t* after, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return seq_ > *after; });
  // The ring holds events seq_ - size + 1 .. seq_; those the ring dropped since `after` are gone.
  uint64_t first = seq_ - ring_.size() + 1;
  uint64_t from = std::max(*after + 1, first);
  std::vector<AgentNotification> out(ring_.begin() + static_cast<std::ptrdiff_t>(from - first), ring_.end());
  *after = seq_;
  return out;
}

uint64_t NotificationLog::sequence() const {
  std::lock_guard lock(mu_);
  return seq_;
}

size_t NotificationLog::size() const {
  std::lock_guard lock(mu_);
  return ring_.size();
}

}  // namespace plexus::agent
