// Policy compile time: R rules (CNP ingress rules, each selecting one app label and one port range) against
// 1,000 pod identities, compiled for one endpoint that every rule's subject selects. Includes the selector cache
// (first evaluation of each selector) and deny resolution.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "plexus/policy/compiler.h"

using namespace plexus::policy;

namespace {

constexpr int kIdentities = 1000;

std::map<uint32_t, std::vector<std::string>> identities() {
  std::map<uint32_t, std::vector<std::string>> out;
  for (int i = 0; i < kIdentities; ++i) {
    out[256 + i] = {"k8s:app=app" + std::to_string(i), "k8s:io.kubernetes.pod.namespace=bench"};
  }
  return out;
}

Policy policyWith(int rules) {
  Policy p;
  p.kind = Kind::kCiliumNetworkPolicy;
  p.ns = "bench";
  p.name = "bench";
  Spec spec;
  spec.ingress = true;
  for (int i = 0; i < rules; ++i) {
    Rule r;
    r.direction = Direction::kIngress;
    r.deny = i % 10 == 9;  // every tenth rule is a deny
    r.peers.selectors.push_back(Selector({Requirement{"k8s", "app", Op::kIn, {"app" + std::to_string(i % kIdentities)}},
                                          Requirement{"k8s", "io.kubernetes.pod.namespace", Op::kIn, {"bench"}}}));
    uint16_t port = static_cast<uint16_t>(1000 + (i / kIdentities) * 16);
    r.ports.push_back(PortSpec{kProtoTcp, port, static_cast<uint16_t>(port + 9), ""});
    r.origin = "bench rule " + std::to_string(i);
    r.id = static_cast<uint32_t>(i + 1);
    spec.rules.push_back(std::move(r));
  }
  p.specs.push_back(std::move(spec));
  return p;
}

void BM_Compile(benchmark::State& state) {
  auto ids = identities();
  Policy p = policyWith(static_cast<int>(state.range(0)));
  EndpointInfo ep{256, parseLabels(ids[256]), {}};
  size_t entries = 0;
  for (auto _ : state) {
    SelectorCache cache;  // cold: every selector evaluated against every identity
    cache.syncIdentities(ids);
    auto out = compile(ep, {&p}, cache, nullptr);
    entries = out.entries.size();
    benchmark::DoNotOptimize(out);
  }
  state.counters["entries"] = static_cast<double>(entries);
}

}  // namespace

BENCHMARK(BM_Compile)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
