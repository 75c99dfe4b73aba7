#include "plexus/common/ipv4.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>

#include <fmt/format.h>

namespace plexus {

std::optional<Ipv4> Ipv4::parse(std::string_view text) {
  uint32_t out = 0;
  int parts = 0;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  while (parts < 4) {
    unsigned v = 0;
    auto [next, ec] = std::from_chars(p, end, v);
    if (ec != std::errc() || next == p || v > 255 || next - p > 3) {
      return std::nullopt;
    }
    out = (out << 8) | v;
    ++parts;
    p = next;
    if (parts < 4) {
      if (p == end || *p != '.') {
        return std::nullopt;
      }
      ++p;
    }
  }
  if (p != end) {
    return std::nullopt;
  }
  return Ipv4(out);
}

Ipv4 Ipv4::fromNetwork(uint32_t be) { return Ipv4(ntohl(be)); }
uint32_t Ipv4::networkOrder() const { return htonl(v_); }

std::string Ipv4::toString() const {
  return fmt::format("{}.{}.{}.{}", (v_ >> 24) & 0xff, (v_ >> 16) & 0xff, (v_ >> 8) & 0xff, v_ & 0xff);
}

Ipv4Prefix::Ipv4Prefix(Ipv4 addr, int len) : len_(len) {
  addr_ = Ipv4(addr.hostOrder() & mask());
}

uint32_t Ipv4Prefix::mask() const { return len_ == 0 ? 0 : ~uint32_t{0} << (32 - len_); }

std::optional<Ipv4Prefix> Ipv4Prefix::parse(std::string_view text) {
  auto slash = text.find('/');
  int len = 32;
  if (slash != std::string_view::npos) {
    auto lenText = text.substr(slash + 1);
    auto [next, ec] = std::from_chars(lenText.data(), lenText.data() + lenText.size(), len);
    if (ec != std::errc() || next != lenText.data() + lenText.size() || lenText.empty() || len < 0 || len > 32) {
      return std::nullopt;
    }
    text = text.substr(0, slash);
  }
  auto addr = Ipv4::parse(text);
  if (!addr) {
    return std::nullopt;
  }
  return Ipv4Prefix(*addr, len);
}

bool Ipv4Prefix::contains(Ipv4 ip) const { return (ip.hostOrder() & mask()) == addr_.hostOrder(); }

bool Ipv4Prefix::contains(const Ipv4Prefix& other) const {
  return other.len_ >= len_ && contains(other.addr_);
}

std::string Ipv4Prefix::toString() const { return fmt::format("{}/{}", addr_.toString(), len_); }

std::optional<Mac> Mac::parse(std::string_view text) {
  Mac m;
  if (text.size() != 17) {
    return std::nullopt;
  }
  for (int i = 0; i < 6; ++i) {
    auto part = text.substr(static_cast<size_t>(i) * 3, 2);
    unsigned v = 0;
    auto [next, ec] = std::from_chars(part.data(), part.data() + 2, v, 16);
    if (ec != std::errc() || next != part.data() + 2) {
      return std::nullopt;
    }
    if (i < 5 && text[static_cast<size_t>(i) * 3 + 2] != ':') {
      return std::nullopt;
    }
    m.b[i] = static_cast<uint8_t>(v);
  }
  return m;
}

std::string Mac::toString() const {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5]);
}

bool Mac::isZero() const {
  for (auto x : b) {
    if (x != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace plexus
