#include <catch2/catch.hpp>

#include "plexus/node/masquerade.h"

using namespace plexus;
using namespace plexus::node;

TEST_CASE("masquerade rules: local pods and our devices are skipped, the native CIDR keeps the pod address, the rest "
          "of the pod CIDR is masqueraded", "[unit][masquerade]") {
  auto pods = *Ipv4Prefix::parse("10.244.1.0/24");
  std::string without = masqueradeRestoreInput({pods, std::nullopt});
  CHECK(without ==
        "*nat\n"
        ":PLEXUS_POST_nat - [0:0]\n"
        "-F PLEXUS_POST_nat\n"
        "-A PLEXUS_POST_nat -o lxc+ -j RETURN\n"
        "-A PLEXUS_POST_nat -o plexus_+ -j RETURN\n"
        "-A PLEXUS_POST_nat -s 10.244.1.0/24 -m comment --comment \"plexus masquerade non-cluster\" -j MASQUERADE\n"
        "COMMIT\n");
  std::string with = masqueradeRestoreInput({pods, Ipv4Prefix::parse("10.0.0.0/8")});
  CHECK(with.find("-A PLEXUS_POST_nat -d 10.0.0.0/8 -j RETURN\n-A PLEXUS_POST_nat -s 10.244.1.0/24") !=
        std::string::npos);
}
