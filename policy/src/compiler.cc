#include "plexus/policy/compiler.h"

#include <algorithm>

#include <fmt/format.h>

namespace plexus::policy {

namespace {

uint16_t portMask(uint8_t bits) { return bits == 0 ? 0 : static_cast<uint16_t>(0xffffu << (16 - bits)); }

int prefixLength(const Entry& e) { return e.proto == kProtoAny ? 0 : 8 + e.port_bits; }

// Collects entries keyed by their fixed fields: a deny replaces an allow, and of equal verdicts the lowest
// non-zero rule id is kept, so the outcome does not depend on the order rules arrive in.
class EntrySet {
 public:
  void add(const Entry& e) {
    auto [it, inserted] = entries_.emplace(e.key(), e);
    if (inserted) {
      return;
    }
    Entry& cur = it->second;
    if (e.deny != cur.deny) {
      if (e.deny) {
        cur = e;
      }
      return;
    }
    if (cur.rule_id == 0 || (e.rule_id != 0 && e.rule_id < cur.rule_id)) {
      cur.rule_id = e.rule_id;
    }
  }

  // Removes allows that a deny of the same identity and direction covers, then returns the entries in key order.
  std::vector<Entry> resolve() const {
    std::vector<Entry> out;
    out.reserve(entries_.size());
    auto it = entries_.begin();
    while (it != entries_.end()) {
      auto group_end = it;
      std::vector<const Entry*> denies;
      while (group_end != entries_.end() && group_end->second.identity == it->second.identity &&
             group_end->second.direction == it->second.direction) {
        if (group_end->second.deny) {
          denies.push_back(&group_end->second);
        }
        ++group_end;
      }
      for (; it != group_end; ++it) {
        const Entry& e = it->second;
        bool shadowed = !e.deny && std::any_of(denies.begin(), denies.end(), [&](const Entry* d) { return d->covers(e); });
        if (!shadowed) {
          out.push_back(e);
        }
      }
    }
    return out;
  }

