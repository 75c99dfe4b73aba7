// Maglev table build time for M = 16381 with N = 10, 100 and 1,000 backends (Google Benchmark).
#include <benchmark/benchmark.h>

#include "plexus/lb/maglev.h"

namespace {

void BM_MaglevBuild(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<plexus::lb::MaglevBackend> backends;
  for (int i = 0; i < n; ++i) {
    backends.push_back({plexus::lb::maglevBackendKey("10.1." + std::to_string(i / 250) + "." +
                                                         std::to_string(i % 250 + 1),
                                                     8080, "TCP"),
                        static_cast<uint32_t>(i + 1), 100});
  }
  auto seed = plexus::lb::parseMaglevSeed(plexus::lb::kDefaultMaglevSeed);
  for (auto _ : state) {
    auto table = plexus::lb::buildMaglevTable(backends, plexus::lb::kDefaultMaglevTableSize, *seed);
    benchmark::DoNotOptimize(table);
  }
}

}  // namespace

BENCHMARK(BM_MaglevBuild)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
