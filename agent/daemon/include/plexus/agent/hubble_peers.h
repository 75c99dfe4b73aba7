#pragma once
// The nodes as Hubble peers (peer.Peer/Notify, what Hubble Relay follows to find the agents): who they are, where
// their observer API listens, and what changed between two looks at the node list. Pure.

#include <map>
#include <string>
#include <vector>

#include "peer/peer.pb.h"
#include "plexus/node/node.h"

namespace plexus::agent {

// name -> address of each peer.
using HubblePeers = std::map<std::string, std::string>;

struct HubblePeerSelf {
  std::string node_name;
  std::string cluster_name;    // "default": names carry no cluster prefix, as Hubble's
  std::string listen_address;  // --hubble-listen-address ("" or ":4244" or "10.0.0.5:4244")
  std::string socket_path;     // --hubble-socket-path, this node's address when it has no TCP listener
  bool tls = false;            // the TCP listener serves TLS: peers are announced with their TLS server names
};

// The name a node's Hubble server certificate is checked against, as Cilium names it: the node name with its dots
// as dashes, then the cluster ("node-1.default.hubble-grpc.cilium.io", which the chart's certificate for
// "*.default.hubble-grpc.cilium.io" covers).
std::string hubbleTlsServerName(const std::string& node_name, const std::string& cluster_name);

// Each node's address is its first InternalIP with the port of this agent's --hubble-listen-address (the
// chart gives every agent the same one; 4244, Hubble's, without one). This node is always a peer: with no
// InternalIP known, at the listener's host or else at its unix socket.
HubblePeers hubblePeers(const std::vector<node::Node>& nodes, const HubblePeerSelf& self);

// What turns `before` into `after`: PEER_DELETED, then PEER_ADDED and PEER_UPDATED (a new address), by name. With
// self.tls, each carries the peer's TLS server name.
std::vector<peer::ChangeNotification> peerChanges(const HubblePeers& before, const HubblePeers& after,
                                                  const HubblePeerSelf& self);

}  // namespace plexus::agent
