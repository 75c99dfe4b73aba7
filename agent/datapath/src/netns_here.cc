#include "plexus/datapath/netns_here.h"

#include <fcntl.h>
#include <sched.h>

#include <cerrno>

#include "plexus/datapath/fd.h"

namespace plexus::datapath {

Status inNetnsOnThisThread(int netns_fd, const std::function<Status()>& fn) {
  // /proc/thread-self: this thread's namespace, which is what setns(2) changes.
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home.valid()) {
    return errnoError("open /proc/thread-self/ns/net", errno);
  }
  if (::setns(netns_fd, CLONE_NEWNET) != 0) {
    return errnoError("setns", errno);
  }
  Status result = fn();
  if (::setns(home.get(), CLONE_NEWNET) != 0) {
    return errnoError("setns back to the caller's namespace", errno);
  }
  return result;
}

}  // namespace plexus::datapath
