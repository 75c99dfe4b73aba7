#pragma once
// Paths shared by the agent, plexus-cni and the CLI.

#include <string>

namespace plexus::api {

inline constexpr const char* kDefaultSocket = "/run/plexus/plexus.sock";

// Directory where plexus-cni queues DEL requests it could not deliver (agent down). The agent drains it
// at start. It sits beside the socket so that each agent on a machine has its own queue.
inline std::string pendingDeleteDir(const std::string& socket_path) {
  auto slash = socket_path.rfind('/');
  std::string dir = slash == std::string::npos ? std::string(".") : socket_path.substr(0, slash);
  return dir + "/cni-pending";
}

inline std::string grpcTarget(const std::string& socket_path) { return "unix:" + socket_path; }

}  // namespace plexus::api
