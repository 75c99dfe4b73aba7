#include <catch2/catch.hpp>

#include <random>

#include "fakes.h"
#include "plexus/agent/ipcache_manager.h"

using namespace plexus;
using namespace plexus::agent;
using namespace plexus::agent::testing;

TEST_CASE("ipcache: local endpoint > host > remote endpoint > node > policy CIDR", "[unit][ipcache]") {
  FakeIpcacheMap map;
  IpcacheManager m(map);
  auto p = prefix("10.0.0.5/32");
  const IpcacheEntry cidr{16777216, {}}, node{6, ip("192.168.1.2")}, remote{300, ip("192.168.1.2")},
      host{1, {}}, local{400, {}};
  // Stated from lowest to highest: each new statement wins.
  REQUIRE(m.upsert(p, IpcacheSource::kPolicyCidr, cidr).ok());
  CHECK(ipcacheEntry(map, p) == cidr);
  REQUIRE(m.upsert(p, IpcacheSource::kNode, node).ok());
  CHECK(ipcacheEntry(map, p) == node);
  REQUIRE(m.upsert(p, IpcacheSource::kRemoteEndpoint, remote).ok());
  CHECK(ipcacheEntry(map, p) == remote);
  REQUIRE(m.upsert(p, IpcacheSource::kHost, host).ok());
  CHECK(ipcacheEntry(map, p) == host);
  REQUIRE(m.upsert(p, IpcacheSource::kLocalEndpoint, local).ok());
  CHECK(ipcacheEntry(map, p) == local);
  CHECK(m.winner(p) == IpcacheSource::kLocalEndpoint);

  // A lower source restating itself does not displace the winner, nor touch the map.
  int writes = map.updates;
  REQUIRE(m.upsert(p, IpcacheSource::kNode, IpcacheEntry{6, ip("192.168.1.3")}).ok());
  CHECK(ipcacheEntry(map, p) == local);
  CHECK(map.updates == writes);

  // Removing the winner exposes the next one, down to the last.
  REQUIRE(m.remove(p, IpcacheSource::kLocalEndpoint).ok());
  CHECK(ipcacheEntry(map, p) == host);
  REQUIRE(m.remove(p, IpcacheSource::kHost).ok());
  CHECK(ipcacheEntry(map, p) == remote);
  REQUIRE(m.remove(p, IpcacheSource::kRemoteEndpoint).ok());
  CHECK(ipcacheEntry(map, p) == IpcacheEntry{6, ip("192.168.1.3")});
  CHECK(m.winner(p) == IpcacheSource::kNode);
  // Removing a source that is not the winner changes nothing in the map.
  REQUIRE(m.remove(p, IpcacheSource::kPolicyCidr).ok());
  CHECK(ipcacheEntry(map, p) == IpcacheEntry{6, ip("192.168.1.3")});
  REQUIRE(m.remove(p, IpcacheSource::kNode).ok());
  CHECK(map.data.empty());
  CHECK_FALSE(m.lookup(p));
  CHECK(m.size() == 0);
  CHECK_FALSE(m.pending());
}

TEST_CASE("ipcache: replace() swaps everything one source says", "[unit][ipcache]") {
  FakeIpcacheMap map;
  IpcacheManager m(map);
  auto a = prefix("192.168.1.10/32"), b = prefix("192.168.1.11/32"), c = prefix("192.168.1.12/32");
  REQUIRE(m.replace(IpcacheSource::kHost, {{a, {1, {}}}, {b, {1, {}}}}).ok());
  REQUIRE(m.upsert(b, IpcacheSource::kNode, IpcacheEntry{6, {}}).ok());
  CHECK(decodeIpcache(map) == std::map<Ipv4Prefix, IpcacheEntry>{{a, {1, {}}}, {b, {1, {}}}});

  // a is dropped (erased: no other source), b falls back to the node's statement, c is new.
  REQUIRE(m.replace(IpcacheSource::kHost, {{c, {1, {}}}}).ok());
  CHECK(decodeIpcache(map) == std::map<Ipv4Prefix, IpcacheEntry>{{b, {6, {}}}, {c, {1, {}}}});
  CHECK(m.winner(b) == IpcacheSource::kNode);
  CHECK_FALSE(m.winner(a));

  REQUIRE(m.replace(IpcacheSource::kHost, {}).ok());
  CHECK(decodeIpcache(map) == std::map<Ipv4Prefix, IpcacheEntry>{{b, {6, {}}}});
}

