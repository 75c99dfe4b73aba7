#pragma once
// List+watch for one resource, informer style: a full list (in chunks) gives the cache and a resourceVersion, a
// watch from there streams changes (bookmarks advance the version), `410 Gone` forces a re-list, and any failure
// (dropped connection, RBAC denial, server down) is retried with bounded exponential backoff. Changes come out
// as the same ResourceEvents the standalone store emits; a re-list also emits deletes for objects that vanished
// while we were not watching. Runs on its own thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "plexus/common/resource.h"
#include "plexus/k8s/client.h"

namespace plexus::k8s {

struct ResourceSpec {
  std::string path;         // collection path: "/api/v1/pods", "/apis/cilium.io/v2/ciliumnetworkpolicies"
  std::string api_version;  // of the items ("v1", "cilium.io/v2"): list items carry no apiVersion/kind
  std::string kind;         // "Pod"
  std::string field_selector;  // e.g. "spec.nodeName=node-1"
};

struct InformerOptions {
  std::chrono::milliseconds min_backoff{200};
  std::chrono::milliseconds max_backoff{10000};
  int watch_timeout_seconds = 300;  // the server ends each watch after this; we re-watch from the last version
  int list_chunk = 500;
};

struct InformerStats {
  uint64_t lists = 0;
  uint64_t watches = 0;
  uint64_t gone = 0;      // 410 responses (re-lists forced)
  uint64_t errors = 0;    // failed lists/watches (backed off)
  uint64_t bookmarks = 0;
  std::string last_error;
  bool synced = false;
};

using EventSink = std::function<void(std::vector<ResourceEvent> events)>;

class Informer {
 public:
  Informer(const Client& client, ResourceSpec spec, EventSink sink, InformerOptions options = {});
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  void start();
  void stop();
  InformerStats stats() const;
  const ResourceSpec& spec() const { return spec_; }

 private:
  void run();
  bool list(std::string* resource_version);
  enum class WatchEnd { kEnded, kRelist, kFailed };  // re-watch; re-list (410 Gone); back off, then re-watch
  WatchEnd watch(std::string* resource_version);
  void backoff();
  ResourceEvent toEvent(ResourceEventType type, nlohmann::json object) const;
  std::string query(const std::string& extra) const;

  const Client& client_;
  ResourceSpec spec_;
  EventSink sink_;
  InformerOptions options_;
  ResourceKind kind_;
  std::map<std::pair<std::string, std::string>, nlohmann::json> cache_;  // (namespace, name) -> object
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  InformerStats stats_;
  std::chrono::milliseconds delay_;
};

}  // namespace plexus::k8s
