#include "plexus/datapath/map_convert.h"

#include <fmt/format.h>

namespace plexus::datapath {

const char* copyEntry(const RawEntry& in, RawEntry* out) {
  *out = in;
  return nullptr;
}

Converted<plexus_ct4_key, plexus_ct4_value> convertCt4V1(const plexus_ct4_key& key, const plexus_ct4_value_v1& value) {
  Converted<plexus_ct4_key, plexus_ct4_value> out;
  if (key.pad[0] != 0 || key.pad[1] != 0) {
    out.skipped = "its key has non-zero padding (no lookup matches it)";
    return out;
  }
  if (key.dir < PLEXUS_CT_SERVICE || key.dir > PLEXUS_CT_REVERSE_NODEPORT) {
    out.skipped = "its direction is unknown";
    return out;
  }
  out.key = key;
  out.value.last_seen_ns = value.last_seen_ns;
  out.value.backend_id = value.backend_id;
  out.value.rev_nat_index = value.rev_nat_index;
  out.value.tx_flags = value.tx_flags;
  out.value.rx_flags = value.rx_flags;
  out.value.nat_port = 0;
  return out;
}

const std::vector<MapMigration>& mapMigrations() {
  static const std::vector<MapMigration> kMigrations = {
      {"plexus_ct4_v1", sizeof(plexus_ct4_key), sizeof(plexus_ct4_value_v1), "plexus_ct4_v2",
       rawConverter(&convertCt4V1)},
  };
  return kMigrations;
}

std::string CarryReport::summary() const {
  std::string out = fmt::format("{} -> {}: {} of {} entries carried over", from, to, carried, read);
  if (from == to) {
    out = fmt::format("{} (recreated, {} -> {} entries): {} of {} entries carried over", to, from_max_entries,
                      to_max_entries, carried, read);
  }
  if (kept_newer > 0) {
    out += fmt::format("; {} already in the new map (kept)", kept_newer);
  }
  if (dropped > 0) {
    out += fmt::format("; {} dropped (the new map holds {} entries)", dropped, to_max_entries);
  }
  for (const auto& [reason, n] : lost) {
    out += fmt::format("; {} not carried over: {}", n, reason);
  }
  return out;
}

CarryPlan planCarry(const std::vector<RawEntry>& old, const EntryConverter& convert, size_t room) {
  CarryPlan plan;
  plan.report.read = old.size();
  for (const RawEntry& e : old) {
    RawEntry converted;
    if (const char* why = convert(e, &converted); why != nullptr) {
      ++plan.report.lost[why];
      continue;
    }
    if (plan.entries.size() >= room) {
      ++plan.report.dropped;
      continue;
    }
    plan.entries.push_back(std::move(converted));
  }
  return plan;
}

}  // namespace plexus::datapath
