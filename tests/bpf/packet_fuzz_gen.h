#pragma once
// Packet fuzzing (packet_fuzz_test.cc): the deterministic packet generator, well-formed and mutated frames.
#include <cstdlib>
#include <string>
#include <vector>

#include "packet.h"
#include "packet_fuzz_model.h"

namespace plexus::testing::fuzz {

// ---------------------------------------------------------------------------------------------------------------
// Deterministic randomness: splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
// OOPSLA 2014), fully specified, so a seed gives the same packets with any standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint32_t below(uint32_t n) { return static_cast<uint32_t>(next() % n); }
  bool chance(uint32_t percent) { return below(100) < percent; }
  uint8_t byte() { return static_cast<uint8_t>(next()); }
  template <typename T>
  const T& pick(const std::vector<T>& v) { return v[below(static_cast<uint32_t>(v.size()))]; }

 private:
  uint64_t s_;
};

inline uint64_t envOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// ---------------------------------------------------------------------------------------------------------------
// The generator.
struct Generated {
  std::vector<uint8_t> bytes;
  bool mutated = false;
};

struct Pools {
  std::vector<Ipv4> src;
  std::vector<Ipv4> dst;
};

inline const std::vector<Ipv4>& allAddresses() {
  static const std::vector<Ipv4> a = {kPodA,      kPodB,     kPodC,    kGateway, kRemotePod, kRemoteCidrAddr,
                                      kRemoteNode, kNodeIp,  kWorld,   kCidrAddr, kVipTcp,   kVipUdp,
                                      kVipEmpty,  *Ipv4::parse("10.244.0.99")};
  return a;
}

inline const std::vector<uint16_t> kPorts = {80, 81, 88, 8080, 53, 22, 443, 30080, 9000, 9050, 1000, 2047, 8472, 0, 65535};

class Generator {
 public:
  Generator(uint64_t seed, Pools pools) : rng_(seed), pools_(std::move(pools)) {}

  Ipv4 address(const std::vector<Ipv4>& preferred) {
    if (rng_.chance(3)) {
      return Ipv4(static_cast<uint32_t>(rng_.next()));
    }
    return rng_.chance(70) ? rng_.pick(preferred) : rng_.pick(allAddresses());
  }
  uint16_t port() { return rng_.chance(80) ? rng_.pick(kPorts) : static_cast<uint16_t>(rng_.next()); }

