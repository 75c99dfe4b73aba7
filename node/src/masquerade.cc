#include "plexus/node/masquerade.h"

#include <fmt/format.h>

namespace plexus::node {

std::string masqueradeRestoreInput(const MasqueradeRules& rules) {
  std::string out = fmt::format("*nat\n:{0} - [0:0]\n-F {0}\n", kMasqueradeChain);
  out += fmt::format("-A {} -o lxc+ -j RETURN\n", kMasqueradeChain);
  out += fmt::format("-A {} -o plexus_+ -j RETURN\n", kMasqueradeChain);
  if (rules.native_cidr) {
    out += fmt::format("-A {} -d {} -j RETURN\n", kMasqueradeChain, rules.native_cidr->toString());
  }
  out += fmt::format("-A {} -s {} -m comment --comment \"plexus masquerade non-cluster\" -j MASQUERADE\n",
                     kMasqueradeChain, rules.pod_cidr.toString());
  out += "COMMIT\n";
  return out;
}

}  // namespace plexus::node
