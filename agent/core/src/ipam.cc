#include "plexus/agent/ipam.h"

#include <fmt/format.h>

namespace plexus::agent {

Ipam::Ipam(Ipv4Prefix cidr, Ipv4 gateway) : cidr_(cidr), gateway_(gateway), last_(gateway) {}

bool Ipam::reserved(Ipv4 ip) const {
  if (ip == gateway_) {
    return true;
  }
  if (cidr_.length() <= 30 && (ip == cidr_.network() || ip == cidr_.at(cidr_.size() - 1))) {
    return true;
  }
  return false;
}

uint32_t Ipam::capacity() const {
  uint64_t n = cidr_.size();
  if (cidr_.length() <= 30) {
    n -= 2;
  }
  if (cidr_.contains(gateway_)) {
    n -= 1;
  }
  return static_cast<uint32_t>(n);
}

std::optional<Ipv4> Ipam::addressOf(const std::string& owner) const {
  for (const auto& [ip, o] : by_ip_) {
    if (o == owner) {
      return ip;
    }
  }
  return std::nullopt;
}

Result<Ipv4> Ipam::allocate(const std::string& owner, std::optional<Ipv4> requested) {
  auto existing = addressOf(owner);
  if (requested) {
    if (!cidr_.contains(*requested)) {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("requested IP {} is outside the pod CIDR {}", requested->toString(), cidr_.toString()));
    }
    if (reserved(*requested)) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("requested IP {} is reserved", requested->toString()));
    }
    auto it = by_ip_.find(*requested);
    if (it != by_ip_.end()) {
      if (it->second == owner) {
        return *requested;
      }
      return makeError(ErrorCode::kAlreadyExists,
                       fmt::format("requested IP {} is already allocated to {}", requested->toString(), it->second));
    }
    if (existing) {
      return makeError(ErrorCode::kAlreadyExists,
                       fmt::format("{} already holds {}", owner, existing->toString()));
    }
    by_ip_.emplace(*requested, owner);
    last_ = *requested;
    return *requested;
  }
  if (existing) {
    return *existing;
  }
  // Next-fit: scan at most the whole range once, starting after the last allocation.
  uint64_t size = cidr_.size();
  uint64_t start = last_.hostOrder() - cidr_.network().hostOrder();
  for (uint64_t i = 1; i <= size; ++i) {
    Ipv4 candidate = cidr_.at((start + i) % size);
    if (reserved(candidate) || by_ip_.count(candidate) != 0) {
      continue;
    }
    by_ip_.emplace(candidate, owner);
    last_ = candidate;
    return candidate;
  }
  return makeError(ErrorCode::kResourceExhausted, fmt::format("IPAM pool {} is exhausted", cidr_.toString()));
}

size_t Ipam::release(const std::string& owner) {
  size_t n = 0;
  for (auto it = by_ip_.begin(); it != by_ip_.end();) {
    if (it->second == owner) {
      it = by_ip_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

std::vector<std::string> Ipam::restore(const IpamSnapshot& snapshot) {
  std::vector<std::string> problems;
  by_ip_.clear();
  for (const auto& [ip, owner] : snapshot.allocations) {
    if (!cidr_.contains(ip) || reserved(ip)) {
      problems.push_back(fmt::format("dropping allocation {} of {}: not assignable in {}", ip.toString(), owner,
                                     cidr_.toString()));
      continue;
    }
    by_ip_.emplace(ip, owner);
  }
  last_ = cidr_.contains(snapshot.last) ? snapshot.last : gateway_;
  return problems;
}

IpamSnapshot Ipam::snapshot() const { return IpamSnapshot{cidr_.toString(), by_ip_, last_}; }

}  // namespace plexus::agent
