// The resource journal's records: text lines (every journal before the binary records) and binary upserts (the
// store's CBOR), read back in order; a cut last record is ignored, a damaged earlier one is an error.
#include <catch2/catch.hpp>

#include "plexus/agent/resource_state.h"

using plexus::agent::appendJournalUpsert;
using plexus::agent::readJournal;

namespace {
nlohmann::json pod(const std::string& name) {
  return {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", name}, {"namespace", "default"}}}};
}
std::vector<std::uint8_t> cbor(const nlohmann::json& j) { return nlohmann::json::to_cbor(j); }
}  // namespace

TEST_CASE("journal: text lines and binary upserts read back in order", "[unit][journal]") {
  std::string journal = nlohmann::json{{"op", "upsert"}, {"object", pod("a")}}.dump() + "\n";
  appendJournalUpsert(&journal, cbor(pod("b")));
  journal += R"({"op":"delete","key":"Pod/default/a"})" "\n";
  appendJournalUpsert(&journal, cbor(pod("c\nd")));  // a newline inside a binary record is no line end
  auto read = readJournal(journal, "j");
  REQUIRE(read.ok());
  CHECK_FALSE(read->cut);
  REQUIRE(read->entries.size() == 4);
  CHECK(read->entries[0]["object"] == pod("a"));
  CHECK(read->entries[1]["op"] == "upsert");
  CHECK(read->entries[1]["object"] == pod("b"));
  CHECK(read->entries[2]["key"] == "Pod/default/a");
  CHECK(read->entries[3]["object"] == pod("c\nd"));
}

TEST_CASE("journal: a cut last record is ignored, an earlier damaged one is an error", "[unit][journal]") {
  std::string whole;
  appendJournalUpsert(&whole, cbor(pod("a")));
  std::string second;
  appendJournalUpsert(&second, cbor(pod("b")));
  for (size_t keep : {size_t{1}, size_t{4}, size_t{5}, second.size() - 1}) {
    INFO("bytes of the second record kept: " << keep);
    auto read = readJournal(whole + second.substr(0, keep), "j");
    REQUIRE(read.ok());
    CHECK(read->cut);
    REQUIRE(read->entries.size() == 1);
    CHECK(read->entries[0]["object"] == pod("a"));
  }
  SECTION("a record whose bytes are not an object's CBOR, before another") {
    std::string bad;
    appendJournalUpsert(&bad, {0x01, 0x02});  // two integers, not one map
    auto read = readJournal(whole + bad + second, "j");
    REQUIRE_FALSE(read.ok());
    CHECK(read.error().message == "j: entry 2: not an object's CBOR");
  }
  SECTION("a record declaring an array longer than any vector, before another") {
    std::string bad;
    // A map of one member whose value is an array of 2^64-1 elements (found by fuzz_journal: from_cbor threw
    // out_of_range even with exceptions off).
    appendJournalUpsert(&bad, {0xa1, 0x61, 'a', 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
    auto read = readJournal(whole + bad + second, "j");
    REQUIRE_FALSE(read.ok());
    CHECK(read.error().message == "j: entry 2: not an object's CBOR");
  }
  SECTION("a text line that is not JSON, before another") {
    auto read = readJournal("{\"op\": \"upsert\", \"obj\n" + whole, "j");
    REQUIRE_FALSE(read.ok());
    CHECK(read.error().message == "j: entry 1: not JSON");
  }
  SECTION("a cut text line at the end") {
    auto read = readJournal(whole + "{\"op\": \"upsert\", \"obj", "j");
    REQUIRE(read.ok());
    CHECK(read->cut);
    CHECK(read->entries.size() == 1);
  }
}
