#include <catch2/catch.hpp>

#include "plexus/cli/format.h"

using namespace plexus::cli;

TEST_CASE("tables align columns and trim trailing spaces", "[unit][cli]") {
  auto t = renderTable({"ID", "POD"}, {{"1", "default/web"}, {"12", "x"}});
  CHECK(t == "ID   POD\n1    default/web\n12   x\n");
}

TEST_CASE("output names and numeric cells", "[unit][cli]") {
  Output o;
  CHECK(parseOutput("json", &o));
  CHECK(o == Output::kJson);
  CHECK(parseOutput("table", &o));
  CHECK(o == Output::kTable);
  CHECK_FALSE(parseOutput("yaml", &o));
  CHECK(cellJson("42") == 42);
  CHECK(cellJson("10.0.0.1") == "10.0.0.1");
  CHECK(cellJson("") == "");
}
