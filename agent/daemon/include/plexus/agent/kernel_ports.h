#pragma once
// The control layer's seams (seams.h) implemented with the kernel adapters (agent/datapath): typed pinned maps,
// netlink and tc. Thin: they translate, they decide nothing.

#include <set>
#include <string>

#include "plexus/agent/seams.h"
#include "plexus/datapath/bpf_map.h"
#include "plexus/datapath/lxc_datapath.h"
#include "plexus/datapath/netlink.h"

namespace plexus::agent {

// `epoch`: for a map policy verdicts read (endpoints, ipcache), moved on after each write, so that connections whose
// verdict the datapath cached are judged again (datapath::VerdictEpoch).
template <typename K, typename V>
class BpfMapWriter final : public MapWriter<K, V> {
 public:
  explicit BpfMapWriter(datapath::BpfMap<K, V>& map, datapath::VerdictEpoch* epoch = nullptr)
      : map_(map), epoch_(epoch) {}
  Result<std::optional<V>> lookup(const K& key) const override { return map_.lookup(key); }
  Status update(const K& key, const V& value) override { return moved(map_.update(key, value)); }
  Status erase(const K& key) override { return moved(map_.erase(key)); }
  Result<std::vector<std::pair<K, V>>> entries() const override { return map_.entries(); }

 private:
  Status moved(Status written) {
    Status bumped = epoch_ && written.ok() ? epoch_->bump() : Status::Ok();
    return written.ok() ? bumped : written;
  }
  datapath::BpfMap<K, V>& map_;
  datapath::VerdictEpoch* epoch_;
};

class KernelPolicyMap final : public PolicyMap {
 public:
  explicit KernelPolicyMap(datapath::PolicyMaps& maps) : maps_(maps) {}
  Status set(uint16_t endpoint_id, const PolicyEntries& entries) override { return maps_.set(endpoint_id, entries); }
  Status clear(uint16_t endpoint_id) override { return maps_.clear(endpoint_id); }

 private:
  datapath::PolicyMaps& maps_;
};

class KernelServiceMaps final : public ServiceMaps {
 public:
  explicit KernelServiceMaps(datapath::LbMaps& maps) : maps_(maps) {}
  Status apply(const lb::Plan& plan) override;
  Result<lb::MapState> read() const override;

 private:
  datapath::LbMaps& maps_;
};

struct KernelPodNetworkConfig {
  std::string host_device = "plexus_host";  // the device holding the gateway address
};

class KernelPodNetwork final : public PodNetwork {
 public:
  KernelPodNetwork(datapath::LxcDatapath& dp, KernelPodNetworkConfig config) : dp_(dp), config_(std::move(config)) {}
  Status prepareNode(Ipv4 gateway) override;
  Result<PodLink> createPod(const PodLinkSpec& spec) override;
  Result<PodLink> attach(const std::string& host_ifname) override;
  void removePod(const std::string& host_ifname) override;
  void detach(const std::string& host_ifname) override;
  bool exists(const std::string& host_ifname) override;
  Status check(const EndpointRecord& rec) override;

 private:
  Result<Mac> configurePod(const PodLinkSpec& spec);
  Result<PodLink> configureHost(const PodLinkSpec& spec, const Mac& pod_mac);

  datapath::LxcDatapath& dp_;
  KernelPodNetworkConfig config_;
};

// Routes to other nodes' pod CIDRs: via the node (on the directly connected network that holds it) or into the
// tunnel device.
class KernelNodeRoutes final : public NodeRoutes {
 public:
  explicit KernelNodeRoutes(int tunnel_ifindex) : tunnel_ifindex_(tunnel_ifindex) {}
  Status replace(Ipv4Prefix dst, Ipv4 via, bool tunnel) override;
  Status remove(Ipv4Prefix dst) override;
  Result<std::vector<Ipv4Prefix>> installed() override;

 private:
  Result<datapath::RouteSpec> spec(Ipv4Prefix dst, Ipv4 via, bool tunnel) const;
  int tunnel_ifindex_;
};

// getifaddrs(3): every non-loopback IPv4 address of the node.
class KernelHostAddresses final : public HostAddresses {
 public:
  std::set<Ipv4> list() override;
};

}  // namespace plexus::agent
