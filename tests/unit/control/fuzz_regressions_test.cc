// Pods that crashed the agent's control layer under fuzz_manifest (docs/fuzzing.md), kept as [unit] tests.
#include <catch2/catch.hpp>

#include "plexus/agent/resource_state.h"

using namespace plexus;
using namespace plexus::agent;

TEST_CASE("fuzz: Pod fields the managers read are checked for their type", "[unit][control][fuzz]") {
  auto pod = [](nlohmann::json spec, nlohmann::json status) {
    nlohmann::json p = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "web"}, {"namespace", "default"}}}};
    if (!spec.is_null()) {
      p["spec"] = spec;
    }
    if (!status.is_null()) {
      p["status"] = status;
    }
    return p;
  };
  // podNamedPorts() threw type_error on a container that was a string, and on a port protocol that was a number.
  CHECK(validatePod(pod({{"containers", {"x"}}}, nullptr)).error().message == "spec.containers[0]: must be an object");
  CHECK(validatePod(pod({{"containers", {{{"ports", {{{"containerPort", 80}, {"protocol", 6}}}}}}}}, nullptr))
            .error()
            .message == "spec.containers[0].ports[0].protocol: must be a string");
  CHECK(validatePod(pod({{"containers", {{{"ports", {{{"containerPort", 80}, {"name", 1}}}}}}}}, nullptr))
            .error()
            .message == "spec.containers[0].ports[0].name: must be a string");
  // NodeManager::trackPod threw on a nodeName or podIP that was a number, a list or null.
  CHECK(validatePod(pod({{"nodeName", 7}}, nullptr)).error().message == "spec.nodeName: must be a string");
  CHECK(validatePod(pod({{"nodeName", nullptr}}, nullptr)).error().message == "spec.nodeName: must be a string");
  CHECK(validatePod(pod(nullptr, {{"podIP", {1}}})).error().message == "status.podIP: must be a string");
  CHECK(validatePod(pod(nullptr, 5)).error().message == "status: must be an object");
  CHECK(validatePod(pod("x", nullptr)).error().message == "spec: must be an object");
  // A null spec (`spec:` with nothing after it) passes, and has no named ports: podNamedPorts() threw on it.
  nlohmann::json null_spec = pod(nullptr, nullptr);
  null_spec["spec"] = nullptr;
  REQUIRE(validatePod(null_spec).ok());
  CHECK(podNamedPorts(null_spec).empty());
  // What Kubernetes sends still passes, and the named ports are read.
  auto good = pod({{"nodeName", "node-2"},
                   {"containers", {{{"name", "c"}, {"ports", {{{"name", "http"}, {"containerPort", 80}, {"protocol", "UDP"}}}}}}}},
                  {{"podIP", "10.0.0.5"}, {"phase", "Running"}});
  REQUIRE(validatePod(good).ok());
  auto ports = podNamedPorts(good);
  REQUIRE(ports.count("http") == 1);
  CHECK(ports.find("http")->second == std::make_pair(uint16_t{80}, uint8_t{17}));
}
