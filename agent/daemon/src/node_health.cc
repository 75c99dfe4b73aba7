#include "plexus/agent/node_health.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/icmp.h>  // ICMP_FILTER for raw sockets
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace plexus::agent {

namespace {
constexpr auto kInterval = std::chrono::seconds(2);
constexpr int kTimeoutMs = 1000;
constexpr std::string_view kEchoPayload = "plexus health";

using Clock = std::chrono::steady_clock;

double millisSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

sockaddr_in socketAddress(Ipv4 ip, int port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = ip.networkOrder();
  return sa;
}

// A TCP connect with a deadline: the probe cilium-health makes to a node's health endpoint.
node::ProbeResult probeTcp(Ipv4 ip, int port) {
  auto t0 = Clock::now();
  node::ProbeResult r;
  datapath::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    r.message = fmt::format("socket: {}", std::strerror(errno));
    return r;
  }
  sockaddr_in sa = socketAddress(ip, port);
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
  r.ok = true;
  r.milliseconds = millisSince(t0);
  r.message = "ok";
  return r;
}
}  // namespace

NodeHealth::NodeHealth(int port, std::function<std::map<std::string, Ipv4>()> nodes)
    : port_(port), nodes_(std::move(nodes)) {
  // Tells our raw-socket replies from other pingers' in this namespace (a ping socket gets the kernel's id).
  icmp_id_ = static_cast<uint16_t>(std::random_device{}());
}

void NodeHealth::openIcmp() {
  // A raw socket needs CAP_NET_RAW (the agent runs as root; the chart grants NET_RAW). A ping socket
  // (SOCK_DGRAM, IPPROTO_ICMP) needs the group in net.ipv4.ping_group_range, which a new namespace leaves empty.
  icmp_ = datapath::UniqueFd(::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP));
  if (icmp_.get() >= 0) {
    icmp_raw_ = true;
    icmp_mode_ = "raw socket";
    // Only echo replies wake us (the filter's set bits are the types dropped).
    icmp_filter filter{~(1u << ICMP_ECHOREPLY)};
    (void)::setsockopt(icmp_.get(), SOL_RAW, ICMP_FILTER, &filter, sizeof(filter));
    return;
  }
  std::string raw_error = std::strerror(errno);
  icmp_ = datapath::UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP));
  if (icmp_.get() >= 0) {
    icmp_raw_ = false;
    icmp_mode_ = "ping socket";
    return;
  }
  icmp_mode_ = fmt::format("off (raw socket: {}; ping socket: {}, see net.ipv4.ping_group_range)", raw_error,
                           std::strerror(errno));
}

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
  openIcmp();
  spdlog::info("health: TCP port {}, ICMP echo by {}", port_, icmp_mode_);
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

std::string NodeHealth::icmpMode() const { return icmp_mode_; }

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

std::map<std::string, node::ProbeResult> NodeHealth::pingAll(const std::map<std::string, Ipv4>& nodes) {
  std::map<std::string, node::ProbeResult> out;
  if (icmp_.get() < 0) {
    for (const auto& [name, ip] : nodes) {
      out[name] = node::ProbeResult{false, 0, "ICMP probes " + icmp_mode_};
    }
    return out;
  }
  struct Pending {
    std::string name;
    Ipv4 ip;
    Clock::time_point sent;
  };
  std::map<uint16_t, Pending> pending;  // by sequence number: this round's echoes still unanswered
  const std::span<const uint8_t> payload(reinterpret_cast<const uint8_t*>(kEchoPayload.data()), kEchoPayload.size());
  for (const auto& [name, ip] : nodes) {
    uint16_t seq = ++icmp_seq_;
    auto msg = node::icmpEchoRequest(icmp_id_, seq, payload);
    sockaddr_in sa = socketAddress(ip, 0);
    auto t0 = Clock::now();
    if (::sendto(icmp_.get(), msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) {
      out[name] = node::ProbeResult{false, 0, fmt::format("echo to {}: {}", ip.toString(), std::strerror(errno))};
      continue;
    }
    pending[seq] = Pending{name, ip, t0};
  }
  // Bounded by the deadline: each pass waits at most the time left, and reads what is queued.
  const auto deadline = Clock::now() + std::chrono::milliseconds(kTimeoutMs);
  std::array<uint8_t, 1500> buf{};
  while (!pending.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      break;
    }
    pollfd p{icmp_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) {
      continue;  // timeout (the loop ends on the deadline) or EINTR
    }
    for (int i = 0; i < 1024; ++i) {  // drain what is queued, bounded
      sockaddr_in from{};
      socklen_t from_len = sizeof(from);
      ssize_t n = ::recvfrom(icmp_.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 0) {
        break;  // EAGAIN: nothing more now
      }
      auto reply = node::parseEchoReply(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), icmp_raw_);
      if (!reply || (icmp_raw_ && reply->id != icmp_id_)) {
        continue;  // not ours: another pinger in this namespace, or not an echo reply
      }
      auto it = pending.find(reply->seq);
      Ipv4 source = reply->source.value_or(Ipv4::fromNetwork(from.sin_addr.s_addr));
      if (it == pending.end() || source != it->second.ip) {
        continue;  // a late reply of an earlier round, or from another address
      }
      out[it->second.name] = node::ProbeResult{true, millisSince(it->second.sent), "ok"};
      pending.erase(it);
    }
  }
  for (const auto& [seq, p] : pending) {
    out[p.name] = node::ProbeResult{false, 0, fmt::format("no echo reply from {} in {} ms", p.ip.toString(), kTimeoutMs)};
  }
  return out;
}

void NodeHealth::probeLoop() {
  for (;;) {
    auto nodes = nodes_();
    auto icmp = pingAll(nodes);
    std::map<std::string, NodeProbe> round;
    for (const auto& [name, ip] : nodes) {
      round[name] = NodeProbe{icmp[name], probeTcp(ip, port_)};
    }
    std::unique_lock<std::mutex> lock(mu_);
    for (const auto& [name, r] : round) {
      auto it = results_.find(name);
      if (it != results_.end() && (it->second.icmp.ok != r.icmp.ok || it->second.tcp.ok != r.tcp.ok)) {
        spdlog::info("health: node {} is {} ({})", name, r.reachable() ? "reachable" : "unreachable", node::summary(r));
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
