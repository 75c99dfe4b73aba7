#include <catch2/catch.hpp>

#include "plexus/agent/prometheus.h"

using namespace plexus::agent;

TEST_CASE("exposition text has HELP, TYPE and escaped labelled samples", "[unit][metrics]") {
  Exposition e;
  e.family("plexus_drop_count_total", "counter", "Dropped packets");
  e.sample("plexus_drop_count_total", {{"reason", "POLICY_DENIED"}, {"direction", "INGRESS"}}, 3);
  e.sample("plexus_unknown", {}, 1);  // undeclared: ignored
  e.family("plexus_x", "gauge", "x");
  e.sample("plexus_x", {{"name", "a\"b\\c\nd"}}, 0.5);
  auto text = e.text();
  CHECK(text ==
        "# HELP plexus_drop_count_total Dropped packets\n"
        "# TYPE plexus_drop_count_total counter\n"
        "plexus_drop_count_total{direction=\"INGRESS\",reason=\"POLICY_DENIED\"} 3\n"
        "# HELP plexus_x x\n"
        "# TYPE plexus_x gauge\n"
        "plexus_x{name=\"a\\\"b\\\\c\\nd\"} 0.5\n");
}

TEST_CASE("histograms are cumulative with +Inf, sum and count", "[unit][metrics]") {
  HistogramVec h({0.01, 0.1, 1});
  h.observe({{"command", "ADD"}}, 0.005);
  h.observe({{"command", "ADD"}}, 0.05);
  h.observe({{"command", "ADD"}}, 5);
  Exposition e;
  e.family("lat", "histogram", "latency");
  h.collect(e, "lat");
  auto text = e.text();
  CHECK(text.find("lat_bucket{command=\"ADD\",le=\"0.01\"} 1\n") != std::string::npos);
  CHECK(text.find("lat_bucket{command=\"ADD\",le=\"0.1\"} 2\n") != std::string::npos);
  CHECK(text.find("lat_bucket{command=\"ADD\",le=\"1\"} 2\n") != std::string::npos);
  CHECK(text.find("lat_bucket{command=\"ADD\",le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(text.find("lat_count{command=\"ADD\"} 3\n") != std::string::npos);
  CHECK(text.find("lat_sum{command=\"ADD\"} 5.055\n") != std::string::npos);
}

TEST_CASE("counter vectors add per label set", "[unit][metrics]") {
  CounterVec c;
  c.inc({{"method", "Add"}, {"code", "OK"}});
  c.inc({{"method", "Add"}, {"code", "OK"}});
  c.inc({{"method", "Del"}, {"code", "OK"}});
  Exposition e;
  e.family("req", "counter", "r");
  c.collect(e, "req");
  CHECK(e.text().find("req{code=\"OK\",method=\"Add\"} 2\n") != std::string::npos);
}
