// [bpf][fuzz] packet fuzzing of the six tc programs through BPF_PROG_TEST_RUN: a seeded, deterministic generator
// of well-formed and mutated frames (truncated headers, bad IHL and version, IP options, fragments, bad TCP data
// offsets, ICMP errors quoting arbitrary inner headers, VXLAN packets with garbage inside, foreign ethertypes) runs
// against the real programs with seeded maps (endpoints, ipcache, services with and without backends, policy
// compiled from CNPs by the policy library). Checked for every packet and program:
//   - test_run succeeds and the program returns TC_ACT_OK, TC_ACT_SHOT or TC_ACT_REDIRECT, nothing else;
//   - the program's verdict is the one a userspace model of the datapath's documented rules predicts (see
//     expect*() below): parse failures as docs/datapath.md says per program, anti-spoofing, service translation
//     (the backend read back from the output must be one of the service's), and the policy verdict as
//     policy::evaluate() gives it on the compiled entries, for egress and for the destination's ingress. Conntrack
//     is emptied before every packet, so each one is a new flow and the model needs no conntrack;
//   - every drop is counted: per batch, the metrics map's drop-reason counters grew by exactly the number of
//     TC_ACT_SHOT results plus the refusals (no backend: a RST or ICMP unreachable sent back, counted as a drop of
//     NO_SERVICE_BACKEND), per reason as the model predicted, and as many DROPPED flow events were emitted.
// Then conversations (see converse()): a packet, an ICMP error quoting it and its reply, through a program pair with
// the conntrack state the packet left, so replies, related errors and NodePort reverse NAT are fuzzed too.
// What test_run cannot do: give a packet a tunnel key (the __sk_buff context has no tunnel fields, and
// bpf_skb_get_tunnel_key fails on a test skb), so plexus_from_overlay only reaches its "no tunnel metadata" drop
// here; its parse and policy path after the key is local_ingress(), which to-container and from-netdev (host
// routing) share and which is fuzzed through them. docs/fuzzing.md records the numbers.
//
// PLEXUS_FUZZ_SEED (decimal) and PLEXUS_FUZZ_PACKETS override the seed and the packets per program; a failure
// prints the seed, the program, the packet index and the packet in hex.
#include <linux/icmp.h>
#include <unistd.h>

#include <array>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>

#include "lxc_fixture.h"
#include "packet_fuzz_gen.h"
#include "packet_fuzz_model.h"
#include "plexus/agent/map_encoding.h"
#include "plexus/datapath/host_datapath.h"

using namespace plexus;
using namespace plexus::testing;
using namespace plexus::testing::fuzz;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// The harness: all six programs on one private bpffs, sharing their pinned maps.
struct FuzzFixture : Fixture {
  std::unique_ptr<datapath::HostDatapath> host;
  std::unique_ptr<datapath::OverlayDatapath> overlay;
  World world;

  static datapath::LxcConfig lxcConfig() {
    datapath::LxcConfig cfg;
    cfg.routing_mode = datapath::RoutingMode::kTunnel;
    cfg.tunnel_ifindex = 1;  // test_run does not check a redirect's target
    // A small conntrack map: it is emptied before every packet, and finding the first key of a hash map walks its
    // buckets (with the default size that walk was 80% of the run).
    cfg.sizes.ct = kCtMapSize;
    return cfg;
  }

