#include "plexus/cni/plugin.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>

#include "cni_log.h"
#include "plexus/api/paths.h"
#include "plexus/cni/grpc_unary.h"
#include "plexus/datapath/files.h"
#include "plexus/datapath/netlink.h"
#include "plexus/datapath/netns_here.h"
#include "plexus/v1/cni.pb.h"  // protobuf-lite messages (api/CMakeLists.txt: plexus_api_cni_lite)

namespace plexus::cni {

namespace {

PluginOutput fail(const CniError& e, const std::string& version) {
  return PluginOutput{1, dumpJson(errorJson(e, version))};
}

CniError fromGrpc(const GrpcStatus& s, const std::string& socket, const std::string& what) {
  switch (s.code) {
    case GrpcCode::kUnavailable:
    case GrpcCode::kDeadlineExceeded:
      return CniError{kTryAgainLater, fmt::format("plexus agent unreachable on {}: {}", socket, s.message), what};
    case GrpcCode::kInvalidArgument:
      return CniError{kInvalidConfig, s.message, what};
    case GrpcCode::kNotFound:
      return CniError{kUnknownContainer, s.message, what};
    case GrpcCode::kAlreadyExists:
      return CniError{kAlreadyExists, fmt::format("plexus agent: {}", s.message), what};
    default:
      return CniError{kAgentError, fmt::format("plexus agent: {}", s.message), what};
  }
}

// A client of the agent's plexus.v1.Cni service: one unary call per CNI command, bounded by the config's timeout.
class AgentClient {
 public:
  AgentClient(const std::string& socket, int timeout_seconds) : socket_(socket), timeout_(timeout_seconds) {}

  template <typename Req, typename Resp>
  GrpcStatus call(const char* method, const Req& req, Resp* resp) {
    // Fail fast when nothing listens rather than waiting out the deadline.
    if (!std::filesystem::exists(socket_)) {
      return GrpcStatus{GrpcCode::kUnavailable, "no socket"};
    }
    std::string reply;
    GrpcStatus s = callUnary(socket_, std::string("/plexus.v1.Cni/") + method, req.SerializeAsString(), timeout_,
                             &reply);
    if (s.ok() && !resp->ParseFromString(reply)) {
      return GrpcStatus{GrpcCode::kInternal, fmt::format("cannot parse the agent's {} response", method)};
    }
    return s;
  }

