#pragma once
// Kubernetes manifests as users write them: YAML (one or many documents, or a `kind: List`) or JSON, turned
// into the JSON objects the domain libraries parse. YAML scalars become JSON numbers, booleans or null only
// when they are unquoted and look like one (YAML 1.2 core schema), as the Kubernetes API server reads them.

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "plexus/common/result.h"

namespace plexus {

// Parses every document; empty documents are skipped. An error names the document (1-based) and the line.
Result<std::vector<nlohmann::json>> parseManifests(std::string_view text);

// "Service default/web" or "Namespace prod", for messages that name the object.
std::string describeObject(const nlohmann::json& object);

}  // namespace plexus
