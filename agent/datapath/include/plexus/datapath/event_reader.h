#pragma once
// Reads the flow-event ring buffer on its own thread and hands each event to a callback. Stopping is bounded:
// the poll wakes at least every 100 ms to check the stop flag.

#include <atomic>
#include <functional>
#include <thread>

#include "plexus/common/result.h"
#include "plexus/events.h"

struct ring_buffer;

namespace plexus::datapath {

class EventReader {
 public:
  using Callback = std::function<void(const plexus_flow_event&)>;
  EventReader() = default;
  ~EventReader();
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  Status start(int ringbuf_fd, Callback callback);
  void stop();

 private:
  static int onEvent(void* ctx, void* data, size_t size);
  Callback callback_;
  ring_buffer* rb_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace plexus::datapath
