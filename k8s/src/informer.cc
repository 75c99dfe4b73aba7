#include "plexus/k8s/informer.h"

#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plexus/k8s/watch.h"

namespace plexus::k8s {

Informer::Informer(const Client& client, ResourceSpec spec, EventSink sink, InformerOptions options)
    : client_(client), spec_(std::move(spec)), sink_(std::move(sink)), options_(options),
      delay_(options.min_backoff) {
  if (!resourceKindFromManifest(spec_.api_version, spec_.kind, &kind_)) {
    kind_ = ResourceKind::kNamespace;
  }
}

Informer::~Informer() { stop(); }

void Informer::start() { thread_ = std::thread([this] { run(); }); }

void Informer::stop() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

InformerStats Informer::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::string Informer::query(const std::string& extra) const {
  std::string q = extra;
  if (!spec_.field_selector.empty()) {
    q += (q.empty() ? "" : "&") + std::string("fieldSelector=") + urlEscape(spec_.field_selector);
  }
  return spec_.path + (q.empty() ? "" : "?" + q);
}

ResourceEvent Informer::toEvent(ResourceEventType type, nlohmann::json object) const {
  return objectEvent(kind_, spec_.api_version, spec_.kind, type, std::move(object));
}

void Informer::backoff() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.errors++;
  }
  // Full jitter over the current delay, which doubles up to the maximum.
  static thread_local std::mt19937 rng(std::random_device{}());
  auto wait = std::chrono::milliseconds(
      std::uniform_int_distribution<int64_t>(delay_.count() / 2, std::max<int64_t>(delay_.count(), 1))(rng));
  delay_ = std::min(delay_ * 2, options_.max_backoff);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, wait, [this] { return stop_.load(); });
}

bool Informer::list(std::string* resource_version) {
  std::vector<nlohmann::json> items;
  std::string cont;
  for (int page = 0; page < 100000; ++page) {  // bounded by the server's continue tokens
    std::string q = fmt::format("limit={}", options_.list_chunk);
    if (!cont.empty()) {
      q += "&continue=" + urlEscape(cont);
    }
    auto r = client_.get(query(q));
    if (!r.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.last_error = r.error().message;
      spdlog::warn("k8s: list {}: {} (retrying)", spec_.kind, r.error().message);
      return false;
    }
    auto decoded = decodeListPage(std::move(*r));
    if (!decoded.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.last_error = decoded.error().message;
      spdlog::warn("k8s: list {}: {} (retrying)", spec_.kind, decoded.error().message);
      return false;
    }
    for (auto& item : decoded->items) {
      items.push_back(std::move(item));
    }
    *resource_version = decoded->resource_version;
    cont = decoded->continue_token;
    if (cont.empty()) {
      break;
    }
  }
  std::vector<ResourceEvent> events;
  std::map<std::pair<std::string, std::string>, nlohmann::json> fresh;
  for (auto& item : items) {
    auto e = toEvent(ResourceEventType::kUpsert, std::move(item));
    fresh[{e.key.namespace_name, e.key.name}] = e.object;
    events.push_back(std::move(e));
  }
  for (auto& [key, obj] : cache_) {
    if (!fresh.count(key)) {
      events.push_back(toEvent(ResourceEventType::kDelete, obj));  // vanished while we were not watching
    }
  }
  cache_ = std::move(fresh);
  ResourceEvent synced;
  synced.type = ResourceEventType::kSynced;
  synced.key.kind = kind_;
  events.push_back(std::move(synced));
  sink_(std::move(events));
  std::lock_guard<std::mutex> lock(mu_);
  stats_.lists++;
  stats_.synced = true;
  return true;
}

Informer::WatchEnd Informer::watch(std::string* resource_version) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.watches++;
  }
  bool gone = false;
  auto on_line = [&](const std::string& line) {
    auto ev = decodeWatchLine(line);
    if (!ev.ok()) {
      spdlog::warn("k8s: watch {}: {} (event skipped)", spec_.kind, ev.error().message);
      return;
    }
    if (ev->type == WatchEventType::kBookmark) {
      *resource_version = ev->resource_version;
      std::lock_guard<std::mutex> lock(mu_);
      stats_.bookmarks++;
      return;
    }
    if (ev->type == WatchEventType::kError) {
      if (ev->code == 410) {
        gone = true;
      } else {
        spdlog::warn("k8s: watch {}: {}", spec_.kind, ev->message);
      }
      return;
    }
    std::string rv = ev->resource_version;
    auto e = toEvent(ev->type == WatchEventType::kDeleted ? ResourceEventType::kDelete : ResourceEventType::kUpsert,
                     std::move(ev->object));
    auto key = std::make_pair(e.key.namespace_name, e.key.name);
    if (e.type == ResourceEventType::kDelete) {
      cache_.erase(key);
    } else {
      cache_[key] = e.object;
    }
    if (!rv.empty()) {
      *resource_version = rv;
    }
    sink_({std::move(e)});
  };
  std::string error;
  auto status = client_.stream(
      query(fmt::format("watch=1&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}",
                        urlEscape(*resource_version), options_.watch_timeout_seconds)),
      on_line, stop_, options_.watch_timeout_seconds + 30, &error);
  if (!status.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.last_error = status.error().message;
    spdlog::warn("k8s: watch {}: {} (retrying)", spec_.kind, status.error().message);
    return WatchEnd::kFailed;
  }
  if (*status == 410 || gone) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.gone++;
    spdlog::info("k8s: watch {}: resourceVersion {} is gone, re-listing", spec_.kind, *resource_version);
    return WatchEnd::kRelist;
  }
  if (*status != 200) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.last_error = error;
    spdlog::warn("k8s: watch {}: {} (retrying)", spec_.kind, error);
    return WatchEnd::kFailed;
  }
  return WatchEnd::kEnded;
}

void Informer::run() {
  while (!stop_) {
    std::string rv;
    if (!list(&rv)) {
      backoff();
      continue;
    }
    delay_ = options_.min_backoff;
    // Watch until the version is gone; each ended stream is resumed from the last version seen.
    while (!stop_) {
      WatchEnd end = watch(&rv);
      if (end == WatchEnd::kRelist) {
        break;
      }
      if (end == WatchEnd::kFailed) {
        backoff();
      } else {
        delay_ = options_.min_backoff;
      }
    }
  }
}

}  // namespace plexus::k8s
