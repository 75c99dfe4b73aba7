#pragma once
// plexus-cni: one CNI invocation, start to finish. Translates the spec's env/stdin/stdout contract into calls
// on the agent's Cni gRPC service, and handles the agent being down.

#include <string>

#include "plexus/cni/spec.h"

namespace plexus::cni {

struct PluginOutput {
  int exit_code = 0;
  std::string out;  // stdout: a result, a version answer, an error JSON, or nothing
};

PluginOutput runPlugin(const EnvLookup& env, const std::string& stdin_text);

}  // namespace plexus::cni
