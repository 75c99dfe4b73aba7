#pragma once
// What the API server sends on list and watch, decoded (pure): one watch line ({"type": ..., "object": ...}),
// one list page, and the ResourceEvent an object becomes. Anything malformed is refused with a reason, never
// thrown: the informer skips a bad event and keeps watching. Fuzzed by fuzz/fuzz_k8s_watch.cc.

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/resource.h"
#include "plexus/common/result.h"

namespace plexus::k8s {

enum class WatchEventType { kAdded, kModified, kDeleted, kBookmark, kError };

struct WatchEvent {
  WatchEventType type = WatchEventType::kAdded;
  nlohmann::json object;         // the object (a JSON object); for kError the Status object
  std::string resource_version;  // the object's metadata.resourceVersion, empty when it has none
  int code = 0;                  // kError: the Status code (410: the version is gone, re-list)
  std::string message;           // kError: the Status message
};

// One line of a watch stream (Kubernetes API concepts, "Efficient detection of changes"). Refused: not a JSON
// object, a type that is not one of ADDED, MODIFIED, DELETED, BOOKMARK, ERROR, an object that is not a JSON
// object, or metadata, name, namespace or resourceVersion of the wrong JSON type.
Result<WatchEvent> decodeWatchLine(std::string_view line);

struct ListPage {
  std::vector<nlohmann::json> items;  // each a JSON object
  std::string resource_version;
  std::string continue_token;  // empty on the last page
};

// One page of a chunked list ({"metadata": {"resourceVersion", "continue"}, "items": [...]}).
Result<ListPage> decodeListPage(nlohmann::json body);

// The event for one listed or watched object. List items and watch objects may omit apiVersion and kind, so the
// informer's are written into the object; the key comes from metadata (decodeWatchLine/decodeListPage have
// checked its types).
ResourceEvent objectEvent(ResourceKind kind, const std::string& api_version, const std::string& kind_name,
                          ResourceEventType type, nlohmann::json object);

}  // namespace plexus::k8s
