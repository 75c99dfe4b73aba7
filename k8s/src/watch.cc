#include "plexus/k8s/watch.h"

#include <fmt/format.h>

namespace plexus::k8s {

namespace {

Error refuse(std::string message) { return makeError(ErrorCode::kInvalidArgument, std::move(message)); }

// metadata must be an object when present, and the fields we read strings when present.
Status checkMetadata(const nlohmann::json& object, const char* where) {
  if (!object.is_object()) {
    return refuse(fmt::format("{}: must be an object", where));
  }
  auto md = object.find("metadata");
  if (md == object.end()) {
    return Status::Ok();
  }
  if (!md->is_object()) {
    return refuse(fmt::format("{}.metadata: must be an object", where));
  }
  for (const char* field : {"name", "namespace", "resourceVersion", "continue"}) {
    auto f = md->find(field);
    if (f != md->end() && !f->is_string() && !f->is_null()) {
      return refuse(fmt::format("{}.metadata.{}: must be a string", where, field));
    }
  }
  return Status::Ok();
}

std::string metadataString(const nlohmann::json& object, const char* field) {
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) {
    return "";
  }
  auto f = md->find(field);
  return f != md->end() && f->is_string() ? f->get<std::string>() : "";
}

}  // namespace

Result<WatchEvent> decodeWatchLine(std::string_view line) {
  auto ev = nlohmann::json::parse(line, nullptr, false);
  if (ev.is_discarded() || !ev.is_object()) {
    return refuse("watch event: not a JSON object");
  }
  auto type = ev.find("type");
  auto object = ev.find("object");
  if (type == ev.end() || !type->is_string()) {
    return refuse("watch event: type: must be a string");
  }
  if (object == ev.end()) {
    return refuse("watch event: object: missing");
  }
  WatchEvent out;
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "ADDED") {
    out.type = WatchEventType::kAdded;
  } else if (t == "MODIFIED") {
    out.type = WatchEventType::kModified;
  } else if (t == "DELETED") {
    out.type = WatchEventType::kDeleted;
  } else if (t == "BOOKMARK") {
    out.type = WatchEventType::kBookmark;
  } else if (t == "ERROR") {
    out.type = WatchEventType::kError;
  } else {
    return refuse(fmt::format("watch event: type {:?}: unknown", t));
  }
  if (Status s = checkMetadata(*object, "watch event: object"); !s.ok()) {
    return s.error();
  }
  out.object = std::move(*object);
  out.resource_version = metadataString(out.object, "resourceVersion");
  if (out.type == WatchEventType::kError) {
    auto code = out.object.find("code");
    if (code != out.object.end() && code->is_number_integer()) {
      auto c = code->get<int64_t>();
      out.code = c >= 0 && c <= 999 ? static_cast<int>(c) : 0;
    }
    auto message = out.object.find("message");
    out.message = message != out.object.end() && message->is_string() ? message->get<std::string>() : "error event";
  }
  return out;
}

Result<ListPage> decodeListPage(nlohmann::json body) {
  if (Status s = checkMetadata(body, "list"); !s.ok()) {
    return s.error();
  }
  ListPage page;
  page.resource_version = metadataString(body, "resourceVersion");
  page.continue_token = metadataString(body, "continue");
  auto items = body.find("items");
  if (items == body.end() || items->is_null()) {
    return page;
  }
  if (!items->is_array()) {
    return refuse("list: items: must be a list");
  }
  page.items.reserve(items->size());
  for (size_t i = 0; i < items->size(); ++i) {
    if (Status s = checkMetadata((*items)[i], fmt::format("list: items[{}]", i).c_str()); !s.ok()) {
      return s.error();
    }
    page.items.push_back(std::move((*items)[i]));
  }
  return page;
}

ResourceEvent objectEvent(ResourceKind kind, const std::string& api_version, const std::string& kind_name,
                          ResourceEventType type, nlohmann::json object) {
  if (!object.is_object()) {
    object = nlohmann::json::object();
  }
  object["apiVersion"] = api_version;
  object["kind"] = kind_name;
  ResourceEvent e;
  e.type = type;
  e.key.kind = kind;
  e.key.namespace_name = metadataString(object, "namespace");
  e.key.name = metadataString(object, "name");
  e.object = std::move(object);
  return e;
}

}  // namespace plexus::k8s
