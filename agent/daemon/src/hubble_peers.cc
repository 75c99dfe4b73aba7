#include "plexus/agent/hubble_peers.h"

namespace plexus::agent {

namespace {

std::string peerName(const std::string& node, const std::string& cluster) {
  return cluster.empty() || cluster == "default" ? node : cluster + "/" + node;
}

peer::ChangeNotification change(const std::string& name, const std::string& address,
                                peer::ChangeNotificationType type) {
  peer::ChangeNotification c;
  c.set_name(name);
  c.set_address(address);
  c.set_type(type);
  return c;
}

}  // namespace

HubblePeers hubblePeers(const std::vector<node::Node>& nodes, const HubblePeerSelf& self) {
  auto colon = self.listen_address.rfind(':');
  std::string port = colon == std::string::npos ? "4244" : self.listen_address.substr(colon + 1);
  std::string host = colon == std::string::npos ? "" : self.listen_address.substr(0, colon);
  HubblePeers out;
  for (const auto& n : nodes) {
    if (!n.internal_ips.empty()) {
      out[peerName(n.name, self.cluster_name)] = n.internal_ips.front().toString() + ":" + port;
    }
  }
  std::string me = peerName(self.node_name, self.cluster_name);
  if (!out.contains(me)) {
    bool any_host = host.empty() || host == "0.0.0.0" || host == "[::]";
    out[me] = self.listen_address.empty() || any_host ? "unix://" + self.socket_path : self.listen_address;
  }
  return out;
}

std::vector<peer::ChangeNotification> peerChanges(const HubblePeers& before, const HubblePeers& after) {
  std::vector<peer::ChangeNotification> out;
  for (const auto& [name, address] : before) {
    if (!after.contains(name)) {
      out.push_back(change(name, address, peer::PEER_DELETED));
    }
  }
  for (const auto& [name, address] : after) {
    auto it = before.find(name);
    if (it == before.end()) {
      out.push_back(change(name, address, peer::PEER_ADDED));
    } else if (it->second != address) {
      out.push_back(change(name, address, peer::PEER_UPDATED));
    }
  }
  return out;
}

}  // namespace plexus::agent