 private:
  std::string socket_;
  std::chrono::seconds timeout_;
};

// The spec: "if an interface of the requested name already exists in the container, the plugin MUST return
// with an error". Looked up before the agent allocates anything, for a clear error; the agent remains the
// authority: it refuses a container and interface it already holds (a second ADD into another namespace), and
// creating the pod's interface fails there if the name is taken. So a failed look-up is logged, not fatal.
// plexus-cni has one thread (no gRPC runtime), so it enters the pod's namespace itself (netns_here.h).
std::optional<CniError> interfaceAlreadyThere(const CniEnv& env, CniLog& log) {
  bool exists = false;
  auto lookUp = [&] {
    auto link = datapath::linkByName(env.ifname);
    exists = link.ok();
    return link.ok() || link.error().code == ErrorCode::kNotFound ? Status::Ok() : Status(link.error());
  };
  auto ns = datapath::openNetns(env.netns);
  Status s = ns.ok() ? datapath::inNetnsOnThisThread(ns->get(), lookUp) : Status(ns.error());
  if (!s.ok()) {
    log.warn(fmt::format("ADD {}/{}: cannot look for {} in {} ({}); the agent checks", env.container_id,
                         env.ifname, env.ifname, env.netns, s.error().message));
    return std::nullopt;
  }
  if (!exists) {
    return std::nullopt;
  }
  return CniError{kAlreadyExists,
                  fmt::format("container {} already has interface {} in {} (a second ADD without DEL); nothing "
                              "was changed",
                              env.container_id, env.ifname, env.netns),
                  "ADD"};
}

PluginOutput doAdd(const CniEnv& env, const NetConf& conf, const CniArgs& args, CniLog& log) {
  if (conf.chaining == ChainingMode::kNone) {
    // In generic-veth mode the previous plugin made the interface: its presence is expected.
    if (auto e = interfaceAlreadyThere(env, log)) {
      log.error(fmt::format("ADD {}/{}: {}", env.container_id, env.ifname, e->msg));
      return fail(*e, conf.cni_version);
    }
  }
  v1::CniAddRequest req;
  req.set_container_id(env.container_id);
  req.set_netns(env.netns);
  req.set_ifname(env.ifname);
  req.set_pod_namespace(args.pod_namespace);
  req.set_pod_name(args.pod_name);
  req.set_pod_uid(args.pod_uid);
  req.set_mtu(conf.mtu);
  if (!args.ip.empty()) {
    req.add_requested_ips(args.ip);
  }
  for (const auto& ip : conf.runtime_ips) {
    req.add_requested_ips(ip);
  }
  req.set_requested_mac(!args.mac.empty() ? args.mac : conf.runtime_mac);
  if (conf.chaining == ChainingMode::kGenericVeth) {
    ChainedIface chained;
    if (auto e = chainedFromPrevResult(conf.prev_result, env, &chained)) {
      return fail(*e, conf.cni_version);
    }
    auto* c = req.mutable_chained();
    c->set_host_ifname(chained.host_ifname);
    c->set_container_ifname(chained.container_ifname);
    c->set_container_mac(chained.container_mac);
    for (const auto& ip : chained.ips) {
      c->add_ips(ip);
    }
  }
  AgentClient client(conf.socket, conf.timeout_seconds);
  v1::CniAddResponse resp;
  GrpcStatus s = client.call("Add", req, &resp);
  if (!s.ok()) {
    log.error(fmt::format("ADD {}/{}: {}", env.container_id, env.ifname, s.message));
    return fail(fromGrpc(s, conf.socket, "ADD"), conf.cni_version);
  }
  log.info(fmt::format("ADD {}/{}: endpoint {}", env.container_id, env.ifname, resp.endpoint_id()));
  if (conf.chaining == ChainingMode::kGenericVeth) {
    // The previous plugin owns the interfaces and addresses: pass its result on unchanged.
    return PluginOutput{0, dumpJson(convertResult(conf.prev_result, conf.cni_version))};
  }
  Result r;
  for (const auto& i : resp.interfaces()) {
    r.interfaces.push_back({i.name(), i.mac(), i.sandbox()});
  }
  for (const auto& ip : resp.ips()) {
    r.ips.push_back({ip.address(), ip.gateway(), ip.interface_index()});
  }
  for (const auto& rt : resp.routes()) {
    r.routes.push_back({rt.dst(), rt.gw()});
  }
  nlohmann::json dns = nlohmann::json::object();
  if (resp.dns().nameservers_size() > 0) {
    dns["nameservers"] = std::vector<std::string>(resp.dns().nameservers().begin(), resp.dns().nameservers().end());
  }
  if (!resp.dns().domain().empty()) {
    dns["domain"] = resp.dns().domain();
  }
  if (resp.dns().search_size() > 0) {
    dns["search"] = std::vector<std::string>(resp.dns().search().begin(), resp.dns().search().end());
  }
  r.dns = dns;
  return PluginOutput{0, dumpJson(resultJson(r, conf.cni_version))};
}

// With the agent down: take the pod interface down ourselves and leave the rest for the agent's next start.
Status delWithoutAgent(const CniEnv& env, const NetConf& conf) {
  if (!env.netns.empty() && std::filesystem::exists(env.netns)) {
    auto ns = datapath::openNetns(env.netns);
    if (ns.ok()) {
      Status s = datapath::inNetnsOnThisThread(ns->get(), [&] {
        Status d = datapath::deleteLink(env.ifname);
        return (d.ok() || d.error().code == ErrorCode::kNotFound) ? Status::Ok() : d;
      });
      if (!s.ok()) {
        return s;
      }
    }
  }
  std::string dir = api::pendingDeleteDir(conf.socket);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  nlohmann::json j = {{"container_id", env.container_id},
                      {"ifname", env.ifname},
                      {"netns", env.netns},
                      {"queued_unix", static_cast<int64_t>(std::time(nullptr))}};
  return writeFileAtomic(dir + "/" + env.container_id + "_" + env.ifname + ".json", dumpJson(j));
}

PluginOutput doDel(const CniEnv& env, const NetConf& conf, CniLog& log) {
  v1::CniDelRequest req;
  req.set_container_id(env.container_id);
  req.set_netns(env.netns);
  req.set_ifname(env.ifname);
  AgentClient client(conf.socket, std::min(conf.timeout_seconds, 30));
  v1::CniDelResponse resp;
  GrpcStatus s = client.call("Del", req, &resp);
  if (s.ok()) {
    return PluginOutput{0, ""};
  }
  if (s.code == GrpcCode::kUnavailable || s.code == GrpcCode::kDeadlineExceeded) {
    Status q = delWithoutAgent(env, conf);
    if (!q.ok()) {
      return fail(CniError{kIoFailure, fmt::format("agent down and local cleanup failed: {}", q.error().message), ""},
                  conf.cni_version);
    }
    log.warn(fmt::format("DEL {}/{}: agent unreachable, queued for the agent", env.container_id, env.ifname));
    return PluginOutput{0, ""};
  }
  return fail(fromGrpc(s, conf.socket, "DEL"), conf.cni_version);
}

PluginOutput doCheck(const CniEnv& env, const NetConf& conf) {
  if (!versionAtLeast(conf.cni_version, "0.4.0")) {
    return fail(CniError{kIncompatibleVersion, fmt::format("CHECK needs cniVersion 0.4.0 or later, config is {}",
                                                           conf.cni_version), ""},
                conf.cni_version);
  }
  v1::CniCheckRequest req;
  req.set_container_id(env.container_id);
  req.set_netns(env.netns);
  req.set_ifname(env.ifname);
  AgentClient client(conf.socket, std::min(conf.timeout_seconds, 30));
  v1::CniCheckResponse resp;
  GrpcStatus s = client.call("Check", req, &resp);
  if (!s.ok()) {
    return fail(fromGrpc(s, conf.socket, "CHECK"), conf.cni_version);
  }
  return PluginOutput{0, ""};
}

PluginOutput doStatus(const NetConf& conf) {
  AgentClient client(conf.socket, std::min(conf.timeout_seconds, 10));
  v1::CniStatusResponse resp;
  GrpcStatus s = client.call("Status", v1::CniStatusRequest{}, &resp);
  if (!s.ok() || !resp.ready()) {
    std::string why = s.ok() ? resp.message() : s.message;
    return fail(CniError{kPluginNotAvailable, fmt::format("plexus agent on {} is not ready: {}", conf.socket, why), ""},
                conf.cni_version);
  }
  return PluginOutput{0, ""};
}

// GC's result is empty on success (SPEC.md), so what it did goes to the log and to stderr, which runtimes keep.
PluginOutput doGc(const NetConf& conf, CniLog& log) {
  std::optional<std::vector<GcAttachment>> keep;
  if (auto e = gcAttachments(conf, &keep)) {
    return fail(*e, conf.cni_version);
  }
  v1::CniGcRequest req;
  // Without a list the agent is still asked (it removes nothing, and says so in its log): an absent list must
  // never reach it as an empty one, which would release every endpoint of the node.
  req.set_valid_attachments_present(keep.has_value());
  for (const auto& a : keep.value_or(std::vector<GcAttachment>{})) {
    auto* out = req.add_valid_attachments();
    out->set_container_id(a.container_id);
    out->set_ifname(a.ifname);
  }
  AgentClient client(conf.socket, conf.timeout_seconds);
  v1::CniGcResponse resp;
  GrpcStatus s = client.call("Gc", req, &resp);
  if (!s.ok()) {
    return fail(fromGrpc(s, conf.socket, "GC"), conf.cni_version);
  }
  std::string what = resp.message().empty() ? fmt::format("GC: {} released", resp.released()) : "GC: " + resp.message();
  if (resp.skipped()) {
    log.warn(what);
    std::fprintf(stderr, "plexus-cni: %s\n", what.c_str());
  } else {
    log.info(what);
  }
  return PluginOutput{0, ""};
}

}  // namespace

PluginOutput runPlugin(const EnvLookup& lookup, const std::string& stdin_text) {
  const char* command = lookup("CNI_COMMAND");
  NetConf conf;
  auto conf_error = parseNetConf(stdin_text, api::kDefaultSocket, &conf);
  // Answer in the config's version when we speak it, even when another field of the config is wrong.
  bool known = std::find(kSupportedVersions.begin(), kSupportedVersions.end(), conf.cni_version) !=
               kSupportedVersions.end();
  std::string version = known ? conf.cni_version : "1.1.0";
  if (command && std::string(command) == "VERSION") {
    // Runtimes probe VERSION with dummy env and sometimes an empty or older config: always answer.
    return PluginOutput{0, dumpJson(versionJson(version))};
  }
  if (conf_error) {
    return fail(*conf_error, version);
  }
  CniEnv env;
  if (auto e = readEnv(lookup, &env)) {
    return fail(*e, version);
  }
  CniArgs args;
  if (auto e = parseArgs(env.args, &args)) {
    return fail(*e, version);
  }
  CniLog log(conf.log_file);
  if (env.command == "ADD") {
    if (!std::filesystem::exists(env.netns)) {
      return fail(CniError{kInvalidEnv, fmt::format("CNI_NETNS {}: no such network namespace", env.netns), ""}, version);
    }
    return doAdd(env, conf, args, log);
  }
  if (env.command == "DEL") {
    return doDel(env, conf, log);
  }
  if (env.command == "CHECK") {
    return doCheck(env, conf);
  }
  if (!versionAtLeast(conf.cni_version, "1.1.0")) {
    return fail(CniError{kIncompatibleVersion, fmt::format("{} needs cniVersion 1.1.0, config is {}", env.command,
                                                           conf.cni_version), ""},
                version);
  }
  return env.command == "STATUS" ? doStatus(conf) : doGc(conf, log);
}

}  // namespace plexus::cni