  FuzzFixture() : Fixture(lxcConfig()) {
    datapath::LxcConfig hc;
    hc.bpf_root = bpffs.path() + "/plexus";
    hc.host_routing = true;
    hc.sizes.ct = kCtMapSize;
    auto h = datapath::HostDatapath::load(hc);
    INFO((h.ok() ? std::string() : h.error().message));
    REQUIRE(h.ok());
    host = std::move(h.value());
    datapath::LxcConfig oc = lxcConfig();
    oc.bpf_root = bpffs.path() + "/plexus";
    auto o = datapath::OverlayDatapath::load(oc);
    INFO((o.ok() ? std::string() : o.error().message));
    REQUIRE(o.ok());
    overlay = std::move(o.value());

    addEndpoint(kPodC, kPodCIfindex, 3, Mac{}, Mac{}, PLEXUS_EP_F_CHAINED);
    world.endpoints[kPodA.hostOrder()] = {kPodAIfindex, kIdA, 1, 0};
    world.endpoints[kPodB.hostOrder()] = {kPodBIfindex, kIdB, 2, 0};
    world.endpoints[kPodC.hostOrder()] = {kPodCIfindex, kIdC, 3, PLEXUS_EP_F_CHAINED};
    world.endpoints[kGateway.hostOrder()] = {0, PLEXUS_IDENTITY_HOST, 0, PLEXUS_EP_F_HOST};

    // The ipcache as the agent writes it on a two-node cluster, plus a policy CIDR.
    ipcache(kPodA.toString() + "/32", kIdA, Ipv4{});
    ipcache(kPodB.toString() + "/32", kIdB, Ipv4{});
    ipcache(kPodC.toString() + "/32", kIdC, Ipv4{});
    ipcache(kGateway.toString() + "/32", PLEXUS_IDENTITY_HOST, Ipv4{});
    ipcache(kNodeIp.toString() + "/32", PLEXUS_IDENTITY_HOST, Ipv4{});
    ipcache(kRemotePod.toString() + "/32", kRemotePodIdentity, kRemoteNode);
    ipcache("10.244.1.0/24", PLEXUS_IDENTITY_UNKNOWN, kRemoteNode);
    ipcache(kRemoteNode.toString() + "/32", PLEXUS_IDENTITY_REMOTE_NODE, Ipv4{});
    ipcache("203.0.113.0/24", kCidrIdentity, Ipv4{});

    // Services: every frontend keyed in the external scope (the default lookup), as the planner writes them.
    auto& lb = dp->lb();
    uint32_t next_backend = 1;
    for (const auto& fe : frontends()) {
      plexus_lb4_key key{};
      key.address = fe.vip.networkOrder();
      key.dport = htons(fe.port);
      key.proto = fe.proto;
      key.scope = PLEXUS_LB_SCOPE_EXTERNAL;
      for (size_t i = 0; i < fe.backends.size(); ++i) {
        plexus_lb4_backend b{};
        b.address = fe.backends[i].first.networkOrder();
        b.port = htons(fe.backends[i].second);
        b.proto = fe.proto;
        b.state = PLEXUS_BACKEND_ACTIVE;
        REQUIRE(lb.backends.update(next_backend, b).ok());
        plexus_lb4_service slot{};
        slot.backend_id = next_backend++;
        slot.rev_nat_index = fe.rev_nat;
        key.backend_slot = static_cast<uint16_t>(i + 1);
        REQUIRE(lb.services.update(key, slot).ok());
      }
      plexus_lb4_service master{};
      master.count = static_cast<uint16_t>(fe.backends.size());
      master.rev_nat_index = fe.rev_nat;
      master.flags = fe.vip == kNodeIp ? PLEXUS_SVC_F_NODEPORT : PLEXUS_SVC_F_CLUSTERIP;
      key.backend_slot = 0;
      REQUIRE(lb.services.update(key, master).ok());
      plexus_lb4_reverse_nat rn{};
      rn.address = fe.vip.networkOrder();
      rn.port = htons(fe.port);
      REQUIRE(lb.revnat.update(fe.rev_nat, rn).ok());
    }

    // Policy: CNPs compiled by the policy library, encoded by the agent's encoder, installed per endpoint.
    world.policy = compilePolicies();
    for (const auto& [ep, entries] : world.policy) {
      datapath::PolicyEntries encoded;
      for (const auto& e : entries) {
        encoded.push_back(agent::encodePolicyEntry(e));
      }
      REQUIRE(dp->policy().set(ep, encoded).ok());
    }
  }

