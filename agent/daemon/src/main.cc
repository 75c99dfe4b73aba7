// plexus-agent: loads the datapath, restores state, serves the gRPC API until SIGTERM/SIGINT.
// A graceful stop leaves programs attached and maps pinned: pods keep their connectivity.

#include <signal.h>
#include <sys/stat.h>

#include <time.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <tuple>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "plexus/agent/agent_state.h"
#include "plexus/agent/allocator.h"
#include "plexus/agent/config.h"
#include "plexus/agent/grpc_services.h"
#include "plexus/agent/hubble_service.h"
#include "plexus/agent/metrics_server.h"
#include "plexus/api/paths.h"

using namespace plexus;

int main(int argc, char** argv) {
  agent::initAllocator();
  bool help = false;
  auto config = agent::parseAgentConfig(argc, argv, &help);
  if (!config.ok()) {
    std::fprintf(help ? stdout : stderr, "%s\n", config.error().message.c_str());
    return help ? 0 : 2;
  }
  if (config->print_config) {
    std::printf("%s\n", agent::toJson(*config).dump(2).c_str());
    return 0;
  }
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(config->debug ? spdlog::level::debug : spdlog::level::info);

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto state = agent::startAgent(*config);
  if (!state.ok()) {
    spdlog::error("start: {}", state.error().message);
    return 1;
  }
  agent::AgentState& st = **state;

  std::error_code ec;
  std::filesystem::path sock(config->socket);
  std::filesystem::create_directories(sock.parent_path(), ec);
  std::filesystem::remove(sock, ec);  // a stale socket from a killed agent
  // Flow events: decoded and enriched on the reader thread, stored in the flow ring.
  if (st.flows) {
    timespec real{};
    timespec mono{};
    clock_gettime(CLOCK_REALTIME, &real);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    int64_t offset = (real.tv_sec - mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);
    auto started = st.events.start(st.lxc->eventsFd(), [&st, offset](const plexus_flow_event& e) {
      agent::FlowRecord flow = agent::decodeFlow(e, offset, st.flow_dir);
      flow.node_name = st.config.node_name;
      if (st.hubble_metrics) {
        st.hubble_metrics->process(flow);  // counted once, as decoded: never from the ring
      }
      st.flows->add(std::move(flow));
    });
    if (!started.ok()) {
      spdlog::error("start: {}", started.error().message);
      return 1;
    }
  }
  agent::MetricsServer metrics(st);
  agent::MetricsServer health(st);
  agent::MetricsServer kpr_health(st);
  for (auto [server, address, routes, flag] :
       {std::tuple{&metrics, config->prometheus_serve_addr, agent::HttpRoutes::kMetrics, "--prometheus-serve-addr"},
        std::tuple{&health, config->health_addr, agent::HttpRoutes::kHealth, "--health-addr"},
        std::tuple{&kpr_health, config->kpr_healthz_addr, agent::HttpRoutes::kKubeProxyHealth,
                   "--kube-proxy-replacement-healthz-bind-address"}}) {
    if (address.empty()) {
      continue;
    }
    if (auto m = server->start(address, routes, flag); !m.ok()) {
      spdlog::error("start: {}", m.error().message);
      return 1;
    }
  }

  // Hubble's flow metrics on a listener of their own, as Cilium serves them (hubble.metrics.port).
  std::unique_ptr<agent::HubbleMetricsServer> hubble_metrics;
  if (st.hubble_registry) {
    auto started = agent::HubbleMetricsServer::start(config->hubble_metrics_server, st.hubble_registry);
    if (!started.ok()) {
      spdlog::error("start: {}", started.error().message);
      return 1;
    }
    hubble_metrics = std::move(*started);
  }

  // Hubble's observer API on a server of its own (its socket, and TCP when --hubble-listen-address is set), so
  // `hubble` and Hubble Relay reach it as they reach Cilium's. Off with the flow store. Started before the main
  // socket: once the agent answers there, the Hubble API answers too.
  std::unique_ptr<agent::HubbleObserverService> hubble;
  std::unique_ptr<agent::HubblePeerService> hubble_peers;
  std::unique_ptr<grpc::Server> hubble_server;
  std::filesystem::path hubble_sock(config->hubble_socket_path);
  if (st.flows) {
    std::string tcp = config->hubble_listen_address;
    if (!tcp.empty() && tcp.front() == ':') {
      tcp = "0.0.0.0" + tcp;  // ":4244", as Cilium's hubble.listenAddress: every address
    }
    hubble = std::make_unique<agent::HubbleObserverService>(st, tcp.empty() ? "unix://" + hubble_sock.string() : tcp);
    std::filesystem::create_directories(hubble_sock.parent_path(), ec);
    std::filesystem::remove(hubble_sock, ec);
    grpc::ServerBuilder hb;
    hb.AddListeningPort(api::grpcTarget(hubble_sock), grpc::InsecureServerCredentials());
    if (!tcp.empty()) {
      auto credentials = agent::hubbleTcpCredentials(*config);
      if (!credentials.ok()) {
        spdlog::error("Hubble API: {}", credentials.error().message);
        return 1;
      }
      hb.AddListeningPort(tcp, *credentials);
    }
    hubble_peers = std::make_unique<agent::HubblePeerService>(
        st, agent::HubblePeerSelf{config->node_name, config->cluster_name, config->hubble_listen_address,
                                  hubble_sock.string(), config->hubbleTcpTls()});
    hb.RegisterService(hubble.get());
    hb.RegisterService(hubble_peers.get());
    hubble_server = hb.BuildAndStart();
    if (!hubble_server) {
      spdlog::error("Hubble API: cannot listen on {}{}", hubble_sock.string(), tcp.empty() ? "" : " and " + tcp);
      return 1;
    }
    chmod(hubble_sock.c_str(), 0660);
    spdlog::info("Hubble API on {}{}{}", hubble_sock.string(), tcp.empty() ? "" : " and " + tcp,
                 tcp.empty() ? "" : config->hubble_disable_tls ? " (plaintext)" : " (TLS)");
  }
  agent::CniService cni(st);
  agent::DaemonService daemon(st);
  agent::ObserverService observer(st);
  agent::ResourcesService resources(st);
  agent::PolicyService policy(st);
  // Hubble's API on the main socket too: `plexus observe` reads flows through it, as `hubble observe` does.
  agent::HubbleObserverService hubble_local(st, "unix://" + config->socket);
  grpc::ServerBuilder builder;
  // plexus apply sends at most 16 MiB of manifest per request; one larger document (a v1 List) may still come whole.
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.AddListeningPort(api::grpcTarget(config->socket), grpc::InsecureServerCredentials());
  builder.RegisterService(&cni);
  builder.RegisterService(&daemon);
  builder.RegisterService(&observer);
  builder.RegisterService(&resources);
  builder.RegisterService(&policy);
  builder.RegisterService(&hubble_local);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(agent::apiMetricsInterceptor(st.api_metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    spdlog::error("gRPC: cannot listen on {}", config->socket);
    return 1;
  }
  chmod(config->socket.c_str(), 0660);
  st.ready = true;
  st.notices.add({.type = agent::NotificationType::kAgentStarted});
  spdlog::info("plexus-agent ready: node {} pod CIDR {} socket {} bpf root {} allocator {}", config->node_name,
               config->pod_cidr, config->socket, config->bpf_root, agent::allocatorName());

  // Until SIGINT/SIGTERM, once a second: retries of failed writes and the host addresses on the reconcile thread
  // (which owns every map the agent writes); here, off it, the device detection's netlink dumps and, every
  // --conntrack-gc-interval seconds, the conntrack and NAT garbage collection's walk of the maps the datapath writes,
  // each handing only its outcome to the reconcile thread.
  int sig = 0;
  auto next_gc = std::chrono::steady_clock::now() + std::chrono::seconds(config->conntrack_gc_interval);
  while (sig <= 0) {
    timespec every{1, 0};
    sig = sigtimedwait(&signals, nullptr, &every);
    if (sig < 0 && errno == EAGAIN) {
      bool gc = config->conntrack_gc_interval > 0 && std::chrono::steady_clock::now() >= next_gc;
      if (gc) {
        next_gc = std::chrono::steady_clock::now() + std::chrono::seconds(config->conntrack_gc_interval);
      }
      (void)st.reconciler.submit([&st] { st.controller->tick(); });
      if (st.trim_heap.exchange(false)) {
        agent::releaseFreedMemory();
      }
      if (config->devices.empty() && st.nodes) {
        auto others = st.reconciler.submit([&st] { return st.otherNodeAddresses(); }).get();
        if (auto found = st.detectChangedDevices(others)) {
          (void)st.reconciler.submit([&st, found = std::move(*found)] { st.selectDevices(found); });
        }
      }
      if (gc) {
        (void)st.reconciler.submit([&st, run = st.runConntrackGc()] { st.recordConntrackGc(run); });
      }
    }
  }
  spdlog::info("signal {}: stopping (programs and pinned maps stay in place)", sig);
  st.ready = false;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (hubble_server) {
    hubble_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    std::filesystem::remove(hubble_sock, ec);
  }
  metrics.stop();
  hubble_metrics.reset();
  st.events.stop();
  st.stop();
  std::filesystem::remove(sock, ec);
  return 0;
}
