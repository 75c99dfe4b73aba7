#include "plexus/datapath/event_reader.h"

#include <bpf/libbpf.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace plexus::datapath {

EventReader::~EventReader() { stop(); }

int EventReader::onEvent(void* ctx, void* data, size_t size) {
  auto* self = static_cast<EventReader*>(ctx);
  if (size < PLEXUS_FLOW_EVENT_V1_SIZE) {
    return 0;  // not an event of any layout we know: skip rather than misread
  }
  // Programs loaded before the 56-byte layout (until an upgrade re-attaches them) write 48 bytes: the fields they
  // lack read as zero (no rule, no ICMP type).
  plexus_flow_event e{};
  std::memcpy(&e, data, std::min(size, sizeof(e)));
  self->callback_(e);
  return 0;
}

Status EventReader::start(int ringbuf_fd, Callback callback) {
  callback_ = std::move(callback);
  rb_ = ring_buffer__new(ringbuf_fd, &EventReader::onEvent, this, nullptr);
  if (!rb_) {
    return errnoError("flow events: ring buffer", errno);
  }
  // The thread sleeps in one epoll on two things: the ring's own epoll (the datapath wakes it when the ring is a
  // quarter full) and an eventfd (flush and stop).
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ring{.events = EPOLLIN, .data = {.u32 = 0}};
  epoll_event wake{.events = EPOLLIN, .data = {.u32 = 1}};
  if (wake_fd_ < 0 || epoll_fd_ < 0 || epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, ring_buffer__epoll_fd(rb_), &ring) < 0 ||
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake) < 0) {
    int err = errno;
    stop();
    return errnoError("flow events: epoll", err);
  }
  stop_ = false;
  thread_ = std::thread([this] {
    int period = kDrainMinMs;
    while (!stop_) {
      // Drained every `period` ms: kDrainMinMs while events come, doubling up to kDrainMaxMs while none do (an idle
      // node's reader wakes a few times a second, not a hundred); at once on flush() or when the ring fills up.
      epoll_event ready[2];
      int n = epoll_wait(epoll_fd_, ready, 2, period);
      for (int i = 0; i < n; ++i) {
        if (ready[i].data.u32 == 1) {
          uint64_t count = 0;
          [[maybe_unused]] ssize_t r = read(wake_fd_, &count, sizeof(count));
        }
      }
      int consumed = ring_buffer__consume(rb_);
      period = consumed > 0 ? kDrainMinMs : std::min(period * 2, kDrainMaxMs);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++drained_;
      }
      cv_.notify_all();
    }
  });
  return Status::Ok();
}

void EventReader::wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = write(wake_fd_, &one, sizeof(one));
}

void EventReader::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!thread_.joinable()) {
    return;
  }
  // Two completed passes after the request: the second one started after it.
  uint64_t target = drained_ + 2;
  wake();
  cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return drained_ >= target || stop_.load(); });
}

void EventReader::stop() {
  stop_ = true;
  if (thread_.joinable()) {
    wake();
    thread_.join();
  }
  for (int* fd : {&epoll_fd_, &wake_fd_}) {
    if (*fd >= 0) {
      close(*fd);
      *fd = -1;
    }
  }
  if (rb_) {
    ring_buffer__free(rb_);
    rb_ = nullptr;
  }
}

}  // namespace plexus::datapath
