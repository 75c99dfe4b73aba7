#pragma once
// The agent's /metrics text: scrape-time samples (datapath counters, map fill, state read on the reconcile thread)
// gathered in an Exposition, plus the instruments updated between scrapes (histograms of API calls and GC runs),
// which live in a prometheus-cpp registry. One serializer (prometheus-cpp's TextSerializer, format 0.0.4) writes
// both. Pure.

#include <map>
#include <string>
#include <vector>

#include <prometheus/metric_family.h>

namespace plexus::agent {

using Labels = std::map<std::string, std::string>;

class Exposition {
 public:
  // Declares a family once ("counter", "gauge" or "untyped"; HELP and TYPE lines); samples of an undeclared family
  // are refused.
  void family(const std::string& name, const std::string& type, const std::string& help);
  void sample(const std::string& name, const Labels& labels, double value);
  // Families collected from a registry (prometheus::Registry::Collect()), written after the declared ones.
  void add(std::vector<prometheus::MetricFamily> families);
  std::string text() const;

 private:
  std::vector<prometheus::MetricFamily> families_;
  std::map<std::string, size_t> index_;
};

}  // namespace plexus::agent
