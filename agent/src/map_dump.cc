#include "plexus/agent/map_dump.h"

#include <fmt/format.h>

#include "plexus/common/ipv4.h"
#include "plexus/reasons.h"

namespace plexus::agent {

namespace {
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

Status dumpMap(datapath::LxcDatapath& lxc, v1::BpfMap which, v1::DumpBpfMapResponse* out) {
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
    default:
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("map {} is not available in this agent", v1::BpfMap_Name(which)));
  }
}

}  // namespace plexus::agent
