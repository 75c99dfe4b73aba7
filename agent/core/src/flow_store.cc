#include "plexus/agent/flow_store.h"

#include <netinet/in.h>

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "plexus/events.h"

namespace plexus::agent {

const char* verdictName(uint8_t verdict) {
  switch (verdict) {
    case PLEXUS_VERDICT_FORWARDED: return "FORWARDED";
    case PLEXUS_VERDICT_DROPPED: return "DROPPED";
    case PLEXUS_VERDICT_TRANSLATED: return "TRANSLATED";
    default: return "UNKNOWN";
  }
}

const char* protocolName(uint8_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP: return "TCP";
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_ICMP: return "ICMP";
    case IPPROTO_SCTP: return "SCTP";
    default: return "OTHER";
  }
}

namespace {
std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

// "ns/name" matches exactly; a bare "name" matches that pod in any namespace.
bool podMatches(const FlowPeer& p, const std::string& want) {
  if (p.pod_name.empty()) {
    return false;
  }
  auto slash = want.find('/');
  if (slash == std::string::npos) {
    return p.pod_name == want;
  }
  return p.pod_namespace == want.substr(0, slash) && p.pod_name == want.substr(slash + 1);
}

bool labelMatches(const FlowPeer& p, const std::string& want) {
  bool key_only = want.find('=') == std::string::npos;
  for (const auto& l : p.labels) {
    if (l == want || (key_only && l.substr(0, l.find('=')) == want)) {
      return true;
    }
  }
  return false;
}

template <typename T, typename Pred>
bool anyOf(const std::vector<T>& wanted, Pred pred) {
  return wanted.empty() || std::any_of(wanted.begin(), wanted.end(), pred);
}
}  // namespace

Result<FlowFilter> parseFlowFilter(const FlowFilterSpec& spec) {
  FlowFilter f;
  f.namespaces = spec.namespaces;
  f.pods = spec.pods;
  f.from_pods = spec.from_pods;
  f.to_pods = spec.to_pods;
  f.labels = spec.labels;
  f.identities = spec.identities;
  f.since_unix_nano = spec.since_unix_nano;
  for (const auto& v : spec.verdicts) {
    std::string u = upper(v);
    if (u == "FORWARDED") {
      f.verdicts.push_back(PLEXUS_VERDICT_FORWARDED);
    } else if (u == "DROPPED") {
      f.verdicts.push_back(PLEXUS_VERDICT_DROPPED);
    } else if (u == "TRANSLATED") {
      f.verdicts.push_back(PLEXUS_VERDICT_TRANSLATED);
    } else {
      return makeError(ErrorCode::kInvalidArgument,
                       fmt::format("verdict {:?}: must be one of FORWARDED, DROPPED, TRANSLATED", v));
    }
  }
  for (const auto& p : spec.protocols) {
    std::string u = upper(p);
    if (u == "TCP") {
      f.protocols.push_back(IPPROTO_TCP);
    } else if (u == "UDP") {
      f.protocols.push_back(IPPROTO_UDP);
    } else if (u == "ICMP" || u == "ICMPV4") {
      f.protocols.push_back(IPPROTO_ICMP);
    } else if (u == "SCTP") {
      f.protocols.push_back(IPPROTO_SCTP);
    } else {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("protocol {:?}: must be TCP, UDP, ICMP or SCTP", p));
    }
  }
  for (const auto& ip : spec.ips) {
    auto parsed = Ipv4::parse(ip);
    if (!parsed) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("ip {:?}: not an IPv4 address", ip));
    }
    f.ips.push_back(*parsed);
  }
  for (uint32_t port : spec.ports) {
    if (port == 0 || port > 65535) {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("port {}: must be 1-65535", port));
    }
    f.ports.push_back(static_cast<uint16_t>(port));
  }
  for (const auto& l : spec.labels) {
    if (l.empty() || l.front() == '=') {
      return makeError(ErrorCode::kInvalidArgument, fmt::format("label {:?}: must be key or key=value", l));
    }
  }
  return f;
}

bool matches(const FlowRecord& flow, const FlowFilter& f) {
  const FlowPeer& s = flow.source;
  const FlowPeer& d = flow.destination;
  return flow.time_unix_nano >= f.since_unix_nano &&
         anyOf(f.namespaces, [&](const std::string& n) { return s.pod_namespace == n || d.pod_namespace == n; }) &&
         anyOf(f.pods, [&](const std::string& p) { return podMatches(s, p) || podMatches(d, p); }) &&
         anyOf(f.from_pods, [&](const std::string& p) { return podMatches(s, p); }) &&
         anyOf(f.to_pods, [&](const std::string& p) { return podMatches(d, p); }) &&
         anyOf(f.labels, [&](const std::string& l) { return labelMatches(s, l) || labelMatches(d, l); }) &&
         anyOf(f.identities, [&](uint32_t id) { return s.identity == id || d.identity == id; }) &&
         anyOf(f.ips, [&](Ipv4 ip) { return s.ip == ip || d.ip == ip; }) &&
         anyOf(f.verdicts, [&](uint8_t v) { return flow.verdict == v; }) &&
         anyOf(f.protocols, [&](uint8_t p) { return flow.protocol == p; }) &&
         anyOf(f.ports, [&](uint16_t p) { return s.port == p || d.port == p; });
}

FlowStore::FlowStore(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

void FlowStore::add(FlowRecord flow) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ring_.emplace_back(++seq_, std::move(flow));
    if (ring_.size() > capacity_) {
      ring_.pop_front();
    }
  }
  cv_.notify_all();
}

std::vector<FlowRecord> FlowStore::last(size_t n, const FlowFilter& filter) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<FlowRecord> out;
  for (auto it = ring_.rbegin(); it != ring_.rend() && (n == 0 || out.size() < n); ++it) {
    if (matches(it->second, filter)) {
      out.push_back(it->second);
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<FlowRecord> FlowStore::waitNewer(uint64_t* after, const FlowFilter& filter,
                                             std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return seq_ > *after; });
  std::vector<FlowRecord> out;
  for (const auto& [seq, flow] : ring_) {
    if (seq > *after && matches(flow, filter)) {
      out.push_back(flow);
    }
  }
  *after = seq_;
  return out;
}

uint64_t FlowStore::sequence() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seq_;
}

size_t FlowStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ring_.size();
}

uint64_t FlowStore::seen() const { return sequence(); }

}  // namespace plexus::agent
