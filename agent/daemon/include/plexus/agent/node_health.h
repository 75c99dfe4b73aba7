#pragma once
// Node health, as cilium-health does it: every agent serves a TCP health port, and probes every other node's
// (a TCP connect to its InternalIP) every few seconds, on its own thread. The results are status only: nothing
// here writes a map, so the prober never waits on the reconcile thread except to read the node list.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"
#include "plexus/datapath/fd.h"

namespace plexus::agent {

struct NodeProbe {
  bool reachable = false;
  double milliseconds = 0;
  std::string message = "not probed yet";
};

class NodeHealth {
 public:
  // nodes: name -> address to probe, read at each round (other nodes only).
  NodeHealth(int port, std::function<std::map<std::string, Ipv4>()> nodes) : port_(port), nodes_(std::move(nodes)) {}
  ~NodeHealth() { stop(); }
  // Listens on the health port (every address) and starts probing.
  Status start();
  void stop();
  std::map<std::string, NodeProbe> results() const;

 private:
  void serve();
  void probeLoop();

  int port_;
  std::function<std::map<std::string, Ipv4>()> nodes_;
  datapath::UniqueFd listener_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, NodeProbe> results_;
  std::thread server_;
  std::thread prober_;
};

}  // namespace plexus::agent
