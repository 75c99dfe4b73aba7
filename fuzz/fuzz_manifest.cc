// libFuzzer target: `plexus apply -f` (docs/fuzzing.md).
//
// Input: a manifest file as a user writes it (YAML, one or many documents, a `kind: List`, or JSON). It goes
// where the agent's Resources.Apply sends it: parseManifests(), then the controller, which validates every kind
// (Namespace, Pod, Node, Service, EndpointSlice, NetworkPolicy, CiliumNetworkPolicy,
// CiliumClusterwideNetworkPolicy, PlexusEndpoint) with the domain parsers, stores what it accepts, and
// recomputes identities, the ipcache, services (Maglev included), node routes and every endpoint's compiled
// policy. The kernel, the state directory and the cluster are the in-memory fakes of the [unit] control tests,
// so one input runs the whole pure path in microseconds. Two endpoints exist before the input is applied, so
// policies have subjects and peers; afterwards the same objects are deleted again.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "plexus/agent/controller.h"
#include "plexus/common/manifest.h"
#include "unit/control/fakes.h"

namespace {

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;

struct Fakes {
  FakePodNetwork net;
  FakeEndpointMap endpoints_map;
  FakeIpcacheMap ipcache_map;
  FakePolicyMap policy_map;
  FakeServiceMaps service_maps;
  FakeAgentStore store;
  FakeHostAddresses host;
  FakeNodeRoutes routes;
};

// One standalone agent's managers over the fakes, wired as the daemon wires them (node "node-1", native
// routing with direct routes, kube-proxy replacement on).
struct Agent {
  Fakes& f;
  ResourceState resources;
  IdentityManager identities;
  IpcacheManager ipcache;
  PolicyManager policies;
  Ipam ipam{*Ipv4Prefix::parse("10.0.0.0/24"), *Ipv4::parse("10.0.0.1")};
  EndpointManager endpoints;
  FlowDirectory flows;
  ServiceManager service_manager;
  ServiceSync services;
  NodeManager nodes;
  Controller controller;

  explicit Agent(Fakes& fakes)
      : f(fakes),
        resources(f.store),
        identities(f.store, nullptr),
        ipcache(f.ipcache_map),
        policies(f.policy_map, ipcache, [this] { return identities.all(); },
                 [this](const EndpointRecord& r) { return resources.namedPorts(r.pod_namespace, r.pod_name); }),
        endpoints(EndpointManagerDeps{f.net, f.endpoints_map, ipcache, policies, f.store}, ipam,
                  EndpointManagerConfig{1500}, [] { return int64_t{1700000000}; }),
        service_manager(f.service_maps, lb::PlannerConfig{}, &flows),
        services(service_manager, resources),
        nodes(NodeManagerConfig{"node-1", node::RoutingMode::kNative, true, {}}, ipcache, identities, resources,
              &f.routes, &flows),
        controller(ControllerParts{resources, identities, ipcache, endpoints, policies, &services, flows, nullptr,
                                   &f.host, &nodes},
                   "node-1") {}
};

AddRequest request(const char* container, const char* ns, const char* pod) {
  AddRequest r;
  r.container_id = container;
  r.netns = std::string("/var/run/netns/") + container;
  r.ifname = "eth0";
  r.pod_namespace = ns;
  r.pod_name = pod;
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto objects = parseManifests(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!objects.ok()) {
    return 0;
  }
  for (const auto& o : *objects) {
    (void)describeObject(o);
  }
  Fakes f;
  Agent a(f);
  std::vector<std::string> problems;
  if (!a.controller.start(&problems).ok()) {
    return 0;
  }
  // The seeds name these pods, so their labels (and the policies selecting them) reach compiled entries.
  (void)a.controller.addEndpoint(request("c-web", "default", "web"));
  (void)a.controller.addEndpoint(request("c-client", "default", "client"));
  (void)a.controller.apply(*objects);
  a.controller.tick();
  (void)a.controller.apply(*objects);  // unchanged the second time
  (void)a.controller.remove(*objects);
  a.controller.tick();
  return 0;
}