  void ipcache(const std::string& prefix, uint32_t identity, Ipv4 tunnel_endpoint) {
    auto p = *Ipv4Prefix::parse(prefix);
    plexus_ipcache_key k{};
    k.prefixlen = static_cast<uint32_t>(p.length());
    k.ip = p.network().networkOrder();
    plexus_ipcache_value v{};
    v.identity = identity;
    v.tunnel_endpoint = tunnel_endpoint.networkOrder();
    REQUIRE(dp->ipcache().update(k, v).ok());
    world.ipcache.push_back({p, identity, tunnel_endpoint});
  }

  // Empties conntrack, so the next packet is a new flow (bounded: the map holds what the last packets created).
  void clearConntrack() {
    int fd = dp->lb().ct.fd();
    plexus_ct4_key key{};
    for (int i = 0; i < 1 << 20 && bpf_map_get_next_key(fd, nullptr, &key) == 0; ++i) {
      bpf_map_delete_elem(fd, &key);
    }
  }

  std::map<uint8_t, uint64_t> dropCounters() {
    auto entries = dp->metrics().entries();
    REQUIRE(entries.ok());
    std::map<uint8_t, uint64_t> out;
    for (const auto& [k, per_cpu] : *entries) {
      if (!isDropReason(k.reason)) {
        continue;
      }
      for (const auto& v : per_cpu) {
        out[k.reason] += v.packets;
      }
    }
    return out;
  }

  uint64_t droppedEvents() {
    uint64_t n = 0;
    for (const auto& e : drainEvents(dp->eventsFd())) {
      n += e.verdict == PLEXUS_VERDICT_DROPPED;
    }
    return n;
  }
};

