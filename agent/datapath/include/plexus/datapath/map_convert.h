#pragma once
// What a pinned map's entries become when its layout or size changes (STYLE.md rule 4: a pinned layout changes only
// by a new version and a migration). Pure: the table of layout changes, the per-entry converters and the counting,
// unit-tested without a kernel. map_migration.h applies them to the pins when a program object is loaded.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "plexus/conntrack.h"

namespace plexus::datapath {

// One map entry as the kernel stores it.
struct RawEntry {
  std::vector<uint8_t> key;
  std::vector<uint8_t> value;
};

// A typed converter's answer: the new entry, or why the old one cannot be carried over. The reason is a fixed
// phrase (the log counts entries per reason), never a per-entry message.
template <typename K, typename V>
struct Converted {
  K key{};
  V value{};
  const char* skipped = nullptr;
};

// Converts one old entry into `out`; returns nullptr, or the reason the entry is not carried over.
using EntryConverter = std::function<const char*(const RawEntry& in, RawEntry* out)>;

// A map whose layout changed: when a program object declaring map `to` is loaded, the entries of the pin `from`
// (whose key and value have the sizes given) are converted into `to`, then the pin `from` is removed.
struct MapMigration {
  std::string from;
  uint32_t from_key_size = 0;
  uint32_t from_value_size = 0;
  std::string to;
  EntryConverter convert;
};

// Adapts a typed converter to raw entries: an entry of other sizes is skipped, never reinterpreted.
template <typename OldK, typename OldV, typename NewK, typename NewV>
EntryConverter rawConverter(Converted<NewK, NewV> (*fn)(const OldK&, const OldV&)) {
  static_assert(std::is_trivially_copyable_v<OldK> && std::is_trivially_copyable_v<OldV>);
  static_assert(std::is_trivially_copyable_v<NewK> && std::is_trivially_copyable_v<NewV>);
  return [fn](const RawEntry& in, RawEntry* out) -> const char* {
    if (in.key.size() != sizeof(OldK) || in.value.size() != sizeof(OldV)) {
      return "its key or value size is not the old layout's";
    }
    OldK key;
    OldV value;
    std::memcpy(&key, in.key.data(), sizeof(key));
    std::memcpy(&value, in.value.data(), sizeof(value));
    Converted<NewK, NewV> c = fn(key, value);
    if (c.skipped != nullptr) {
      return c.skipped;
    }
    out->key.resize(sizeof(NewK));
    out->value.resize(sizeof(NewV));
    std::memcpy(out->key.data(), &c.key, sizeof(NewK));
    std::memcpy(out->value.data(), &c.value, sizeof(NewV));
    return nullptr;
  };
}

// The converter of a map recreated with the same layout (another max_entries or flags): entries as they are.
const char* copyEntry(const RawEntry& in, RawEntry* out);

// plexus_ct4_v1 -> plexus_ct4_v2: the key is unchanged and v2 adds nat_port, which is 0 ("port kept" on a SERVICE
// entry, "none" on a REVERSE one), exactly what a v1 flow had, since v1 never moved a port. Keys the datapath
// never writes (non-zero padding, an unknown direction) are not carried over: no lookup could ever match them.
Converted<plexus_ct4_key, plexus_ct4_value> convertCt4V1(const plexus_ct4_key& key, const plexus_ct4_value_v1& value);

// Every layout change of a pinned map, one row each (docs/datapath.md, "Layout and size changes"). A new version
// of a map adds its row here with its converter; issue 14's NAT map will be the next.
const std::vector<MapMigration>& mapMigrations();

// What carrying one old map into a new one came to.
struct CarryReport {
  std::string from;              // the old pin's name (the map's own when only its size or flags changed)
  std::string to;                // the new map
  uint32_t from_max_entries = 0;
  uint32_t to_max_entries = 0;
  size_t read = 0;               // entries found in the old map
  size_t carried = 0;            // written into the new map
  size_t kept_newer = 0;         // already in the new map (written since), which is kept
  size_t dropped = 0;            // converted, but the new map had no room for them
  std::map<std::string, size_t> lost;  // not carried over, by reason

  bool lossless() const { return dropped == 0 && lost.empty(); }
  // One line for the log, e.g. "plexus_ct4_v1 -> plexus_ct4_v2: 12 of 14 entries carried over; 2 dropped (the new
  // map holds 1024 entries)".
  std::string summary() const;
};

// The entries to write: the old ones converted in order, as many as `room` allows. The report counts what is
// read, skipped (by reason) and dropped for want of room; the writer fills in `carried` and `kept_newer`.
struct CarryPlan {
  std::vector<RawEntry> entries;
  CarryReport report;
};
CarryPlan planCarry(const std::vector<RawEntry>& old, const EntryConverter& convert, size_t room);

}  // namespace plexus::datapath
