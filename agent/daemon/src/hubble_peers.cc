#include "plexus/agent/hubble_peers.h"

#include <algorithm>

namespace plexus::agent {

namespace {

std::string peerName(const std::string& node, const std::string& cluster) {
  return cluster.empty() || cluster == "default" ? node : cluster + "/" + node;
}

peer::ChangeNotification change(const std::string& name, const std::string& address,
                                peer::ChangeNotificationType type, const HubblePeerSelf& self) {
  peer::ChangeNotification c;
  c.set_name(name);
  c.set_address(address);
  c.set_type(type);
  if (self.tls) {
    auto slash = name.find('/');  // "cluster/node"
    c.mutable_tls()->set_server_name(
        hubbleTlsServerName(slash == std::string::npos ? name : name.substr(slash + 1), self.cluster_name));
  }
  return c;
}

}  // namespace

std::string hubbleTlsServerName(const std::string& node_name, const std::string& cluster_name) {
  std::string node = node_name;
  std::replace(node.begin(), node.end(), '.', '-');
  return node + "." + (cluster_name.empty() ? "default" : cluster_name) + ".hubble-grpc.cilium.io";
}

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

std::vector<peer::ChangeNotification> peerChanges(const HubblePeers& before, const HubblePeers& after,
                                                  const HubblePeerSelf& self) {
  std::vector<peer::ChangeNotification> out;
  for (const auto& [name, address] : before) {
    if (!after.contains(name)) {
      out.push_back(change(name, address, peer::PEER_DELETED, self));
    }
  }
  for (const auto& [name, address] : after) {
    auto it = before.find(name);
    if (it == before.end()) {
      out.push_back(change(name, address, peer::PEER_ADDED, self));
    } else if (it->second != address) {
      out.push_back(change(name, address, peer::PEER_UPDATED, self));
    }
  }
  return out;
}

}  // namespace plexus::agent
