#include "plexus/lb/maglev.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace plexus::lb {

namespace {

inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);  // little-endian hosts only (x86_64, arm64), as the reference algorithm reads blocks
  return v;
}

int base64Value(char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '+') {
    return 62;
  }
  if (c == '/') {
    return 63;
  }
  return -1;
}

}  // namespace

std::pair<uint64_t, uint64_t> murmur3x64_128(const void* data, size_t len, uint32_t seed) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  const size_t nblocks = len / 16;
  uint64_t h1 = seed;
  uint64_t h2 = seed;
  const uint64_t c1 = 0x87c37b91114253d5ULL;
  const uint64_t c2 = 0x4cf5ad432745937fULL;
  for (size_t i = 0; i < nblocks; ++i) {
    uint64_t k1 = load64(bytes + i * 16);
    uint64_t k2 = load64(bytes + i * 16 + 8);
    k1 *= c1;
    k1 = rotl64(k1, 31);
    k1 *= c2;
    h1 ^= k1;
    h1 = rotl64(h1, 27);
    h1 += h2;
    h1 = h1 * 5 + 0x52dce729;
    k2 *= c2;
    k2 = rotl64(k2, 33);
    k2 *= c1;
    h2 ^= k2;
    h2 = rotl64(h2, 31);
    h2 += h1;
    h2 = h2 * 5 + 0x38495ab5;
  }
  const uint8_t* tail = bytes + nblocks * 16;
  uint64_t k1 = 0;
  uint64_t k2 = 0;
  size_t rest = len & 15;
  for (size_t i = rest; i > 8; --i) {
    k2 ^= static_cast<uint64_t>(tail[i - 1]) << ((i - 9) * 8);
  }
  if (rest > 8) {
    k2 *= c2;
    k2 = rotl64(k2, 33);
    k2 *= c1;
    h2 ^= k2;
  }
  for (size_t i = std::min<size_t>(rest, 8); i > 0; --i) {
    k1 ^= static_cast<uint64_t>(tail[i - 1]) << ((i - 1) * 8);
  }
  if (rest > 0) {
    k1 *= c1;
    k1 = rotl64(k1, 31);
    k1 *= c2;
    h1 ^= k1;
  }
  h1 ^= len;
  h2 ^= len;
  h1 += h2;
  h2 += h1;
  h1 = fmix64(h1);
  h2 = fmix64(h2);
  h1 += h2;
  h2 += h1;
  return {h1, h2};
}

const std::vector<uint32_t>& allowedMaglevTableSizes() {
  static const std::vector<uint32_t> kSizes = {251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071};
  return kSizes;
}

bool isAllowedMaglevTableSize(uint32_t m) {
  const auto& s = allowedMaglevTableSizes();
  return std::find(s.begin(), s.end(), m) != s.end();
}

Result<MaglevSeed> parseMaglevSeed(const std::string& text) {
  std::vector<uint8_t> out;
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : text) {
    if (c == '=') {
      ++pad;
      continue;
    }
    int v = base64Value(c);
    if (v < 0 || pad > 0) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("maglev hash seed {:?}: not base64", text));
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  if (out.size() != 12) {
    return makeError(ErrorCode::kInvalidArgument,
                     fmt::format("maglev hash seed {:?}: decodes to {} bytes, must be 12", text, out.size()));
  }
  auto be32 = [&](size_t i) {
    return static_cast<uint32_t>(out[i]) << 24 | static_cast<uint32_t>(out[i + 1]) << 16 |
           static_cast<uint32_t>(out[i + 2]) << 8 | static_cast<uint32_t>(out[i + 3]);
  };
  return MaglevSeed{be32(0), be32(4), be32(8)};
}

std::string maglevBackendKey(const std::string& ip, uint16_t port, const std::string& proto) {
  return fmt::format("[{}:{}/{},State:active]", ip, port, proto);
}

std::vector<uint32_t> maglevPopulate(const std::vector<std::pair<uint64_t, uint64_t>>& offset_skip,
                                     const std::vector<uint16_t>& weights, uint32_t m) {
  const size_t l = offset_skip.size();
  uint64_t weight_sum = 0;
  std::vector<double> weight_cntr(l);
  for (size_t i = 0; i < l; ++i) {
    weight_sum += weights[i];
    weight_cntr[i] = static_cast<double>(weights[i]) / static_cast<double>(l);
  }
  // permutation[i][j] = (offset + j*skip) mod M, computed as needed from the per-backend pair.
  auto perm = [&](size_t i, uint64_t j) { return (offset_skip[i].first + (j % m) * offset_skip[i].second) % m; };
  std::vector<uint64_t> next(l, 0);
  std::vector<int64_t> entry(m, -1);
  const bool weighted = weight_sum / l > 1;  // integer division, as Cilium decides
  for (uint64_t n = 0; n < m; ++n) {
    size_t i = n % l;
    // A heavier backend's turn comes more often. Bounded: some backend's turn comes within a round.
    for (size_t guard = 0; weighted && guard <= 2 * l; ++guard) {
      if ((n + 1) * static_cast<uint64_t>(weights[i]) < static_cast<uint64_t>(weight_cntr[i])) {
        i = (i + 1) % l;
        continue;
      }
      weight_cntr[i] += static_cast<double>(weight_sum);
      break;
    }
    uint64_t c = perm(i, next[i]);
    while (entry[c] >= 0) {
      ++next[i];
      c = perm(i, next[i]);
    }
    entry[c] = static_cast<int64_t>(i);
    ++next[i];
  }
  return std::vector<uint32_t>(entry.begin(), entry.end());
}

MaglevResult buildMaglevTable(std::vector<MaglevBackend> backends, uint32_t m, const MaglevSeed& seed) {
  backends.erase(std::remove_if(backends.begin(), backends.end(), [](const MaglevBackend& b) { return b.weight == 0; }),
                 backends.end());
  if (backends.empty() || m < 2) {
    return NoBackends{};
  }
  // Sorted by key: every node computes the same table whatever order it learnt the backends in.
  std::sort(backends.begin(), backends.end(),
            [](const MaglevBackend& a, const MaglevBackend& b) { return a.key < b.key; });
  std::vector<std::pair<uint64_t, uint64_t>> offset_skip;
  std::vector<uint16_t> weights;
  for (const auto& b : backends) {
    auto [h1, h2] = murmur3x64_128(b.key.data(), b.key.size(), seed.murmur);
    offset_skip.emplace_back(h1 % m, (h2 % (m - 1)) + 1);
    weights.push_back(b.weight);
  }
  auto owners = maglevPopulate(offset_skip, weights, m);
  std::vector<uint32_t> table(m);
  for (uint32_t j = 0; j < m; ++j) {
    table[j] = backends[owners[j]].id;
  }
  return table;
}

}  // namespace plexus::lb