// A program's fd opened by its kernel id, closed with the owner.
struct OwnedFd {
  int fd = -1;
  OwnedFd(const std::vector<datapath::ProgramHandle>& progs, const std::string& name) {
    for (const auto& p : progs) {
      if (p.name == name) {
        fd = bpf_prog_get_fd_by_id(p.id);
      }
    }
  }
  ~OwnedFd() {
    if (fd >= 0) {
      close(fd);
    }
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
};

using ExpectFn = Expect (*)(const World&, const std::vector<uint8_t>&, const std::vector<uint8_t>&, std::string*);

struct Program {
  const char* name;
  int fd;
  ExpectFn expect;
  Pools pools;
};

// A refusal: the packet turned into a RST or ICMP port unreachable from a frontend without backends.
bool isRefusal(const std::vector<uint8_t>& out) {
  if (out.size() < 14 + 20 + 8 || be16(out, 12) != ETH_P_IP || be32(out, 14 + 12) != kVipEmpty.hostOrder()) {
    return false;
  }
  uint8_t proto = out[14 + 9];
  return (proto == IPPROTO_TCP && out.size() >= 14 + 40 && (out[14 + 20 + 13] & PLEXUS_TCP_RST)) ||
         (proto == IPPROTO_ICMP && out[14 + 20] == 3 && out[14 + 21] == 3);
}

struct Stats {
  uint64_t packets = 0, unrunnable = 0, mutated = 0, ok = 0, shot = 0, redirect = 0, refused = 0, judged = 0, judged_forwarded = 0,
           policy_drops = 0;
  std::map<uint8_t, uint64_t> drops;
};

const char* actName(Act a) {
  switch (a) {
    case Act::kPass: return "TC_ACT_OK";
    case Act::kShot: return "TC_ACT_SHOT";
    case Act::kRedirect: return "TC_ACT_REDIRECT";
    case Act::kRefuse: return "refusal (TC_ACT_REDIRECT)";
    case Act::kNotShot: return "not TC_ACT_SHOT";
  }
  return "?";
}

bool matches(Act want, int retval) {
  switch (want) {
    case Act::kPass: return retval == TC_ACT_OK;
    case Act::kShot: return retval == TC_ACT_SHOT;
    case Act::kRedirect:
    case Act::kRefuse: return retval == TC_ACT_REDIRECT;
    case Act::kNotShot: return retval == TC_ACT_OK || retval == TC_ACT_REDIRECT;
  }
  return false;
}

constexpr uint64_t kBatch = 1000;

// BPF_PROG_TEST_RUN refuses (EINVAL) an IPv4 or IPv6 frame too short for its L3 header (the kernel's test_run
// checks the length for the protocol before running the program); a device would hand such a frame to tc, and the
// programs treat it as a truncated header, which the hand-written tests cover. Only these may fail to run.
bool kernelRefuses(const std::vector<uint8_t>& f) {
  uint16_t type = be16(f, 12);
  return (type == ETH_P_IP && f.size() < 14 + 20) || (type == ETH_P_IPV6 && f.size() < 14 + 40);
}

// Runs `count` generated packets through one program, conntrack emptied before each. Returns the stats; fails the
// test (with seed, index and packet) on the first disagreement.
Stats fuzzProgram(FuzzFixture& f, const Program& prog, uint64_t seed, uint64_t count) {
  Stats st;
  Generator gen(seed, prog.pools);
  f.clearConntrack();
  f.droppedEvents();
  auto before = f.dropCounters();
  std::map<uint8_t, uint64_t> predicted;
  uint64_t shot_or_refused = 0;
  uint64_t in_batch = 0;
  // Every drop of the batch counted under its reason, and reported as a DROPPED flow event.
  auto checkBatch = [&](uint64_t last) {
    auto after = f.dropCounters();
    std::map<uint8_t, uint64_t> grew;
    uint64_t total = 0;
    for (const auto& [reason, n] : after) {
      uint64_t d = n - (before.count(reason) ? before.at(reason) : 0);
      if (d) {
        grew[reason] = d;
        total += d;
      }
    }
    uint64_t events = f.droppedEvents();
    INFO("seed " << seed << ", program " << prog.name << ", the " << in_batch << " packets up to " << last);
    REQUIRE(total == shot_or_refused);
    REQUIRE(grew == predicted);
    REQUIRE(events == shot_or_refused);
    for (const auto& [reason, n] : grew) {
      st.drops[reason] += n;
    }
    before = after;
    predicted.clear();
    shot_or_refused = 0;
    in_batch = 0;
  };
  // `count` packets that ran; the few frames test_run refuses come on top (bounded: at most twice as many tries).
  uint64_t i = 0;
  for (; st.packets < count && i < 2 * count; ++i) {
    Generated g = gen.packet();
    f.clearConntrack();
    Fixture::Run r = progRun(prog.fd, g.bytes, kPodAIfindex);
    int err = r.err;
    if (err == -EINVAL && kernelRefuses(g.bytes)) {
      st.unrunnable++;  // a frame test_run cannot carry: see kernelRefuses()
      continue;
    }
    std::string problem;
    uint64_t evaluations = f.world.evaluations;
    Expect want = err == 0 ? prog.expect(f.world, g.bytes, r.out, &problem) : Expect{};
    bool known_ret = r.retval == TC_ACT_OK || r.retval == TC_ACT_SHOT || r.retval == TC_ACT_REDIRECT;
    if (err != 0 || !known_ret || !matches(want.act, r.retval) || !problem.empty() ||
        (want.act == Act::kRefuse && !isRefusal(r.out))) {
      INFO("seed " << seed << " (PLEXUS_FUZZ_SEED), program " << prog.name << ", packet " << i
                   << (g.mutated ? " (mutated)" : " (well-formed)") << ": " << hex(g.bytes));
      INFO("test_run " << err << ", returned " << r.retval << ", model: " << actName(want.act) << " ("
                       << want.why << ")" << (problem.empty() ? "" : "; " + problem));
      FAIL("the program and the model disagree");
    }
    st.packets++;
    st.mutated += g.mutated;
    st.ok += r.retval == TC_ACT_OK;
    st.redirect += r.retval == TC_ACT_REDIRECT && want.act != Act::kRefuse;
    st.shot += r.retval == TC_ACT_SHOT;
    st.refused += want.act == Act::kRefuse;
    bool judged = f.world.evaluations > evaluations;
    st.judged += judged;
    st.judged_forwarded += judged && r.retval != TC_ACT_SHOT;
    st.policy_drops += want.reason == PLEXUS_REASON_POLICY_DENIED || want.reason == PLEXUS_REASON_POLICY_DENY;
    if (want.act == Act::kShot || want.act == Act::kRefuse) {
      predicted[want.reason]++;
      shot_or_refused++;
    }
    if (++in_batch == kBatch) {
      checkBatch(i);
    }
  }
  if (in_batch) {
    checkBatch(i - 1);
  }
  return st;
}

// ---------------------------------------------------------------------------------------------------------------
// Conversations: conntrack is emptied before each, then a generated packet P runs through the first program (judged
// by the fresh model, exactly), and its reply R and an ICMP error E quoting it (both from P's destination, P as the
// first program emitted it) through the second, with whatever conntrack P left. Checked: return codes, the drop
// accounting, and for pod A (from-container then to-container) that a reply or related error of a flow egress
// admitted passes, while those of a flow it did not admit are judged as new flows, exactly as the model says; for a
// NodePort flow (from-netdev then to-netdev) that the reply leaves with the frontend as its source.

// R: addresses (and ports) swapped, echo request and reply exchanged, TCP flags SYN-ACK. Empty without an IPv4 header.
std::vector<uint8_t> replyOf(const std::vector<uint8_t>& out) {
  Parsed p = parse(out);
  if (!p.ipv4) {
    return {};
  }
  std::vector<uint8_t> r = out;
  for (int i = 0; i < 4; ++i) {
    std::swap(r[14 + 12 + i], r[14 + 16 + i]);
  }
  r[14 + 8] = 64;
  if (p.has_ports) {
    std::swap(r[p.l4], r[p.l4 + 2]);
    std::swap(r[p.l4 + 1], r[p.l4 + 3]);
    if (p.proto == IPPROTO_TCP) {
      r[p.l4 + 13] = 0x12;
    }
  } else if (p.has_icmp && (p.icmp_type == 8 || p.icmp_type == 0)) {
    r[p.l4] = p.icmp_type == 8 ? 0 : 8;  // the identifier moves from one port slot to the other: the reverse tuple
  }
  return r;
}

struct Conversation {
  const char* name;
  int first_fd;
  ExpectFn first;
  int second_fd;
  ExpectFn second;
  Pools pools;
  bool pod_a;  // from-container then to-container
};

struct ConversationStats {
  uint64_t ran = 0;
  uint64_t replies_admitted = 0;  // replies and related errors of an admitted flow, checked to pass
  uint64_t judged_new = 0;        // replies and errors of a flow nothing admitted, checked against the model
  uint64_t nodeport_replies = 0;  // NodePort replies checked to leave from the frontend
};

ConversationStats converse(FuzzFixture& f, const Conversation& c, uint64_t seed, uint64_t count) {
  ConversationStats cs;
  Generator gen(seed, c.pools);
  f.droppedEvents();
  auto before = f.dropCounters();
  uint64_t drops = 0;
  uint64_t& ran = cs.ran;
  auto sum = [](const std::map<uint8_t, uint64_t>& m) {
    uint64_t t = 0;
    for (const auto& [r, n] : m) {
      t += n;
    }
    return t;
  };
  for (uint64_t i = 0; i < count; ++i) {
    f.clearConntrack();
    Generated first = gen.packet();
    auto p = progRun(c.first_fd, first.bytes, kPodAIfindex);
    int err = p.err;
    if (err == -EINVAL && kernelRefuses(first.bytes)) {
      continue;
    }
    std::string problem;
    Expect want = err == 0 ? c.first(f.world, first.bytes, p.out, &problem) : Expect{};
    std::ostringstream where;
    where << "seed " << seed << " (PLEXUS_FUZZ_SEED), conversation " << c.name << " " << i << ", P " << hex(first.bytes);
    INFO(where.str());
    INFO("P: test_run " << err << ", returned " << p.retval << ", model " << actName(want.act) << " (" << want.why
                        << ") " << problem);
    REQUIRE((err == 0 && matches(want.act, p.retval) && problem.empty()));
    ran++;
    drops += want.act == Act::kShot || want.act == Act::kRefuse;
    auto reply = replyOf(p.out);
    if (reply.empty()) {
      continue;
    }
    bool reply_mutated = gen.rng().chance(20);
    if (reply_mutated) {
      gen.mutate(reply);
    }
    Parsed rp = parse(reply);
    // E first: an ICMP error opens no entry, so R then sees only what P left; R, when admitted as a new flow, would
    // open one that E's quote matches.
    std::vector<std::vector<uint8_t>> seconds;
    if (rp.ipv4 && p.out.size() > 14 + 20) {  // E: unreachable from P's destination back to P's source, quoting P
      PacketSpec s{Mac{}, Mac{}, Ipv4(rp.saddr), Ipv4(rp.daddr)};
      seconds.push_back(icmpError(s, 3, 1, p.out));
    }
    seconds.push_back(reply);
    for (size_t k = 0; k < seconds.size(); ++k) {
      const auto& pkt = seconds[k];
      if (kernelRefuses(pkt)) {
        continue;
      }
      auto r = progRun(c.second_fd, pkt, kPodAIfindex);
      err = r.err;
      std::string problem2;
      Expect fresh = c.second(f.world, pkt, r.out, &problem2);
      bool is_reply = k + 1 == seconds.size();
      INFO((is_reply ? "R " : "E ") << hex(pkt) << ": test_run " << err << ", returned " << r.retval
                                  << "; as a new flow the model says " << actName(fresh.act) << " (" << fresh.why
                                  << "); P admitted by egress: " << want.admitted);
      REQUIRE(err == 0);
      REQUIRE((r.retval == TC_ACT_OK || r.retval == TC_ACT_SHOT || r.retval == TC_ACT_REDIRECT));
      ran++;
      drops += r.retval == TC_ACT_SHOT;
      bool well_formed = !is_reply || !reply_mutated;
      if (c.pod_a && well_formed) {
        if (want.admitted && (is_reply || parse(pkt).related)) {
          CHECK(r.retval != TC_ACT_SHOT);  // a reply, or an error about the admitted flow
          cs.replies_admitted++;
        } else if (!want.admitted && !(is_reply && first.mutated)) {
          CHECK(matches(fresh.act, r.retval));  // nothing admitted it: judged as a new flow
          cs.judged_new++;
        }
      }
      if (!c.pod_a && is_reply && well_formed && p.retval != TC_ACT_SHOT && want.act != Act::kRefuse) {
        Parsed in = parse(first.bytes);
        const Frontend* fe = in.has_ports && !in.l4_truncated ? frontendOf(in) : nullptr;
        if (fe && !fe->backends.empty() && r.out.size() >= rp.l4 + 4) {
          CHECK(Ipv4(be32(r.out, 14 + 12)) == fe->vip);  // the NodePort reply leaves from the frontend
          CHECK(be16(r.out, rp.l4) == fe->port);
          cs.nodeport_replies++;
        }
      }
    }
    if ((i + 1) % kBatch == 0 || i + 1 == count) {
      auto after = f.dropCounters();
      INFO("seed " << seed << ", conversation " << c.name << ", batch up to " << i);
      REQUIRE(sum(after) - sum(before) == drops);
      REQUIRE(f.droppedEvents() == drops);
      before = after;
      drops = 0;
    }
  }
  return cs;
}

std::string reasonName(uint8_t r) {
  switch (r) {
#define PLEXUS_FUZZ_NAME_(name, value, hubble, code, desc) \
  case value:                                        \
    return #name;
    PLEXUS_REASONS(PLEXUS_FUZZ_NAME_)
#undef PLEXUS_FUZZ_NAME_
    default:
      return std::to_string(r);
  }
}

void report(const char* name, const Stats& st) {
  std::ostringstream o;
  o << "packet-fuzz " << name << ": " << st.packets << " packets (" << st.mutated << " mutated; "
    << st.unrunnable << " more refused by test_run), OK " << st.ok
    << ", SHOT " << st.shot << ", REDIRECT " << st.redirect << ", refused " << st.refused << "; judged by policy "
    << st.judged << " (forwarded " << st.judged_forwarded << ", policy drops " << st.policy_drops << "); drops:";
  for (const auto& [r, n] : st.drops) {
    o << " " << reasonName(r) << "=" << n;
  }
  std::printf("%s\n", o.str().c_str());
}

}  // namespace

