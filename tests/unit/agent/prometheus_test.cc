#include <catch2/catch.hpp>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "plexus/agent/prometheus.h"
#include "plexus/agent/reason_names.h"
#include "plexus/reasons.h"

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

TEST_CASE("registry histograms follow the scrape-time samples, cumulative with +Inf, sum and count",
          "[unit][metrics]") {
  prometheus::Registry registry;
  auto& h = prometheus::BuildHistogram().Name("lat").Help("latency").Register(registry);
  for (double v : {0.005, 0.05, 5.0}) {
    h.Add({{"command", "ADD"}}, prometheus::Histogram::BucketBoundaries{0.01, 0.1, 1}).Observe(v);
  }
  Exposition e;
  e.family("first", "gauge", "declared before");
  e.sample("first", {}, 1);
  e.add(registry.Collect());
  auto text = e.text();
  INFO(text);
  CHECK(text.find("# TYPE first gauge\n") < text.find("# TYPE lat histogram\n"));
  CHECK(text.find("lat_bucket{command=\"ADD\",le=\"0.01\"} 1\n") != std::string::npos);
  CHECK(text.find("lat_bucket{command=\"ADD\",le=\"0.1\"} 2\n") != std::string::npos);
  CHECK(text.find("lat_bucket{command=\"ADD\",le=\"1\"} 2\n") != std::string::npos);
  CHECK(text.find("lat_bucket{command=\"ADD\",le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(text.find("lat_count{command=\"ADD\"} 3\n") != std::string::npos);
  CHECK(text.find("lat_sum{command=\"ADD\"} 5.055\n") != std::string::npos);
}

TEST_CASE("a family collected twice is written once", "[unit][metrics]") {
  prometheus::Registry registry;
  prometheus::BuildCounter().Name("req").Help("r").Register(registry).Add({{"code", "OK"}}).Increment(2);
  Exposition e;
  e.add(registry.Collect());
  e.add(registry.Collect());
  auto text = e.text();
  CHECK(text.find("req{code=\"OK\"} 2\n") != std::string::npos);
  CHECK(text.find("# TYPE req") == text.rfind("# TYPE req"));
}

TEST_CASE("drop reasons carry Cilium's texts for Cilium's drop metrics", "[unit][metrics]") {
  CHECK(ciliumDropReason(PLEXUS_REASON_POLICY_DENIED) == "Policy denied");
  CHECK(ciliumDropReason(PLEXUS_REASON_POLICY_DENY) == "Policy denied by denylist");
  CHECK(ciliumDropReason(PLEXUS_REASON_NO_SERVICE_BACKEND) == "Service backend not found");
  CHECK(ciliumDropReason(PLEXUS_REASON_NOT_IN_SRC_RANGE) == "Denied by LB src range check");
  CHECK(ciliumDropReason(PLEXUS_REASON_FORWARDED).empty());
  // Every drop reason of the one list has a text of Cilium's (a reason added with a new code must add its text).
  for (uint8_t r = 0; r < PLEXUS_REASON_MAX_; ++r) {
    if (isDropReason(r)) {
      INFO(reasonName(r));
      CHECK(ciliumDropReason(r).find(", 0") == std::string::npos);
    }
  }
}
