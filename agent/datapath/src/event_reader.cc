#include "plexus/datapath/event_reader.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

namespace plexus::datapath {

EventReader::~EventReader() { stop(); }

int EventReader::onEvent(void* ctx, void* data, size_t size) {
  auto* self = static_cast<EventReader*>(ctx);
  if (size < sizeof(plexus_flow_event)) {
    return 0;  // an older, shorter layout: skip rather than misread
  }
  plexus_flow_event e;
  std::memcpy(&e, data, sizeof(e));
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
      ring_buffer__poll(rb_, 100);
    }
  });
  return Status::Ok();
}

void EventReader::stop() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
  }
  if (rb_) {
    ring_buffer__free(rb_);
    rb_ = nullptr;
  }
}

}  // namespace plexus::datapath