 private:
  std::map<decltype(Entry{}.key()), Entry> entries_;
};

void addPorts(EntrySet* set, const Rule& r, uint32_t id, uint8_t proto, uint16_t lo, uint16_t hi) {
  if (proto == kProtoIcmpv6) {
    return;  // this datapath forwards no IPv6: an ICMPv6 type matches nothing (its rule still selects the direction)
  }
  if (proto == kProtoIcmp) {
    // The type in the port slot, exactly (type 0 is echo reply, not every type), as Cilium keys `icmps`.
    set->add(Entry{.identity = id, .direction = r.direction, .proto = proto, .port = lo, .port_bits = 16,
                   .deny = r.deny, .rule_id = r.id});
    return;
  }
  std::vector<uint8_t> protos;
  if (proto == kProtoAny && lo != 0) {
    protos = {kProtoTcp, kProtoUdp, kProtoSctp};  // ANY with a port: the port-carrying protocols
  } else {
    protos = {proto};
  }
  for (uint8_t p : protos) {
    Entry e{.identity = id, .direction = r.direction, .proto = p, .deny = r.deny, .rule_id = r.id};
    if (p == kProtoAny || lo == 0) {
      set->add(e);  // every port (of every protocol when p is ANY)
      continue;
    }
    for (auto [port, bits] : portPrefixes(lo, hi)) {
      e.port = port;
      e.port_bits = bits;
      set->add(e);
    }
  }
}

}  // namespace

bool Entry::covers(const Entry& o) const {
  if (identity != o.identity || direction != o.direction) {
    return false;
  }
  if (proto == kProtoAny) {
    return true;
  }
  if (proto != o.proto || port_bits > o.port_bits) {
    return false;
  }
  return (o.port & portMask(port_bits)) == (port & portMask(port_bits));
}

std::vector<std::pair<uint16_t, uint8_t>> portPrefixes(uint16_t lo, uint16_t hi) {
  std::vector<std::pair<uint16_t, uint8_t>> out;
  uint32_t cur = lo;
  while (cur <= hi) {
    uint8_t free_bits = 0;  // trailing bits left free in this block
    while (free_bits < 16) {
      uint32_t size = 1u << (free_bits + 1);
      if ((cur & (size - 1)) != 0 || cur + size - 1 > hi) {
        break;
      }
      ++free_bits;
    }
    out.emplace_back(static_cast<uint16_t>(cur), static_cast<uint8_t>(16 - free_bits));
    cur += 1u << free_bits;
  }
  return out;
}

void SelectorCache::upsertIdentity(uint32_t id, std::vector<Label> labels) {
  for (auto& [text, sel] : selections_) {
    if (sel.first.matches(labels)) {
      sel.second.insert(id);
    } else {
      sel.second.erase(id);
    }
  }
  identities_[id] = std::move(labels);
}

void SelectorCache::removeIdentity(uint32_t id) {
  identities_.erase(id);
  for (auto& [text, sel] : selections_) {
    sel.second.erase(id);
  }
}

void SelectorCache::syncIdentities(const std::map<uint32_t, std::vector<std::string>>& all) {
  std::vector<uint32_t> gone;
  for (const auto& [id, labels] : identities_) {
    if (!all.count(id)) {
      gone.push_back(id);
    }
  }
  for (uint32_t id : gone) {
    removeIdentity(id);
  }
  for (const auto& [id, texts] : all) {
    auto labels = parseLabels(texts);
    auto it = identities_.find(id);
    if (it == identities_.end() || it->second != labels) {
      upsertIdentity(id, std::move(labels));
    }
  }
}

const std::set<uint32_t>& SelectorCache::select(const Selector& s) {
  auto it = selections_.find(s.str());
  if (it == selections_.end()) {
    std::set<uint32_t> ids;
    for (const auto& [id, labels] : identities_) {
      if (s.matches(labels)) {
        ids.insert(id);
      }
    }
    it = selections_.emplace(s.str(), std::make_pair(s, std::move(ids))).first;
  }
  return it->second.second;
}

const std::vector<Label>* SelectorCache::labelsOf(uint32_t id) const {
  auto it = identities_.find(id);
  return it == identities_.end() ? nullptr : &it->second;
}

std::optional<EnforcementMode> parseEnforcementMode(const std::string& text) {
  if (text == "default") {
    return EnforcementMode::kDefault;
  }
  if (text == "always") {
    return EnforcementMode::kAlways;
  }
  if (text == "never") {
    return EnforcementMode::kNever;
  }
  return std::nullopt;
}

EndpointPolicy compile(const EndpointInfo& ep, const std::vector<const Policy*>& policies, SelectorCache& cache,
                       const NamedPortResolver& named_ports, EnforcementMode mode) {
  EndpointPolicy out;
  EntrySet set;
  std::set<std::string> selected_by;
  if (mode == EnforcementMode::kNever) {
    for (Direction dir : {Direction::kIngress, Direction::kEgress}) {
      set.add(Entry{.identity = kWildcardIdentity, .direction = dir});
    }
    out.entries = set.resolve();
    return out;
  }
  for (Direction dir : {Direction::kIngress, Direction::kEgress}) {
    bool enforced = mode == EnforcementMode::kAlways;
    std::vector<const Rule*> rules;
    for (const Policy* p : policies) {
      for (const Spec& spec : p->specs) {
        if (spec.selects_nodes || !spec.subject.matches(ep.labels)) {
          continue;
        }
        selected_by.insert(p->key());
        bool has = dir == Direction::kIngress ? spec.ingress : spec.egress;
        bool default_deny = dir == Direction::kIngress ? spec.default_deny_ingress : spec.default_deny_egress;
        enforced = enforced || (has && default_deny);
        for (const Rule& r : spec.rules) {
          if (r.direction == dir) {
            rules.push_back(&r);
          }
        }
      }
    }
    (dir == Direction::kIngress ? out.ingress_enforced : out.egress_enforced) = enforced;
    if (!enforced) {
      set.add(Entry{.identity = kWildcardIdentity, .direction = dir});  // allow-all, rule 0
    }
    for (const Rule* r : rules) {
      std::set<uint32_t> ids;
      if (r->peers.all) {
        ids.insert(kWildcardIdentity);
      }
      for (const Selector& s : r->peers.selectors) {
        const auto& sel = cache.select(s);
        ids.insert(sel.begin(), sel.end());
      }
      std::vector<PortSpec> ports = r->ports.empty() ? std::vector<PortSpec>{PortSpec{}} : r->ports;
      for (const PortSpec& p : ports) {
        for (uint32_t id : ids) {
          if (p.name.empty()) {
            addPorts(&set, *r, id, p.proto, p.port, p.end_port ? p.end_port : p.port);
            continue;
          }
          // Named ports: on ingress the endpoint's own ports, on egress the destination's.
          std::vector<std::pair<uint16_t, uint8_t>> resolved;
          if (dir == Direction::kIngress) {
            auto [b, e] = ep.named_ports.equal_range(p.name);
            for (auto it = b; it != e; ++it) {
              resolved.push_back(it->second);
            }
          } else if (named_ports) {
            resolved = named_ports(id, p.name);
          }
          for (auto [port, proto] : resolved) {
            if (p.proto == kProtoAny || p.proto == proto) {
              addPorts(&set, *r, id, proto, port, port);
            }
          }
        }
      }
    }
  }
  out.entries = set.resolve();
  out.selected_by.assign(selected_by.begin(), selected_by.end());
  return out;
}

EntryDiff diff(const std::vector<Entry>& before, const std::vector<Entry>& after) {
  EntryDiff d;
  size_t i = 0, j = 0;
  while (i < before.size() || j < after.size()) {
    if (j == after.size() || (i < before.size() && before[i].key() < after[j].key())) {
      d.removals.push_back(before[i++]);
    } else if (i == before.size() || after[j].key() < before[i].key()) {
      d.upserts.push_back(after[j++]);
    } else {
      if (!(before[i] == after[j])) {
        d.upserts.push_back(after[j]);
      }
      ++i;
      ++j;
    }
  }
  return d;
}

Verdict evaluate(const std::vector<Entry>& entries, uint32_t peer, Direction dir, uint8_t proto, uint16_t port) {
  Entry probe{.identity = peer, .direction = dir, .proto = proto, .port = port, .port_bits = 16};
  auto lookup = [&](uint32_t id) -> std::optional<Entry> {
    probe.identity = id;
    std::optional<Entry> best;
    for (const Entry& e : entries) {
      if (e.covers(probe) && (!best || prefixLength(e) > prefixLength(*best))) {
        best = e;
      }
    }
    return best;
  };
  auto exact = lookup(peer);
  auto any = peer == kWildcardIdentity ? std::nullopt : lookup(kWildcardIdentity);
  Verdict v;
  for (const auto& hit : {exact, any}) {
    if (hit && hit->deny) {
      v.explicit_deny = true;
      v.deciding = hit;
      return v;
    }
  }
  v.allowed = exact || any;
  v.deciding = exact ? exact : any;
  return v;
}

std::string describe(const Entry& e) {
  std::string peer = e.identity == kWildcardIdentity ? "any" : std::to_string(e.identity);
  std::string ports;
  if (e.proto == kProtoAny) {
    ports = "ANY";
  } else if (e.port_bits == 0) {
    ports = fmt::format("{}/all", protoName(e.proto));
  } else if (e.proto == kProtoIcmp) {
    ports = fmt::format("ICMP/type {}", e.port);
  } else if (e.port_bits == 16) {
    ports = fmt::format("{}/{}", protoName(e.proto), e.port);
  } else {
    ports = fmt::format("{}/{}-{}", protoName(e.proto), e.port, e.lastPort());
  }
  return fmt::format("{} {} {} {}", toString(e.direction), peer, ports, e.deny ? "deny" : "allow");
}

}  // namespace plexus::policy
