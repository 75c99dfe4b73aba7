#pragma once
// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer",
// NSDI 2016, §3.4), computed exactly as Cilium computes it so that a cluster moving from Cilium keeps its
// flow-to-backend mapping for the same backends, weights and seed:
//   - each backend is named by a key string "[ip:port/PROTO,State:active]" and the keys are sorted, so the
//     input order does not matter;
//   - (offset, skip) come from MurmurHash3 x64-128 of the key, seeded with the first 4 bytes (big-endian) of
//     the 12-byte base64 seed (`bpf-lb-maglev-hash-seed`): offset = h1 mod M, skip = h2 mod (M-1) + 1;
//   - backends take turns filling their next preferred free slot; weights change how often a backend's turn
//     comes (Cilium's scheme, itself from Envoy).
// We keep only (offset, skip) per backend and compute permutation entries on the fly, never an M×N matrix.
// Pure.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "plexus/common/result.h"

namespace plexus::lb {

inline constexpr const char* kDefaultMaglevSeed = "JLfvgnHc2kaSUFaI";  // Cilium's default
inline constexpr uint32_t kDefaultMaglevTableSize = 16381;

// Cilium's allowed table sizes (primes).
bool isAllowedMaglevTableSize(uint32_t m);
const std::vector<uint32_t>& allowedMaglevTableSizes();

struct MaglevSeed {
  uint32_t murmur = 0;
  uint32_t jhash0 = 0;
  uint32_t jhash1 = 0;
};
// Decodes the base64 seed; it must decode to exactly 12 bytes.
Result<MaglevSeed> parseMaglevSeed(const std::string& base64);

struct MaglevBackend {
  std::string key;      // "[10.0.0.1:80/TCP,State:active]"
  uint32_t id = 0;      // what the table stores (the datapath's backend id)
  uint16_t weight = 100;  // Cilium's default weight
};

// The key Cilium uses for a backend.
std::string maglevBackendKey(const std::string& ip, uint16_t port, const std::string& proto);

// "No backends" is its own state, not an empty table that could be installed by mistake.
struct NoBackends {};
using MaglevResult = std::variant<NoBackends, std::vector<uint32_t>>;

// Backends with weight 0 take no slots; if none is left the result is NoBackends.
MaglevResult buildMaglevTable(std::vector<MaglevBackend> backends, uint32_t m, const MaglevSeed& seed);

// The population step itself (§3.4 pseudocode plus Cilium's weighted turns), on backends already in order and
// given as (offset, skip) pairs: returns, for each of the M slots, the index of the backend that owns it.
std::vector<uint32_t> maglevPopulate(const std::vector<std::pair<uint64_t, uint64_t>>& offset_skip,
                                     const std::vector<uint16_t>& weights, uint32_t m);

// MurmurHash3 x64-128 (Austin Appleby's algorithm, 32-bit seed), returning (h1, h2).
std::pair<uint64_t, uint64_t> murmur3x64_128(const void* data, size_t len, uint32_t seed);

}  // namespace plexus::lb
