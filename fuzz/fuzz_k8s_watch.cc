// libFuzzer target: what the Kubernetes API server sends the informers (docs/fuzzing.md).
//
// Input: a watch stream, newline-delimited JSON events as Client::stream() hands them to the informer one line
// at a time. Each line goes through decodeWatchLine() and, when it is an object event, objectEvent() as the
// informer does; the whole input is also tried as one page of a chunked list (decodeListPage()). A server, a
// proxy or a man in the middle can send anything here: it must be refused, never crash the agent.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "plexus/k8s/watch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace plexus;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t pos = 0;
  while (pos < input.size()) {
    size_t end = input.find('\n', pos);
    if (end == std::string_view::npos) {
      end = input.size();
    }
    auto ev = k8s::decodeWatchLine(input.substr(pos, end - pos));
    pos = end + 1;
    if (!ev.ok()) {
      continue;
    }
    if (ev->type == k8s::WatchEventType::kAdded || ev->type == k8s::WatchEventType::kModified ||
        ev->type == k8s::WatchEventType::kDeleted) {
      auto e = k8s::objectEvent(ResourceKind::kPod, "v1", "Pod",
                                ev->type == k8s::WatchEventType::kDeleted ? ResourceEventType::kDelete
                                                                          : ResourceEventType::kUpsert,
                                std::move(ev->object));
      (void)e.object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  auto body = nlohmann::json::parse(input, nullptr, false);
  if (!body.is_discarded()) {
    auto page = k8s::decodeListPage(std::move(body));
    if (page.ok()) {
      for (auto& item : page->items) {
        (void)k8s::objectEvent(ResourceKind::kService, "v1", "Service", ResourceEventType::kUpsert, std::move(item));
      }
    }
  }
  return 0;
}
