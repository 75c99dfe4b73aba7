// The stages of `plexus apply -f` of N Services with 3-backend EndpointSlices (the file bench/apply/run.sh applies),
// each on its own: the request thread parses the YAML (ManifestStream) and prepares each object (normalise, validate,
// decode: ResourceStore::prepare with the service decoders the agent registers); the reconcile thread commits them
// into the store in groups (ResourceStore::commit, its change events freed after). Google Benchmark; run.sh has the
// end-to-end figure against iptables-restore.
#include <benchmark/benchmark.h>

#include <any>

#include <fmt/format.h>

#include "plexus/agent/resource_store.h"
#include "plexus/common/manifest.h"
#include "plexus/lb/service.h"

namespace {

using plexus::agent::PreparedObject;
using plexus::agent::ResourceStore;

std::string manifest(int n) {
  std::string y;
  for (int i = 0; i < n; ++i) {
    auto be = [i](int k) { return fmt::format("10.{}.{}.{}", 213 + k, i / 250 % 250, i % 250 + 1); };
    fmt::format_to(std::back_inserter(y),
                   "apiVersion: v1\nkind: Service\nmetadata: {{name: s{0}, namespace: bench}}\n"
                   "spec: {{clusterIP: 10.100.{1}.{2}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n---\n"
                   "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
                   "metadata: {{name: s{0}-1, namespace: bench, labels: {{kubernetes.io/service-name: s{0}}}}}\n"
                   "addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n",
                   i, i / 250, i % 250 + 1);
    for (int k = 0; k < 3; ++k) {
      fmt::format_to(std::back_inserter(y), "- addresses: [{}]\n  conditions: {{ready: true}}\n", be(k));
    }
    y += "---\n";
  }
  return y;
}

template <typename T>
plexus::Result<std::any> decoded(plexus::Result<T> r) {
  if (!r.ok()) {
    return r.error();
  }
  return std::any(std::move(*r));
}

void withDecoders(ResourceStore* store) {
  store->setDecoder(plexus::ResourceKind::kService,
                    [](const nlohmann::json& o) { return decoded(plexus::lb::parseService(o)); });
  store->setDecoder(plexus::ResourceKind::kEndpointSlice,
                    [](const nlohmann::json& o) { return decoded(plexus::lb::parseEndpointSlice(o)); });
}

// Parse and prepare, as the request's thread does; `prepare` false parses only.
std::vector<PreparedObject> readAll(const std::string& text, const ResourceStore& store, bool prepare,
                                    benchmark::State& state) {
  std::vector<PreparedObject> out;
  plexus::ManifestStream stream(text);
  for (;;) {
    auto next = stream.next();
    if (!next.ok()) {
      state.SkipWithError(next.error().message.c_str());
      return out;
    }
    if (!*next) {
      return out;
    }
    if (prepare) {
      out.push_back(store.prepare(std::move(**next), false));
    } else {
      benchmark::DoNotOptimize(**next);  // freed here, as each object goes
    }
  }
}

void BM_Parse(benchmark::State& state) {
  std::string text = manifest(static_cast<int>(state.range(0)));
  ResourceStore store;
  for (auto _ : state) {
    readAll(text, store, false, state);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

void BM_ParsePrepare(benchmark::State& state) {
  std::string text = manifest(static_cast<int>(state.range(0)));
  ResourceStore store;
  withDecoders(&store);
  for (auto _ : state) {
    auto objects = readAll(text, store, true, state);
    benchmark::DoNotOptimize(objects);
    state.PauseTiming();  // the objects are freed on the reconcile thread, after they commit
    objects.clear();
    state.ResumeTiming();
  }
}

void BM_Commit(benchmark::State& state) {
  std::string text = manifest(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    state.PauseTiming();
    ResourceStore store;
    withDecoders(&store);
    auto objects = readAll(text, store, true, state);
    state.ResumeTiming();
    for (size_t at = 0; at < objects.size(); at += 256) {
      std::vector<PreparedObject> group(std::make_move_iterator(objects.begin() + at),
                                        std::make_move_iterator(objects.begin() + std::min(at + 256, objects.size())));
      std::vector<plexus::ResourceEvent> events;
      benchmark::DoNotOptimize(store.commit(std::move(group), false, &events));
    }
    state.PauseTiming();  // the store's teardown is not part of an apply
    store = ResourceStore();
    objects.clear();
    state.ResumeTiming();
  }
}

}  // namespace

BENCHMARK(BM_Parse)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ParsePrepare)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Commit)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