TEST_CASE("packet fuzzing: every tc program against the model, every drop counted", "[bpf][fuzz]") {
  FuzzFixture f;
  const uint64_t seed = envOr("PLEXUS_FUZZ_SEED", 20261206);
  const uint64_t count = envOr("PLEXUS_FUZZ_PACKETS", 100000);
  std::vector<Ipv4> pods = {kPodA, kPodB};
  std::vector<Ipv4> vips = {kVipTcp, kVipUdp, kVipEmpty, kNodeIp, kPodB, kPodA, kRemotePod, kWorld, kGateway,
                            kCidrAddr, kPodC};
  std::vector<Ipv4> outside = {kWorld, kRemotePod, kRemoteNode, kCidrAddr, kRemoteCidrAddr, kPodA, kGateway};
  // HostDatapath exposes only from-netdev's fd (the agent attaches both itself): take to-netdev's by its id.
  OwnedFd toNetdev(f.host->programs(), "plexus_to_netdev");
  std::vector<Program> programs = {
      {"plexus_from_container", f.dp->fromContainerFd(), expectFromContainer, {{kPodA}, vips}},
      {"plexus_to_container", f.dp->toContainerFd(), expectToContainer, {outside, {kPodA, kPodB, kGateway}}},
      {"plexus_from_netdev", f.host->fromNetdevFd(), expectFromNetdev, {outside, vips}},
      {"plexus_to_netdev", toNetdev.fd, expectToNetdev, {pods, outside}},
      {"plexus_from_overlay", f.overlay->fromOverlayFd(), expectFromOverlay, {outside, pods}},
      {"plexus_to_overlay", f.overlay->toOverlayFd(), expectToOverlay, {{kNodeIp, kPodA, kPodB}, outside}},
  };
  REQUIRE(toNetdev.fd >= 0);
  uint64_t offset = 0;
  const char* only = std::getenv("PLEXUS_FUZZ_PROGRAM");  // one program by name, to reproduce a failure
  for (const auto& prog : programs) {
    if (only && *only && std::string(only) != prog.name) {
      offset++;
      continue;
    }
    Stats st = fuzzProgram(f, prog, seed + offset++, count);
    report(prog.name, st);
    CHECK(st.packets == count);
    CHECK(st.unrunnable < count / 10);
  }
  std::vector<Conversation> conversations = {
      {"from-container/to-container", f.dp->fromContainerFd(), expectFromContainer, f.dp->toContainerFd(),
       expectToContainer, {{kPodA}, vips}, true},
      {"from-netdev/to-netdev", f.host->fromNetdevFd(), expectFromNetdev, toNetdev.fd, expectToNetdev,
       {outside, {kNodeIp, kNodeIp, kVipTcp, kPodB}}, false},
  };
  const uint64_t talks = count / 5;
  for (const auto& c : conversations) {
    if (only && *only) {
      break;
    }
    ConversationStats cs = converse(f, c, seed + offset++, talks);
    std::printf("packet-fuzz conversations %s: %" PRIu64 " conversations, %" PRIu64 " packets; replies and related "
                "errors of admitted flows %" PRIu64 ", of flows nothing admitted (judged as new) %" PRIu64
                ", NodePort replies from the frontend %" PRIu64 "\n",
                c.name, talks, cs.ran, cs.replies_admitted, cs.judged_new, cs.nodeport_replies);
    CHECK(cs.ran > talks);
    CHECK(cs.replies_admitted + cs.judged_new + cs.nodeport_replies > 0);
  }
}
