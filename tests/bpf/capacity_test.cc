// Map sizes the operator picks (--bpf-lb-map-max, --bpf-policy-map-max, --bpf-ipcache-map-max, --ct-map-size) reach
// the kernel's maps, and a full map is a ResourceExhausted error that names the map and its size.
#include <arpa/inet.h>

#include "lxc_fixture.h"
#include "plexus/datapath/host_datapath.h"

using namespace plexus;
using namespace plexus::datapath;
using namespace plexus::testing;

namespace {
datapath::LxcConfig smallMaps() {
  datapath::LxcConfig cfg;
  cfg.sizes.ct = 1024;
  cfg.sizes.lb = 16;
  cfg.sizes.policy = 16;
  cfg.sizes.ipcache = 16;
  return cfg;
}

uint32_t maxEntries(int fd) {
  auto info = mapInfo(fd);
  REQUIRE(info.ok());
  return info->max_entries;
}
}  // namespace

TEST_CASE("capacity: the configured sizes reach the maps, and the host programs share them", "[bpf][capacity]") {
  Fixture f(smallMaps());
  CHECK(maxEntries(f.dp->lb().services.fd()) == 16);
  CHECK(maxEntries(f.dp->lb().backends.fd()) == 16);
  CHECK(maxEntries(f.dp->lb().revnat.fd()) == 16);
  CHECK(maxEntries(f.dp->lb().affinity.fd()) == 16);
  CHECK(maxEntries(f.dp->lb().maglev_outer.get()) == 16);
  CHECK(maxEntries(f.dp->lb().ct.fd()) == 1024);
  CHECK(maxEntries(f.dp->ipcache().fd()) == 16);
  CHECK(f.dp->policy().capacity() == 16);

  // The host programs open the same pinned maps with the same sizes: nothing is moved aside.
  auto cfg = smallMaps();
  cfg.bpf_root = f.bpffs.path() + "/plexus";
  auto host = HostDatapath::load(cfg);
  REQUIRE(host.ok());
  CHECK(maxEntries(f.dp->lb().services.fd()) == 16);
}

TEST_CASE("capacity: a full hash map, LPM trie or policy map is ResourceExhausted naming the map", "[bpf][capacity]") {
  Fixture f(smallMaps());
  SECTION("services (hash)") {
    auto& svc = f.dp->lb().services;
    for (uint16_t i = 0; i < 16; ++i) {
      plexus_lb4_key k{};
      k.address = htonl(0x0a600000 + i);
      k.dport = htons(80);
      REQUIRE(svc.update(k, plexus_lb4_service{}).ok());
    }
    plexus_lb4_key extra{};
    extra.address = htonl(0x0a6000ff);
    Status s = svc.update(extra, plexus_lb4_service{});
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code == ErrorCode::kResourceExhausted);
    CHECK(s.error().message == "map plexus_lb4_services_v1 is full (16 entries)");
    // An existing key is still updated in a full map.
    plexus_lb4_key first{};
    first.address = htonl(0x0a600000);
    first.dport = htons(80);
    CHECK(svc.update(first, plexus_lb4_service{}).ok());
  }
  SECTION("ipcache (LPM trie)") {
    auto& ipc = f.dp->ipcache();
    for (uint32_t i = 0; i < 16; ++i) {
      plexus_ipcache_key k{};
      k.prefixlen = 32;
      k.ip = htonl(0xc0a80000 + i);
      REQUIRE(ipc.update(k, plexus_ipcache_value{}).ok());
    }
    plexus_ipcache_key extra{};
    extra.prefixlen = 32;
    extra.ip = htonl(0xc0a800ff);
    Status s = ipc.update(extra, plexus_ipcache_value{});
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code == ErrorCode::kResourceExhausted);
    CHECK(s.error().message == "map plexus_ipcache_v1 is full (16 entries)");
  }
  SECTION("an endpoint's policy map: refused whole, the installed trie stays") {
    PolicyEntries many;
    for (uint16_t port = 1; port <= 17; ++port) {
      plexus_policy_key k{};
      k.prefixlen = PLEXUS_POLICY_FIXED_PREFIX + 8 + 16;
      k.identity = 300;
      k.protocol = 6;
      k.dport = htons(port);
      many.emplace_back(k, plexus_policy_value{});
    }
    Status s = f.dp->policy().set(1, many);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code == ErrorCode::kResourceExhausted);
    CHECK(s.error().message.find("needs 17 entries, the map holds 16") != std::string::npos);
    auto kept = f.dp->policy().get(1);
    REQUIRE(kept.ok());
    CHECK(kept->size() == allowAllPolicy().size());  // the fixture's allow-all, untouched
    many.pop_back();
    CHECK(f.dp->policy().set(1, many).ok());
  }
}