TEST_CASE("ipcache: restore() adopts the map; reconcile() removes what no source claims", "[unit][ipcache]") {
  FakeIpcacheMap map;
  auto kept = prefix("10.0.0.7/32"), stale = prefix("10.0.0.8/32"), changed = prefix("10.0.0.9/32");
  REQUIRE(map.update(encodeIpcacheKey(kept), encodeIpcacheValue(300)).ok());
  REQUIRE(map.update(encodeIpcacheKey(stale), encodeIpcacheValue(301)).ok());
  REQUIRE(map.update(encodeIpcacheKey(changed), encodeIpcacheValue(302)).ok());
  int writes = map.updates;

  IpcacheManager m(map);
  REQUIRE(m.restore().ok());
  CHECK(m.pending());
  // The sources speak again: an identical statement is not rewritten.
  REQUIRE(m.upsert(kept, IpcacheSource::kLocalEndpoint, IpcacheEntry{300, {}}).ok());
  CHECK(map.updates == writes);
  REQUIRE(m.upsert(changed, IpcacheSource::kLocalEndpoint, IpcacheEntry{310, {}}).ok());
  CHECK(map.updates == writes + 1);
  // The unclaimed entry survives until reconcile() (a source might still speak).
  CHECK(ipcacheEntry(map, stale));
  REQUIRE(m.reconcile().ok());
  CHECK_FALSE(m.pending());
  CHECK(decodeIpcache(map) ==
        std::map<Ipv4Prefix, IpcacheEntry>{{kept, {300, {}}}, {changed, {310, {}}}});
}

TEST_CASE("ipcache: a failed write is returned, stays pending and is not recorded as installed",
          "[unit][ipcache]") {
  FakeIpcacheMap map;
  IpcacheManager m(map);
  auto p = prefix("10.0.0.5/32");
  map.fail_next_updates = 1;
  map.fail_code = ErrorCode::kResourceExhausted;
  Status s = m.upsert(p, IpcacheSource::kLocalEndpoint, IpcacheEntry{300, {}});
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == ErrorCode::kResourceExhausted);
  CHECK(s.error().message.find("10.0.0.5/32") != std::string::npos);
  CHECK(m.pending());
  CHECK(map.data.empty());
  CHECK(m.lookup(p) == IpcacheEntry{300, {}});  // the statement is kept: it is what the map must hold

  REQUIRE(m.reconcile().ok());
  CHECK_FALSE(m.pending());
  CHECK(ipcacheEntry(map, p) == IpcacheEntry{300, {}});

  // Not recorded as installed: had it been, removing it would not erase the (then absent) key. Here the
  // installed state is right, so removal erases it.
  REQUIRE(m.remove(p, IpcacheSource::kLocalEndpoint).ok());
  CHECK(map.data.empty());

  // A failed erase stays pending too.
  REQUIRE(m.upsert(p, IpcacheSource::kHost, IpcacheEntry{1, {}}).ok());
  map.fail_next_erases = 1;
  CHECK_FALSE(m.remove(p, IpcacheSource::kHost).ok());
  CHECK(m.pending());
  CHECK(ipcacheEntry(map, p));
  REQUIRE(m.reconcile().ok());
  CHECK(map.data.empty());
  CHECK_FALSE(m.pending());
}

TEST_CASE("ipcache: a write that failed never counts as installed, even when the statement is restated",
          "[unit][ipcache]") {
  FakeIpcacheMap map;
  IpcacheManager m(map);
  auto p = prefix("10.0.0.6/32");
  map.fail_next_updates = 1;
  CHECK_FALSE(m.upsert(p, IpcacheSource::kLocalEndpoint, IpcacheEntry{300, {}}).ok());
  // The same statement again must reach the map (nothing was installed).
  REQUIRE(m.upsert(p, IpcacheSource::kLocalEndpoint, IpcacheEntry{300, {}}).ok());
  CHECK(ipcacheEntry(map, p) == IpcacheEntry{300, {}});
  CHECK_FALSE(m.pending());
}

TEST_CASE("ipcache property: after random statements, failures and reconcile(), the map holds each prefix's "
          "highest-precedence statement",
          "[unit][ipcache][property]") {
  const std::vector<IpcacheSource> sources = {IpcacheSource::kPolicyCidr, IpcacheSource::kNode,
                                              IpcacheSource::kRemoteEndpoint, IpcacheSource::kHost,
                                              IpcacheSource::kLocalEndpoint};
  const std::vector<Ipv4Prefix> prefixes = {prefix("10.0.0.1/32"), prefix("10.0.0.2/32"), prefix("10.0.1.0/24"),
                                            prefix("10.0.0.0/16"), prefix("192.168.0.0/24")};
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    std::mt19937 rng(seed);
    FakeIpcacheMap map;
    IpcacheManager m(map);
    // The model: what each source said last.
    std::map<Ipv4Prefix, std::map<int, IpcacheEntry>> model;
    int steps = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < steps; ++i) {
      auto p = prefixes[rng() % prefixes.size()];
      auto src = sources[rng() % sources.size()];
      if (rng() % 5 == 0) {
        map.fail_next_updates = 1;
      }
      if (rng() % 7 == 0) {
        map.fail_next_erases = 1;
      }
      if (rng() % 3 == 0) {
        (void)m.remove(p, src);
        model[p].erase(static_cast<int>(src));
      } else {
        IpcacheEntry e{static_cast<uint32_t>(256 + rng() % 4), Ipv4(static_cast<uint32_t>(rng() % 2))};
        (void)m.upsert(p, src, e);
        model[p][static_cast<int>(src)] = e;
      }
      if (rng() % 10 == 0) {
        (void)m.reconcile();  // may fail on an armed knob: stays pending
      }
    }
    map.fail_next_updates = 0;
    map.fail_next_erases = 0;
    INFO("seed " << seed);
    REQUIRE(m.reconcile().ok());
    CHECK_FALSE(m.pending());
    std::map<Ipv4Prefix, IpcacheEntry> want;
    for (const auto& [p, by] : model) {
      if (!by.empty()) {
        want[p] = by.rbegin()->second;
      }
    }
    CHECK(decodeIpcache(map) == want);
    for (const auto& [p, e] : want) {
      CHECK(m.lookup(p) == e);
    }
  }
}

