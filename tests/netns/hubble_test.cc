// Hubble's observer API end to end: a C++ client generated from api/observer/observer.proto talks to a real agent on
// its Hubble socket (and over TCP), and a real flow between two pods arrives with Hubble's fields.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <fstream>
#include <thread>

#include "node_fixture.h"
#include "observer/observer.grpc.pb.h"
#include "peer/peer.grpc.pb.h"

using namespace plexus::testing;

namespace {

std::string hubbleSocket(const NodeFixture& node) { return node.dir() + "/hubble.sock"; }

std::unique_ptr<observer::Observer::Stub> hubbleStub(const NodeFixture& node) {
  auto channel = grpc::CreateChannel("unix:" + hubbleSocket(node), grpc::InsecureChannelCredentials());
  REQUIRE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)));
  return observer::Observer::NewStub(channel);
}

void deadline(grpc::ClientContext* ctx, int seconds = 10) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

// GetFlows without follow: every response's flow; REQUIREs an OK status.
std::vector<flow::Flow> getFlows(observer::Observer::Stub& stub, const observer::GetFlowsRequest& req) {
  grpc::ClientContext ctx;
  deadline(&ctx);
  auto reader = stub.GetFlows(&ctx, req);
  std::vector<flow::Flow> out;
  observer::GetFlowsResponse r;
  while (reader->Read(&r)) {
    CHECK(r.node_name() == r.flow().node_name());
    CHECK(r.time().seconds() == r.flow().time().seconds());
    out.push_back(r.flow());
  }
  grpc::Status s = reader->Finish();
  INFO(s.error_message());
  REQUIRE(s.ok());
  return out;
}

// observer.Observer/ServerStatus with curl inside the node (gRPC over HTTP/2: an empty request is a 5-byte frame).
// `how`: curl's flags for the connection, then the URL's scheme and authority. Fills `status` on HTTP 200.
CommandResult curlServerStatus(NodeFixture& node, const std::string& how, observer::ServerStatusResponse* status) {
  std::string frame = node.dir() + "/empty.grpc";
  std::ofstream(frame, std::ios::binary).write("\0\0\0\0\0", 5);
  std::string out = node.dir() + "/status.grpc";
  std::filesystem::remove(out);
  auto r = node.node().exec("curl -s -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @" + frame +
                            " -o " + out + " -w '%{http_code}' " + how + "/observer.Observer/ServerStatus");
  if (r.exit_code == 0 && r.out == "200") {
    std::ifstream in(out, std::ios::binary);
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(body.size() > 5);
    REQUIRE(status->ParseFromString(body.substr(5)));
  }
  return r;
}

// A CA, and under it a server certificate for Cilium's Hubble names (*.default.hubble-grpc.cilium.io) and a client
// certificate, as PEM files `<prefix>ca.pem`, `<prefix>server.pem|key`, `<prefix>client.pem|key` in dir.
void makeCertificates(const std::string& dir, const std::string& prefix) {
  std::string p = dir + "/" + prefix;
  std::string script =
      "set -e; k='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
      "openssl req -x509 $k -keyout " + p + "ca.key -out " + p + "ca.pem -days 2 -subj /CN=" + prefix + "hubble-ca\n"
      "echo 'subjectAltName=DNS:*.default.hubble-grpc.cilium.io' > " + p + "server.ext\n"
      "echo 'extendedKeyUsage=clientAuth' > " + p + "client.ext\n"
      "for who in server client; do\n"
      "  openssl req $k -keyout " + p + "$who.key -out " + p + "$who.csr -subj /CN=$who\n"
      "  openssl x509 -req -in " + p + "$who.csr -CA " + p + "ca.pem -CAkey " + p + "ca.key -CAcreateserial -days 2"
      " -extfile " + p + "$who.ext -out " + p + "$who.pem\n"
      "done\n";
  auto r = runCommand({"bash", "-c", script});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

}  // namespace

