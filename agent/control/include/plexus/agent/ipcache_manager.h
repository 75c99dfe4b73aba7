#pragma once
// The one writer of the ipcache map (prefix -> identity, tunnel endpoint). Several sources know things about a
// prefix: the endpoints wired on this node, this node's own addresses, the CIDRs policies name, and (with more
// than one node) other nodes and their pods. Each source states what it knows; the manager keeps every
// statement and writes the one of highest precedence, as Cilium's ipcache metadata layer does. A statement is
// recorded as installed only once the kernel accepted it; what failed stays pending and reconcile() retries it.
// Reconcile thread only.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "plexus/agent/agent_notifications.h"
#include "plexus/agent/seams.h"
#include "plexus/common/ipv4.h"
#include "plexus/common/result.h"

namespace plexus::agent {

// Higher wins.
enum class IpcacheSource : uint8_t {
  kPolicyCidr = 1,      // node-local CIDR identities that policies select (generated)
  kNode = 2,            // other nodes: their addresses (remote-node) and pod CIDRs (tunnel endpoint)
  kRemoteEndpoint = 3,  // pods on other nodes
  kHost = 4,            // this node's own addresses
  kLocalEndpoint = 5,   // pods wired on this node (and its gateway): authoritative
};
const char* toString(IpcacheSource source);

struct IpcacheEntry {
  uint32_t identity = 0;
  Ipv4 tunnel_endpoint;  // the node that hosts the prefix; 0 when local or unknown
  friend bool operator==(const IpcacheEntry&, const IpcacheEntry&) = default;
};

class IpcacheManager {
 public:
  explicit IpcacheManager(IpcacheMap& map) : map_(map) {}
  // Where each written or removed entry is reported (IPCACHE_UPSERTED / IPCACHE_DELETED); null: nowhere.
  void setNotifications(NotificationLog* log) { notices_ = log; }

  // Adopts what the map holds (a previous run) as installed. Entries no source claims by the next reconcile()
  // are removed then: call it after every source has been restored.
  Status restore();
  // What `source` says about `prefix` (replacing its earlier statement). The winner is written at once; a
  // failed write is returned and stays pending.
  Status upsert(Ipv4Prefix prefix, IpcacheSource source, IpcacheEntry entry);
  Status remove(Ipv4Prefix prefix, IpcacheSource source);
  // Replaces everything `source` says with `entries`.
  Status replace(IpcacheSource source, const std::map<Ipv4Prefix, IpcacheEntry>& entries);
  // Writes every pending prefix; Ok when the map equals the merged statements.
  Status reconcile();
  bool pending() const { return !dirty_.empty(); }
  // Why some of `source`'s statements are not in the map (their last failed write), if any are not.
  std::optional<std::string> failure(IpcacheSource source) const;
  // Prefixes whose last write failed (a full map: their statements wait for room).
  const std::map<Ipv4Prefix, std::string>& failures() const { return failed_; }

  // The merged view (what the map must hold).
  std::optional<IpcacheEntry> lookup(Ipv4Prefix prefix) const;
  std::optional<IpcacheSource> winner(Ipv4Prefix prefix) const;
  size_t size() const { return statements_.size(); }

 private:
  Status flush(Ipv4Prefix prefix);

  void notify(NotificationType type, Ipv4Prefix prefix, const IpcacheEntry& entry, const IpcacheEntry* old) const;

  IpcacheMap& map_;
  NotificationLog* notices_ = nullptr;
  std::map<Ipv4Prefix, std::map<IpcacheSource, IpcacheEntry>> statements_;
  std::map<Ipv4Prefix, IpcacheEntry> installed_;
  std::set<Ipv4Prefix> dirty_;
  std::map<Ipv4Prefix, std::string> failed_;
};

}  // namespace plexus::agent
