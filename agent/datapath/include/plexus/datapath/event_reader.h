#pragma once
// Reads the flow-event ring buffer on its own thread and hands each event to a callback. The datapath submits
// events without waking the reader (until the ring is a quarter full), so the reader drains the ring on a short
// period while events come and a longer one while none do; flush() makes everything submitted so far visible at once
// (flow queries call it). Stopping is bounded.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
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
  // Waits (bounded, 200 ms) until the reader has drained what the ring holds now.
  void flush();

 private:
  static constexpr int kDrainMinMs = 10;
  static constexpr int kDrainMaxMs = 80;
  static int onEvent(void* ctx, void* data, size_t size);
  void wake();  // the reader thread drains at once
  Callback callback_;
  ring_buffer* rb_ = nullptr;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: flush() and stop()
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t drained_ = 0;  // drain passes completed
};

}  // namespace plexus::datapath
