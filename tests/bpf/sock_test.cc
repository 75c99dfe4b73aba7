// [bpf] socket LB: the real cgroup programs attached to a private cgroup v2 directory, with real sockets on
// loopback. A forked child joins the cgroup and talks to the service address.
#include <fcntl.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "lxc_fixture.h"
#include "plexus/datapath/sock_datapath.h"

using namespace plexus;
using namespace plexus::testing;
namespace fs = std::filesystem;

namespace {

const Ipv4 kSvc = *Ipv4::parse("10.96.7.7");
const Ipv4 kLoopback = *Ipv4::parse("127.0.0.1");

class Cgroup {
 public:
  Cgroup() : path_("/sys/fs/cgroup/unified/" + uniqueName("plx")) { fs::create_directories(path_); }
  ~Cgroup() { rmdir(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void addService(Fixture& f, uint16_t port, uint8_t proto, std::optional<uint16_t> backend_port) {
  auto& lb = f.dp->lb();
  plexus_lb4_key k{};
  k.address = kSvc.networkOrder();
  k.dport = htons(port);
  k.proto = proto;
  plexus_lb4_service master{};
  master.rev_nat_index = 3;
  master.count = backend_port ? 1 : 0;
  REQUIRE(lb.services.update(k, master).ok());
  if (backend_port) {
    plexus_lb4_backend b{};
    b.address = kLoopback.networkOrder();
    b.port = htons(*backend_port);
    b.proto = proto;
    REQUIRE(lb.backends.update(9, b).ok());
    k.backend_slot = 1;
    plexus_lb4_service slot{};
    slot.backend_id = 9;
    slot.rev_nat_index = 3;
    REQUIRE(lb.services.update(k, slot).ok());
  }
}

// Runs fn in a child process that has joined the cgroup; returns the child's exit code.
template <typename Fn>
int inCgroup(const Cgroup& cg, Fn fn) {
  pid_t pid = fork();
  if (pid == 0) {
    std::ofstream(cg.path() + "/cgroup.procs") << "0";
    _exit(fn());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

sockaddr_in addr(Ipv4 ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = ip.networkOrder();
  a.sin_port = htons(port);
  return a;
}

}  // namespace

TEST_CASE("socket LB connects a ClusterIP to its backend and reports the service as the peer", "[bpf][sock]") {
  Fixture f;
  Cgroup cg;
  auto sock = datapath::SockDatapath::load({f.bpffs.path() + "/plexus", cg.path()});
  INFO((sock.ok() ? std::string() : sock.error().message));
  REQUIRE(sock.ok());
  CHECK((*sock)->programs().size() == 4);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto la = addr(kLoopback, 0);
  REQUIRE(bind(lfd, reinterpret_cast<sockaddr*>(&la), sizeof(la)) == 0);
  REQUIRE(listen(lfd, 4) == 0);
  socklen_t len = sizeof(la);
  getsockname(lfd, reinterpret_cast<sockaddr*>(&la), &len);
  uint16_t backend_port = ntohs(la.sin_port);
  addService(f, 80, IPPROTO_TCP, backend_port);

  int code = inCgroup(cg, [] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    auto svc = addr(kSvc, 80);
    if (connect(fd, reinterpret_cast<sockaddr*>(&svc), sizeof(svc)) != 0) {
      return 1;
    }
    sockaddr_in peer{};
    socklen_t plen = sizeof(peer);
    getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen);
    if (peer.sin_addr.s_addr != kSvc.networkOrder() || ntohs(peer.sin_port) != 80) {
      return 2;
    }
    return write(fd, "hi", 2) == 2 ? 0 : 3;
  });
  CHECK(code == 0);
  int afd = acceptWithin(lfd);
  REQUIRE(afd >= 0);
  char buf[2] = {};
  CHECK(read(afd, buf, 2) == 2);
  close(afd);
  close(lfd);
}

TEST_CASE("socket LB refuses a service without backends with ECONNREFUSED", "[bpf][sock]") {
  Fixture f;
  Cgroup cg;
  auto sock = datapath::SockDatapath::load({f.bpffs.path() + "/plexus", cg.path()});
  REQUIRE(sock.ok());
  addService(f, 81, IPPROTO_TCP, std::nullopt);
  int code = inCgroup(cg, [] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    auto svc = addr(kSvc, 81);
    int r = connect(fd, reinterpret_cast<sockaddr*>(&svc), sizeof(svc));
    return (r != 0 && errno == ECONNREFUSED) ? 0 : 1;
  });
  CHECK(code == 0);
}

TEST_CASE("socket LB translates unconnected UDP and restores the service on receive", "[bpf][sock]") {
  Fixture f;
  Cgroup cg;
  auto sock = datapath::SockDatapath::load({f.bpffs.path() + "/plexus", cg.path()});
  REQUIRE(sock.ok());
  int srv = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  auto la = addr(kLoopback, 0);
  REQUIRE(bind(srv, reinterpret_cast<sockaddr*>(&la), sizeof(la)) == 0);
  socklen_t len = sizeof(la);
  getsockname(srv, reinterpret_cast<sockaddr*>(&la), &len);
  addService(f, 53, IPPROTO_UDP, ntohs(la.sin_port));

  // An echo that answers one datagram, in a thread of ours (outside the cgroup).
  std::thread echo([srv] {
    pollfd p{srv, POLLIN, 0};
    if (poll(&p, 1, 5000) == 1) {
      char b[16];
      sockaddr_in from{};
      socklen_t fl = sizeof(from);
      ssize_t n = recvfrom(srv, b, sizeof(b), 0, reinterpret_cast<sockaddr*>(&from), &fl);
      if (n > 0) {
        sendto(srv, b, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), fl);
      }
    }
  });
  int code = inCgroup(cg, [] {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    auto svc = addr(kSvc, 53);
    if (sendto(fd, "q", 1, 0, reinterpret_cast<sockaddr*>(&svc), sizeof(svc)) != 1) {
      return 1;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) {
      return 2;
    }
    char b[4];
    sockaddr_in from{};
    socklen_t fl = sizeof(from);
    if (recvfrom(fd, b, sizeof(b), 0, reinterpret_cast<sockaddr*>(&from), &fl) != 1) {
      return 3;
    }
    return (from.sin_addr.s_addr == kSvc.networkOrder() && ntohs(from.sin_port) == 53) ? 0 : 4;
  });
  echo.join();
  close(srv);
  CHECK(code == 0);
}
