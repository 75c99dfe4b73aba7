// libFuzzer target: the Hubble observer API's GetFlows request (docs/fuzzing.md).
//
// Input: a serialized observer.GetFlowsRequest, the bytes a Hubble client or Relay sends to hubble.sock or :4244.
// It goes where Observer.GetFlows sends it before reading the store: storedSelection() and flowQueryFromHubble()
// (every filter field, since/until; malformed values are INVALID_ARGUMENT). An accepted query is run against a small
// flow store as the server runs it, and each match is converted to Hubble's flow.Flow and serialized.

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "plexus/agent/flow_store.h"
#include "plexus/agent/hubble_flows.h"
#include "plexus/events.h"
#include "plexus/reasons.h"

namespace {

using namespace plexus;
using namespace plexus::agent;

FlowRecord flow(const char* src, const char* dst, const char* dst_pod, uint8_t verdict, uint8_t reason, uint8_t proto,
                uint16_t dport, int64_t time) {
  FlowRecord f;
  f.time_unix_nano = time;
  f.verdict = verdict;
  f.reason = reason;
  f.direction = PLEXUS_DIR_EGRESS;
  f.protocol = proto;
  f.tcp_flags = proto == 6 ? 0x12 : 0;
  f.has_icmp = proto == 1;
  f.icmp_type = 8;
  f.node_name = "kind-worker";
  f.source = {*Ipv4::parse(src), 40000, 300,
              std::make_shared<FlowPod>(FlowPod{"default", "client", {"k8s:app=client", "k8s:tier=front"}}), 3};
  f.destination = {*Ipv4::parse(dst), dport, 301,
                   std::make_shared<FlowPod>(FlowPod{dst_pod[0] ? "prod" : "", dst_pod, {"k8s:app=web"}}), 0};
  f.observed_endpoint = 3;
  f.rule_id = 7;
  f.policy = std::make_shared<FlowPolicy>(FlowPolicy{"CiliumNetworkPolicy", "prod", "web", true, 2});
  return f;
}

FlowStore& store() {
  static FlowStore* s = [] {
    auto* fs = new FlowStore(8);
    fs->add(flow("10.0.0.5", "10.0.0.6", "web", PLEXUS_VERDICT_FORWARDED, PLEXUS_REASON_FORWARDED, 6, 80,
                 1700000000000000000));
    fs->add(flow("10.0.0.5", "10.96.0.10", "", PLEXUS_VERDICT_TRANSLATED, PLEXUS_REASON_SERVICE_TRANSLATED, 17, 53,
                 1700000001000000000));
    fs->add(flow("10.0.0.7", "10.0.0.6", "web", PLEXUS_VERDICT_DROPPED, PLEXUS_REASON_POLICY_DENY, 1, 0,
                 1700000002000000000));
    fs->add(flow("10.0.0.5", "8.8.8.8", "", PLEXUS_VERDICT_AUDIT, PLEXUS_REASON_POLICY_DENIED, 132, 0,
                 1700000003000000000));
    return fs;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  observer::GetFlowsRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) {
    return 0;  // gRPC refuses a message that does not parse before the handler sees it
  }
  StoredSelection selection = storedSelection(request);
  auto query = flowQueryFromHubble(request);
  if (!query.ok()) {
    return 0;
  }
  std::vector<FlowRecord> flows;
  if (!selection.none) {
    flows = selection.oldest ? store().first(selection.count, *query) : store().last(selection.count, *query);
  }
  uint64_t after = 0;
  auto newer = store().waitNewer(&after, *query, std::chrono::milliseconds(0));
  flows.insert(flows.end(), newer.begin(), newer.end());
  for (const auto& f : flows) {
    flow::Flow out;
    toHubbleFlow(f, "fallback", "default", &out);
    (void)out.SerializeAsString();
  }
  return 0;
}
