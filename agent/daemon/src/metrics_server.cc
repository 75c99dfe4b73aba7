#include "plexus/agent/metrics_server.h"

#include <httplib.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "plexus/agent/agent_state.h"
#include "plexus/agent/reason_names.h"
#include "plexus/identity/identity.h"
#include "plexus/reasons.h"

namespace plexus::agent {

namespace {

// The agent process's CPU time, memory and file descriptors, as Prometheus client libraries' process collector
// names them (Cilium's cilium_process_*), from /proc/self (proc(5)). Nothing when /proc cannot be read.
void processMetrics(Exposition& e) {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  auto paren = stat.rfind(')');  // the command name may hold spaces: fields are counted after it
  if (paren == std::string::npos) {
    return;
  }
  std::istringstream fields(stat.substr(paren + 2));
  std::vector<std::string> f{std::istream_iterator<std::string>(fields), std::istream_iterator<std::string>()};
  // After the name: state(3) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24); index = field - 3.
  if (f.size() < 22) {
    return;
  }
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
  double vsize = std::stod(f[20]);
  double rss = std::stod(f[21]) * static_cast<double>(sysconf(_SC_PAGESIZE));
  size_t fds = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  for (const char* prefix : {"plexus", "cilium"}) {
    auto name = [&](const char* n) { return fmt::format("{}_process_{}", prefix, n); };
    e.family(name("cpu_seconds_total"), "counter", "Total user and system CPU time spent in seconds");
    e.sample(name("cpu_seconds_total"), {}, cpu);
    e.family(name("virtual_memory_bytes"), "gauge", "Virtual memory size in bytes");
    e.sample(name("virtual_memory_bytes"), {}, vsize);
    e.family(name("resident_memory_bytes"), "gauge", "Resident memory size in bytes");
    e.sample(name("resident_memory_bytes"), {}, rss);
    e.family(name("open_fds"), "gauge", "Number of open file descriptors");
    e.sample(name("open_fds"), {}, static_cast<double>(fds));
    e.family(name("max_fds"), "gauge", "Maximum number of open file descriptors");
    e.sample(name("max_fds"), {}, static_cast<double>(limit.rlim_cur));
  }
}

}  // namespace

std::string renderMetrics(AgentState& state) {
  Exposition e;
  // Datapath counters, named after Cilium's cilium_forward_* / cilium_drop_* families.
  e.family("plexus_forward_count_total", "counter", "Packets forwarded by the datapath");
  e.family("plexus_forward_bytes_total", "counter", "Bytes forwarded by the datapath");
  e.family("plexus_drop_count_total", "counter", "Packets dropped by the datapath");
  e.family("plexus_drop_bytes_total", "counter", "Bytes dropped by the datapath");
  auto counters = state.lxc->metrics().entries();
  if (counters.ok()) {
    std::map<Labels, std::pair<uint64_t, uint64_t>> fwd;
    std::map<Labels, std::pair<uint64_t, uint64_t>> drop;
    // The same counters under Cilium's names and labels: drops by Cilium's reason text, forwards by direction.
    std::map<Labels, std::pair<uint64_t, uint64_t>> cilium_fwd;
    std::map<Labels, std::pair<uint64_t, uint64_t>> cilium_drop;
    uint64_t nat_no_port = 0;
    for (const auto& [k, per_cpu] : *counters) {
      uint64_t packets = 0;
      uint64_t bytes = 0;
      for (const auto& v : per_cpu) {
        packets += v.packets;
        bytes += v.bytes;
      }
      if (k.reason == PLEXUS_REASON_NAT_NO_PORT) {
        nat_no_port += packets;
      }
      bool dropped = isDropReason(k.reason);
      auto& ours = dropped ? drop[{{"reason", hubbleReasonName(k.reason)}, {"direction", directionName(k.direction)}}]
                           : fwd[{{"reason", reasonName(k.reason)}, {"direction", directionName(k.direction)}}];
      auto& cilium =
          dropped ? cilium_drop[{{"reason", ciliumDropReason(k.reason)}, {"direction", directionName(k.direction)}}]
                  : cilium_fwd[{{"direction", directionName(k.direction)}}];
      for (auto* c : {&ours, &cilium}) {
        c->first += packets;
        c->second += bytes;
      }
    }
    for (const auto& [l, v] : fwd) {
      e.sample("plexus_forward_count_total", l, static_cast<double>(v.first));
      e.sample("plexus_forward_bytes_total", l, static_cast<double>(v.second));
    }
    for (const auto& [l, v] : drop) {
      e.sample("plexus_drop_count_total", l, static_cast<double>(v.first));
      e.sample("plexus_drop_bytes_total", l, static_cast<double>(v.second));
    }
    e.family("cilium_forward_count_total", "counter", "Total forwarded packets, tagged by ingress/egress direction");
    e.family("cilium_forward_bytes_total", "counter", "Total forwarded bytes, tagged by ingress/egress direction");
    e.family("cilium_drop_count_total", "counter", "Total dropped packets, tagged by drop reason and direction");
    e.family("cilium_drop_bytes_total", "counter", "Total dropped bytes, tagged by drop reason and direction");
    for (const auto& [l, v] : cilium_fwd) {
      e.sample("cilium_forward_count_total", l, static_cast<double>(v.first));
      e.sample("cilium_forward_bytes_total", l, static_cast<double>(v.second));
    }
    for (const auto& [l, v] : cilium_drop) {
      e.sample("cilium_drop_count_total", l, static_cast<double>(v.first));
      e.sample("cilium_drop_bytes_total", l, static_cast<double>(v.second));
    }
    // New masqueraded or NodePort-SNAT flows that found no free port on the node's address (each one's packets are
    // dropped as NAT_NO_PORT until a port frees up).
    e.family("plexus_nat_port_allocation_failures_total", "counter",
             "Packets of new masquerade/SNAT flows dropped because no port was free");
    e.sample("plexus_nat_port_allocation_failures_total", {}, static_cast<double>(nat_no_port));
  }

  e.family("plexus_bpf_map_pressure", "gauge", "Fill ratio of each BPF map (entries / max entries)");
  e.family("cilium_bpf_map_pressure", "gauge", "Fill percentage of map, tagged by map name");
  auto pressure = [&](const std::string& map, double fill) {
    e.sample("plexus_bpf_map_pressure", {{"map_name", map}}, fill);
    e.sample("cilium_bpf_map_pressure", {{"map_name", map}}, fill);
  };
  for (const auto& m : state.lxc->maps()) {
    // Arrays always hold max_entries keys: their fill says nothing.
    bool array = m.info.type == BPF_MAP_TYPE_PERCPU_ARRAY || m.info.type == BPF_MAP_TYPE_ARRAY ||
                 m.info.type == BPF_MAP_TYPE_ARRAY_OF_MAPS;
    if (m.info.max_entries > 0 && !array) {
      pressure(m.name, static_cast<double>(m.entries) / static_cast<double>(m.info.max_entries));
    }
  }
  // The endpoints' policy maps (one trie each, all of one size): the fullest of them, as "plexus_policy".
  size_t largest = state.reconciler.submit([&] { return state.policies->largestPolicy(); }).get();
  pressure("plexus_policy", static_cast<double>(largest) / static_cast<double>(state.lxc->policy().capacity()));
  processMetrics(e);

  state.events.flush();  // the flow counters include every event submitted before the scrape
  e.family("plexus_hubble_lost_events_total", "counter", "Flow events that did not fit the ring buffer");
  e.sample("plexus_hubble_lost_events_total", {{"source", "perf_event_ring_buffer"}},
           static_cast<double>(state.lxc->lostEvents()));
  e.family("plexus_hubble_flows_processed_total", "counter", "Flows decoded into the flow buffer");
  if (state.flows) {
    e.sample("plexus_hubble_flows_processed_total", {}, static_cast<double>(state.flows->seen()));
  }

  // Agent state, read on the reconcile thread so it is consistent.
  state.reconciler
      .submit([&] {
        // Cilium's endpoint states, as the API's endpoint state has them: not-ready while the endpoint's desired
        // policy is not installed (ENDPOINT_STATE_NOT_READY), waiting-for-identity while the cluster allocates its
        // identity (it runs with init meanwhile), else ready. Cilium has the count and the states as two metrics.
        std::map<std::string, size_t> states{{"ready", 0}, {"waiting-for-identity", 0}, {"not-ready", 0}};
        auto endpoints = state.endpoints->list();
        for (const auto& ep : endpoints) {
          identity::Labels labels(ep.labels.begin(), ep.labels.end());
          auto view = state.policies->endpointPolicy(ep.id);
          bool waiting = ep.identity == identity::kInit && !labels.empty() && state.identities->waiting(labels);
          states[view && !view->error.empty() ? "not-ready" : waiting ? "waiting-for-identity" : "ready"] += 1;
        }
        e.family("plexus_endpoint", "gauge", "Endpoints managed by this agent, by state");
        e.family("cilium_endpoint", "gauge", "Number of endpoints managed by this agent");
        e.family("cilium_endpoint_state", "gauge", "Count of all endpoints, tagged by different endpoint states");
        e.sample("cilium_endpoint", {}, static_cast<double>(endpoints.size()));
        for (const auto& [name, count] : states) {
          e.sample("plexus_endpoint", {{"state", name}}, static_cast<double>(count));
          e.sample("cilium_endpoint_state", {{"endpoint_state", name}}, static_cast<double>(count));
        }
        // Cilium's enforcement status: in which directions policy selects each endpoint (default-deny there).
        std::map<std::string, size_t> enforcement{{"none", 0}, {"ingress", 0}, {"egress", 0}, {"both", 0}};
        for (const auto& ep : endpoints) {
          auto view = state.policies->endpointPolicy(ep.id);
          bool in = view && view->compiled.ingress_enforced;
          bool out = view && view->compiled.egress_enforced;
          enforcement[in && out ? "both" : in ? "ingress" : out ? "egress" : "none"] += 1;
        }
        e.family("cilium_policy_endpoint_enforcement_status", "gauge",
                 "Number of endpoints labeled by policy enforcement status");
        for (const auto& [name, count] : enforcement) {
          e.sample("cilium_policy_endpoint_enforcement_status", {{"enforcement", name}}, static_cast<double>(count));
        }
        const Ipam& ipam = state.endpoints->ipam();
        e.family("plexus_ipam_capacity", "gauge", "Assignable pod addresses in the node's pool");
        e.sample("plexus_ipam_capacity", {{"pool", ipam.cidr().toString()}}, ipam.capacity());
        e.family("plexus_ipam_addresses", "gauge", "Pod addresses by state");
        e.sample("plexus_ipam_addresses", {{"state", "used"}}, ipam.used());
        e.sample("plexus_ipam_addresses", {{"state", "free"}}, ipam.available());
        e.family("cilium_ip_addresses", "gauge", "Number of allocated IP addresses");
        e.sample("cilium_ip_addresses", {{"family", "ipv4"}}, ipam.used());
        for (const auto& source : state.metric_sources) {
          source(e);
        }
      })
      .get();

  // The histograms: API and CNI call durations, conntrack GC durations.
  e.add(state.instruments->Collect());
  return e.text();
}

MetricsServer::MetricsServer(AgentState& state) : state_(state), server_(std::make_unique<httplib::Server>()) {}

MetricsServer::~MetricsServer() { stop(); }

namespace {
std::string rfc3339(int64_t unix_ms) {
  std::time_t s = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, unix_ms % 1000);
}
}  // namespace

