#pragma once
// `plexus observe`'s flags as Hubble's GetFlows filters, the way `hubble observe` builds them, and Hubble's flows
// as `hubble observe` prints them. Pure: unit-tested anywhere.

#include <string>
#include <vector>

#include "flow/flow.pb.h"
#include "observer/observer.pb.h"
#include "plexus/v1/flows.pb.h"

namespace plexus::cli {

// One command line's filter (a v1::FlowFilter, as the flags fill it) as Hubble filters, any of which may match.
// Flags with a side (--from-pod, --to-port, ...) go to Hubble's source_* and destination_* fields. Flags without
// one (--pod, --ip, -l, --port, --identity, -n) must all hold on the same side, so a filter with any of them
// becomes two, one per side, as hubble observe pairs them. -n NS and --pod PREFIX on one side make "NS/PREFIX".
// False, with `error` naming the flags, for a side flag and a sideless flag on one field (--ip with --from-ip),
// and for unknown verdicts, types and TCP flags.
bool hubbleFilters(const v1::FlowFilter& filter, std::vector<flow::FlowFilter>* out, std::string* error);

// The text forms of hubble observe -o compact / json / jsonpb. json is Hubble's own: protojson with the .proto's
// field names ("IP", "l4", "drop_reason_desc", "Summary"); jsonpb uses lowerCamelCase names.
std::string compactText(const flow::Flow& f);
// hubble observe -o dict: one "KEY: value" block per flow (the caller prints "------------" between blocks).
std::string dictText(const flow::Flow& f);
// hubble observe -o table: TIMESTAMP, SOURCE, DESTINATION, TYPE, VERDICT, SUMMARY.
std::vector<std::string> tableRow(const flow::Flow& f);
// Hubble's words: a flow's TYPE column ("to-endpoint", "Policy denied", "policy-verdict:none INGRESS"), Cilium's
// description of a drop reason number (133: "Policy denied"), a trace point ("to-endpoint") and a policy match
// type (2: "L3-L4").
std::string flowTypeText(const flow::Flow& f);
std::string dropReasonText(uint32_t code);
std::string observationPointText(flow::TraceObservationPoint p);
std::string policyMatchText(uint32_t match);
std::string jsonText(const observer::GetFlowsResponse& r, bool proto_names);
std::string timeText(const google::protobuf::Timestamp& t, bool rfc3339);
// "default/web:40000 (ID:300)", "1.1.1.1:443 (world)".
std::string peerText(const flow::Endpoint& e, const std::string& ip, uint32_t port);

}  // namespace plexus::cli
