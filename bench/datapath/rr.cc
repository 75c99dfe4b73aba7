// plexus-bench-rr: TCP request/response latency. `rr server PORT` echoes fixed-size messages; `rr client IP PORT
// N SIZE` sends N requests one at a time (TCP_NODELAY) and prints the round-trip percentiles as JSON.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

bool readFull(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) {
      return false;  // bounded: a stuck peer ends the run
    }
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) {
      return false;
    }
    got += static_cast<size_t>(r);
  }
  return true;
}

int server(int port, size_t size) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(l, 4) != 0) {
    std::perror("rr server");
    return 1;
  }
  pollfd p{l, POLLIN, 0};
  if (poll(&p, 1, 30000) != 1) {
    return 1;
  }
  int c = accept(l, nullptr, nullptr);
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::vector<char> buf(size);
  while (readFull(c, buf.data(), size)) {
    if (write(c, buf.data(), size) != static_cast<ssize_t>(size)) {
      break;
    }
  }
  close(c);
  close(l);
  return 0;
}

int client(const char* ip, int port, int n, size_t size) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip, &a.sin_addr);
  bool connected = false;
  for (int attempt = 0; attempt < 50 && !connected; ++attempt) {
    connected = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    if (!connected) {
      close(fd);
      usleep(100000);
      fd = socket(AF_INET, SOCK_STREAM, 0);
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
  }
  if (!connected) {
    std::perror("rr client connect");
    return 1;
  }
  std::vector<char> buf(size, 'x');
  std::vector<double> us;
  us.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if (write(fd, buf.data(), size) != static_cast<ssize_t>(size) || !readFull(fd, buf.data(), size)) {
      std::fprintf(stderr, "rr client: exchange %d failed\n", i);
      return 1;
    }
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  close(fd);
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) { return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))]; };
  double sum = 0;
  for (double v : us) {
    sum += v;
  }
  std::printf("{\"n\":%d,\"p50_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f}\n", n, pct(0.50), pct(0.99), sum / n);
  return 0;
}

}  // namespace

// New-connection latency: N times connect, one request and response, close (like a TCP_CRR test).
int connectClient(const char* ip, int port, int n, size_t size) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip, &a.sin_addr);
  std::vector<char> buf(size, 'x');
  std::vector<double> us;
  us.reserve(static_cast<size_t>(n));
  int one = 1;
  for (int i = 0; i < n; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        write(fd, buf.data(), size) != static_cast<ssize_t>(size) || !readFull(fd, buf.data(), size)) {
      std::fprintf(stderr, "crr client: connection %d failed\n", i);
      close(fd);
      return 1;
    }
    close(fd);
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) { return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))]; };
  std::printf("{\"n\":%d,\"p50_us\":%.2f,\"p99_us\":%.2f}\n", n, pct(0.50), pct(0.99));
  return 0;
}

// A server for many short connections: echoes one message per connection until `count` connections are done.
int crrServer(int port, size_t size, int count) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(l, 128) != 0) {
    std::perror("crr server");
    return 1;
  }
  std::vector<char> buf(size);
  for (int i = 0; i < count; ++i) {
    pollfd p{l, POLLIN, 0};
    if (poll(&p, 1, 30000) != 1) {
      break;
    }
    int c = accept(l, nullptr, nullptr);
    if (readFull(c, buf.data(), size)) {
      (void)!write(c, buf.data(), size);
    }
    close(c);
  }
  close(l);
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 4 && std::string(argv[1]) == "crr-server") {
    return crrServer(std::atoi(argv[2]), 64, std::atoi(argv[3]));
  }
  if (argc >= 5 && std::string(argv[1]) == "crr-client") {
    return connectClient(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), 64);
  }
  if (argc >= 3 && std::string(argv[1]) == "server") {
    return server(std::atoi(argv[2]), argc >= 4 ? std::strtoul(argv[3], nullptr, 10) : 64);
  }
  if (argc >= 5 && std::string(argv[1]) == "client") {
    return client(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), argc >= 6 ? std::strtoul(argv[5], nullptr, 10) : 64);
  }
  std::fprintf(stderr,
               "usage: plexus-bench-rr server PORT [SIZE] | client IP PORT N [SIZE] | crr-server PORT COUNT |"
               " crr-client IP PORT N\n");
  return 2;
}
