// The planner's share of a full sync of N ClusterIP services with one backend each, as bench/services/run.sh
// installs them: compute the desired map state from scratch, then diff it against empty maps (Google Benchmark).
#include <benchmark/benchmark.h>

#include <memory>

#include "plexus/lb/planner.h"

namespace {

using plexus::Ipv4;

void BM_FullCompute(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  std::vector<plexus::lb::Service> services;
  std::vector<plexus::lb::EndpointSlice> slices;
  for (uint32_t i = 0; i < n; ++i) {
    plexus::lb::Service s;
    s.ns = "bench";
    s.name = "s" + std::to_string(i);
    s.cluster_ip = Ipv4(Ipv4::parse("10.100.0.1")->hostOrder() + i);
    s.ports = {{"http", 6, 80, "http", 0}};
    services.push_back(s);
    plexus::lb::EndpointSlice es;
    es.ns = s.ns;
    es.name = s.name + "-derived";
    es.service = s.name;
    es.ports = {{"http", 6, 8080}};
    es.endpoints = {{*Ipv4::parse("10.210.0.3"), true, true, false, ""}};
    slices.push_back(es);
  }
  plexus::lb::PlannerConfig config;
  config.node_name = "bench";
  for (auto _ : state) {
    auto planner = std::make_unique<plexus::lb::Planner>(config);
    auto desired = std::make_unique<plexus::lb::MapState>(planner->compute(services, slices));
    auto plan = plexus::lb::Planner::diff({}, *desired);
    benchmark::DoNotOptimize(plan);
    state.PauseTiming();  // the agent keeps its planner and state; their teardown is not part of a sync
    planner.reset();
    desired.reset();
    state.ResumeTiming();
  }
}

}  // namespace

BENCHMARK(BM_FullCompute)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