KubeProxyHealth kubeProxyHealth(AgentState& state) {
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  int64_t updated = 0;
  bool healthy = state.ready && state.services != nullptr;
  if (healthy) {
    updated = std::max(state.services->lastFull().unix_ms, state.services->lastIncremental().unix_ms);
    healthy = !state.controller->failing("services");
  }
  nlohmann::json body = {{"lastUpdated", rfc3339(updated)}, {"currentTime", rfc3339(now)}, {"nodeEligible", true}};
  return {healthy ? 200 : 503, body.dump()};
}

Status MetricsServer::listen(const std::string& address, const std::string& flag) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("{} {}: must be host:port", flag, address));
  }
  std::string host = address.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(address.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (port <= 0 || port > 65535) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("{} {}: bad port", flag, address));
  }
  if (host.empty()) {
    host = "0.0.0.0";
  }
  if (!server_->bind_to_port(host.c_str(), port)) {
    return makeError(ErrorCode::kUnavailable, fmt::format("{}: cannot listen on {}", flag, address));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib's stop() does nothing until the listen loop runs (it checks is_running()): wait for it (bounded), so that
  // a listener closed right after it opened (a service deleted at once) does not leave stop() joining forever.
  for (int i = 0; i < 400 && !server_->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  spdlog::info("{}: serving http://{}", flag, address);
  return Status::Ok();
}

Status MetricsServer::start(const std::string& address, HttpRoutes routes, const std::string& flag) {
  if (routes == HttpRoutes::kKubeProxyHealth) {
    auto health = [this](const httplib::Request&, httplib::Response& res) {
      auto h = state_.ready ? state_.reconciler.submit([this] { return kubeProxyHealth(state_); }).get()
                            : kubeProxyHealth(state_);
      res.status = h.status;
      res.set_content(h.body, "application/json");
    };
    server_->Get("/healthz", health);
    server_->Get("/livez", health);
  } else {
    if (routes == HttpRoutes::kMetrics) {
      server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(renderMetrics(state_), "text/plain; version=0.0.4; charset=utf-8");
      });
    }
    server_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      res.status = state_.ready ? 200 : 503;
      res.set_content(state_.ready ? "ok\n" : "starting\n", "text/plain");
    });
  }
  return listen(address, flag);
}

