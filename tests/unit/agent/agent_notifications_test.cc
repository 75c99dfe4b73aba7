#include <catch2/catch.hpp>

#include <thread>

#include "plexus/agent/agent_notifications.h"

using namespace plexus::agent;

namespace {

AgentNotification at(int64_t t, uint64_t id) {
  return {.type = NotificationType::kEndpointCreated, .time_unix_nano = t, .id = id};
}

std::vector<uint64_t> ids(const std::vector<AgentNotification>& v) {
  std::vector<uint64_t> out;
  for (const auto& n : v) {
    out.push_back(n.id);
  }
  return out;
}

}  // namespace

TEST_CASE("agent events: the newest in a ring, selected by count and time, oldest first", "[unit][hubble]") {
  NotificationLog log(3);
  for (uint64_t i = 1; i <= 5; ++i) {
    log.add(at(static_cast<int64_t>(i) * 100, i));
  }
  CHECK(log.size() == 3);
  CHECK(log.sequence() == 5);
  CHECK(ids(log.select(0, false, 0, 0)) == std::vector<uint64_t>{3, 4, 5});
  CHECK(ids(log.select(2, false, 0, 0)) == std::vector<uint64_t>{4, 5});  // the last two
  CHECK(ids(log.select(2, true, 0, 0)) == std::vector<uint64_t>{3, 4});   // the first two
  CHECK(ids(log.select(0, false, 400, 0)) == std::vector<uint64_t>{4, 5});
  CHECK(ids(log.select(0, false, 0, 400)) == std::vector<uint64_t>{3, 4});
  CHECK(ids(log.select(1, true, 350, 450)) == std::vector<uint64_t>{4});
  CHECK(log.select(0, false, 600, 0).empty());

  // An event without a time gets the current one.
  log.add({.type = NotificationType::kAgentStarted});
  CHECK(log.select(1, false, 0, 0).front().time_unix_nano > 1600000000LL * 1000000000LL);  // after 2020
}

TEST_CASE("agent events: follow gets what comes after its sequence number, and what the ring still holds",
          "[unit][hubble]") {
  NotificationLog log(2);
  log.add(at(1, 1));
  uint64_t after = log.sequence();
  CHECK(log.waitNewer(&after, std::chrono::milliseconds(1)).empty());  // nothing new: the bounded wait ends
  CHECK(after == 1);

  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    log.add(at(2, 2));
  });
  std::vector<AgentNotification> got;
  for (int i = 0; i < 50 && got.empty(); ++i) {
    got = log.waitNewer(&after, std::chrono::milliseconds(100));
  }
  producer.join();
  CHECK(ids(got) == std::vector<uint64_t>{2});
  CHECK(after == 2);

  // Three more while the follower is away: the ring kept the last two; the one it dropped is not invented.
  for (uint64_t i = 3; i <= 5; ++i) {
    log.add(at(static_cast<int64_t>(i), i));
  }
  CHECK(ids(log.waitNewer(&after, std::chrono::milliseconds(1))) == std::vector<uint64_t>{4, 5});
  CHECK(after == 5);
}
