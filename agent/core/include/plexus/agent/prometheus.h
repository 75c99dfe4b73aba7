#pragma once
// Prometheus text exposition (format 0.0.4) and the two thread-safe instruments the agent updates outside
// scrapes: labelled counters and histograms. Everything else is read at scrape time. Pure.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace plexus::agent {

using Labels = std::map<std::string, std::string>;

class Exposition {
 public:
  // Declares a family once (HELP and TYPE lines); samples of an undeclared family are refused.
  void family(const std::string& name, const std::string& type, const std::string& help);
  void sample(const std::string& name, const Labels& labels, double value, const std::string& suffix = "");
  std::string text() const;

 private:
  struct Family {
    std::string type;
    std::string help;
    std::vector<std::string> lines;
  };
  std::vector<std::string> order_;
  std::map<std::string, Family> families_;
};

// Escapes a label value: backslash, double quote and newline (exposition format rules).
std::string escapeLabelValue(const std::string& v);

class CounterVec {
 public:
  void inc(const Labels& labels, double by = 1);
  void collect(Exposition& out, const std::string& name) const;

 private:
  mutable std::mutex mu_;
  std::map<Labels, double> values_;
};

class HistogramVec {
 public:
  explicit HistogramVec(std::vector<double> bounds);
  void observe(const Labels& labels, double value);
  void collect(Exposition& out, const std::string& name) const;

 private:
  struct Series {
    std::vector<uint64_t> buckets;  // cumulative at collection, per-bucket here
    uint64_t count = 0;
    double sum = 0;
  };
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<Labels, Series> series_;
};

}  // namespace plexus::agent
