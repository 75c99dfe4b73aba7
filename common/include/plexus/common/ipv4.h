#pragma once
// IPv4 address and prefix value types. Host byte order inside; conversions to network order are explicit.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace plexus {

class Ipv4 {
 public:
  constexpr Ipv4() = default;
  constexpr explicit Ipv4(uint32_t host_order) : v_(host_order) {}
  static std::optional<Ipv4> parse(std::string_view text);
  static Ipv4 fromNetwork(uint32_t be);

  constexpr uint32_t hostOrder() const { return v_; }
  uint32_t networkOrder() const;
  std::string toString() const;

  friend constexpr bool operator==(Ipv4 a, Ipv4 b) { return a.v_ == b.v_; }
  friend constexpr auto operator<=>(Ipv4 a, Ipv4 b) { return a.v_ <=> b.v_; }

 private:
  uint32_t v_ = 0;
};

// An address, port and protocol packed into one integer: the key of tables of service frontends and backends.
constexpr uint64_t packEndpoint(Ipv4 ip, uint16_t port, uint8_t proto) {
  return (uint64_t{ip.hostOrder()} << 24) | (uint64_t{port} << 8) | proto;
}

class Ipv4Prefix {
 public:
  constexpr Ipv4Prefix() = default;
  // The address is masked to the prefix length.
  Ipv4Prefix(Ipv4 addr, int len);
  // Accepts "a.b.c.d/n" and a bare "a.b.c.d" (a /32).
  static std::optional<Ipv4Prefix> parse(std::string_view text);

  Ipv4 network() const { return addr_; }
  int length() const { return len_; }
  uint32_t mask() const;
  uint64_t size() const { return uint64_t{1} << (32 - len_); }
  bool contains(Ipv4 ip) const;
  bool contains(const Ipv4Prefix& other) const;
  // The i-th address inside the prefix (i < size()).
  Ipv4 at(uint64_t i) const { return Ipv4(addr_.hostOrder() + static_cast<uint32_t>(i)); }
  std::string toString() const;

  friend bool operator==(const Ipv4Prefix&, const Ipv4Prefix&) = default;
  friend auto operator<=>(const Ipv4Prefix&, const Ipv4Prefix&) = default;

 private:
  Ipv4 addr_;
  int len_ = 0;
};

// A MAC address, 6 bytes in wire order.
struct Mac {
  uint8_t b[6] = {};
  static std::optional<Mac> parse(std::string_view text);
  std::string toString() const;
  bool isZero() const;
  friend bool operator==(const Mac&, const Mac&) = default;
};

}  // namespace plexus
