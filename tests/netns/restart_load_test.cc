// Restart under load (issue 13): new connections keep flowing, at a steady rate, on the three paths a pod uses (pod
// to pod, pod to a ClusterIP through socket LB, pod to a ClusterIP through per-packet LB) while the agent is killed
// with -9 and restarted ten times. Every connection is a real TCP connect with a bounded timeout followed by a
// greeting from the backend; one that does not complete both is a failed connection, and the goal is none.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "node_fixture.h"

using namespace plexus::testing;

namespace {

constexpr int kRestarts = 10;
constexpr int kIntervalMs = 50;           // one new connection per path every 50 ms
constexpr int kConnectTimeoutMs = 3000;   // covers one SYN retransmission (the first comes after 1 s)
constexpr int kMaxAttemptsPerPath = 4000; // bounds each generator's loop (200 s at the interval)
constexpr int kDownAttempts = 8;         // per path, per restart, with no agent running
constexpr uint16_t kBackendPort = 8080;

// Where the agent was when a connection started: the failures are attributed to it.
enum Phase : int { kUp = 0, kDown = 1, kStarting = 2, kPhases = 3 };

struct PathCounts {
  std::atomic<int> attempted{0};
  std::atomic<int> failed{0};
  std::atomic<int> retransmitted{0};  // completed, but only after the SYN or the greeting was sent again
  std::atomic<int> attempted_in[kPhases] = {};
  std::atomic<int> failed_in[kPhases] = {};
  std::atomic<int> first_failure_errno{0};
};

enum PathId : int { kPodToPod = 0, kSocketLb = 1, kPerPacketLb = 2, kPaths = 3 };
const char* const kPathNames[kPaths] = {"pod to pod", "pod to ClusterIP, socket LB", "pod to ClusterIP, per-packet LB"};

// Shared with the socket-LB generator, a child process (socket LB applies to the processes of the agent's cgroup,
// and a cgroup holds whole processes): anonymous shared memory, lock-free atomics only.
struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<int> phase{kUp};
  PathCounts paths[kPaths];
};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

void sleepMs(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, nullptr);
}

// One connection: connect within the timeout, then the backend's greeting within the timeout. Returns 0 or the
// errno that failed it (ETIMEDOUT for a timeout, EPROTO for a connection closed without a greeting); sets
// *retransmitted when the kernel had to send anything again. Async-signal-safe calls only: it runs in a forked child.
int connectOnce(const sockaddr_in& dst, bool* retransmitted) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return errno;
  }
  int err = 0;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&dst), sizeof(dst)) != 0 && errno != EINPROGRESS) {
    err = errno;
  }
  if (err == 0) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, kConnectTimeoutMs) != 1) {
      err = ETIMEDOUT;
    } else {
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    }
  }
  if (err == 0) {
    pollfd p{fd, POLLIN, 0};
    char buf[16];
    if (poll(&p, 1, kConnectTimeoutMs) != 1) {
      err = ETIMEDOUT;
    } else {
      ssize_t n = read(fd, buf, sizeof(buf));
      err = n > 0 ? 0 : (n < 0 ? errno : EPROTO);
    }
  }
  tcp_info info{};
  socklen_t len = sizeof(info);
  *retransmitted = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_total_retrans > 0;
  close(fd);
  return err;
}

// Opens connections to dst every kIntervalMs until told to stop (bounded), counting them. Runs in the pod's
// namespace (the caller has entered it).
void generate(Shared& shared, PathCounts& counts, const sockaddr_in& dst) {
  for (int i = 0; i < kMaxAttemptsPerPath && !shared.stop.load(); ++i) {
    int phase = shared.phase.load();
    bool retransmitted = false;
    int err = connectOnce(dst, &retransmitted);
    counts.attempted.fetch_add(1);
    counts.attempted_in[phase].fetch_add(1);
    if (err != 0) {
      counts.failed.fetch_add(1);
      counts.failed_in[phase].fetch_add(1);
      int none = 0;
      counts.first_failure_errno.compare_exchange_strong(none, err);
    } else if (retransmitted) {
      counts.retransmitted.fetch_add(1);
    }
    sleepMs(kIntervalMs);
  }
}


