// libFuzzer target: plexus-cni's input, the way the container runtime hands it over (docs/fuzzing.md).
//
// Input: environment lines "NAME=value" up to the first empty line, then the network config as it would
// arrive on stdin. Everything the plugin parses before it talks to the agent runs on it: the network config,
// the CNI_* environment, CNI_ARGS, version checks, prevResult conversion and generic-veth chaining, and the
// JSON written back. Parsing may refuse the input; it must never crash, leak or hit undefined behaviour.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "plexus/cni/spec.h"

namespace {

using plexus::cni::CniEnv;

// Splits "NAME=value\n...\n\n<stdin>" into the environment and stdin.
void split(std::string_view input, std::map<std::string, std::string>* env, std::string* stdin_text) {
  size_t pos = 0;
  while (pos < input.size()) {
    size_t end = input.find('\n', pos);
    if (end == std::string_view::npos) {
      end = input.size();
    }
    std::string_view line = input.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) {
      break;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      continue;
    }
    (*env)[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  if (pos < input.size()) {
    *stdin_text = std::string(input.substr(pos));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::map<std::string, std::string> env;
  std::string stdin_text;
  split(std::string_view(reinterpret_cast<const char*>(data), size), &env, &stdin_text);
  auto lookup = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };

  plexus::cni::NetConf conf;
  auto conf_error = plexus::cni::parseNetConf(stdin_text, "/run/plexus/plexus.sock", &conf);
  std::string version = conf_error ? "1.1.0" : conf.cni_version;
  if (conf_error) {
    (void)plexus::cni::dumpJson(plexus::cni::errorJson(*conf_error, version));
  }
  (void)plexus::cni::dumpJson(plexus::cni::versionJson(version));
  (void)plexus::cni::versionAtLeast(version, "1.1.0");

  CniEnv cni_env;
  if (auto e = plexus::cni::readEnv(lookup, &cni_env)) {
    (void)plexus::cni::dumpJson(plexus::cni::errorJson(*e, version));
  }
  plexus::cni::CniArgs args;
  if (auto e = plexus::cni::parseArgs(cni_env.args, &args)) {
    (void)plexus::cni::dumpJson(plexus::cni::errorJson(*e, version));
  }
  if (conf_error) {
    return 0;
  }
  if (!conf.prev_result.is_null()) {
    for (const auto& v : plexus::cni::kSupportedVersions) {
      (void)plexus::cni::dumpJson(plexus::cni::convertResult(conf.prev_result, v));
    }
    plexus::cni::ChainedIface chained;
    if (auto e = plexus::cni::chainedFromPrevResult(conf.prev_result, cni_env, &chained)) {
      (void)plexus::cni::dumpJson(plexus::cni::errorJson(*e, version));
    }
  }
  return 0;
}
