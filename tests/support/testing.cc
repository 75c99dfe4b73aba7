#include "testing.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace plexus::testing {

namespace fs = std::filesystem;

std::string uniqueName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + std::to_string(getpid() % 100000) + "x" + std::to_string(counter++);
}

std::string agentBinary() { return PLEXUS_AGENT_BIN; }
std::string cniBinary() { return PLEXUS_CNI_BIN; }
std::string cliBinary() { return PLEXUS_CLI_BIN; }
std::string buildCniDir() { return fs::path(PLEXUS_CNI_BIN).parent_path().string(); }

namespace {

// Reads everything from fd until EOF or the deadline.
void drain(int fd, std::string* out, std::chrono::steady_clock::time_point deadline, bool* timed_out) {
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      *timed_out = true;
      return;
    }
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      *timed_out = r == 0;
      return;
    }
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) {
      return;
    }
    out->append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

CommandResult runCommand(const std::vector<std::string>& argv, const std::string& stdin_text,
                         const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout) {
  CommandResult result;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    result.err = "pipe failed";
    return result;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (const auto& [k, v] : env) {
      setenv(k.c_str(), v.c_str(), 1);
    }
    std::vector<char*> args;
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  // Small inputs fit the pipe buffer; write then close so the child sees EOF.
  if (!stdin_text.empty()) {
    ssize_t n = write(in[1], stdin_text.data(), stdin_text.size());
    (void)n;
  }
  close(in[1]);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  std::thread err_reader([&] {
    bool t = false;
    drain(err[0], &result.err, deadline, &t);
  });
  drain(out[0], &result.out, deadline, &timed_out);
  err_reader.join();
  close(out[0]);
  close(err[0]);
  if (timed_out) {
    kill(pid, SIGKILL);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (timed_out) {
    result.err += "\n[timed out]";
  }
  return result;
}

CommandResult sh(const std::string& command, std::chrono::milliseconds timeout) {
  return runCommand({"/bin/sh", "-c", command}, "", {}, timeout);
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "plexus-test-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    throw std::runtime_error("mkdtemp failed");
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

BpffsMount::BpffsMount(const std::string& dir) : path_(dir) {
  fs::create_directories(dir);
  if (mount("bpf", dir.c_str(), "bpf", 0, nullptr) != 0) {
    throw std::runtime_error("mount bpffs at " + dir + ": " + std::strerror(errno));
  }
}

BpffsMount::~BpffsMount() { umount2(path_.c_str(), MNT_DETACH); }

Netns::Netns(const std::string& prefix) : name_(uniqueName(prefix)) {
  auto r = sh("ip netns add " + name_);
  if (r.exit_code != 0) {
    throw std::runtime_error("ip netns add " + name_ + ": " + r.err);
  }
  sh("ip -n " + name_ + " link set lo up");
}

Netns::~Netns() {
  // Deleting the namespace destroys its interfaces; veth peers in other namespaces go with them.
  sh("ip netns pids " + name_ + " | xargs -r kill -9");
  sh("ip netns del " + name_);
}

CommandResult Netns::exec(const std::string& command, std::chrono::milliseconds timeout) const {
  return runCommand({"ip", "netns", "exec", name_, "/bin/sh", "-c", command}, "", {}, timeout);
}

AgentProcess::AgentProcess(const Netns& node, const std::string& state_dir, const std::string& bpf_root,
                           const std::string& socket, AgentOptions options)
    : node_(node), state_dir_(state_dir), bpf_root_(bpf_root), socket_(socket), log_(state_dir + ".log"),
      options_(std::move(options)) {
  // Socket LB attaches to a cgroup of its own, never to the machine's root cgroup. The unified hierarchy is
  // mounted in a temp dir because `ip netns exec` remounts /sys, hiding /sys/fs/cgroup from the agent.
  cgroup_mount_ = cgroup_tmp_.path() + "/cg";
  fs::create_directories(cgroup_mount_);
  if (mount("none", cgroup_mount_.c_str(), "cgroup2", 0, nullptr) != 0) {
    throw std::runtime_error("mount cgroup2 at " + cgroup_mount_ + ": " + std::strerror(errno));
  }
  cgroup_ = cgroup_mount_ + "/" + uniqueName("plxa");
  fs::create_directories(cgroup_);
}

AgentProcess::~AgentProcess() {
  if (pid_ > 0) {
    kill9();
  }
  rmdir(cgroup_.c_str());
  umount2(cgroup_mount_.c_str(), MNT_DETACH);
}

bool AgentProcess::start(std::chrono::milliseconds timeout) {
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<std::string> argv = {"ip",          "netns",       "exec",        node_.name(), agentBinary(),
                                     "--state-dir", state_dir_,    "--bpf-root",  bpf_root_,    "--socket",
                                     socket_,       "--pod-cidr",  options_.pod_cidr, "--node-name", node_.name(), "--cgroup-root", cgroup_};
    for (const auto& a : options_.extra_args) {
      argv.push_back(a);
    }
    std::vector<char*> args;
    for (auto& a : argv) {
      args.push_back(a.data());
    }
    args.push_back(nullptr);
    execvp("ip", args.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    if (fs::exists(socket_)) {
      auto r = runCommand({cliBinary(), "--socket", socket_, "status"}, "", {}, std::chrono::seconds(5));
      if (r.exit_code == 0) {
        return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void AgentProcess::kill9() {
  if (pid_ <= 0) {
    return;
  }
  // `ip netns exec` execs the agent in place, so the pid is the agent's.
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int AgentProcess::stop() {
  if (pid_ <= 0) {
    return -1;
  }
  kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 200; ++i) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill9();
  return -1;
}

std::string AgentProcess::log() const {
  std::ifstream f(log_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

CommandResult execPlugin(const std::string& binary, const CniCall& call, const nlohmann::json& config) {
  std::map<std::string, std::string> env = {
      {"CNI_COMMAND", call.command},
      {"CNI_CONTAINERID", call.container_id},
      {"CNI_NETNS", call.netns},
      {"CNI_IFNAME", call.ifname},
      {"CNI_ARGS", call.args},
      {"CNI_PATH", call.path.empty() ? buildCniDir() + ":/usr/lib/cni" : call.path},
  };
  if (call.runtime_netns.empty()) {
    return runCommand({binary}, config.dump(), env);
  }
  return runCommand({"ip", "netns", "exec", call.runtime_netns, binary}, config.dump(), env);
}

namespace {
std::string findPlugin(const std::string& type, const std::string& path) {
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (fs::exists(dir + "/" + type)) {
      return dir + "/" + type;
    }
  }
  return type;
}

// Injects runtimeConfig for the capabilities a plugin declares, as libcni does.
nlohmann::json pluginConfig(const nlohmann::json& conflist, const nlohmann::json& plugin,
                            const nlohmann::json& runtime_config) {
  nlohmann::json cfg = plugin;
  cfg["name"] = conflist.at("name");
  cfg["cniVersion"] = conflist.at("cniVersion");
  if (plugin.contains("capabilities")) {
    nlohmann::json rc = nlohmann::json::object();
    for (const auto& [cap, enabled] : plugin["capabilities"].items()) {
      if (enabled.get<bool>() && runtime_config.contains(cap)) {
        rc[cap] = runtime_config[cap];
      }
    }
    if (!rc.empty()) {
      cfg["runtimeConfig"] = rc;
    }
  }
  return cfg;
}
}  // namespace

ConflistResult runConflist(const nlohmann::json& conflist, const CniCall& call, const nlohmann::json& runtime_config,
                           const nlohmann::json& cached_result) {
  ConflistResult out;
  std::string path = call.path.empty() ? buildCniDir() + ":/usr/lib/cni" : call.path;
  const auto& plugins = conflist.at("plugins");
  std::vector<nlohmann::json> order(plugins.begin(), plugins.end());
  bool reverse = call.command == "DEL";
  if (reverse) {
    std::reverse(order.begin(), order.end());
  }
  nlohmann::json prev = call.command == "ADD" ? nlohmann::json(nullptr) : cached_result;
  for (const auto& plugin : order) {
    nlohmann::json cfg = pluginConfig(conflist, plugin, runtime_config);
    if (!prev.is_null()) {
      cfg["prevResult"] = prev;
    }
    CniCall c = call;
    c.path = path;
    auto r = execPlugin(findPlugin(plugin.at("type").get<std::string>(), path), c, cfg);
    if (r.exit_code != 0) {
      out.error = plugin.at("type").get<std::string>() + ": " + r.out + r.err;
      return out;
    }
    if (call.command == "ADD") {
      auto parsed = nlohmann::json::parse(r.out, nullptr, false);
      if (parsed.is_discarded()) {
        out.error = plugin.at("type").get<std::string>() + ": unparseable result: " + r.out;
        return out;
      }
      prev = parsed;
    }
  }
  out.ok = true;
  out.result = prev;
  return out;
}

int socketInNetns(const std::string& netns_path, int type) {
  int result = -1;
  std::thread t([&] {
    int ns = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
      if (ns >= 0) {
        close(ns);
      }
      return;
    }
    close(ns);
    result = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  });
  t.join();
  return result;
}

std::pair<int, uint16_t> tcpListen(const std::string& netns_path, uint16_t port) {
  int fd = socketInNetns(netns_path, SOCK_STREAM);
  if (fd < 0) {
    return {-1, 0};
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 512) != 0) {
    close(fd);
    return {-1, 0};
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return {fd, ntohs(addr.sin_port)};
}

sockaddr_in ipv4Address(const std::string& ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

int tcpConnect(const std::string& netns_path, const std::string& ip, uint16_t port, std::chrono::milliseconds timeout) {
  int fd = socketInNetns(netns_path, SOCK_STREAM);
  if (fd < 0) {
    return -1;
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  sockaddr_in addr = ipv4Address(ip, port);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (r != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    close(fd);
    return -1;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, flags);
  return fd;
}

int acceptWithin(int listen_fd, std::chrono::milliseconds timeout) {
  pollfd p{listen_fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    return -1;
  }
  return accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
}

size_t tcpDownload(const std::string& client_netns, const std::string& server_netns, const std::string& server_ip,
                   size_t bytes) {
  auto [listener, port] = tcpListen(server_netns, 0);
  if (listener < 0) {
    return 0;
  }
  std::thread server([&, listener = listener] {
    int c = acceptWithin(listener, std::chrono::seconds(10));
    if (c < 0) {
      return;
    }
    timeval tv{10, 0};
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    std::string chunk(64 << 10, 'd');
    for (size_t written = 0; written < bytes;) {
      ssize_t n = write(c, chunk.data(), std::min(chunk.size(), bytes - written));
      if (n <= 0) {
        break;
      }
      written += static_cast<size_t>(n);
    }
    close(c);
  });
  size_t received = 0;
  int client = tcpConnect(client_netns, server_ip, port, std::chrono::seconds(10));
  if (client >= 0) {
    timeval tv{10, 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::vector<char> buf(64 << 10);
    for (int i = 0; i < 1000000 && received < bytes; ++i) {  // bounded by count and by the receive timeout
      ssize_t n = read(client, buf.data(), buf.size());
      if (n <= 0) {
        break;
      }
      received += static_cast<size_t>(n);
    }
    close(client);
  }
  server.join();
  close(listener);
  return received;
}

bool exchange(int from_fd, int to_fd, const std::string& msg, std::chrono::milliseconds timeout) {
  if (send(from_fd, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) {
    return false;
  }
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got.size() < msg.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return false;
    }
    pollfd p{to_fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) != 1) {
      return false;
    }
    char buf[1024];
    ssize_t n = recv(to_fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      return false;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  return got == msg;
}

bool udpRoundTrip(const std::string& from_netns, const std::string& to_netns, const std::string& to_ip,
                  std::chrono::milliseconds timeout) {
  int rx = socketInNetns(to_netns, SOCK_DGRAM);
  int tx = socketInNetns(from_netns, SOCK_DGRAM);
  bool ok = false;
  if (rx >= 0 && tx >= 0) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    if (bind(rx, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      socklen_t len = sizeof(addr);
      getsockname(rx, reinterpret_cast<sockaddr*>(&addr), &len);
      inet_pton(AF_INET, to_ip.c_str(), &addr.sin_addr);
      const char msg[] = "plexus-udp";
      // UDP may lose the first datagram while neighbours resolve: retry a bounded number of times.
      for (int attempt = 0; attempt < 5 && !ok; ++attempt) {
        sendto(tx, msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        pollfd p{rx, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(timeout.count() / 5)) == 1) {
          char buf[64];
          ok = recv(rx, buf, sizeof(buf), 0) == sizeof(msg) && std::memcmp(buf, msg, sizeof(msg)) == 0;
        }
      }
    }
  }
  if (rx >= 0) {
    close(rx);
  }
  if (tx >= 0) {
    close(tx);
  }
  return ok;
}

bool ping(const Netns& from, const std::string& ip) {
  return from.exec("ping -c 1 -W 2 " + ip).exit_code == 0 || from.exec("ping -c 2 -W 2 " + ip).exit_code == 0;
}

double metric(const std::string& text, const std::string& series) {
  auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos) {
    return -1;
  }
  return std::stod(text.substr(pos + series.size() + 2));
}

}  // namespace plexus::testing
