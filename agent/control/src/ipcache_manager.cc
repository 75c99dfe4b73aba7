#include "plexus/agent/ipcache_manager.h"

#include <fmt/format.h>

#include "plexus/agent/map_encoding.h"

namespace plexus::agent {

const char* toString(IpcacheSource source) {
  switch (source) {
    case IpcacheSource::kPolicyCidr: return "policy-cidr";
    case IpcacheSource::kNode: return "node";
    case IpcacheSource::kRemoteEndpoint: return "remote-endpoint";
    case IpcacheSource::kHost: return "host";
    case IpcacheSource::kLocalEndpoint: return "local-endpoint";
  }
  return "unknown";
}

Status IpcacheManager::restore() {
  auto entries = map_.entries();
  if (!entries.ok()) {
    return entries.error().wrap("read the ipcache");
  }
  for (const auto& [k, v] : *entries) {
    Ipv4Prefix prefix(Ipv4::fromNetwork(k.ip), static_cast<int>(k.prefixlen));
    installed_[prefix] = IpcacheEntry{v.identity, Ipv4::fromNetwork(v.tunnel_endpoint)};
    dirty_.insert(prefix);
  }
  return Status::Ok();
}

Status IpcacheManager::upsert(Ipv4Prefix prefix, IpcacheSource source, IpcacheEntry entry) {
  statements_[prefix][source] = entry;
  dirty_.insert(prefix);
  return flush(prefix);
}

Status IpcacheManager::remove(Ipv4Prefix prefix, IpcacheSource source) {
  auto it = statements_.find(prefix);
  if (it == statements_.end() || !it->second.erase(source)) {
    return Status::Ok();
  }
  if (it->second.empty()) {
    statements_.erase(it);
  }
  dirty_.insert(prefix);
  return flush(prefix);
}

Status IpcacheManager::replace(IpcacheSource source, const std::map<Ipv4Prefix, IpcacheEntry>& entries) {
  for (auto it = statements_.begin(); it != statements_.end();) {
    auto& by_source = it->second;
    if (by_source.count(source) && !entries.count(it->first)) {
      by_source.erase(source);
      dirty_.insert(it->first);
    }
    it = by_source.empty() ? statements_.erase(it) : std::next(it);
  }
  for (const auto& [prefix, entry] : entries) {
    auto& slot = statements_[prefix][source];
    if (!(slot == entry) || !installed_.count(prefix)) {
      dirty_.insert(prefix);
    }
    slot = entry;
  }
  return reconcile();
}

Status IpcacheManager::reconcile() {
  Status first = Status::Ok();
  // Removals first: in a full map they make the room the writes need.
  std::set<Ipv4Prefix> pending = dirty_;
  for (bool removals : {true, false}) {
    for (auto prefix : pending) {
      if (lookup(prefix).has_value() == removals) {
        continue;
      }
      if (Status s = flush(prefix); !s.ok() && first.ok()) {
        first = s;
      }
    }
  }
  return first;
}

std::optional<std::string> IpcacheManager::failure(IpcacheSource source) const {
  for (const auto& [prefix, error] : failed_) {
    auto it = statements_.find(prefix);
    if (it != statements_.end() && it->second.count(source)) {
      return error;
    }
  }
  return std::nullopt;
}

Status IpcacheManager::flush(Ipv4Prefix prefix) {
  auto want = lookup(prefix);
  auto have = installed_.find(prefix);
  if (!want) {
    if (have != installed_.end()) {
      Status s = map_.erase(encodeIpcacheKey(prefix));
      if (!s.ok() && s.error().code != ErrorCode::kNotFound) {
        failed_[prefix] = s.error().message;
        return s.error().wrap(fmt::format("ipcache {}: remove", prefix.toString()));
      }
      notify(NotificationType::kIpcacheDeleted, prefix, have->second, nullptr);
      installed_.erase(have);
    }
  } else if (have == installed_.end() || !(have->second == *want)) {
    Status s = map_.update(encodeIpcacheKey(prefix), encodeIpcacheValue(want->identity, want->tunnel_endpoint));
    if (!s.ok()) {
      failed_[prefix] = s.error().message;
      return s.error().wrap(fmt::format("ipcache {} -> identity {}", prefix.toString(), want->identity));
    }
    notify(NotificationType::kIpcacheUpserted, prefix, *want, have == installed_.end() ? nullptr : &have->second);
    installed_[prefix] = *want;
  }
  dirty_.erase(prefix);
  failed_.erase(prefix);
  return Status::Ok();
}

void IpcacheManager::notify(NotificationType type, Ipv4Prefix prefix, const IpcacheEntry& entry,
                            const IpcacheEntry* old) const {
  if (!notices_) {
    return;
  }
  auto node = [](Ipv4 ip) { return ip.hostOrder() == 0 ? std::string() : ip.toString(); };
  AgentNotification n{.type = type, .cidr = prefix.toString(), .identity = entry.identity,
                      .host_ip = node(entry.tunnel_endpoint)};
  if (old) {
    n.old_identity = old->identity;
    n.old_host_ip = node(old->tunnel_endpoint);
  }
  notices_->add(std::move(n));
}

std::optional<IpcacheEntry> IpcacheManager::lookup(Ipv4Prefix prefix) const {
  auto it = statements_.find(prefix);
  if (it == statements_.end() || it->second.empty()) {
    return std::nullopt;
  }
  return it->second.rbegin()->second;
}

std::optional<IpcacheSource> IpcacheManager::winner(Ipv4Prefix prefix) const {
  auto it = statements_.find(prefix);
  if (it == statements_.end() || it->second.empty()) {
    return std::nullopt;
  }
  return it->second.rbegin()->first;
}

}  // namespace plexus::agent
