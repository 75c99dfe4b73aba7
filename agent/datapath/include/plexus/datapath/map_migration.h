#pragma once
// Loads a program object whose maps are pinned without losing their entries when a map's layout changed (a new
// version, a row of mapMigrations()) or its size did (another --ct-map-size): the old entries are carried into the
// new map after the object is loaded and before any of its programs is attached (docs/datapath.md, "Layout and size
// changes").

#include <functional>
#include <string>
#include <vector>

#include "plexus/common/result.h"
#include "plexus/datapath/map_convert.h"

struct bpf_object;

namespace plexus::datapath {

// Runs `load` (the skeleton's __load, which creates each pinned map or reuses its pin) with the pins under bpf_root
// made ready for it, then carries old entries in:
// - a pin of one of the object's maps with this build's key and value sizes but another type, max_entries or flags
//   (which libbpf would refuse to reuse: "parameter mismatch") is moved aside to "<pin>_old", and its entries go
//   into the map `load` creates, as many as fit;
// - for each row of `migrations` whose `to` the object declares, the entries of the pin `from` are converted into
//   `to`;
// - a "<pin>_old" left by a carry that was interrupted (the agent killed) is carried too.
// Entries the new map already holds are kept. An old pin is removed once its entries are in, and kept when it
// cannot be read, for the next start to try again. When `load` fails, the pins moved aside are put back. Each carry
// is logged (counts; what was dropped or lost, and why) and returned. Every loader of an agent must pass the same
// sizes: the first one recreates a map, the others reuse it.
Result<std::vector<CarryReport>> loadPinnedObject(bpf_object* obj, const std::string& bpf_root,
                                                  const std::function<int()>& load,
                                                  const std::vector<MapMigration>& migrations = mapMigrations());

}  // namespace plexus::datapath