  // An L4 payload for protocol proto.
  std::vector<uint8_t> l4(uint8_t proto, Ipv4 src, Ipv4 dst, int depth) {
    std::vector<uint8_t> b;
    if (proto == IPPROTO_TCP) {
      b.resize(20);
      put16(b, 0, port());
      put16(b, 2, port());
      put32(b, 4, static_cast<uint32_t>(rng_.next()));
      put32(b, 8, static_cast<uint32_t>(rng_.next()));
      b[12] = 5 << 4;
      static const std::vector<uint8_t> flags = {0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01, 0x00, 0xff};
      b[13] = rng_.chance(90) ? rng_.pick(flags) : rng_.byte();
      put16(b, 14, 0xffff);
      if (rng_.chance(20)) {  // TCP options (MSS, NOP, window scale), with a matching data offset
        b.insert(b.end(), {2, 4, 0x05, 0xb4, 1, 3, 3, 7});
        b[12] = 7 << 4;
      }
    } else if (proto == IPPROTO_UDP) {
      b.resize(8);
      put16(b, 0, port());
      put16(b, 2, rng_.chance(10) ? kVxlanPort : port());
      if (be16(b, 2) == kVxlanPort || rng_.chance(5)) {
        put16(b, 2, kVxlanPort);
        // VXLAN (RFC 7348): flags with the I bit, the VNI, then an inner frame: a packet of our own or garbage.
        std::vector<uint8_t> vx = {0x08, 0, 0, 0, rng_.byte(), rng_.byte(), rng_.byte(), 0};
        if (depth < 1 && rng_.chance(60)) {
          auto inner = packet(depth + 1).bytes;
          vx.insert(vx.end(), inner.begin(), inner.end());
        } else {
          garbage(vx, rng_.below(64));
        }
        b.insert(b.end(), vx.begin(), vx.end());
      } else {
        garbage(b, rng_.below(24));
      }
      put16(b, 4, static_cast<uint16_t>(b.size()));
      put16(b, 6, rng_.chance(30) ? 0 : 0xbeef);  // zero: "no checksum"
    } else if (proto == IPPROTO_ICMP) {
      static const std::vector<uint8_t> types = {8, 0, 3, 11, 12, 5, 13, 14};
      uint8_t type = rng_.chance(90) ? rng_.pick(types) : rng_.byte();
      b = {type, rng_.byte(), 0, 0, 0, 0, 0, 0};
      uint16_t id = rng_.chance(10) ? 0 : static_cast<uint16_t>(rng_.next());
      put16(b, 4, id);
      if (type == 3 || type == 11 || type == 12) {
        // The quoted packet: usually one of ours (its source our destination, so it may be related), sometimes
        // arbitrary bytes, a short quote, or an inner header with a bad IHL or a fragment offset.
        std::vector<uint8_t> quoted;
        if (depth < 1 && rng_.chance(70)) {
          Ipv4 qsrc = rng_.chance(70) ? dst : address(pools_.dst);
          auto inner = ipv4Frame(rng_.pick(std::vector<uint8_t>{IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, 47}), qsrc,
                                 rng_.chance(70) ? src : address(pools_.src), depth + 1);
          quoted.assign(inner.begin() + 14, inner.end());
          if (rng_.chance(20)) {
            quoted[0] = static_cast<uint8_t>(0x40 | rng_.below(16));
          }
          if (rng_.chance(10)) {
            put16(quoted, 6, static_cast<uint16_t>(rng_.next()));
          }
          quoted.resize(std::min(quoted.size(), size_t{20} + (rng_.chance(80) ? 8 : rng_.below(12))));
        } else {
          garbage(quoted, rng_.below(48));
        }
        b.insert(b.end(), quoted.begin(), quoted.end());
      } else {
        garbage(b, rng_.below(32));
      }
    } else {
      garbage(b, rng_.below(40));
    }
    return b;
  }

  // A well-formed IPv4 frame (options and fragments included: they are well-formed).
  std::vector<uint8_t> ipv4Frame(uint8_t proto, Ipv4 src, Ipv4 dst, int depth) {
    auto payload = l4(proto, src, dst, depth);
    size_t opt = rng_.chance(10) ? 4 * (1 + rng_.below(10)) : 0;
    std::vector<uint8_t> f(14 + 20 + opt, 0);
    for (int i = 0; i < 12; ++i) {
      f[i] = rng_.byte();
    }
    put16(f, 12, ETH_P_IP);
    f[14] = static_cast<uint8_t>(0x40 | (5 + opt / 4));
    put16(f, 16, static_cast<uint16_t>(20 + opt + payload.size()));
    put16(f, 18, static_cast<uint16_t>(rng_.next()));
    if (rng_.chance(8)) {  // a fragment: MF on a first fragment, or a later one with an offset
      put16(f, 20, rng_.chance(50) ? 0x2000 : static_cast<uint16_t>(1 + rng_.below(0x1fff)) | (rng_.chance(50) ? 0x2000 : 0));
    } else if (rng_.chance(50)) {
      put16(f, 20, 0x4000);  // DF
    }
    f[22] = rng_.chance(5) ? static_cast<uint8_t>(rng_.below(2)) : static_cast<uint8_t>(2 + rng_.below(254));
    f[23] = proto;
    put32(f, 26, src.hostOrder());
    put32(f, 30, dst.hostOrder());
    for (size_t i = 0; i < opt; ++i) {  // NOPs, a record-route-like option, EOL, or noise
      f[34 + i] = rng_.chance(50) ? 1 : rng_.chance(50) ? 0 : rng_.byte();
    }
    uint16_t sum = ipChecksum(f.data() + 14, 20 + opt);
    std::memcpy(&f[24], &sum, 2);
    f.insert(f.end(), payload.begin(), payload.end());
    return f;
  }

