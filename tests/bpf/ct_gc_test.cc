// Conntrack garbage collection: the lifetime rule (pure) and a pass over the real pinned map.
#include "lxc_fixture.h"
#include "plexus/datapath/conntrack_gc.h"

using namespace plexus;
using namespace plexus::testing;

namespace {
constexpr uint64_t kSecond = 1000000000ULL;

plexus_ct4_key key(uint8_t proto, uint16_t sport) { return ctKey(kPodA, kPodB, sport, 80, proto, PLEXUS_CT_EGRESS); }

plexus_ct4_value seen(uint64_t at, uint8_t tx_flags = 0x12) {
  plexus_ct4_value v{};
  v.last_seen_ns = at;
  v.tx_flags = tx_flags;
  return v;
}
}  // namespace

TEST_CASE("conntrack lifetimes: open TCP 6 h, closing TCP 120 s, UDP 60 s", "[unit][conntrack]") {
  datapath::CtLifetimes l;
  const uint64_t now = 100000 * kSecond;
  CHECK_FALSE(datapath::conntrackExpired(key(6, 1), seen(now - 3600 * kSecond), now, l));
  CHECK(datapath::conntrackExpired(key(6, 1), seen(now - 21601 * kSecond), now, l));
  CHECK_FALSE(datapath::conntrackExpired(key(6, 1), seen(now - 100 * kSecond, 0x11), now, l));  // FIN: TIME_WAIT
  CHECK(datapath::conntrackExpired(key(6, 1), seen(now - 121 * kSecond, 0x11), now, l));
  plexus_ct4_value reset = seen(now - 121 * kSecond, 0x10);
  reset.rx_flags = 0x04;  // RST from the other side
  CHECK(datapath::conntrackExpired(key(6, 1), reset, now, l));
  CHECK_FALSE(datapath::conntrackExpired(key(17, 1), seen(now - 59 * kSecond, 0), now, l));
  CHECK(datapath::conntrackExpired(key(17, 1), seen(now - 61 * kSecond, 0), now, l));
  CHECK_FALSE(datapath::conntrackExpired(key(6, 1), seen(now + kSecond), now, l));  // seen "after" now: kept
}

TEST_CASE("a conntrack GC pass deletes expired entries and keeps live ones", "[bpf][conntrack]") {
  Fixture f;
  auto& ct = f.dp->lb().ct;
  const uint64_t now = datapath::monotonicNs();
  REQUIRE(now > 200 * kSecond);  // the machine has been up longer than the lifetimes used below
  REQUIRE(ct.update(key(6, 1000), seen(now - 10 * kSecond)).ok());               // open TCP: kept
  REQUIRE(ct.update(key(6, 1001), seen(now - 200 * kSecond, 0x11)).ok());        // closed long ago: deleted
  REQUIRE(ct.update(key(17, 1002), seen(now - 5 * kSecond, 0)).ok());            // recent UDP: kept
  REQUIRE(ct.update(key(17, 1003), seen(now - 90 * kSecond, 0)).ok());           // quiet UDP: deleted
  auto r = datapath::collectConntrack(ct, now, datapath::CtLifetimes{});
  REQUIRE(r.ok());
  CHECK(r->scanned == 4);
  CHECK(r->deleted == 2);
  // TCP apart, as Cilium's cilium_datapath_conntrack_gc_entries{protocol} splits them.
  CHECK(r->scanned_tcp == 2);
  CHECK(r->deleted_tcp == 1);
  auto present = [&](uint8_t proto, uint16_t sport) {
    auto v = ct.lookup(key(proto, sport));
    REQUIRE(v.ok());
    return v->has_value();
  };
  CHECK(present(6, 1000));
  CHECK_FALSE(present(6, 1001));
  CHECK(present(17, 1002));
  CHECK_FALSE(present(17, 1003));
}

TEST_CASE("masquerade lifetimes: TCP 6 h, closing TCP 120 s, others 60 s since the last packet", "[unit][conntrack]") {
  datapath::CtLifetimes l;
  plexus_snat4_key k{};
  plexus_snat4_value v{};
  v.last_seen_ns = 1000;
  k.proto = IPPROTO_TCP;
  CHECK_FALSE(datapath::natExpired(k, v, 1000 + l.tcp_ns, l));
  CHECK(datapath::natExpired(k, v, 1001 + l.tcp_ns, l));
  v.flags = PLEXUS_SNAT_F_CLOSING;
  CHECK_FALSE(datapath::natExpired(k, v, 1000 + l.tcp_closing_ns, l));
  CHECK(datapath::natExpired(k, v, 1001 + l.tcp_closing_ns, l));
  v.flags = 0;
  k.proto = IPPROTO_UDP;
  CHECK_FALSE(datapath::natExpired(k, v, 1000 + l.non_tcp_ns, l));
  CHECK(datapath::natExpired(k, v, 1001 + l.non_tcp_ns, l));
  k.proto = IPPROTO_ICMP;
  CHECK(datapath::natExpired(k, v, 1001 + l.non_tcp_ns, l));
  v.last_seen_ns = 5000;  // seen after `now` (another CPU's clock read): not expired
  CHECK_FALSE(datapath::natExpired(k, v, 4000, l));
}
