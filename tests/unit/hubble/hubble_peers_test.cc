// The nodes as Hubble peers, for Hubble Relay.
#include <catch2/catch.hpp>

#include "plexus/agent/hubble_peers.h"

using namespace plexus;
using namespace plexus::agent;

namespace {
node::Node nodeAt(const std::string& name, std::vector<std::string> ips) {
  node::Node n;
  n.name = name;
  for (const auto& ip : ips) {
    n.internal_ips.push_back(*Ipv4::parse(ip));
  }
  return n;
}
}  // namespace

TEST_CASE("peers are the nodes at their first InternalIP and the listener's port; this node always", "[unit][hubble]") {
  HubblePeerSelf self{"a", "default", ":4245", "/run/plexus/hubble.sock"};
  auto peers =
      hubblePeers({nodeAt("a", {"172.30.0.10"}), nodeAt("b", {"172.30.0.11", "10.0.0.1"}), nodeAt("c", {})}, self);
  CHECK(peers == HubblePeers{{"a", "172.30.0.10:4245"}, {"b", "172.30.0.11:4245"}});
  // Hubble's port without a listener; this node by its unix socket when no InternalIP is known.
  self.listen_address = "";
  CHECK(hubblePeers({nodeAt("b", {"172.30.0.11"})}, self) ==
        HubblePeers{{"a", "unix:///run/plexus/hubble.sock"}, {"b", "172.30.0.11:4244"}});
  self.listen_address = "127.0.0.1:4244";
  CHECK(hubblePeers({}, self) == HubblePeers{{"a", "127.0.0.1:4244"}});
  // A cluster other than "default" prefixes the names, as Hubble's.
  self.cluster_name = "east";
  CHECK(hubblePeers({nodeAt("b", {"172.30.0.11"})}, self).count("east/b") == 1);
}

TEST_CASE("peer changes: deleted, added and updated by name; none for an unchanged list", "[unit][hubble]") {
  HubblePeers before{{"a", "10.0.0.1:4244"}, {"b", "10.0.0.2:4244"}};
  HubblePeers after{{"a", "10.0.0.9:4244"}, {"c", "10.0.0.3:4244"}};
  HubblePeerSelf self{"a", "default", ":4244", "/run/plexus/hubble.sock"};
  auto changes = peerChanges(before, after, self);
  REQUIRE(changes.size() == 3);
  CHECK(changes[0].name() == "b");
  CHECK(changes[0].type() == peer::PEER_DELETED);
  CHECK(changes[1].name() == "a");
  CHECK(changes[1].type() == peer::PEER_UPDATED);
  CHECK(changes[1].address() == "10.0.0.9:4244");
  CHECK(changes[2].name() == "c");
  CHECK(changes[2].type() == peer::PEER_ADDED);
  CHECK_FALSE(changes[2].has_tls());
  CHECK(peerChanges(after, after, self).empty());
  CHECK(peerChanges({}, after, self).size() == 2);
}

TEST_CASE("with TLS, each peer carries the server name its certificate is checked against", "[unit][hubble]") {
  CHECK(hubbleTlsServerName("node-1", "default") == "node-1.default.hubble-grpc.cilium.io");
  CHECK(hubbleTlsServerName("ip-10-0-0-1.ec2.internal", "east") ==
        "ip-10-0-0-1-ec2-internal.east.hubble-grpc.cilium.io");
  HubblePeerSelf self{"a", "east", ":4244", "/run/plexus/hubble.sock", true};
  auto changes = peerChanges({}, hubblePeers({nodeAt("b.lab", {"10.0.0.2"})}, self), self);
  REQUIRE(changes.size() == 2);
  CHECK(changes[1].name() == "east/b.lab");
  REQUIRE(changes[1].has_tls());
  CHECK(changes[1].tls().server_name() == "b-lab.east.hubble-grpc.cilium.io");
}