Status MetricsServer::serveAnswers(const std::string& address, std::function<lb::HealthAnswer()> answer,
                                   const std::string& what) {
  auto handler = [answer = std::move(answer)](const httplib::Request&, httplib::Response& res) {
    lb::HealthAnswer a = answer();
    res.status = a.status;
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_content(a.body, "application/json");
  };
  server_->Get(".*", handler);  // HEAD too (httplib answers it with the GET handler, without the body)
  server_->Post(".*", handler);
  return listen(address, what);
}

void MetricsServer::stop() {
  if (server_) {
    server_->stop();
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

Result<std::unique_ptr<HubbleMetricsServer>> HubbleMetricsServer::start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  // civetweb takes "host:port" or "port" (every address), not ":port".
  std::string bind = !address.empty() && address.front() == ':' ? address.substr(1) : address;
  std::unique_ptr<HubbleMetricsServer> server(new HubbleMetricsServer());
  server->registry_ = std::move(registry);
  try {
    server->exposer_ = std::make_unique<prometheus::Exposer>(bind);
  } catch (const std::exception& e) {
    // civetweb says only "null context when constructing CivetServer. Possible problem binding to port."
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("--hubble-metrics-server: cannot listen on {} ({})", address, e.what()));
  }
  server->exposer_->RegisterCollectable(server->registry_);
  spdlog::info("--hubble-metrics-server: serving Hubble metrics on http://{}/metrics", address);
  return server;
}

HubbleMetricsServer::~HubbleMetricsServer() = default;

}  // namespace plexus::agent
