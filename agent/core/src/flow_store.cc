#include "plexus/agent/flow_store.h"

#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <string_view>

#include <fmt/format.h>

#include "plexus/agent/flow_hubble.h"
#include "plexus/events.h"
#include "plexus/reasons.h"

namespace plexus::agent {

const char* verdictName(uint8_t verdict) {
  switch (verdict) {
    case PLEXUS_VERDICT_FORWARDED: return "FORWARDED";
    case PLEXUS_VERDICT_DROPPED: return "DROPPED";
    case PLEXUS_VERDICT_TRANSLATED: return "TRANSLATED";
    case PLEXUS_VERDICT_AUDIT: return "AUDIT";
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

Error invalid(const std::string& message) { return Error{ErrorCode::kInvalidArgument, message}; }

template <typename T, typename Pred>
bool anyOf(const std::vector<T>& wanted, Pred pred) {
  return wanted.empty() || std::any_of(wanted.begin(), wanted.end(), pred);
}

bool podMatches(const FlowPeer& p, const PodPrefix& want) {
  return !p.podName().empty() && p.podNamespace() == want.pod_namespace && p.podName().starts_with(want.prefix);
}

bool namesUuids(const FlowFilter& f) { return !f.uuids.empty(); }

// Whether a query names flows by their UUIDs, which the store makes only for the flows it hands out.
bool namesUuids(const FlowQuery& q) {
  auto names = [](const FlowFilter& f) { return namesUuids(f); };
  return namesUuids(q.filter) || std::any_of(q.allow.begin(), q.allow.end(), names) ||
         std::any_of(q.deny.begin(), q.deny.end(), names);
}

// '*' matches any run of characters (hubble observe --node-name "node-*").
bool globMatches(std::string_view pattern, std::string_view text) {
  size_t p = 0;
  size_t t = 0;
  size_t star = std::string_view::npos;
  size_t mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

bool nodeMatches(const std::string& node, const std::string& pattern) {
  auto slash = pattern.find('/');
  return globMatches(slash == std::string::npos ? pattern : std::string_view(pattern).substr(slash + 1), node);
}

bool isPolicyReason(uint8_t reason) { return reason == PLEXUS_REASON_POLICY_DENIED || reason == PLEXUS_REASON_POLICY_DENY; }

bool typeMatches(const FlowRecord& f, FlowType t) {
  switch (t) {
    case FlowType::kTrace: return f.verdict == PLEXUS_VERDICT_FORWARDED || f.verdict == PLEXUS_VERDICT_TRANSLATED;
    case FlowType::kDrop: return f.verdict == PLEXUS_VERDICT_DROPPED;
    case FlowType::kPolicyVerdict:
      return (f.verdict == PLEXUS_VERDICT_DROPPED || f.verdict == PLEXUS_VERDICT_AUDIT) && isPolicyReason(f.reason);
    case FlowType::kNeverEmitted: return false;
  }
  return false;
}

Result<FlowType> parseType(const std::string& text) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (t == "trace") {
    return FlowType::kTrace;
  }
  if (t == "drop") {
    return FlowType::kDrop;
  }
  if (t == "policy-verdict") {
    return FlowType::kPolicyVerdict;
  }
  for (const char* other : {"capture", "l7", "debug", "trace-sock", "sock", "agent", "recorder", "lost"}) {
    if (t == other) {
      return FlowType::kNeverEmitted;
    }
  }
  return invalid(fmt::format("type {:?}: must be trace, drop or policy-verdict (subtypes are not supported)", text));
}

// "SYN,ACK": flags that must all be set.
Result<uint8_t> parseTcpFlags(const std::string& text) {
  static const std::pair<const char*, uint8_t> kFlags[] = {{"FIN", 0x01}, {"SYN", 0x02}, {"RST", 0x04},
                                                           {"PSH", 0x08}, {"ACK", 0x10}, {"URG", 0x20},
                                                           {"ECE", 0x40}, {"CWR", 0x80}};
  uint8_t bits = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string name = upper(text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    auto it = std::find_if(std::begin(kFlags), std::end(kFlags), [&](const auto& f) { return name == f.first; });
    if (it == std::end(kFlags)) {
      return invalid(fmt::format("tcp flags {:?}: {:?} is not one of FIN, SYN, RST, PSH, ACK, URG, ECE, CWR", text, name));
    }
    bits |= it->second;
    if (comma == std::string::npos) {
      break;
    }
    pos = comma + 1;
  }
  return bits;
}

Result<PeerFilter> parsePeer(const PeerFilterSpec& spec) {
  PeerFilter f;
  f.namespaces = spec.namespaces;
  f.identities = spec.identities;
  for (const auto& p : spec.pods) {
    auto pod = parsePodPrefix(p);
    if (!pod.ok()) {
      return pod.error();
    }
    f.pods.push_back(*pod);
  }
  for (const auto& l : spec.labels) {
    auto sel = policy::Selector::parseText(l);
    if (!sel.ok()) {
      return sel.error();
    }
    f.labels.push_back(std::move(*sel));
  }
  for (const auto& ip : spec.ips) {
    auto parsed = Ipv4Prefix::parse(ip);
    if (!parsed) {
      return invalid(fmt::format("ip {:?}: not an IPv4 address or CIDR", ip));
    }
    f.ips.push_back(*parsed);
  }
  for (uint32_t port : spec.ports) {
    if (port == 0 || port > 65535) {
      return invalid(fmt::format("port {}: must be 1-65535", port));
    }
    f.ports.push_back(static_cast<uint16_t>(port));
  }
  return f;
}
}  // namespace

Result<PodPrefix> parsePodPrefix(const std::string& text) {
  auto slash = text.find('/');
  if (slash == std::string::npos) {
    if (text.empty()) {
      return invalid("pod \"\": must be [namespace/]name-prefix");
    }
    return PodPrefix{"default", text};
  }
  if (slash == 0 || text.find('/', slash + 1) != std::string::npos) {
    return invalid(fmt::format("pod {:?}: must be [namespace/]name-prefix", text));
  }
  return PodPrefix{text.substr(0, slash), text.substr(slash + 1)};
}

bool PeerFilter::empty() const {
  return namespaces.empty() && pods.empty() && labels.empty() && identities.empty() && ips.empty() && ports.empty();
}

bool PeerFilter::matches(const FlowPeer& p) const {
  if (empty()) {
    return true;
  }
  std::vector<policy::Label> parsed = labels.empty() ? std::vector<policy::Label>{} : policy::parseLabels(p.labels());
  return anyOf(namespaces, [&](const std::string& n) { return !p.podName().empty() && p.podNamespace() == n; }) &&
         anyOf(pods, [&](const PodPrefix& want) { return podMatches(p, want); }) &&
         anyOf(labels, [&](const policy::Selector& s) { return s.matches(parsed); }) &&
         anyOf(identities, [&](uint32_t id) { return p.identity == id; }) &&
         anyOf(ips, [&](const Ipv4Prefix& net) { return net.contains(p.ip); }) &&
         anyOf(ports, [&](uint16_t port) { return p.port == port; });
}

Result<FlowFilter> parseFlowFilter(const FlowFilterSpec& spec) {
  FlowFilter f;
  f.since_unix_nano = spec.since_unix_nano;
  f.until_unix_nano = spec.until_unix_nano;
  f.node_names = spec.node_names;
  for (auto [in, out] : {std::pair{&spec.either, &f.either}, std::pair{&spec.source, &f.source},
                         std::pair{&spec.destination, &f.destination}}) {
    auto peer = parsePeer(*in);
    if (!peer.ok()) {
      return peer.error();
    }
    *out = std::move(*peer);
  }
  for (const auto& v : spec.verdicts) {
    std::string u = upper(v);
    if (u == "FORWARDED") {
      f.verdicts.push_back(PLEXUS_VERDICT_FORWARDED);
    } else if (u == "DROPPED") {
      f.verdicts.push_back(PLEXUS_VERDICT_DROPPED);
    } else if (u == "TRANSLATED") {
      f.verdicts.push_back(PLEXUS_VERDICT_TRANSLATED);
    } else if (u == "AUDIT") {
      f.verdicts.push_back(PLEXUS_VERDICT_AUDIT);
    } else {
      return invalid(fmt::format("verdict {:?}: must be one of FORWARDED, DROPPED, TRANSLATED, AUDIT", v));
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
      return invalid(fmt::format("protocol {:?}: must be TCP, UDP, ICMP or SCTP", p));
    }
  }
  for (const auto& t : spec.types) {
    auto type = parseType(t);
    if (!type.ok()) {
      return type.error();
    }
    f.types.push_back(*type);
  }
  for (const auto& t : spec.tcp_flags) {
    auto bits = parseTcpFlags(t);
    if (!bits.ok()) {
      return bits.error();
    }
    f.tcp_flags.push_back(*bits);
  }
  for (const auto& n : spec.node_names) {
    if (n.empty()) {
      return invalid("node name \"\": must be a name or a pattern with *");
    }
  }
  if (f.until_unix_nano != 0 && f.until_unix_nano < f.since_unix_nano) {
    return invalid("until is before since");
  }
  return f;
}

namespace {
bool eventTypeMatches(const FlowRecord& flow, const EventTypeMatch& want) {
  HubbleEvent e = hubbleEvent(flow);
  if (want.type == kMonitorPolicyVerdict) {
    // Policy decisions reach us as drops (the datapath sends no separate policy-verdict event).
    return typeMatches(flow, FlowType::kPolicyVerdict) && (!want.match_sub_type || want.sub_type == e.sub_type);
  }
  return e.type == want.type && (!want.match_sub_type || want.sub_type == e.sub_type);
}

bool serviceMatches(const FlowRecord& flow, const PodPrefix& want) {
  auto slash = flow.service.find('/');
  return slash != std::string::npos && std::string_view(flow.service).substr(0, slash) == want.pod_namespace &&
         std::string_view(flow.service).substr(slash + 1).starts_with(want.prefix);
}

}  // namespace

bool matches(const FlowRecord& flow, const FlowFilter& f) {
  return !f.never && flow.time_unix_nano >= f.since_unix_nano &&
         (f.until_unix_nano == 0 || flow.time_unix_nano <= f.until_unix_nano) && f.source.matches(flow.source) &&
         f.destination.matches(flow.destination) &&
         (f.either.matches(flow.source) || f.either.matches(flow.destination)) &&
         anyOf(f.verdicts, [&](uint8_t v) { return flow.verdict == v; }) &&
         anyOf(f.protocols, [&](uint8_t p) { return flow.protocol == p; }) &&
         anyOf(f.types, [&](FlowType t) { return typeMatches(flow, t); }) &&
         anyOf(f.tcp_flags,
               [&](uint8_t bits) { return flow.protocol == IPPROTO_TCP && (flow.tcp_flags & bits) == bits; }) &&
         anyOf(f.node_names, [&](const std::string& n) { return nodeMatches(flow.node_name, n); }) &&
         anyOf(f.event_types, [&](const EventTypeMatch& t) { return eventTypeMatches(flow, t); }) &&
         anyOf(f.replies, [&](bool r) { return flow.is_reply == r; }) &&
         anyOf(f.directions, [&](uint8_t d) { return flow.direction == d; }) &&
         anyOf(f.uuids, [&](const std::string& u) { return flow.uuid == u; }) &&
         anyOf(f.destination_services, [&](const PodPrefix& s) { return serviceMatches(flow, s); });
}

bool matches(const FlowRecord& flow, const FlowQuery& q) {
  auto hit = [&](const FlowFilter& f) { return matches(flow, f); };
  return matches(flow, q.filter) && (q.allow.empty() || std::any_of(q.allow.begin(), q.allow.end(), hit)) &&
         std::none_of(q.deny.begin(), q.deny.end(), hit);
}

namespace {
const std::string kNoName;
const std::vector<std::string> kNoLabels;
}  // namespace

const std::string& FlowPeer::podNamespace() const { return pod ? pod->pod_namespace : kNoName; }
const std::string& FlowPeer::podName() const { return pod ? pod->pod_name : kNoName; }
const std::vector<std::string>& FlowPeer::labels() const { return pod ? pod->labels : kNoLabels; }

FlowStore::FlowStore(size_t capacity, uint64_t instance)
    : capacity_(capacity == 0 ? 1 : capacity), instance_(instance) {}

bool FlowStore::hit(uint64_t seq, const FlowRecord& flow, const FlowQuery& query, bool by_uuid) const {
  if (!by_uuid) {
    return matches(flow, query);
  }
  FlowRecord named = flow;  // rare: only a query for given flows needs the UUID made to match it
  named.uuid = flowUuid(instance_, seq);
  return matches(named, query);
}

void FlowStore::emit(uint64_t seq, const FlowRecord& flow, std::vector<FlowRecord>* out) const {
  out->push_back(flow);
  out->back().uuid = flowUuid(instance_, seq);
}

void FlowStore::add(FlowRecord flow) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++seq_;  // the flow's UUID is made from it when the flow is handed out (emit): no formatting per event
    noteNamespace(flow.source.podNamespace(), flow.time_unix_nano);
    noteNamespace(flow.destination.podNamespace(), flow.time_unix_nano);
    if (seq_ % 4096 == 0) {  // forget namespaces without flows for an hour (namespaces come and go)
      std::erase_if(namespaces_, [cutoff = flow.time_unix_nano - std::chrono::nanoseconds(kNamespaceTtl).count()](
                                     const auto& n) { return n.second < cutoff; });
    }
    ring_.emplace_back(seq_, std::move(flow));
    if (ring_.size() > capacity_) {
      ring_.pop_front();
    }
  }
  cv_.notify_all();
}

