#pragma once
// The plugin's log: lines appended to the config's log-file, in spdlog's default pattern
// ("[2026-12-06 08:53:33.123] [plexus-cni-<pid>] [info] ..."), which the plugin wrote before it dropped spdlog
// (one process per CNI call: the two shared libraries cost more than the plugin logs). Each line is one
// write(2) on an O_APPEND descriptor, so lines of concurrent plugin processes do not interleave.
// Never stdout (it carries the result); a log file that cannot be opened must not fail the call.

#include <string>
#include <string_view>

#include "plexus/datapath/fd.h"

namespace plexus::cni {

class CniLog {
 public:
  // An empty path, or one that cannot be opened, gives a log that drops every line.
  explicit CniLog(const std::string& path);

  void info(std::string_view line) { write("info", line); }
  void warn(std::string_view line) { write("warning", line); }
  void error(std::string_view line) { write("error", line); }

 private:
  void write(std::string_view level, std::string_view line);

  datapath::UniqueFd fd_;
  std::string name_;
};

}  // namespace plexus::cni
