// plexus-cni: executed by kubelet/containerd/podman per CNI call. Env vars and stdin in, result on stdout.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>

#include "plexus/cni/plugin.h"

int main() {
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  auto out = plexus::cni::runPlugin([](const char* name) { return std::getenv(name); }, input);
  if (!out.out.empty()) {
    std::fwrite(out.out.data(), 1, out.out.size(), stdout);
    std::fputc('\n', stdout);
  }
  return out.exit_code;
}
