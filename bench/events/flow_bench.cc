// The event reader thread's work per flow event, on its own: decodeFlow() enriches the datapath's event from the flow
// directory (both peers' pods, the observing device, the deciding rule), then FlowStore::add() stores it in the ring,
// which is full, so each add also drops the oldest flow. The directory holds 1,000 pods with five labels each, as a
// busy node's would; the events alternate between a new connection's SYN (with a policy rule) and its reply, between
// two of those pods. Per-event time; bench/events/run.sh has the end-to-end figures (events on against off).
#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include "plexus/agent/flow_decoder.h"
#include "plexus/agent/flow_store.h"
#include "plexus/events.h"
#include "plexus/reasons.h"

namespace {

using plexus::Ipv4;
using namespace plexus::agent;

constexpr int kPods = 1000;

Ipv4 podIp(int i) { return *Ipv4::parse(fmt::format("10.{}.{}.{}", 20 + i / 62500, i / 250 % 250, i % 250 + 1)); }

void fill(FlowDirectory* dir) {
  for (int i = 0; i < kPods; ++i) {
    std::string app = fmt::format("app-{}", i % 50);
    dir->upsertEndpoint(podIp(i), PeerInfo{fmt::format("team-{}", i % 20),
                                          fmt::format("{}-7c9f6d5b8-{:05d}", app, i),
                                          {"k8s:app=" + app, "k8s:io.kubernetes.pod.namespace=team-x",
                                           "k8s:pod-template-hash=7c9f6d5b8", "k8s:tier=backend", "k8s:version=v2"},
                                          static_cast<uint16_t>(i + 1),
                                          fmt::format("lxc{:08x}", i),
                                          static_cast<uint32_t>(100 + i)});
  }
  FlowPolicy policy{"CiliumNetworkPolicy", "team-x", "allow-frontend"};
  dir->setPolicyRules("CiliumNetworkPolicy team-x/allow-frontend", policy, {{7, true, 2}});
}

plexus_flow_event event(int k) {
  plexus_flow_event e{};
  e.timestamp_ns = 1000000000ULL + static_cast<uint64_t>(k) * 1000;
  e.verdict = PLEXUS_VERDICT_FORWARDED;
  e.reason = PLEXUS_REASON_FORWARDED;
  e.proto = IPPROTO_TCP;
  int client = k % kPods, server = (k * 7 + 1) % kPods;
  bool reply = k % 2 == 1;
  e.direction = reply ? PLEXUS_DIR_EGRESS : PLEXUS_DIR_INGRESS;
  e.tcp_flags = reply ? 0x12 : 0x02;
  e.is_reply = reply;
  e.endpoint_id = static_cast<uint16_t>(server + 1);
  e.src_identity = 1000 + (reply ? server : client) % 50;
  e.dst_identity = 1000 + (reply ? client : server) % 50;
  e.saddr = (reply ? podIp(server) : podIp(client)).networkOrder();
  e.daddr = (reply ? podIp(client) : podIp(server)).networkOrder();
  e.sport = htons(reply ? 8080 : 40000 + k % 20000);
  e.dport = htons(reply ? 40000 + k % 20000 : 8080);
  e.len = 74;
  e.rule_id = reply ? 0 : 7;
  return e;
}

void BM_DecodeAndStore(benchmark::State& state) {
  FlowDirectory dir;
  fill(&dir);
  FlowStore store(static_cast<size_t>(state.range(0)), 0x1234);
  std::vector<plexus_flow_event> events;
  for (int k = 0; k < 4096; ++k) {
    events.push_back(event(k));
  }
  for (int k = 0; k < state.range(0); ++k) {  // a full ring: every add drops the oldest flow
    store.add(decodeFlow(events[k % events.size()], 0, dir));
  }
  size_t k = 0;
  for (auto _ : state) {
    FlowRecord flow = decodeFlow(events[k++ % events.size()], 0, dir);
    flow.node_name = "node-1";
    store.add(std::move(flow));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeAndStore)->Arg(4096)->Unit(benchmark::kNanosecond);

}  // namespace

BENCHMARK_MAIN();
