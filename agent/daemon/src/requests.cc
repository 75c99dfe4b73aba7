#include "plexus/agent/requests.h"

#include <fmt/format.h>

#include "plexus/policy/policy.h"

namespace plexus::agent {

namespace {
Error invalid(std::string message) { return makeError(ErrorCode::kInvalidArgument, std::move(message)); }
}  // namespace

Result<AddRequest> addRequestFromProto(const v1::CniAddRequest& req) {
  if (req.container_id().empty() || req.ifname().empty()) {
    return invalid("container_id and ifname are required");
  }
  AddRequest add;
  add.container_id = req.container_id();
  add.netns = req.netns();
  add.ifname = req.ifname();
  add.pod_namespace = req.pod_namespace();
  add.pod_name = req.pod_name();
  add.pod_uid = req.pod_uid();
  add.mtu = req.mtu();
  if (req.requested_ips_size() > 0) {
    auto ip = Ipv4::parse(req.requested_ips(0));
    if (!ip) {
      return invalid(fmt::format("requested IP {:?} is not an IPv4 address", req.requested_ips(0)));
    }
    add.requested_ip = *ip;
  }
  if (!req.requested_mac().empty()) {
    auto mac = Mac::parse(req.requested_mac());
    if (!mac) {
      return invalid(fmt::format("requested MAC {:?} is malformed", req.requested_mac()));
    }
    add.requested_mac = *mac;
  }
  if (req.has_chained()) {
    ChainedSpec ch;
    ch.host_ifname = req.chained().host_ifname();
    ch.container_ifname = req.chained().container_ifname();
    if (!req.chained().container_mac().empty()) {
      ch.container_mac = Mac::parse(req.chained().container_mac());
    }
    for (const auto& cidr : req.chained().ips()) {
      auto slash = cidr.find('/');
      auto addr = Ipv4::parse(cidr.substr(0, slash));
      auto prefix = Ipv4Prefix::parse(cidr);
      if (!addr || !prefix) {
        continue;  // IPv6 addresses from the previous plugin are not ours to handle
      }
      ch.addresses.push_back(*addr);
      ch.ips.push_back(*prefix);
    }
    if (ch.host_ifname.empty()) {
      return invalid("chained ADD needs the host-side interface from prevResult");
    }
    add.chained = ch;
  } else if (req.netns().empty()) {
    return invalid("netns is required");
  }
  return add;
}

Result<DelRequest> delRequestFromProto(const v1::CniDelRequest& req) {
  if (req.container_id().empty()) {
    return invalid("container_id is required");
  }
  return DelRequest{req.container_id(), req.ifname().empty() ? "eth0" : req.ifname()};
}

std::set<std::string> gcOwnersFromProto(const v1::CniGcRequest& req) {
  std::set<std::string> valid;
  for (const auto& a : req.valid_attachments()) {
    valid.insert(a.container_id() + "/" + (a.ifname().empty() ? "eth0" : a.ifname()));
  }
  return valid;
}

Result<std::string> endpointSelectorFromProto(const v1::GetEndpointRequest& req) {
  if (req.selector().empty()) {
    return invalid("an endpoint id, container id, namespace/pod or IP is required");
  }
  return req.selector();
}

namespace {
template <typename T>
std::vector<T> all(const google::protobuf::RepeatedPtrField<T>& f) {
  return {f.begin(), f.end()};
}
template <typename T>
std::vector<T> all(const google::protobuf::RepeatedField<T>& f) {
  return {f.begin(), f.end()};
}
}  // namespace

Result<FlowFilter> flowFilterFromProto(const v1::FlowFilter& f) {
  FlowFilterSpec s;
  s.either = {all(f.namespace_()), all(f.pod()), all(f.label()), all(f.ip()), all(f.identity()), all(f.port())};
  s.source = {all(f.from_namespace()), all(f.from_pod()), all(f.from_label()),
              all(f.from_ip()),        all(f.from_identity()), all(f.from_port())};
  s.destination = {all(f.to_namespace()), all(f.to_pod()), all(f.to_label()),
                   all(f.to_ip()),        all(f.to_identity()), all(f.to_port())};
  s.verdicts = all(f.verdict());
  s.protocols = all(f.protocol());
  s.types = all(f.event_type());
  s.tcp_flags = all(f.tcp_flags());
  s.node_names = all(f.node_name());
  s.since_unix_nano = f.since_unix_nano();
  s.until_unix_nano = f.until_unix_nano();
  auto filter = parseFlowFilter(s);
  if (!filter.ok()) {
    return filter.error().wrap("filter");
  }
  return filter;
}

Result<FlowQuery> flowQueryFromProto(const v1::GetFlowsRequest& req) {
  FlowQuery q;
  auto main = flowFilterFromProto(req.filter());
  if (!main.ok()) {
    return main.error();
  }
  q.filter = std::move(*main);
  for (int i = 0; i < req.allow_size(); ++i) {
    auto a = flowFilterFromProto(req.allow(i));
    if (!a.ok()) {
      return a.error().wrap(fmt::format("allow[{}]", i));
    }
    q.allow.push_back(std::move(*a));
  }
  for (int i = 0; i < req.deny_size(); ++i) {
    auto d = flowFilterFromProto(req.deny(i));
    if (!d.ok()) {
      return d.error().wrap(fmt::format("deny[{}]", i));
    }
    q.deny.push_back(std::move(*d));
  }
  return q;
}

Result<ExplainQuery> explainFromProto(const v1::ExplainRequest& req) {
  ExplainQuery q;
  const std::string& p = req.protocol();
  if (p == "TCP" || p == "tcp") {
    q.proto = policy::kProtoTcp;
  } else if (p == "UDP" || p == "udp") {
    q.proto = policy::kProtoUdp;
  } else if (p == "SCTP" || p == "sctp") {
    q.proto = policy::kProtoSctp;
  } else if (p == "ICMP" || p == "icmp") {
    q.proto = policy::kProtoIcmp;  // the port is the ICMP type, as in the policy map (CNP icmps)
  } else {
    return invalid(fmt::format("protocol {:?}: must be TCP, UDP, SCTP or ICMP", p));
  }
  if (q.proto == policy::kProtoIcmp ? req.port() > 255 : (req.port() == 0 || req.port() > 65535)) {
    return invalid(q.proto == policy::kProtoIcmp ? "port: an ICMP type is 0-255" : "port: must be 1-65535");
  }
  q.port = static_cast<uint16_t>(req.port());
  q.from = req.from();
  q.to = req.to();
  return q;
}

}  // namespace plexus::agent
