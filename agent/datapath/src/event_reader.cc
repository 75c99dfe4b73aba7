#include "plexus/datapath/event_reader.h"

#include <bpf/libbpf.h>

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
  stop_ = false;
  thread_ = std::thread([this] {
    while (!stop_) {
      // Woken early only when the ring fills up; otherwise drained every 10 ms, or at once on flush().
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(10), [this] { return flush_wanted_ || stop_.load(); });
        flush_wanted_ = false;
      }
      ring_buffer__poll(rb_, 0);
      ring_buffer__consume(rb_);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++drained_;
      }
      cv_.notify_all();
    }
  });
  return Status::Ok();
}

void EventReader::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!thread_.joinable()) {
    return;
  }
  // Two completed passes after the request: the second one started after it.
  uint64_t target = drained_ + 2;
  flush_wanted_ = true;
  cv_.notify_all();
  cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return drained_ >= target || stop_.load(); });
}

void EventReader::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
  if (rb_) {
    ring_buffer__free(rb_);
    rb_ = nullptr;
  }
}

}  // namespace plexus::datapath
