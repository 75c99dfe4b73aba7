#include "plexus/agent/prometheus.h"

#include <cmath>

#include <fmt/format.h>

namespace plexus::agent {

std::string escapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {
std::string formatValue(double v) {
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  if (std::isnan(v)) {
    return "NaN";
  }
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return fmt::format("{}", static_cast<int64_t>(v));
  }
  return fmt::format("{}", v);
}

std::string labelText(const Labels& labels) {
  if (labels.empty()) {
    return "";
  }
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += fmt::format("{}{}=\"{}\"", first ? "" : ",", k, escapeLabelValue(v));
    first = false;
  }
  return out + "}";
}
}  // namespace

void Exposition::family(const std::string& name, const std::string& type, const std::string& help) {
  if (families_.count(name) == 0) {
    order_.push_back(name);
    families_[name] = Family{type, help, {}};
  }
}

void Exposition::sample(const std::string& name, const Labels& labels, double value, const std::string& suffix) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    return;
  }
  it->second.lines.push_back(fmt::format("{}{}{} {}", name, suffix, labelText(labels), formatValue(value)));
}

std::string Exposition::text() const {
  std::string out;
  for (const auto& name : order_) {
    const Family& f = families_.at(name);
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, f.help, name, f.type);
    for (const auto& l : f.lines) {
      out += l;
      out += '\n';
    }
  }
  return out;
}

void CounterVec::inc(const Labels& labels, double by) {
  std::lock_guard<std::mutex> lock(mu_);
  values_[labels] += by;
}

void CounterVec::collect(Exposition& out, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [labels, v] : values_) {
    out.sample(name, labels, v);
  }
}

HistogramVec::HistogramVec(std::vector<double> bounds) : bounds_(std::move(bounds)) {}

void HistogramVec::observe(const Labels& labels, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = series_[labels];
  if (s.buckets.empty()) {
    s.buckets.assign(bounds_.size(), 0);
  }
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (value <= bounds_[i]) {
      s.buckets[i] += 1;
      break;
    }
  }
  s.count += 1;
  s.sum += value;
}

void HistogramVec::collect(Exposition& out, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [labels, s] : series_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += s.buckets[i];
      Labels l = labels;
      l["le"] = formatValue(bounds_[i]);
      out.sample(name, l, static_cast<double>(cumulative), "_bucket");
    }
    Labels inf = labels;
    inf["le"] = "+Inf";
    out.sample(name, inf, static_cast<double>(s.count), "_bucket");
    out.sample(name, labels, s.sum, "_sum");
    out.sample(name, labels, static_cast<double>(s.count), "_count");
  }
}

}  // namespace plexus::agent
