#pragma once
// Hermetic helpers for [netns] and [bpf] tests. Every resource is unique per test (names carry the pid and a
// counter) and removed in destructors, so a failing REQUIRE still cleans up. Every wait is bounded.

#include <netinet/in.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace plexus::testing {

// A unique short name: prefix + pid + counter (fits IFNAMSIZ when prefix <= 4 chars).
std::string uniqueName(const std::string& prefix);

// Where the build put our binaries (compile definitions from CMake).
std::string agentBinary();
std::string cniBinary();
std::string cliBinary();
std::string buildCniDir();

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv with the given environment (added to ours) and stdin, bounded by a timeout (then SIGKILL).
CommandResult runCommand(const std::vector<std::string>& argv, const std::string& stdin_text = "",
                         const std::map<std::string, std::string>& env = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));
// Runs a shell command line; convenient for `ip` invocations.
CommandResult sh(const std::string& command, std::chrono::milliseconds timeout = std::chrono::seconds(30));

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A private bpffs mounted on a directory inside a TempDir.
class BpffsMount {
 public:
  explicit BpffsMount(const std::string& dir);
  ~BpffsMount();
  BpffsMount(const BpffsMount&) = delete;
  BpffsMount& operator=(const BpffsMount&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A named network namespace (ip netns add), deleted with everything in it.
class Netns {
 public:
  explicit Netns(const std::string& prefix);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  // Runs a shell command inside the namespace.
  CommandResult exec(const std::string& command, std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

 private:
  std::string name_;
};

// A plexus-agent process running inside a "node" namespace with private state, bpffs root and socket.
struct AgentOptions {
  std::string pod_cidr = "10.244.0.0/24";
  std::vector<std::string> extra_args;
};

class AgentProcess {
 public:
  AgentProcess(const Netns& node, const std::string& state_dir, const std::string& bpf_root,
               const std::string& socket, AgentOptions options = {});
  ~AgentProcess();
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  // Starts the agent and waits (bounded) until its socket answers `plexus status`.
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  void kill9();
  // SIGTERM and wait; returns the exit code.
  int stop();
  bool running() const { return pid_ > 0; }
  // Arguments of the next start (a restart with other flags, as after an operator's change).
  void setExtraArgs(std::vector<std::string> args) { options_.extra_args = std::move(args); }
  const std::string& socket() const { return socket_; }
  const std::string& logPath() const { return log_; }
  // The cgroup v2 directory the agent's socket-LB programs are attached to.
  const std::string& cgroup() const { return cgroup_; }
  std::string log() const;

 private:
  const Netns& node_;
  std::string state_dir_;
  std::string bpf_root_;
  std::string socket_;
  std::string log_;
  TempDir cgroup_tmp_;
  std::string cgroup_mount_;
  std::string cgroup_;
  AgentOptions options_;
  pid_t pid_ = -1;
};

// The CNI environment a runtime sets.
struct CniCall {
  std::string command;       // ADD, DEL, CHECK, VERSION, STATUS, GC
  std::string container_id;
  std::string netns;         // path, may be empty
  std::string ifname = "eth0";
  std::string args;          // CNI_ARGS
  std::string path;          // CNI_PATH (default: build dir + /usr/lib/cni)
  std::string runtime_netns; // named netns the runtime runs in (the simulated node); empty: ours
};

// Executes one plugin exactly as a runtime does: env vars, config on stdin, result on stdout.
CommandResult execPlugin(const std::string& binary, const CniCall& call, const nlohmann::json& config);

// Runs a conflist the way libcni does: ADD in order, each plugin getting the previous result as prevResult;
// DEL in reverse order with the cached result. Returns the last plugin's output.
struct ConflistResult {
  bool ok = false;
  nlohmann::json result;
  std::string error;  // the failing plugin's stdout/stderr
};
ConflistResult runConflist(const nlohmann::json& conflist, const CniCall& call,
                           const nlohmann::json& runtime_config = nlohmann::json::object(),
                           const nlohmann::json& cached_result = nullptr);

// An IPv4 socket address (ip in dotted form).
sockaddr_in ipv4Address(const std::string& ip, uint16_t port);
// Sockets created inside a network namespace (the fd keeps its namespace wherever it is used).
int socketInNetns(const std::string& netns_path, int type);
// A TCP listener on 0.0.0.0:port (port 0: ephemeral) inside a namespace. Returns the fd and the bound port.
std::pair<int, uint16_t> tcpListen(const std::string& netns_path, uint16_t port = 0);
// Connects from a namespace; returns fd or -1. Bounded by timeout.
int tcpConnect(const std::string& netns_path, const std::string& ip, uint16_t port,
               std::chrono::milliseconds timeout = std::chrono::seconds(3));
// Accepts one connection with a timeout; returns fd or -1.
int acceptWithin(int listen_fd, std::chrono::milliseconds timeout = std::chrono::seconds(3));
// Sends msg and reads it back on the other fd; true when the bytes arrive intact within the timeout.
bool exchange(int from_fd, int to_fd, const std::string& msg, std::chrono::milliseconds timeout = std::chrono::seconds(3));
// A download: a connection from client_netns to a listener in server_netns (at server_ip), whose server writes `bytes`
// in 64 KiB writes (full-size segments, TSO bursts on a veth) that the client reads. Returns the bytes the client
// received (bounded: 10 s to connect and per read or write).
size_t tcpDownload(const std::string& client_netns, const std::string& server_netns, const std::string& server_ip,
                   size_t bytes);
// UDP: bind in one namespace, send from another, receive within the timeout.
bool udpRoundTrip(const std::string& from_netns, const std::string& to_netns, const std::string& to_ip,
                  std::chrono::milliseconds timeout = std::chrono::seconds(3));
bool ping(const Netns& from, const std::string& ip);
// The value of one series (name and labels, exactly as exposed) in a Prometheus text exposition; -1 if absent.
double metric(const std::string& text, const std::string& series);

}  // namespace plexus::testing
