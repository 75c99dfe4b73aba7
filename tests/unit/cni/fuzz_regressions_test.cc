// Inputs the fuzzers (fuzz/, docs/fuzzing.md) found crashing plexus-cni, kept as [unit] tests.
#include <catch2/catch.hpp>

#include "plexus/cni/plugin.h"
#include "plexus/cni/spec.h"

using namespace plexus::cni;

TEST_CASE("fuzz: bytes that are not UTF-8 in the environment are written, not thrown", "[unit][cni][fuzz]") {
  // fuzz_cni: CNI_COMMAND=A\xd0D made the error JSON's dump() throw type_error 316, and the plugin died.
  std::string bad = "A\xd0" "D";
  auto out = runPlugin([&](const char* name) -> const char* { return std::string(name) == "CNI_COMMAND" ? bad.c_str() : nullptr; },
                       R"({"cniVersion":"1.0.0","name":"n","type":"plexus-cni"})");
  CHECK(out.exit_code != 0);
  auto j = nlohmann::json::parse(out.out);
  CHECK(j["code"] == kInvalidEnv);
  CHECK(j["msg"].get<std::string>().find("A\xef\xbf\xbd" "D") != std::string::npos);
  CHECK(dumpJson(nlohmann::json{{"msg", bad}}) == "{\"msg\":\"A\xef\xbf\xbd" "D\"}");
}