// Everything that runs beside the test body: the backend's accept loop, two generator threads and the socket-LB
// generator process. The destructor stops and reaps them all, also when a REQUIRE fails mid-run.
class Load {
 public:
  Load() {
    void* mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mem != MAP_FAILED);
    shared_ = new (mem) Shared();
  }
  ~Load() {
    shared_->stop = true;
    if (child_ > 0) {
      // The child checks the flag every interval; the kill only bounds a stuck one.
      for (int i = 0; i < 200 && waitpid(child_, nullptr, WNOHANG) == 0; ++i) {
        sleepMs(50);
      }
      if (kill(child_, SIGKILL) == 0) {
        waitpid(child_, nullptr, 0);
      }
    }
    for (auto& t : threads_) {
      t.join();
    }
    if (listen_fd_ >= 0) {
      close(listen_fd_);
    }
    shared_->~Shared();
    munmap(shared_, sizeof(Shared));
  }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  Shared& shared() { return *shared_; }
  PathCounts& path(PathId id) { return shared_->paths[id]; }

  // Answers every connection on kBackendPort in the pod with a greeting and closes it.
  void serve(const Pod& backend) {
    listen_fd_ = tcpListen(backend.netns->path(), kBackendPort).first;
    REQUIRE(listen_fd_ >= 0);
    threads_.emplace_back([this] {
      for (int i = 0; i < kPaths * kMaxAttemptsPerPath * 4 && !shared_->stop.load(); ++i) {
        int c = acceptWithin(listen_fd_, std::chrono::milliseconds(100));
        if (c >= 0) {
          (void)!write(c, "hello", 5);
          close(c);
        }
      }
    });
  }

  // A generator thread in the client pod's namespace (setns affects the calling thread only).
  void fromThread(PathId id, const Pod& client, const std::string& ip, uint16_t port) {
    int ns = open(client.netns->path().c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(ns >= 0);
    sockaddr_in dst = ipv4Address(ip, port);
    threads_.emplace_back([this, id, ns, dst] {
      bool entered = setns(ns, CLONE_NEWNET) == 0;
      close(ns);
      if (entered) {
        generate(*shared_, shared_->paths[id], dst);
      } else {
        shared_->paths[id].first_failure_errno = errno;
      }
    });
  }

  // A generator process in the client pod's namespace and in `cgroup` (the agent's cgroup root).
  void fromProcessInCgroup(PathId id, const Pod& client, const std::string& cgroup, const std::string& ip,
                           uint16_t port) {
    // Everything the child needs is prepared here: after fork it makes no allocation.
    int ns = open(client.netns->path().c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(ns >= 0);
    int procs = open((cgroup + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(procs >= 0);
    sockaddr_in dst = ipv4Address(ip, port);
    child_ = fork();
    REQUIRE(child_ >= 0);
    if (child_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test process that dies takes its generator along
      bool ready = write(procs, "0", 1) == 1 && setns(ns, CLONE_NEWNET) == 0;
      if (ready) {
        generate(*shared_, shared_->paths[id], dst);
      } else {
        shared_->paths[id].first_failure_errno = errno;
      }
      _exit(ready ? 0 : 1);
    }
    close(ns);
    close(procs);
  }

  // Attempted and failed connections per path, failures by the agent's phase when they began.
  std::string describe() const {
    std::string out;
    for (int p = 0; p < kPaths; ++p) {
      const PathCounts& c = shared_->paths[p];
      out += std::string(kPathNames[p]) + ": " + std::to_string(c.attempted.load()) + " attempted, " +
             std::to_string(c.failed.load()) + " failed (agent up " + std::to_string(c.failed_in[kUp].load()) +
             ", down " + std::to_string(c.failed_in[kDown].load()) + ", starting " +
             std::to_string(c.failed_in[kStarting].load()) + "; first errno " +
             std::to_string(c.first_failure_errno.load()) + "), " + std::to_string(c.retransmitted.load()) +
             " retransmitted; " + std::to_string(c.attempted_in[kDown].load()) + " while down, " +
             std::to_string(c.attempted_in[kStarting].load()) + " while starting\n";
    }
    return out;
  }

  // Waits (bounded) until every path has made `n` more attempts than it had; false if one did not.
  bool waitForAttempts(int n) {
    int from[kPaths];
    for (int p = 0; p < kPaths; ++p) {
      from[p] = shared_->paths[p].attempted.load();
    }
    for (int i = 0; i < 400; ++i) {
      bool all = true;
      for (int p = 0; p < kPaths; ++p) {
        all = all && shared_->paths[p].attempted.load() >= from[p] + n;
      }
      if (all) {
        return true;
      }
      sleepMs(25);
    }
    return false;
  }

 private:
  Shared* shared_ = nullptr;
  int listen_fd_ = -1;
  pid_t child_ = -1;
  std::vector<std::thread> threads_;
};

std::string tail(const std::string& text, size_t n) { return text.size() > n ? text.substr(text.size() - n) : text; }

}  // namespace

TEST_CASE("restart under load: new connections on every path survive ten kill -9 restarts of the agent",
          "[netns][services][restart]") {
  NodeFixture node("10.216.0.0/24");
  Pod web = node.addPod("web");
  Pod direct = node.addPod("direct");
  Pod sock = node.addPod("sock");
  Pod packet = node.addPod("packet");
  std::string manifests = node.dir() + "/web.yaml";
  std::ofstream(manifests) << R"(apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 10.96.16.10, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}
)";
  auto applied = node.cli({"apply", "-f", manifests});
  INFO(applied.out << applied.err);
  REQUIRE(applied.exit_code == 0);

  // Socket LB records each connection it translates here (by socket cookie); the other paths never write it.
  auto sockRevnatEntries = [&] {
    plexus::datapath::UniqueFd fd(bpf_obj_get((node.bpfRoot() + "/plexus_lb4_sock_revnat_v1").c_str()));
    REQUIRE(fd.get() >= 0);
    return plexus::datapath::countKeys(fd.get());
  };
  uint32_t translated_before = sockRevnatEntries();

  Load load;
  load.serve(web);
  load.fromThread(kPodToPod, direct, web.ip, kBackendPort);
  load.fromProcessInCgroup(kSocketLb, sock, node.agent().cgroup(), "10.96.16.10", 80);
  load.fromThread(kPerPacketLb, packet, "10.96.16.10", 80);
  // Each wait is bounded; a path that stops making attempts (connects stuck until their timeout) fails the test
  // with the counts so far.
  auto requireAttempts = [&load](int n) {
    if (!load.waitForAttempts(n)) {
      FAIL("a path made fewer than " << n << " attempts in time:\n" << load.describe());
    }
  };
  // Every path works before the first restart.
  requireAttempts(5);
  for (int p = 0; p < kPaths; ++p) {
    INFO(load.describe());
    REQUIRE(load.path(PathId(p)).failed.load() == 0);
  }

  auto& phase = load.shared().phase;
  for (int r = 0; r < kRestarts; ++r) {
    phase = kDown;
    node.agent().kill9();
    // Connections made with no agent at all: the datapath alone carries them.
    requireAttempts(kDownAttempts);
    phase = kStarting;
    bool started = node.agent().start();
    INFO("restart " << r + 1 << ", agent log:\n" << tail(node.agent().log(), 6000));
    REQUIRE(started);
    phase = kUp;
    // Connections made with the restarted agent, while it reconciles and after.
    requireAttempts(10);
  }
  load.shared().stop = true;

  std::string report = load.describe();
  uint32_t translated_after = sockRevnatEntries();
  report += "socket-LB reverse-NAT entries added: " + std::to_string(translated_after - translated_before) + "\n";
  WARN("restart under load, " << kRestarts << " kill -9 restarts:\n" << report);
  INFO(report << "agent log:\n" << tail(node.agent().log(), 6000));
  for (int p = 0; p < kPaths; ++p) {
    const PathCounts& c = load.path(PathId(p));
    // An attempt that began just before the kill counts as made with the agent up.
    CHECK(c.attempted_in[kDown].load() >= (kDownAttempts - 1) * kRestarts);
    CHECK(c.attempted_in[kStarting].load() > 0);
    CHECK(c.failed.load() == 0);
  }
  // The socket-LB client's connections were translated at connect(), not per packet.
  CHECK(translated_after > translated_before);
}
