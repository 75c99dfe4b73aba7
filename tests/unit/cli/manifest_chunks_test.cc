#include <catch2/catch.hpp>

#include <string>

#include "plexus/cli/manifest_chunks.h"

using plexus::cli::manifestChunks;

namespace {
std::string doc(int i) { return "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns" + std::to_string(i) + "}\n"; }

std::string joined(const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) {
    out += p;
  }
  return out;
}
}  // namespace

TEST_CASE("manifest chunks: whole documents, in order, none larger than the limit unless one document is",
          "[unit][cli]") {
  std::string text;
  for (int i = 0; i < 100; ++i) {
    text += doc(i);
  }
  size_t one = doc(0).size();
  auto pieces = manifestChunks(text, 10 * one);
  CHECK(joined(pieces) == text);
  CHECK(pieces.size() >= 10);
  for (const auto& p : pieces) {
    CHECK(p.size() <= 10 * one + 2);  // documents differ by a digit
    CHECK(p.rfind("---\n", 0) == 0);  // each piece starts at a document
  }

  SECTION("a small manifest is one piece") { CHECK(manifestChunks(text, text.size()).size() == 1); }
  SECTION("a document larger than the limit is a piece of its own") {
    std::string big = "---\nkind: ConfigMap\ndata: {a: \"" + std::string(5000, 'x') + "\"}\n";
    std::string mixed = doc(1) + big + doc(2);
    auto p = manifestChunks(mixed, 1000);
    REQUIRE(p.size() == 3);
    CHECK(p[1] == big);
    CHECK(joined(p) == mixed);
  }
  SECTION("no leading separator, separators with comments, and '---' inside a line are not boundaries") {
    std::string t = "kind: A\nnote: a---b\n--- # second\nkind: B\n---\nkind: C\n";
    auto p = manifestChunks(t, 12);
    REQUIRE(p.size() == 3);
    CHECK(p[0] == "kind: A\nnote: a---b\n");
    CHECK(p[1] == "--- # second\nkind: B\n");
    CHECK(p[2] == "---\nkind: C\n");
  }
  SECTION("empty input") { CHECK(manifestChunks("", 10) == std::vector<std::string>{""}); }
}
