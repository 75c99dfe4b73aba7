#pragma once
// Entering a network namespace on the calling thread, for single-threaded processes (plexus-cni). inNetns()
// (netlink.h) keeps the caller's thread where it is by running fn on a new thread; a process with one thread can
// switch its own and switch back, which saves that thread's creation and join (a clone, an 8 MiB stack mapping and
// two wake-ups: milliseconds on a busy node, where every hand-off waits for a CPU).

#include <functional>

#include "plexus/common/result.h"

namespace plexus::datapath {

// Enters the namespace, runs fn and returns to the namespace the thread was in. Precondition: no other thread of
// the process relies on this thread's namespace. If the way back fails the error says so, and the caller must
// not open network sockets afterwards (unix sockets are unaffected: they are found by path).
Status inNetnsOnThisThread(int netns_fd, const std::function<Status()>& fn);

}  // namespace plexus::datapath
