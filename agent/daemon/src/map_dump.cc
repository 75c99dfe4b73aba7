#include "plexus/agent/map_dump.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <map>

#include <fmt/format.h>

#include "plexus/common/ipv4.h"
#include "plexus/datapath/conntrack_gc.h"
#include "plexus/reasons.h"

namespace plexus::agent {

namespace {
const char* protoName(uint8_t p) {
  switch (p) {
    case IPPROTO_TCP: return "TCP";
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_ICMP: return "ICMP";
    case IPPROTO_SCTP: return "SCTP";
    default: return "other";
  }
}

std::string macText(const uint8_t* b) { return Mac{{b[0], b[1], b[2], b[3], b[4], b[5]}}.toString(); }

void columns(v1::DumpBpfMapResponse* out, std::initializer_list<const char*> keys,
             std::initializer_list<const char*> values) {
  for (auto k : keys) {
    out->add_key_columns(k);
  }
  for (auto v : values) {
    out->add_value_columns(v);
  }
}
}  // namespace

Status dumpMap(datapath::LxcDatapath& lxc, v1::BpfMap which, const std::string& endpoint,
               v1::DumpBpfMapResponse* out) {
  switch (which) {
    case v1::BPF_MAP_ENDPOINTS: {
      out->set_name("plexus_endpoints_v1");
      columns(out, {"ip"}, {"ifindex", "endpoint_id", "identity", "flags", "pod_mac", "node_mac"});
      auto entries = lxc.endpoints().entries();
      if (!entries.ok()) {
        return entries.error();
      }
      for (const auto& [k, v] : *entries) {
        auto* row = out->add_rows();
        row->add_key(Ipv4::fromNetwork(k.ip).toString());
        row->add_value(std::to_string(v.ifindex));
        row->add_value(std::to_string(v.ep_id));
        row->add_value(std::to_string(v.identity));
        std::string flags;
        if (v.flags & PLEXUS_EP_F_HOST) {
          flags += "host ";
        }
        if (v.flags & PLEXUS_EP_F_CHAINED) {
          flags += "chained ";
        }
        row->add_value(flags.empty() ? "-" : flags.substr(0, flags.size() - 1));
        row->add_value(macText(v.pod_mac));
        row->add_value(macText(v.node_mac));
      }
      return Status::Ok();
    }
    case v1::BPF_MAP_IPCACHE: {
      out->set_name("plexus_ipcache_v1");
      columns(out, {"prefix"}, {"identity", "tunnel_endpoint"});
      auto entries = lxc.ipcache().entries();
      if (!entries.ok()) {
        return entries.error();
      }
      for (const auto& [k, v] : *entries) {
        auto* row = out->add_rows();
        row->add_key(Ipv4Prefix(Ipv4::fromNetwork(k.ip), static_cast<int>(k.prefixlen)).toString());
        row->add_value(std::to_string(v.identity));
        row->add_value(Ipv4::fromNetwork(v.tunnel_endpoint).toString());
      }
      return Status::Ok();
    }
    case v1::BPF_MAP_METRICS: {
      out->set_name("plexus_metrics_v1");
      columns(out, {"reason", "direction"}, {"packets", "bytes"});
      auto entries = lxc.metrics().entries();
      if (!entries.ok()) {
        return entries.error();
      }
      for (const auto& [k, per_cpu] : *entries) {
        uint64_t packets = 0;
        uint64_t bytes = 0;
        for (const auto& v : per_cpu) {
          packets += v.packets;
          bytes += v.bytes;
        }
        auto* row = out->add_rows();
        row->add_key(reasonName(k.reason));
        row->add_key(directionName(k.direction));
        row->add_value(std::to_string(packets));
        row->add_value(std::to_string(bytes));
      }
      return Status::Ok();
    }
    case v1::BPF_MAP_LB_SERVICES: {
      out->set_name("plexus_lb4_services_v1");
      columns(out, {"frontend", "proto", "scope", "slot"}, {"backend_id", "count", "rev_nat_index", "flags"});
      auto entries = lxc.lb().services.entries();
      if (!entries.ok()) {
        return entries.error();
      }
      for (const auto& [k, v] : *entries) {
        auto* row = out->add_rows();
        row->add_key(fmt::format("{}:{}", Ipv4::fromNetwork(k.address).toString(), ntohs(k.dport)));
        row->add_key(protoName(k.proto));
        row->add_key(k.scope == PLEXUS_LB_SCOPE_INTERNAL ? "internal" : "external");
        row->add_key(std::to_string(k.backend_slot));
        row->add_value(std::to_string(v.backend_id));
        row->add_value(std::to_string(v.count));
        row->add_value(std::to_string(v.rev_nat_index));
        row->add_value(fmt::format("{:#x}", v.flags));
      }
      return Status::Ok();
    }
    case v1::BPF_MAP_LB_BACKENDS: {
      out->set_name("plexus_lb4_backends_v1");
      columns(out, {"id"}, {"backend", "proto", "state"});
      auto entries = lxc.lb().backends.entries();
      if (!entries.ok()) {
        return entries.error();
      }
      for (const auto& [k, v] : *entries) {
        auto* row = out->add_rows();
        row->add_key(std::to_string(k));
        row->add_value(fmt::format("{}:{}", Ipv4::fromNetwork(v.address).toString(), ntohs(v.port)));
        row->add_value(protoName(v.proto));
        row->add_value(v.state == PLEXUS_BACKEND_ACTIVE        ? "active"
                       : v.state == PLEXUS_BACKEND_TERMINATING ? "terminating"
                                                               : std::to_string(v.state));
      }
      return Status::Ok();
    }
    case v1::BPF_MAP_LB_REVNAT: {
      out->set_name("plexus_lb4_reverse_nat_v1");
      columns(out, {"rev_nat_index"}, {"frontend"});
      auto entries = lxc.lb().revnat.entries();
      if (!entries.ok()) {
        return entries.error();
      }
      for (const auto& [k, v] : *entries) {
        auto* row = out->add_rows();
        row->add_key(std::to_string(k));
        row->add_value(fmt::format("{}:{}", Ipv4::fromNetwork(v.address).toString(), ntohs(v.port)));
      }
      return Status::Ok();
    }
    case v1::BPF_MAP_LB_SOURCE_RANGE: {
      out->set_name("plexus_lb4_source_range_v1");
      columns(out, {"rev_nat_index", "source_range"}, {"frontend"});
      auto entries = lxc.lb().source_ranges.entries();
      auto revnat = lxc.lb().revnat.entries();
      if (!entries.ok()) {
        return entries.error();
      }
      std::map<uint16_t, plexus_lb4_reverse_nat> frontends;
      if (revnat.ok()) {
        frontends.insert(revnat->begin(), revnat->end());
      }
      for (const auto& [k, v] : *entries) {
        auto* row = out->add_rows();
        row->add_key(std::to_string(k.rev_nat_index));
        int len = static_cast<int>(k.prefixlen) - PLEXUS_LB_SRC_RANGE_FIXED_PREFIX;
        row->add_key(Ipv4Prefix(Ipv4::fromNetwork(k.address), len < 0 ? 0 : len).toString());
        auto fe = frontends.find(k.rev_nat_index);
        row->add_value(fe == frontends.end() ? "-"
                                             : fmt::format("{}:{}", Ipv4::fromNetwork(fe->second.address).toString(),
                                                           ntohs(fe->second.port)));
      }
      return Status::Ok();
    }
    case v1::BPF_MAP_CONNTRACK: {
      out->set_name("plexus_ct4_v2");
      columns(out, {"source", "destination", "proto", "kind"},
              {"age_seconds", "backend_id", "rev_nat_index", "tx_flags", "rx_flags", "nat_port"});
      auto entries = lxc.lb().ct.entries();
      if (!entries.ok()) {
        return entries.error();
      }
      uint64_t now_ns = datapath::monotonicNs();
      static const char* kKinds[] = {"?", "service", "reverse", "egress", "ingress", "reverse-nodeport"};
      for (const auto& [k, v] : *entries) {
        auto* row = out->add_rows();
        row->add_key(fmt::format("{}:{}", Ipv4::fromNetwork(k.saddr).toString(), ntohs(k.sport)));
        row->add_key(fmt::format("{}:{}", Ipv4::fromNetwork(k.daddr).toString(), ntohs(k.dport)));
        row->add_key(protoName(k.proto));
        row->add_key(k.dir < 6 ? kKinds[k.dir] : "?");
        row->add_value(std::to_string(now_ns > v.last_seen_ns ? (now_ns - v.last_seen_ns) / PLEXUS_NSEC_PER_SEC : 0));
        row->add_value(std::to_string(v.backend_id));
        row->add_value(std::to_string(v.rev_nat_index));
        row->add_value(fmt::format("{:#x}", v.tx_flags));
        row->add_value(fmt::format("{:#x}", v.rx_flags));
        row->add_value(std::to_string(ntohs(v.nat_port)));
      }
      return Status::Ok();
    }
    case v1::BPF_MAP_NAT: {
      out->set_name("plexus_snat4_v1");
      columns(out, {"source", "destination", "proto", "direction"}, {"age_seconds", "translated_to"});
      auto map = lxc.nat();
      if (!map.ok()) {
        return map.error();
      }
      auto entries = map->entries();
      if (!entries.ok()) {
        return entries.error();
      }
      uint64_t now_ns = datapath::monotonicNs();
      for (const auto& [k, v] : *entries) {
        auto* row = out->add_rows();
        row->add_key(fmt::format("{}:{}", Ipv4::fromNetwork(k.saddr).toString(), ntohs(k.sport)));
        row->add_key(fmt::format("{}:{}", Ipv4::fromNetwork(k.daddr).toString(), ntohs(k.dport)));
        row->add_key(protoName(k.proto));
        row->add_key(k.dir == PLEXUS_SNAT_EGRESS    ? "egress"
                    : k.dir == PLEXUS_SNAT_INGRESS ? "ingress"
                    : k.dir == PLEXUS_SNAT_DSR     ? "dsr"
                                                   : "?");
        row->add_value(std::to_string(now_ns > v.last_seen_ns ? (now_ns - v.last_seen_ns) / PLEXUS_NSEC_PER_SEC : 0));
        row->add_value(fmt::format("{}:{}", Ipv4::fromNetwork(v.to_addr).toString(), ntohs(v.to_port)));
      }
      return Status::Ok();
    }
    case v1::BPF_MAP_POLICY: {
      out->set_name("plexus_policy_v3");
      columns(out, {"identity", "direction", "proto", "ports"}, {"verdict", "rule_id"});
      int id = 0;
      try {
        id = std::stoi(endpoint);
      } catch (const std::exception&) {
        id = -1;
      }
      if (id < 1 || id > 65535) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("--endpoint {:?}: must be an endpoint id", endpoint));
      }
      auto entries = lxc.policy().get(static_cast<uint16_t>(id));
      if (!entries.ok()) {
        return entries.error();
      }
      for (const auto& [k, v] : *entries) {
        auto* row = out->add_rows();
        row->add_key(k.identity == 0 ? "any" : std::to_string(k.identity));
        row->add_key(directionName(k.direction));
        row->add_key(k.prefixlen >= PLEXUS_POLICY_PROTO_PREFIX ? protoName(k.protocol) : "any");
        uint32_t port_bits = k.prefixlen > PLEXUS_POLICY_PROTO_PREFIX ? k.prefixlen - PLEXUS_POLICY_PROTO_PREFIX : 0;
        uint32_t first = ntohs(k.dport);
        uint32_t last = first + (port_bits >= 16 ? 0 : (1u << (16 - port_bits)) - 1);
        row->add_key(port_bits == 0 ? "any" : first == last ? std::to_string(first) : fmt::format("{}-{}", first, last));
        row->add_value(v.flags & PLEXUS_POLICY_F_DENY ? "deny" : "allow");
        row->add_value(std::to_string(v.rule_id));
      }
      return Status::Ok();
    }
    default:
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("map {} is not available in this agent", v1::BpfMap_Name(which)));
  }
}

}  // namespace plexus::agent
