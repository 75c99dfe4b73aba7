#include "plexus/agent/prometheus.h"

#include <prometheus/client_metric.h>
#include <prometheus/text_serializer.h>

namespace plexus::agent {

void Exposition::family(const std::string& name, const std::string& type, const std::string& help) {
  if (index_.count(name) != 0) {
    return;
  }
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type == "counter" ? prometheus::MetricType::Counter
           : type == "gauge" ? prometheus::MetricType::Gauge
                             : prometheus::MetricType::Untyped;
  index_[name] = families_.size();
  families_.push_back(std::move(f));
}

void Exposition::sample(const std::string& name, const Labels& labels, double value) {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return;
  }
  prometheus::MetricFamily& f = families_[it->second];
  prometheus::ClientMetric m;
  for (const auto& [k, v] : labels) {
    m.label.push_back({k, v});
  }
  switch (f.type) {
    case prometheus::MetricType::Counter: m.counter.value = value; break;
    case prometheus::MetricType::Gauge: m.gauge.value = value; break;
    default: m.untyped.value = value; break;
  }
  f.metric.push_back(std::move(m));
}

void Exposition::add(std::vector<prometheus::MetricFamily> families) {
  for (auto& f : families) {
    if (index_.count(f.name) == 0) {
      index_[f.name] = families_.size();
      families_.push_back(std::move(f));
    }
  }
}

std::string Exposition::text() const { return prometheus::TextSerializer().Serialize(families_); }

}  // namespace plexus::agent
