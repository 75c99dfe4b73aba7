#pragma once
// Runs tests/k8s/apiserver.py (a test API server speaking the real wire protocol) for one test, on an ephemeral
// loopback port, and stops it in the destructor.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "testing.h"

namespace plexus::testing {

class TestApiServer {
 public:
  // netns: run inside this named network namespace (listening on every address there), else on 127.0.0.1.
  explicit TestApiServer(std::vector<std::string> extra = {}, std::string netns = "") : netns_(std::move(netns)) {
    std::string port_file = dir_.path() + "/port";
    std::vector<std::string> argv = {"python3", PLEXUS_SOURCE_DIR "/tests/k8s/apiserver.py", "--port-file", port_file};
    if (!netns_.empty()) {
      argv.insert(argv.begin(), {"ip", "netns", "exec", netns_});
      argv.insert(argv.end(), {"--bind", "0.0.0.0"});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> args;
      for (auto& a : argv) {
        args.push_back(a.data());
      }
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    // Bounded: 10 s for the server to publish its port.
    for (int i = 0; i < 200 && port_ == 0; ++i) {
      std::ifstream f(port_file);
      if (f >> port_) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~TestApiServer() { stop(); }
  // An API server outage.
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int st = 0;
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }
  int port() const { return port_; }
  std::string url(const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(port_);
  }
  // Test controls: compact, drop, deny?resource=R, allow?resource=R, bookmarks?seconds=S.
  bool control(const std::string& what) const {
    return sh(prefix() + "curl -sf -X POST '" + url() + "/__test/" + what + "' >/dev/null").exit_code == 0;
  }
  // An API request with curl (inside the server's namespace): returns the response body.
  CommandResult api(const std::string& method, const std::string& path, const std::string& body = "",
                    const std::string& token = "") const {
    std::string file = dir_.path() + "/body.json";
    std::ofstream(file) << body;
    std::string cmd = prefix() + "curl -s -X " + method + " -H 'Content-Type: application/json'" +
                      (token.empty() ? "" : " -H 'Authorization: Bearer " + token + "'") +
                      (body.empty() ? "" : " --data-binary @" + file) + " '" + url() + path + "'";
    return sh(cmd);
  }
  // A kubeconfig for this server with a bearer token.
  std::string kubeconfig(const std::string& token = "t0ken") const {
    std::string path = dir_.path() + "/kubeconfig";
    std::ofstream(path) << "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {server: \"" << url()
                        << "\"}\nusers:\n- name: agent\n  user: {token: " << token
                        << "}\ncontexts:\n- name: test\n  context: {cluster: test, user: agent}\ncurrent-context: test\n";
    return path;
  }
  const std::string& dir() const { return dir_.path(); }

 private:
  std::string prefix() const { return netns_.empty() ? "" : "ip netns exec " + netns_ + " "; }
  std::string netns_;
  TempDir dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace plexus::testing