TEST_CASE(
    "the Hubble API serves a real pod-to-pod flow with Hubble's fields, "
    "filters, status and nodes",
    "[netns][observe][hubble]") {
  NodeFixture node("10.207.0.0/24");
  Pod web = node.addPod("web");
  Pod api = node.addPod("api");
  requireTcpExchange(web, api, 8080);
  auto stub = hubbleStub(node);

  observer::GetFlowsRequest req;
  req.set_number(50);
  auto* allow = req.add_whitelist();
  allow->add_source_pod("default/web");
  allow->add_destination_pod("default/api");
  allow->add_destination_port("8080");
  allow->add_verdict(flow::FORWARDED);
  auto flows = getFlows(*stub, req);
  REQUIRE_FALSE(flows.empty());
  const flow::Flow& f = flows.front();  // the oldest: the SYN
  INFO(f.DebugString());
  CHECK(f.verdict() == flow::FORWARDED);
  CHECK(f.type() == flow::L3_L4);
  CHECK(f.source().pod_name() == "web");
  CHECK(f.source().namespace_() == "default");
  CHECK(f.source().cluster_name() == "default");
  CHECK(f.source().id() != 0);
  CHECK(f.source().identity() != 0);  // 5 (init) until the pod has labels, as in Cilium
  CHECK(f.destination().pod_name() == "api");
  CHECK(f.ip().source() == web.ip);
  CHECK(f.ip().destination() == api.ip);
  CHECK(f.ip().ipversion() == flow::IPv4);
  REQUIRE(f.l4().has_tcp());
  CHECK(f.l4().tcp().destination_port() == 8080);
  CHECK(f.l4().tcp().flags().syn());
  CHECK(f.event_type().type() == 4);
  CHECK(f.event_type().sub_type() == 0);
  CHECK(f.trace_observation_point() == flow::TO_ENDPOINT);  // same node: delivered to the endpoint
  CHECK(f.traffic_direction() == flow::EGRESS);
  REQUIRE(f.has_is_reply());
  CHECK_FALSE(f.is_reply().value());
  CHECK(f.uuid().size() == 36);
  CHECK(f.interface().name() == web.host_veth);
  CHECK(f.interface().index() != 0);
  CHECK(f.summary().rfind("TCP Flags: SYN", 0) == 0);
  CHECK(f.node_name() == node.node().name());
  CHECK(f.time().seconds() > 1600000000);

  // The reply direction: api's answers, is_reply set, matched by Hubble's reply filter.
  observer::GetFlowsRequest replies;
  replies.set_number(50);
  auto* r = replies.add_whitelist();
  r->add_source_pod("default/api");
  r->add_reply(true);
  auto back = getFlows(*stub, replies);
  REQUIRE_FALSE(back.empty());
  for (const auto& b : back) {
    CHECK(b.is_reply().value());
    CHECK(b.l4().tcp().source_port() == 8080);
  }

  // since/until bound the time: an hour ago until now keeps them; from an hour ahead, nothing.
  auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  observer::GetFlowsRequest window = req;
  window.mutable_since()->set_seconds(now.count() - 3600);
  window.mutable_until()->set_seconds(now.count() + 60);
  CHECK(getFlows(*stub, window).size() == flows.size());
  window.mutable_since()->set_seconds(now.count() + 3600);
  window.clear_until();
  CHECK(getFlows(*stub, window).empty());

  // Blacklist minus: the same whitelist without port 8080 leaves nothing.
  req.add_blacklist()->add_destination_port("8080");
  CHECK(getFlows(*stub, req).empty());

  // A drop: a spoofed source, with Hubble's reason number and event type.
  REQUIRE(web.netns->exec("ip addr add 10.207.0.250/32 dev eth0").exit_code == 0);
  web.netns->exec("ping -c1 -W1 -I 10.207.0.250 " + api.ip);
  observer::GetFlowsRequest drops;
  drops.set_number(10);
  auto* d = drops.add_whitelist();
  d->add_verdict(flow::DROPPED);
  d->add_event_type()->set_type(1);
  auto dropped = getFlows(*stub, drops);
  REQUIRE_FALSE(dropped.empty());
  const flow::Flow& spoof = dropped.back();
  INFO(spoof.DebugString());
  CHECK(spoof.drop_reason_desc() == flow::INVALID_SOURCE_IP);
  CHECK(spoof.drop_reason() == 132);
  CHECK(spoof.event_type().sub_type() == 132);
  CHECK(spoof.ip().source() == "10.207.0.250");
  CHECK(spoof.l4().has_icmpv4());  // a spoofed packet is refused before its L4 header is read: no ICMP type

  // A ping: the echo request and its reply (the first packet of the reply direction) carry their ICMP types.
  REQUIRE(web.netns->exec("ping -c1 -W2 " + api.ip).exit_code == 0);
  observer::GetFlowsRequest pings;
  pings.set_number(10);
  auto* p = pings.add_whitelist();
  p->add_protocol("icmp");
  p->add_verdict(flow::FORWARDED);
  auto echo = getFlows(*stub, pings);
  REQUIRE(echo.size() >= 2);
  const flow::Flow& request = echo[echo.size() - 2];
  CHECK(request.l4().icmpv4().type() == 8);
  CHECK(request.summary() == "ICMPv4 EchoRequest");
  CHECK(echo.back().l4().icmpv4().type() == 0);
  CHECK(echo.back().summary() == "ICMPv4 EchoReply");
  CHECK(echo.back().is_reply().value());

  // ServerStatus and GetNodes describe this agent's ring.
  grpc::ClientContext sctx;
  deadline(&sctx);
  observer::ServerStatusResponse status;
  REQUIRE(stub->ServerStatus(&sctx, {}, &status).ok());
  CHECK(status.max_flows() == 4096);
  CHECK(status.num_flows() >= flows.size() + back.size() + 1);
  CHECK(status.seen_flows() >= status.num_flows());
  CHECK(status.uptime_ns() > 0);
  CHECK(status.num_connected_nodes().value() == 1);
  CHECK(status.num_unavailable_nodes().value() == 0);
  CHECK_FALSE(status.version().empty());
  CHECK(status.flows_rate() > 0);  // this test's flows came within the last minute
  auto cli_status = nlohmann::json::parse(node.cli({"status", "-o", "json"}).out, nullptr, false);
  CHECK(cli_status["hubble"].value("flows_per_second", 0.0) > 0);  // the same rate, as cilium status shows it

  grpc::ClientContext nctx;
  deadline(&nctx);
  observer::GetNodesResponse nodes;
  REQUIRE(stub->GetNodes(&nctx, {}, &nodes).ok());
  REQUIRE(nodes.nodes_size() == 1);
  CHECK(nodes.nodes(0).name() == node.node().name());
  CHECK(nodes.nodes(0).state() == relay::NODE_CONNECTED);
  CHECK(nodes.nodes(0).max_flows() == 4096);
  CHECK(nodes.nodes(0).address() == "unix://" + hubbleSocket(node));

  // GetNamespaces (hubble list namespaces): the namespaces of the pods with flows, in the default cluster.
  grpc::ClientContext nsctx;
  deadline(&nsctx);
  observer::GetNamespacesResponse namespaces;
  REQUIRE(stub->GetNamespaces(&nsctx, {}, &namespaces).ok());
  REQUIRE(namespaces.namespaces_size() == 1);
  CHECK(namespaces.namespaces(0).cluster() == "default");
  CHECK(namespaces.namespaces(0).namespace_() == "default");

  // What Plexus does not implement says so.
  grpc::ClientContext dctx;
  deadline(&dctx);
  auto debug = stub->GetDebugEvents(&dctx, {});
  observer::GetDebugEventsResponse dev;
  CHECK_FALSE(debug->Read(&dev));
  grpc::Status unimplemented = debug->Finish();
  CHECK(unimplemented.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  CHECK_FALSE(unimplemented.error_message().empty());

  // A malformed filter is INVALID_ARGUMENT naming the value.
  observer::GetFlowsRequest bad;
  bad.add_whitelist()->add_source_ip("10.0.0.999");
  grpc::ClientContext bctx;
  deadline(&bctx);
  auto bad_reader = stub->GetFlows(&bctx, bad);
  observer::GetFlowsResponse ignored;
  while (bad_reader->Read(&ignored)) {
  }
  grpc::Status invalid = bad_reader->Finish();
  CHECK(invalid.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(invalid.error_message().find("10.0.0.999") != std::string::npos);
}

namespace {

// GetAgentEvents without follow: every event; REQUIREs an OK status.
std::vector<flow::AgentEvent> getAgentEvents(observer::Observer::Stub& stub, const observer::GetAgentEventsRequest& req) {
  grpc::ClientContext ctx;
  deadline(&ctx);
  auto reader = stub.GetAgentEvents(&ctx, req);
  std::vector<flow::AgentEvent> out;
  observer::GetAgentEventsResponse r;
  while (reader->Read(&r)) {
    CHECK_FALSE(r.node_name().empty());
    CHECK(r.time().seconds() > 0);
    out.push_back(r.agent_event());
  }
  grpc::Status st = reader->Finish();
  INFO(st.error_message());
  REQUIRE(st.ok());
  return out;
}

const flow::AgentEvent* findEvent(const std::vector<flow::AgentEvent>& events, flow::AgentEventType type,
                                  const std::function<bool(const flow::AgentEvent&)>& also = {}) {
  for (const auto& e : events) {
    if (e.type() == type && (!also || also(e))) {
      return &e;
    }
  }
  return nullptr;
}

}  // namespace

TEST_CASE(
    "Hubble GetAgentEvents reports the agent's start, endpoints, ipcache entries, policies and services, "
    "and follows new ones",
    "[netns][observe][hubble]") {
  NodeFixture node("10.207.16.0/24");
  Pod web = node.addPod("web");
  const std::string manifest = R"(apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ae-web, namespace: default}
specs:
- endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
- endpointSelector: {matchLabels: {app: web}}
  egress: [{toEntities: [world]}]
---
apiVersion: v1
kind: Service
metadata: {name: ae-svc, namespace: default}
spec: {clusterIP: 10.96.70.7, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ae-svc-1, namespace: default, labels: {kubernetes.io/service-name: ae-svc}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [)" + web.ip + R"(], conditions: {ready: true}}]
)";
  node.apply(manifest);
  auto stub = hubbleStub(node);

  observer::GetAgentEventsRequest all;  // no number, no follow: every stored event
  auto events = getAgentEvents(*stub, all);
  REQUIRE_FALSE(events.empty());
  const auto* started = findEvent(events, flow::AGENT_STARTED);  // after the ipcache entries written while starting
  REQUIRE(started != nullptr);
  CHECK(started->agent_start().time().seconds() > 0);

  const auto* created = findEvent(events, flow::ENDPOINT_CREATED,
                                  [](const flow::AgentEvent& e) { return e.endpoint_update().pod_name() == "web"; });
  REQUIRE(created != nullptr);
  CHECK(created->endpoint_update().namespace_() == "default");
  CHECK(created->endpoint_update().id() > 0);

  const auto* ipcache = findEvent(events, flow::IPCACHE_UPSERTED, [&](const flow::AgentEvent& e) {
    return e.ipcache_update().cidr() == web.ip + "/32";
  });
  REQUIRE(ipcache != nullptr);
  CHECK(ipcache->ipcache_update().identity() > 0);

  // The CNP selects web: its policy was regenerated (installed) after the policy came.
  CHECK(findEvent(events, flow::ENDPOINT_REGENERATE_SUCCESS, [&](const flow::AgentEvent& e) {
          return e.endpoint_regenerate().id() == created->endpoint_update().id() && e.endpoint_regenerate().error().empty();
        }) != nullptr);

  const auto* policy = findEvent(events, flow::POLICY_UPDATED);
  REQUIRE(policy != nullptr);
  INFO(policy->DebugString());
  CHECK(policy->policy_update().rule_count() == 2);
  CHECK(policy->policy_update().revision() > 1);
  auto labels = policy->policy_update().labels();
  CHECK(std::find(labels.begin(), labels.end(), "k8s:io.cilium.k8s.policy.name=ae-web") != labels.end());
  CHECK(std::find(labels.begin(), labels.end(), "k8s:io.cilium.k8s.policy.namespace=default") != labels.end());

  const auto* service = findEvent(events, flow::SERVICE_UPSERTED);
  REQUIRE(service != nullptr);
  INFO(service->DebugString());
  CHECK(service->service_upsert().name() == "ae-svc");
  CHECK(service->service_upsert().namespace_() == "default");
  CHECK(service->service_upsert().frontend_address().ip() == "10.96.70.7");
  CHECK(service->service_upsert().frontend_address().port() == 80);
  CHECK(service->service_upsert().type() == "ClusterIP");
  REQUIRE(service->service_upsert().backend_addresses_size() == 1);
  CHECK(service->service_upsert().backend_addresses(0).ip() == web.ip);
  CHECK(service->service_upsert().backend_addresses(0).port() == 8080);
  CHECK(service->service_upsert().ext_traffic_policy() == "Cluster");

  // The last two only, oldest first; the first one only.
  observer::GetAgentEventsRequest last2;
  last2.set_number(2);
  auto tail = getAgentEvents(*stub, last2);
  REQUIRE(tail.size() == 2);
  CHECK(tail[1].SerializeAsString() == events.back().SerializeAsString());
  observer::GetAgentEventsRequest first1;
  first1.set_number(1);
  first1.set_first(true);
  auto head = getAgentEvents(*stub, first1);
  REQUIRE(head.size() == 1);
  CHECK(head[0].SerializeAsString() == events.front().SerializeAsString());

  // Deleting them (plexus delete -f) is reported too: the policy with its rule count, the frontend by its id.
  std::string path = node.dir() + "/agent-events.yaml";
  std::ofstream(path) << manifest;
  auto removed = node.cli({"delete", "-f", path});
  INFO(removed.out << removed.err);
  REQUIRE(removed.exit_code == 0);
  auto after = getAgentEvents(*stub, all);
  const auto* policy_gone = findEvent(after, flow::POLICY_DELETED);
  REQUIRE(policy_gone != nullptr);
  CHECK(policy_gone->policy_update().rule_count() == 2);
  CHECK(policy_gone->policy_update().revision() > policy->policy_update().revision());
  CHECK(findEvent(after, flow::SERVICE_DELETED, [&](const flow::AgentEvent& e) {
          return e.service_delete().id() == service->service_upsert().id();
        }) != nullptr);

  // follow: only what happens after the call: a new pod's ENDPOINT_CREATED, its ipcache entry.
  grpc::ClientContext fctx;
  deadline(&fctx, 20);
  observer::GetAgentEventsRequest follow;
  follow.set_follow(true);
  auto reader = stub->GetAgentEvents(&fctx, follow);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the call is in place before the pod comes
  Pod late = node.addPod("late");
  observer::GetAgentEventsResponse r;
  bool saw_created = false, saw_old = false;
  for (int i = 0; i < 100 && !saw_created && reader->Read(&r); ++i) {
    saw_old = saw_old || r.agent_event().type() == flow::AGENT_STARTED;
    saw_created = r.agent_event().type() == flow::ENDPOINT_CREATED && r.agent_event().endpoint_update().pod_name() == "late";
  }
  fctx.TryCancel();
  CHECK(saw_created);
  CHECK_FALSE(saw_old);

  // A malformed window is INVALID_ARGUMENT.
  observer::GetAgentEventsRequest bad;
  bad.set_first(true);
  bad.set_follow(true);
  grpc::ClientContext bctx;
  deadline(&bctx);
  auto bad_reader = stub->GetAgentEvents(&bctx, bad);
  observer::GetAgentEventsResponse ignored;
  while (bad_reader->Read(&ignored)) {
  }
  CHECK(bad_reader->Finish().error_code() == grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_CASE(
    "Hubble GetFlows with follow streams only new matching flows while "
    "the agent keeps working",
    "[netns][observe][hubble]") {
  NodeFixture node("10.208.0.0/24");
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  requireTcpExchange(a, b,
                     9098);  // stored before the follower starts: not replayed
  auto stub = hubbleStub(node);
  observer::GetFlowsRequest req;
  req.set_follow(true);
  req.add_whitelist()->add_destination_pod("default/b");
  grpc::ClientContext ctx;
  deadline(&ctx, 20);  // bounded: the stream never ends on its own
  auto reader = stub->GetFlows(&ctx, req);
  std::vector<flow::Flow> got;
  std::thread follower([&] {
    observer::GetFlowsResponse r;
    while (reader->Read(&r)) {
      got.push_back(r.flow());
      if (r.flow().l4().tcp().destination_port() == 9099) {
        ctx.TryCancel();
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  // While the follower waits, the agent's reconcile thread still serves: a pod comes and traffic flows.
  Pod c = node.addPod("c");
  requireTcpExchange(a, b, 9099);
  follower.join();
  (void)reader->Finish();
  REQUIRE_FALSE(got.empty());
  bool new_flow = false;
  for (const auto& f : got) {
    CHECK(f.l4().tcp().destination_port() != 9098);
    CHECK(f.destination().pod_name() == "b");
    new_flow = new_flow || f.l4().tcp().destination_port() == 9099;
  }
  CHECK(new_flow);
  CHECK_FALSE(c.ip.empty());
}

TEST_CASE("--hubble-listen-address serves the Hubble API over TCP too", "[netns][observe][hubble]") {
  // Port 4244 (Cilium's hubble.listenAddress) inside the node's own namespace: no other test can hold it.
  NodeFixture node("10.209.0.0/24", {"--hubble-listen-address", ":4244", "--hubble-disable-tls", "true"});
  observer::ServerStatusResponse status;
  auto r = curlServerStatus(node, "--http2-prior-knowledge http://127.0.0.1:4244", &status);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "200");
  CHECK(status.max_flows() == 4096);
  CHECK(status.num_connected_nodes().value() == 1);
  auto bad = runCommand({agentBinary(), "--hubble-listen-address", "4244", "--print-config"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--hubble-listen-address") != std::string::npos);
  // Without --hubble-disable-tls, the TCP listener needs its certificate and key, as Cilium's.
  auto no_cert = runCommand({agentBinary(), "--hubble-listen-address", ":4244", "--print-config"});
  CHECK(no_cert.exit_code != 0);
  CHECK(no_cert.err.find("--hubble-tls-cert-file") != std::string::npos);
}

TEST_CASE("Hubble over TCP is TLS by default: mutual with a client CA, and a rotated certificate is served",
          "[netns][observe][hubble][tls]") {
  TempDir certs;
  makeCertificates(certs.path(), "");
  std::string c = certs.path() + "/";
  NodeFixture node("10.203.0.0/24", {"--hubble-listen-address", ":4244", "--hubble-tls-cert-file", c + "server.pem",
                                     "--hubble-tls-key-file", c + "server.key", "--hubble-tls-client-ca-files",
                                     c + "ca.pem"});
  // The node's name as a Hubble TLS server name, resolved to the listener (Relay dials it so).
  std::string server_name = node.node().name() + ".default.hubble-grpc.cilium.io";
  std::string tls = "--http2 --resolve " + server_name + ":4244:127.0.0.1 --cacert " + c + "ca.pem ";
  std::string client = "--cert " + c + "client.pem --key " + c + "client.key ";
  std::string url = "https://" + server_name + ":4244";

  observer::ServerStatusResponse status;
  auto ok = curlServerStatus(node, tls + client + url, &status);
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out == "200");
  CHECK(status.max_flows() == 4096);
  // Without a client certificate, or in plaintext, there is no answer.
  CHECK(curlServerStatus(node, tls + url, &status).out != "200");
  CHECK(curlServerStatus(node, "--http2-prior-knowledge http://127.0.0.1:4244", &status).out != "200");
  // Another name than the certificate's fails the client's check.
  CHECK(curlServerStatus(node, tls + client + "https://127.0.0.1:4244", &status).out != "200");

  // GetNodes and the peer service say so: TLS, and the name to check the certificate against.
  auto stub = hubbleStub(node);
  grpc::ClientContext nctx;
  deadline(&nctx);
  observer::GetNodesResponse nodes;
  REQUIRE(stub->GetNodes(&nctx, {}, &nodes).ok());
  REQUIRE(nodes.nodes_size() == 1);
  CHECK(nodes.nodes(0).tls().enabled());
  CHECK(nodes.nodes(0).tls().server_name() == server_name);
  auto channel = grpc::CreateChannel("unix:" + hubbleSocket(node), grpc::InsecureChannelCredentials());
  auto peers = peer::Peer::NewStub(channel);
  grpc::ClientContext pctx;
  deadline(&pctx);
  auto reader = peers->Notify(&pctx, {});
  peer::ChangeNotification me;
  REQUIRE(reader->Read(&me));
  CHECK(me.tls().server_name() == server_name);
  pctx.TryCancel();
  (void)reader->Finish();

  // A new certificate from another CA written over the files: served without a restart (gRPC re-reads them every
  // few seconds), so a client that trusts only the new CA gets through, and the old client certificate no longer.
  makeCertificates(certs.path(), "new-");
  for (const char* f : {"server.pem", "server.key", "ca.pem"}) {
    std::filesystem::copy_file(c + "new-" + f, c + f, std::filesystem::copy_options::overwrite_existing);
  }
  std::string tls_new = "--http2 --resolve " + server_name + ":4244:127.0.0.1 --cacert " + c + "new-ca.pem ";
  std::string client_new = "--cert " + c + "new-client.pem --key " + c + "new-client.key ";
  bool rotated = false;
  for (int i = 0; i < 30 && !rotated; ++i) {  // up to 15 s; the agent looks every 5 s
    rotated = curlServerStatus(node, tls_new + client_new + url, &status).out == "200";
    if (!rotated) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  CHECK(rotated);
  CHECK(curlServerStatus(node, tls_new + client + url, &status).out != "200");

  // A certificate file that holds no PEM block stops the agent's start with a message naming it.
  std::ofstream(c + "junk.pem") << "not a certificate\n";
  node.agent().stop();
  node.agent().setExtraArgs({"--hubble-listen-address", ":4244", "--hubble-tls-cert-file", c + "junk.pem",
                             "--hubble-tls-key-file", c + "server.key"});
  CHECK_FALSE(node.agent().start(std::chrono::seconds(10)));
  CHECK(node.agent().log().find("--hubble-tls-cert-file " + c + "junk.pem: no PEM block in it") != std::string::npos);
}

TEST_CASE("Hubble's peer service announces this node, then a node that joins", "[netns][observe][hubble]") {
  NodeFixture node("10.206.0.0/24");
  auto channel = grpc::CreateChannel("unix:" + hubbleSocket(node), grpc::InsecureChannelCredentials());
  REQUIRE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)));
  auto stub = peer::Peer::NewStub(channel);
  grpc::ClientContext ctx;
  deadline(&ctx, 20);  // bounded: Notify never ends on its own
  auto reader = stub->Notify(&ctx, {});
  peer::ChangeNotification first;
  REQUIRE(reader->Read(&first));
  CHECK(first.name() == node.node().name());
  CHECK(first.type() == peer::PEER_ADDED);
  CHECK(first.address() == "unix://" + hubbleSocket(node));  // no InternalIP known, no TCP listener
  node.apply(
      "apiVersion: v1\nkind: Node\nmetadata: {name: other}\nspec: {podCIDR: 10.205.0.0/24}\n"
      "status:\n  addresses: [{type: InternalIP, address: 192.0.2.77}]\n");
  peer::ChangeNotification next;
  REQUIRE(reader->Read(&next));
  CHECK(next.name() == "other");
  CHECK(next.type() == peer::PEER_ADDED);
  CHECK(next.address() == "192.0.2.77:4244");
  ctx.TryCancel();
  (void)reader->Finish();
}

TEST_CASE("events the full ring refuses while following arrive as Hubble's lost_events", "[netns][observe][hubble]") {
  NodeFixture node("10.204.0.0/24", {"--events-ring-size", "4096", "--monitor-aggregation", "none"});
  Pod a = node.addPod("a");
  Pod b = node.addPod("b");
  auto stub = hubbleStub(node);
  observer::GetFlowsRequest req;
  req.set_follow(true);
  req.add_whitelist()->add_destination_port("7777");
  grpc::ClientContext ctx;
  deadline(&ctx, 20);
  auto reader = stub->GetFlows(&ctx, req);
  uint64_t lost = 0;
  std::thread follower([&] {
    observer::GetFlowsResponse r;
    while (reader->Read(&r)) {
      if (r.has_lost_events()) {
        CHECK(r.lost_events().source() == flow::PERF_EVENT_RING_BUFFER);
        CHECK(r.node_name() == node.node().name());
        lost = r.lost_events().num_events_lost();
        ctx.TryCancel();
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  // Bounded: 20,000 datagrams, far more events than a 4 KiB ring holds between two reads.
  int srv = socketInNetns(b.netns->path(), SOCK_DGRAM);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(7777);
  REQUIRE(bind(srv, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  inet_pton(AF_INET, b.ip.c_str(), &sa.sin_addr);
  int u = socketInNetns(a.netns->path(), SOCK_DGRAM);
  for (int i = 0; i < 20000; ++i) {
    (void)sendto(u, "flood", 5, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  }
  close(u);
  close(srv);
  follower.join();
  (void)reader->Finish();
  CHECK(lost > 0);
}

TEST_CASE("--hubble-metrics-server serves Hubble's flow metrics while traffic flows and a policy drops",
          "[netns][observe][hubble][metrics]") {
  // Port 9965 (Cilium's hubble.metrics.port) inside the node's own namespace: no other test can hold it.
  NodeFixture node("10.214.0.0/24", {"--hubble-metrics-server", "127.0.0.1:9965", "--hubble-metrics",
                                     "dns drop tcp flow port-distribution icmp flows-to-world:any-drop;port "
                                     "httpV2:labelsContext=source_ip"});
  Pod web = node.addPod("web", "hm");
  Pod client = node.addPod("client", "hm");
  std::string path = node.dir() + "/p.yaml";
  std::ofstream(path) << R"(apiVersion: v1
kind: Pod
metadata: {name: web, namespace: hm, labels: {app: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: hm, labels: {app: client}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: hm}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
)";
  auto applied = node.cli({"apply", "-f", path});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);
  requireTcpExchange(client, web, 8080);
  CHECK(tcpConnect(client.netns->path(), web.ip, 8081, std::chrono::milliseconds(500)) < 0);  // POLICY_DENIED
  CHECK(ping(*web.netns, client.ip));  // client is selected by no policy: the echo and its reply pass

  // Flows are counted as the reader decodes them, a few milliseconds after the packets: scrape until they are in
  // (bounded), then check every series.
  auto scrape = [&] { return node.node().exec("curl -sf http://127.0.0.1:9965/metrics").out; };
  const std::string denied = "hubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\"}";
  const std::string echo = "hubble_icmp_total{family=\"IPv4\",type=\"EchoRequest\"}";
  std::string m;
  for (int i = 0; i < 100 && (metric(m, denied) < 1 || metric(m, echo) < 1); ++i) {
    if (i > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    m = scrape();
  }
  INFO(m);
  CHECK(m.find("# TYPE hubble_flows_processed_total counter") != std::string::npos);
  CHECK(metric(m,
               "hubble_flows_processed_total{protocol=\"TCP\",subtype=\"to-endpoint\",type=\"Trace\","
               "verdict=\"FORWARDED\"}") >= 2);  // the SYN and the SYN-ACK at least
  CHECK(metric(m, "hubble_flows_processed_total{protocol=\"TCP\",subtype=\"\",type=\"Drop\",verdict=\"DROPPED\"}") >=
        1);
  CHECK(metric(m, denied) >= 1);
  CHECK(metric(m, "hubble_tcp_flags_total{family=\"IPv4\",flag=\"SYN\"}") >= 1);
  CHECK(metric(m, "hubble_tcp_flags_total{family=\"IPv4\",flag=\"SYN-ACK\"}") >= 1);
  CHECK(metric(m, "hubble_port_distribution_total{port=\"8080\",protocol=\"TCP\"}") >= 1);
  CHECK(metric(m, echo) >= 1);
  CHECK(metric(m,
               "hubble_flows_processed_total{protocol=\"ICMPv4\",subtype=\"to-endpoint\",type=\"Trace\","
               "verdict=\"FORWARDED\"}") >= 1);
  CHECK(metric(m, "hubble_port_distribution_total{port=\"0\",protocol=\"ICMPv4\"}") >= 1);
  CHECK(m.find("port=\"8081\"") == std::string::npos);  // dropped flows are not in the port distribution
  CHECK(m.find("hubble_dns") == std::string::npos);
  // What the agent could not count is named in its log.
  std::string log = node.agent().log();
  CHECK(log.find("--hubble-metrics: dns: not provided") != std::string::npos);
  CHECK(log.find("httpV2: not provided") != std::string::npos);

  // The agent's own /metrics: the same drop under Cilium's name and reason text, endpoint states and identity
  // types as Cilium labels them.
  std::string agent = node.node().exec("curl -sf http://127.0.0.1:9962/metrics").out;
  INFO(agent);
  CHECK(metric(agent, "cilium_drop_count_total{direction=\"INGRESS\",reason=\"Policy denied\"}") >= 1);
  CHECK(metric(agent, "plexus_drop_count_total{direction=\"INGRESS\",reason=\"POLICY_DENIED\"}") >= 1);
  CHECK(metric(agent, "cilium_forward_count_total{direction=\"EGRESS\"}") >= 1);
  CHECK(metric(agent, "cilium_endpoint") == 2);
  CHECK(metric(agent, "cilium_endpoint_state{endpoint_state=\"ready\"}") == 2);
  CHECK(metric(agent, "cilium_identity{type=\"reserved\"}") == 8);
  CHECK(metric(agent, "cilium_identity{type=\"cluster_local\"}") == 2);  // web's and client's
  CHECK(metric(agent, "cilium_policy_endpoint_enforcement_status{enforcement=\"ingress\"}") == 1);  // web
  CHECK(metric(agent, "cilium_policy_endpoint_enforcement_status{enforcement=\"none\"}") == 1);     // client

  // An unknown metric name is refused, naming it.
  auto bad = runCommand({agentBinary(), "--hubble-metrics", "flow dorp", "--print-config"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("\"dorp\"") != std::string::npos);
}
