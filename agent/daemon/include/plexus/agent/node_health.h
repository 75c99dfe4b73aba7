#pragma once
// Node health, as cilium-health does it: every agent serves a TCP health port, and every few seconds, on its own
// thread, probes every other node twice: an ICMP echo to its InternalIP (is the host there?) and a TCP connect to
// its health port (is its agent there?). A node is reachable when both answer. The results are status only:
// nothing here writes a map, so the prober never waits on the reconcile thread except to read the node list.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/datapath/fd.h"
#include "plexus/node/health.h"

namespace plexus::agent {

using node::NodeProbe;

class NodeHealth {
 public:
  // nodes: name -> address to probe, read at each round (other nodes only).
  NodeHealth(int port, std::function<std::map<std::string, Ipv4>()> nodes);
  ~NodeHealth() { stop(); }
  // Listens on the health port (every address), opens the ICMP socket and starts probing. Only the listener is
  // required: without an ICMP socket (no CAP_NET_RAW and no ping socket permission) every ICMP probe fails with
  // the reason, so the nodes show as unreachable rather than silently half-checked.
  Status start();
  void stop();
  std::map<std::string, NodeProbe> results() const;
  // "raw socket", "ping socket", or why ICMP probes are off; for logs and status.
  std::string icmpMode() const;

 private:
  void serve();
  void probeLoop();
  void openIcmp();
  // One echo to every node at once, then replies until all answered or the timeout passed.
  std::map<std::string, node::ProbeResult> pingAll(const std::map<std::string, Ipv4>& nodes);

  int port_;
  std::function<std::map<std::string, Ipv4>()> nodes_;
  datapath::UniqueFd listener_;
  datapath::UniqueFd icmp_;
  bool icmp_raw_ = false;     // a raw socket delivers the IPv4 header and every echo reply of the namespace
  std::string icmp_mode_;     // see icmpMode()
  uint16_t icmp_id_ = 0;      // our echo identifier (raw sockets; a ping socket has the kernel's)
  uint16_t icmp_seq_ = 0;     // prober thread only
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, NodeProbe> results_;
  std::thread server_;
  std::thread prober_;
};

}  // namespace plexus::agent