TEST_CASE("ipcache: in a full map removals make room first, failures name the prefixes, and a freed slot lets the "
          "waiting write in", "[unit][ipcache]") {
  FakeIpcacheMap map;
  map.capacity = 2;
  IpcacheManager m(map);
  auto a = prefix("10.0.0.1/32");
  auto b = prefix("10.0.0.8/32");
  auto c = prefix("10.0.0.9/32");
  REQUIRE(m.replace(IpcacheSource::kRemoteEndpoint, {{b, {300, {}}}, {c, {301, {}}}}).ok());
  // One replace swaps c for a: a sorts first, but the removal of c is written before it, so a fits.
  REQUIRE(m.replace(IpcacheSource::kRemoteEndpoint, {{a, {302, {}}}, {b, {300, {}}}}).ok());
  CHECK(ipcacheEntry(map, a) == IpcacheEntry{302, {}});
  CHECK_FALSE(ipcacheEntry(map, c));
  CHECK(m.failures().empty());

  // A third prefix does not fit: the failure names the map's refusal and the prefix, for its source only.
  Status s = m.upsert(c, IpcacheSource::kPolicyCidr, IpcacheEntry{16777300, {}});
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == ErrorCode::kResourceExhausted);
  REQUIRE(m.failures().size() == 1);
  CHECK(m.failures().begin()->first == c);
  CHECK(m.failure(IpcacheSource::kPolicyCidr) == std::optional<std::string>("fake map is full"));
  CHECK_FALSE(m.failure(IpcacheSource::kRemoteEndpoint));
  CHECK_FALSE(m.reconcile().ok());  // still no room

  // A slot frees up: the waiting statement gets in and the failure is gone.
  REQUIRE(m.remove(a, IpcacheSource::kRemoteEndpoint).ok());
  REQUIRE(m.reconcile().ok());
  CHECK(ipcacheEntry(map, c) == IpcacheEntry{16777300, {}});
  CHECK(m.failures().empty());
  CHECK_FALSE(m.failure(IpcacheSource::kPolicyCidr));
}

TEST_CASE("ipcache: each written or removed entry is reported as an agent event, with the entry it replaced",
          "[unit][ipcache][hubble]") {
  FakeIpcacheMap map;
  IpcacheManager m(map);
  NotificationLog log;
  m.setNotifications(&log);
  auto p = prefix("10.0.0.5/32");
  REQUIRE(m.upsert(p, IpcacheSource::kRemoteEndpoint, IpcacheEntry{300, ip("192.168.1.2")}).ok());
  REQUIRE(m.upsert(p, IpcacheSource::kLocalEndpoint, IpcacheEntry{400, {}}).ok());
  REQUIRE(m.upsert(p, IpcacheSource::kNode, IpcacheEntry{6, ip("192.168.1.3")}).ok());  // loses: no write, no event
  REQUIRE(m.remove(p, IpcacheSource::kLocalEndpoint).ok());
  REQUIRE(m.remove(p, IpcacheSource::kRemoteEndpoint).ok());
  REQUIRE(m.remove(p, IpcacheSource::kNode).ok());
  auto events = log.select(0, false, 0, 0);
  REQUIRE(events.size() == 5);
  CHECK(events[0].type == NotificationType::kIpcacheUpserted);
  CHECK(events[0].cidr == "10.0.0.5/32");
  CHECK(events[0].identity == 300);
  CHECK(events[0].host_ip == "192.168.1.2");
  CHECK_FALSE(events[0].old_identity);
  CHECK(events[1].identity == 400);  // the local endpoint took it over
  CHECK(events[1].host_ip.empty());
  CHECK(events[1].old_identity == 300u);
  CHECK(events[1].old_host_ip == "192.168.1.2");
  CHECK(events[2].identity == 300);  // back to the remote statement
  CHECK(events[3].identity == 6);    // then the node's
  CHECK(events[4].type == NotificationType::kIpcacheDeleted);
  CHECK(events[4].identity == 6);
  CHECK(events[4].host_ip == "192.168.1.3");

  // A failed write is no event: the entry is not in the map.
  map.fail_next_updates = 1;
  CHECK_FALSE(m.upsert(prefix("10.0.0.6/32"), IpcacheSource::kLocalEndpoint, IpcacheEntry{401, {}}).ok());
  CHECK(log.sequence() == 5);
}
