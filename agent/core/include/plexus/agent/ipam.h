#pragma once
// Host-scope IPAM over the node's pod CIDR (pure). Owners are "<container id>/<ifname>" strings.
// Allocation is next-fit after the last handed-out address, so a released address is not reused at once
// (like the reference host-local plugin); the caller persists snapshot() before answering, so no address is
// ever handed out twice, across restarts too.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"

namespace plexus::agent {

struct IpamSnapshot {
  std::string cidr;
  std::map<Ipv4, std::string> allocations;  // ip -> owner
  Ipv4 last;
};

class Ipam {
 public:
  // Reserves the network address, the broadcast address and `gateway`.
  Ipam(Ipv4Prefix cidr, Ipv4 gateway);

  // Returns the owner's existing address if it has one (idempotent ADD). A requested address must be inside
  // the CIDR, not reserved, and free or already the owner's.
  Result<Ipv4> allocate(const std::string& owner, std::optional<Ipv4> requested);
  // Releases every address of the owner; returns how many were released.
  size_t release(const std::string& owner);
  std::optional<Ipv4> addressOf(const std::string& owner) const;

  // Restores state; entries outside the CIDR or on reserved addresses are dropped and reported.
  std::vector<std::string> restore(const IpamSnapshot& snapshot);
  IpamSnapshot snapshot() const;

  const Ipv4Prefix& cidr() const { return cidr_; }
  Ipv4 gateway() const { return gateway_; }
  uint32_t capacity() const;  // assignable addresses
  uint32_t used() const { return static_cast<uint32_t>(by_ip_.size()); }
  uint32_t available() const { return capacity() - used(); }

 private:
  bool reserved(Ipv4 ip) const;

  Ipv4Prefix cidr_;
  Ipv4 gateway_;
  std::map<Ipv4, std::string> by_ip_;
  Ipv4 last_;
};

}  // namespace plexus::agent