  Generated packet(int depth = 0) {
    Generated g;
    uint32_t kind = rng_.below(100);
    if (kind < 4) {  // ARP, sometimes short or garbage
      auto a = arpRequest(Mac{}, address(pools_.src), address(pools_.dst));
      if (rng_.chance(30)) {
        a.resize(14 + rng_.below(40));
      }
      if (rng_.chance(20)) {
        a[14 + 7 < a.size() ? 14 + 7 : 13] = rng_.byte();
      }
      g.bytes = a;
      return g;
    }
    if (kind < 7) {  // another ethertype: IPv6, VLAN, an 802.3 length, anything
      g.bytes.resize(14 + rng_.below(80));
      for (auto& b : g.bytes) {
        b = rng_.byte();
      }
      static const std::vector<uint16_t> types = {0x86dd, 0x8100, 0x88cc, 0x0040};
      put16(g.bytes, 12, rng_.chance(70) ? rng_.pick(types) : static_cast<uint16_t>(rng_.next()));
      g.mutated = true;
      return g;
    }
    static const std::vector<uint8_t> protos = {IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDP,
                                                IPPROTO_ICMP, IPPROTO_ICMP, 47, 132, 0};
    uint8_t proto = rng_.chance(95) ? rng_.pick(protos) : rng_.byte();
    g.bytes = ipv4Frame(proto, address(pools_.src), address(pools_.dst), depth);
    if (depth == 0 && rng_.chance(45)) {
      mutate(g.bytes);
      g.mutated = true;
    }
    return g;
  }

  void mutate(std::vector<uint8_t>& f) {
    uint32_t n = 1 + rng_.below(3);
    for (uint32_t i = 0; i < n; ++i) {
      switch (rng_.below(9)) {
        case 0:  // truncated anywhere after the Ethernet header
          f.resize(14 + rng_.below(static_cast<uint32_t>(f.size() - 14 + 1)));
          break;
        case 1:  // a bad IHL (below 5, or past the end)
          if (f.size() > 14) {
            f[14] = static_cast<uint8_t>((f[14] & 0xf0) | rng_.below(16));
          }
          break;
        case 2:  // another IP version
          if (f.size() > 14) {
            f[14] = static_cast<uint8_t>((rng_.below(16) << 4) | (f[14] & 0x0f));
          }
          break;
        case 3:  // a bad TCP data offset or any byte of the first L4 bytes
          if (f.size() > 34 + 12) {
            size_t off = 14 + (f[14] & 0xf) * 4u + 12;
            if (off < f.size()) {
              f[off] = static_cast<uint8_t>(rng_.below(16) << 4);
            }
          }
          break;
        case 4:  // fragment bits
          if (f.size() >= 22) {
            put16(f, 20, static_cast<uint16_t>(rng_.next()));
          }
          break;
        case 5:  // total length that lies
          if (f.size() >= 18) {
            put16(f, 16, static_cast<uint16_t>(rng_.next()));
          }
          break;
        case 6:  // a random byte anywhere
          f[rng_.below(static_cast<uint32_t>(f.size()))] = rng_.byte();
          break;
        case 7:  // trailing garbage
          garbage(f, 1 + rng_.below(64));
          break;
        default:  // a random byte in the IP or L4 header
          if (f.size() > 14) {
            f[14 + rng_.below(static_cast<uint32_t>(std::min<size_t>(f.size() - 14, 48)))] = rng_.byte();
          }
          break;
      }
    }
  }

  Rng& rng() { return rng_; }

 private:
  void garbage(std::vector<uint8_t>& b, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
      b.push_back(rng_.byte());
    }
  }
  static void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
    b[off] = static_cast<uint8_t>(v >> 8);
    b[off + 1] = static_cast<uint8_t>(v);
  }
  static void put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
    put16(b, off, static_cast<uint16_t>(v >> 16));
    put16(b, off + 2, static_cast<uint16_t>(v));
  }

  Rng rng_;
  Pools pools_;
};

inline std::string hex(const std::vector<uint8_t>& b) {
  std::string s;
  char buf[4];
  for (uint8_t c : b) {
    std::snprintf(buf, sizeof(buf), "%02x", c);
    s += buf;
  }
  return s;
}

inline bool isDropReason(uint8_t reason) {
  switch (reason) {
#define PLEXUS_FUZZ_DROP_(name, value, hubble, code, desc) \
  case value:                                        \
    return std::string_view(hubble) != "FORWARDED";
    PLEXUS_REASONS(PLEXUS_FUZZ_DROP_)
#undef PLEXUS_FUZZ_DROP_
    default:
      return true;
  }
}

}  // namespace plexus::testing::fuzz
