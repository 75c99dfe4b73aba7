// libFuzzer target: the resource journal an agent restores at start (docs/fuzzing.md).
//
// Input: the bytes of `<state-dir>/resources.log` as a crash, a full disk or an older version may leave them: JSON
// text lines, binary upsert records (0x01, a 4-byte length, an object's CBOR), records cut short or damaged. An input
// with a NUL byte carries the snapshot (`resources.json`) before it, used when it is a JSON object, as the agent's
// state store passes only an object on; the journal is what follows. It goes
// where the agent's start sends it: ResourceState::restore() (readJournal(), then the store's restore of every
// object, which normalises each), over the in-memory state directory of the [unit] control tests. Whatever the
// bytes, restore() returns the objects or an error naming the entry; it never crashes.

#include <cstddef>
#include <cstdint>
#include <string>

#include "plexus/agent/resource_state.h"
#include "unit/control/fakes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  plexus::agent::testing::FakeAgentStore store;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (size_t nul = input.find('\0'); nul != std::string_view::npos) {
    auto snapshot = nlohmann::json::parse(input.substr(0, nul), nullptr, false);
    if (snapshot.is_object()) {
      store.snapshot = std::move(snapshot);
    }
    input.remove_prefix(nul + 1);
  }
  store.journal.assign(input);
  plexus::agent::ResourceState state(store);
  auto events = state.restore();
  if (events.ok()) {
    // What was restored journals again as the agent would write it, and reads back to the same objects.
    std::string again;
    for (const auto& e : *events) {
      if (e.type == plexus::ResourceEventType::kUpsert) {
        plexus::agent::appendJournalUpsert(&again, nlohmann::json::to_cbor(e.object));
      }
    }
    auto read = plexus::agent::readJournal(again, "again");
    if (!read.ok() || read->cut) {
      __builtin_trap();
    }
  }
  return 0;
}