std::vector<FlowRecord> FlowStore::first(size_t n, const FlowQuery& query) const {
  bool by_uuid = namesUuids(query);
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<FlowRecord> out;
  for (auto it = ring_.begin(); it != ring_.end() && (n == 0 || out.size() < n); ++it) {
    if (hit(it->first, it->second, query, by_uuid)) {
      emit(it->first, it->second, &out);
    }
  }
  return out;
}

std::vector<FlowRecord> FlowStore::last(size_t n, const FlowQuery& query) const {
  bool by_uuid = namesUuids(query);
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<FlowRecord> out;
  for (auto it = ring_.rbegin(); it != ring_.rend() && (n == 0 || out.size() < n); ++it) {
    if (hit(it->first, it->second, query, by_uuid)) {
      emit(it->first, it->second, &out);
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<FlowRecord> FlowStore::waitNewer(uint64_t* after, const FlowQuery& query,
                                             std::chrono::milliseconds timeout) const {
  bool by_uuid = namesUuids(query);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return seq_ > *after; });
  std::vector<FlowRecord> out;
  for (const auto& [seq, flow] : ring_) {
    if (seq > *after && hit(seq, flow, query, by_uuid)) {
      emit(seq, flow, &out);
    }
  }
  *after = seq_;
  return out;
}

void FlowStore::noteNamespace(const std::string& ns, int64_t time_unix_nano) {
  if (ns.empty()) {
    return;
  }
  auto it = namespaces_.try_emplace(ns, time_unix_nano).first;
  it->second = std::max(it->second, time_unix_nano);
}

std::vector<std::string> FlowStore::namespacesSince(int64_t since_unix_nano) const {
  std::vector<std::string> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [ns, time] : namespaces_) {
      if (time >= since_unix_nano) {
        out.push_back(ns);
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

double FlowStore::rate(int64_t now_unix_nano) const {
  constexpr int64_t kMinute = 60'000'000'000;
  int64_t since = now_unix_nano - kMinute;
  size_t count = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ring_.rbegin();
    for (; it != ring_.rend() && it->second.time_unix_nano >= since; ++it) {
      ++count;
    }
    if (it == ring_.rend() && !ring_.empty() && ring_.size() == capacity_) {
      since = ring_.front().second.time_unix_nano;  // the ring holds less than the minute: its span
    }
  }
  int64_t span = now_unix_nano - since;
  return span > 0 ? static_cast<double>(count) * 1e9 / static_cast<double>(span) : 0.0;
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
