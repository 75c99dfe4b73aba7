#pragma once
// Kubernetes manifests as users write them: YAML (one or many documents, or a `kind: List`) or JSON, turned
// into the JSON objects the domain libraries parse. YAML scalars become JSON numbers, booleans or null only
// when they are unquoted and look like one (YAML 1.2 core schema), as the Kubernetes API server reads them.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/result.h"

namespace plexus {

class ManifestReader;

// The objects of a manifest one at a time, in order (a `kind: List` gives its items; empty documents are skipped),
// so that a large manifest's first objects can be handed on while the rest is parsed. next() gives nullopt at the
// end. An error names the document (1-based) and the line, and ends the stream. `text` must outlive the stream.
class ManifestStream {
 public:
  explicit ManifestStream(std::string_view text);
  ~ManifestStream();
  ManifestStream(const ManifestStream&) = delete;
  ManifestStream& operator=(const ManifestStream&) = delete;

  Result<std::optional<nlohmann::json>> next();

 private:
  std::string_view text_;
  std::unique_ptr<ManifestReader> reader_;
  std::vector<nlohmann::json> items_;  // the rest of a List
  size_t item_ = 0;
  bool done_ = false;
};

// Every object of a manifest (the whole stream above); nothing when any document is malformed.
Result<std::vector<nlohmann::json>> parseManifests(std::string_view text);

// "Service default/web" or "Namespace prod", for messages that name the object.
std::string describeObject(const nlohmann::json& object);

}  // namespace plexus
