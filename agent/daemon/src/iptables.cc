#include "plexus/agent/iptables.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

extern char** environ;

namespace plexus::agent {

namespace {
// Runs a tool with `input` on its stdin; its stderr goes to the agent's log, unless `quiet` (a probe whose failure is
// an answer). Returns its exit status.
Result<int> run(const std::vector<std::string>& argv, const std::string& input = "", bool quiet = false) {
  int in[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    return errnoError("pipe", errno);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  if (quiet) {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  }
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  if (rc != 0) {
    close(in[1]);
    return errnoError(fmt::format("run {}", argv[0]), rc);
  }
  // Small inputs (a few hundred bytes) fit the pipe: the write does not wait for the reader.
  (void)!write(in[1], input.data(), input.size());
  close(in[1]);
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) {
    return errnoError(fmt::format("wait for {}", argv[0]), errno);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}
}  // namespace

Status applyMasqueradeRules(const std::optional<node::MasqueradeRules>& rules) {
  const std::string chain = node::kMasqueradeChain;
  auto linked = run({"iptables", "-w", "-t", "nat", "-C", "POSTROUTING", "-j", chain}, "", true);
  if (!linked.ok()) {
    // No iptables on this node: nothing an earlier run could have left, but nothing to install with either.
    return rules ? Status(linked.error().wrap("masquerade rules")) : Status::Ok();
  }
  if (!rules) {
    if (*linked == 0) {  // an earlier run's chain: unlink, empty and delete it
      (void)run({"iptables", "-w", "-t", "nat", "-D", "POSTROUTING", "-j", chain});
      (void)run({"iptables", "-w", "-t", "nat", "-F", chain});
      (void)run({"iptables", "-w", "-t", "nat", "-X", chain});
      spdlog::info("masquerade: removed the {} chain an earlier run installed", chain);
    }
    return Status::Ok();
  }
  auto restored = run({"iptables-restore", "-w", "--noflush"}, node::masqueradeRestoreInput(*rules));
  if (!restored.ok() || *restored != 0) {
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("masquerade rules: iptables-restore failed ({})",
                                 restored.ok() ? fmt::format("exit {}", *restored) : restored.error().message));
  }
  if (*linked != 0) {
    auto added = run({"iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-j", chain});
    if (!added.ok() || *added != 0) {
      return makeError(ErrorCode::kUnavailable, "masquerade rules: cannot add the POSTROUTING jump");
    }
  }
  spdlog::info("masquerade: iptables MASQUERADE for {} in {}{}", rules->pod_cidr.toString(), chain,
               rules->native_cidr ? fmt::format(" (not to {})", rules->native_cidr->toString()) : std::string());
  return Status::Ok();
}

}  // namespace plexus::agent
