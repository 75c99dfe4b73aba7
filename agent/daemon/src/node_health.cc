#include "plexus/agent/node_health.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace plexus::agent {

namespace {
constexpr auto kInterval = std::chrono::seconds(2);
constexpr int kTimeoutMs = 1000;

// A TCP connect with a deadline: the probe cilium-health makes to a node's health endpoint.
NodeProbe probe(Ipv4 ip, int port) {
  auto t0 = std::chrono::steady_clock::now();
  NodeProbe r;
  datapath::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    r.message = fmt::format("socket: {}", std::strerror(errno));
    return r;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = ip.networkOrder();
  int rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd.get(), POLLOUT, 0};
    rc = ::poll(&p, 1, kTimeoutMs);
    if (rc == 0) {
      r.message = fmt::format("no answer from {}:{} in {} ms", ip.toString(), port, kTimeoutMs);
      return r;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    rc = err == 0 ? 0 : -1;
    errno = err;
  }
  if (rc != 0) {
    r.message = fmt::format("{}:{}: {}", ip.toString(), port, std::strerror(errno));
    return r;
  }
  r.reachable = true;
  r.milliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  r.message = "ok";
  return r;
}
}  // namespace

Status NodeHealth::start() {
  listener_ = datapath::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener_.get() < 0) {
    return errnoError("health: socket", errno);
  }
  int one = 1;
  ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port_));
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(listener_.get(), 64) != 0) {
    return errnoError(fmt::format("health: listen on port {}", port_), errno);
  }
  server_ = std::thread([this] { serve(); });
  prober_ = std::thread([this] { probeLoop(); });
  return Status::Ok();
}

void NodeHealth::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (listener_.get() >= 0) {
    ::shutdown(listener_.get(), SHUT_RDWR);  // wakes accept()
  }
  if (server_.joinable()) {
    server_.join();
  }
  if (prober_.joinable()) {
    prober_.join();
  }
}

void NodeHealth::serve() {
  for (;;) {
    int c = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || (errno != EINTR && errno != ECONNABORTED)) {
        return;
      }
      continue;
    }
    ::close(c);  // a completed handshake is the answer
  }
}

void NodeHealth::probeLoop() {
  for (;;) {
    std::map<std::string, NodeProbe> round;
    for (const auto& [name, ip] : nodes_()) {
      round[name] = probe(ip, port_);
    }
    std::unique_lock<std::mutex> lock(mu_);
    for (const auto& [name, r] : round) {
      auto it = results_.find(name);
      if (it != results_.end() && it->second.reachable != r.reachable) {
        spdlog::info("health: node {} is {} ({})", name, r.reachable ? "reachable" : "unreachable", r.message);
      }
    }
    results_ = std::move(round);
    if (cv_.wait_for(lock, kInterval, [this] { return stopping_; })) {
      return;
    }
  }
}

std::map<std::string, NodeProbe> NodeHealth::results() const {
  std::lock_guard<std::mutex> lock(mu_);
  return results_;
}

}  // namespace plexus::agent
