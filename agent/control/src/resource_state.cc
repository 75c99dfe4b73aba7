#include "plexus/agent/resource_state.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace plexus::agent {

namespace {
// Journal entries name objects as Kind/namespace/name.
std::string journalKey(const std::string& kind, const std::string& ns, const std::string& name) {
  return kind + "/" + ns + "/" + name;
}
// A restored entry's string member, "" when it is missing or is not a string (the store's restore then names the
// object it refuses); json::value() would throw type_error for a number there.
std::string stringMember(const nlohmann::json& o, const char* field) {
  auto f = o.find(field);  // end() for a non-object too
  return f != o.end() && f->is_string() ? f->get<std::string>() : "";
}
const nlohmann::json& metadataOf(const nlohmann::json& o) {
  static const nlohmann::json kNone = nlohmann::json::object();
  auto md = o.find("metadata");
  return md != o.end() && md->is_object() ? *md : kNone;
}
std::string journalKey(const nlohmann::json& o) {
  const auto& md = metadataOf(o);
  return journalKey(stringMember(o, "kind"), stringMember(md, "namespace"), stringMember(md, "name"));
}
std::string nsOrDefault(const std::string& ns) { return ns.empty() ? "default" : ns; }
constexpr char kJournalCbor = '\x01';  // starts a binary upsert record; a JSON text line never does
}  // namespace

Status validatePod(const nlohmann::json& pod) {
  // The node manager reads spec.nodeName and status.podIP of every pod as strings: a number or null there threw
  // type_error on the reconcile thread (shown with fuzz_manifest on handcrafted Pods).
  if (pod.contains("status") && !pod["status"].is_null()) {
    const auto& status = pod["status"];
    if (!status.is_object()) {
      return makeError(ErrorCode::kInvalidArgument, "status: must be an object");
    }
    if (status.contains("podIP") && !status["podIP"].is_string()) {
      return makeError(ErrorCode::kInvalidArgument, "status.podIP: must be a string");
    }
  }
  if (!pod.contains("spec") || pod["spec"].is_null()) {
    return Status::Ok();
  }
  if (!pod["spec"].is_object()) {
    return makeError(ErrorCode::kInvalidArgument, "spec: must be an object");
  }
  const auto& spec = pod["spec"];
  if (spec.contains("nodeName") && !spec["nodeName"].is_string()) {
    return makeError(ErrorCode::kInvalidArgument, "spec.nodeName: must be a string");
  }
  if (spec.contains("containers")) {
    if (!spec["containers"].is_array()) {
      return makeError(ErrorCode::kInvalidArgument, "spec.containers: must be a list");
    }
    for (size_t i = 0; i < spec["containers"].size(); ++i) {
      const auto& c = spec["containers"][i];
      // podNamedPorts() reads every container and port: each must be an object, a port's name and protocol
      // strings (a container that was a string threw type_error there, on the reconcile thread).
      if (!c.is_object()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("spec.containers[{}]: must be an object", i));
      }
      if (!c.contains("ports")) {
        continue;
      }
      if (!c["ports"].is_array()) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("spec.containers[{}].ports: must be a list", i));
      }
      for (size_t j = 0; j < c["ports"].size(); ++j) {
        const auto& p = c["ports"][j];
        if (!p.is_object() || !p.contains("containerPort") || !p["containerPort"].is_number_integer() ||
            p["containerPort"].get<int64_t>() < 1 || p["containerPort"].get<int64_t>() > 65535) {
          return makeError(ErrorCode::kInvalidArgument,
                           fmt::format("spec.containers[{}].ports[{}].containerPort: must be 1-65535", i, j));
        }
        for (const char* field : {"name", "protocol"}) {
          if (p.contains(field) && !p[field].is_string()) {
            return makeError(ErrorCode::kInvalidArgument,
                             fmt::format("spec.containers[{}].ports[{}].{}: must be a string", i, j, field));
          }
        }
      }
    }
  }
  return Status::Ok();
}

NamedPorts podNamedPorts(const nlohmann::json& pod) {
  NamedPorts out;
  auto spec = pod.find("spec");  // validatePod() lets a null spec through (value() would throw on it)
  if (spec == pod.end() || !spec->is_object()) {
    return out;
  }
  for (const auto& c : spec->value("containers", nlohmann::json::array())) {
    for (const auto& port : c.value("ports", nlohmann::json::array())) {
      if (port.contains("name") && port["name"].is_string()) {
        std::string proto = port.value("protocol", "TCP");
        uint8_t p = proto == "UDP" ? 17 : proto == "SCTP" ? 132 : 6;
        out.emplace(port["name"].get<std::string>(),
                    std::make_pair(static_cast<uint16_t>(port["containerPort"].get<int64_t>()), p));
      }
    }
  }
  return out;
}

ResourceState::ResourceState(AgentStore& store) : files_(store) {
  store_.setValidator(ResourceKind::kPod, validatePod);
}

Result<std::vector<ResourceEvent>> ResourceState::restore() {
  auto stored = files_.loadResources();
  if (!stored.ok()) {
    return stored.error();
  }
  nlohmann::json snapshot = stored->snapshot.value_or(
      nlohmann::json{{"resourceVersion", 0}, {"items", nlohmann::json::array()}});
  if (!stored->journal.empty()) {
    std::map<std::string, nlohmann::json> objects;
    for (auto& item : snapshot.value("items", nlohmann::json::array())) {
      objects[journalKey(item)] = item;
    }
    uint64_t version = ResourceStore::snapshotVersion(snapshot);
    auto journal = readJournal(stored->journal, stored->journal_name);
    if (!journal.ok()) {
      return journal.error();
    }
    if (journal->cut) {
      spdlog::warn("{}: the last entry is incomplete (a write interrupted by a crash), ignored", stored->journal_name);
    }
    for (auto& entry : journal->entries) {
      if (stringMember(entry, "op") == "delete") {
        objects.erase(stringMember(entry, "key"));
      } else if (entry.contains("object") && entry["object"].is_object()) {
        std::string rv = stringMember(metadataOf(entry["object"]), "resourceVersion");
        version = std::max<uint64_t>(version, std::strtoull(rv.c_str(), nullptr, 10));
        std::string key = journalKey(entry["object"]);
        objects[key] = std::move(entry["object"]);
      }
    }
    journal_entries_ = journal->entries.size();
    snapshot = {{"resourceVersion", version}, {"items", nlohmann::json::array()}};
    for (auto& [k, o] : objects) {
      snapshot["items"].push_back(std::move(o));
    }
  }
  return store_.restore(snapshot);
}

void ResourceState::persist(const std::vector<ResourceEvent>& events, bool durable) {
  // Each change is one appended record, made durable with one fsync per call (a request's groups: one per request,
  // in flush()), so a change costs the same whatever the number of objects stored. When the journal outgrows the
  // store it is folded into a new snapshot (amortised O(1) per change).
  // An upsert is written as the store's CBOR of the object (a binary record), not encoded again; a delete as a text
  // line.
  std::string lines;
  size_t entries = 0;
  for (const auto& e : events) {
    if (e.type == ResourceEventType::kDelete) {
      lines += nlohmann::json{{"op", "delete"},
                              {"key", journalKey(toString(e.key.kind), e.key.namespace_name, e.key.name)}}
                   .dump();
      lines += '\n';
    } else if (e.type == ResourceEventType::kUpsert) {
      if (const auto* cbor = store_.encoded(e.key)) {
        appendJournalUpsert(&lines, *cbor);
      } else {  // deleted again later in the same batch: the object as it was, for the order of the records
        lines += nlohmann::json{{"op", "upsert"}, {"object", e.object}}.dump();
        lines += '\n';
      }
    } else {
      continue;
    }
    ++entries;
  }
  journal_entries_ += entries;
  Status s = Status::Ok();
  if (journal_entries_ > std::max<size_t>(1024, store_.size())) {
    s = files_.writeSnapshot(store_.snapshot());
    journal_entries_ = 0;
    unsynced_ = false;
  } else if (entries > 0) {
    s = files_.appendJournal(lines, durable);  // a durable append makes the earlier lines durable too
    unsynced_ = !durable;
  }
  if (!s.ok()) {
    spdlog::error("resources: persist: {}", s.error().message);
  }
}

void appendJournalUpsert(std::string* out, const std::vector<std::uint8_t>& cbor) {
  auto n = static_cast<uint32_t>(cbor.size());
  out->push_back(kJournalCbor);
  for (int shift = 0; shift < 32; shift += 8) {
    out->push_back(static_cast<char>((n >> shift) & 0xff));
  }
  out->append(reinterpret_cast<const char*>(cbor.data()), cbor.size());
}

Result<JournalEntries> readJournal(std::string_view journal, const std::string& name) {
  JournalEntries out;
  size_t at = 0;
  for (size_t n = 1; at < journal.size(); ++n) {
    if (journal[at] == kJournalCbor) {
      uint32_t len = 0;
      if (journal.size() - at >= 5) {
        for (int i = 0; i < 4; ++i) {
          len |= static_cast<uint32_t>(static_cast<unsigned char>(journal[at + 1 + i])) << (8 * i);
        }
      }
      if (journal.size() - at < 5 || journal.size() - at - 5 < len) {
        out.cut = true;
        break;
      }
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(journal.data() + at + 5);
      nlohmann::json object;
      try {  // allow_exceptions=false still throws for a declared array or object size past max_size()
        object = nlohmann::json::from_cbor(bytes, bytes + len, true, false);
      } catch (const nlohmann::json::exception&) {
        object = nlohmann::json::value_t::discarded;
      }
      if (object.is_discarded() || !object.is_object()) {
        return makeError(ErrorCode::kFailedPrecondition, fmt::format("{}: entry {}: not an object's CBOR", name, n));
      }
      out.entries.push_back({{"op", "upsert"}, {"object", std::move(object)}});
      at += 5 + len;
      continue;
    }
    size_t end = journal.find('\n', at);
    bool last = end == std::string_view::npos || end + 1 == journal.size();
    auto entry = nlohmann::json::parse(journal.substr(at, end == std::string_view::npos ? end : end - at), nullptr,
                                       false);
    if (entry.is_discarded() || !entry.is_object()) {
      if (last) {
        out.cut = true;
        break;
      }
      return makeError(ErrorCode::kFailedPrecondition, fmt::format("{}: entry {}: not JSON", name, n));
    }
    out.entries.push_back(std::move(entry));
    at = end == std::string_view::npos ? journal.size() : end + 1;
  }
  return out;
}

std::vector<ApplyOutcome> ResourceState::apply(std::vector<nlohmann::json> objects,
                                               std::vector<ResourceEvent>* changed) {
  auto out = store_.apply(std::move(objects), changed);
  persist(*changed);
  return out;
}

std::vector<ApplyOutcome> ResourceState::remove(std::vector<nlohmann::json> objects,
                                                std::vector<ResourceEvent>* changed) {
  auto out = store_.remove(std::move(objects), changed);
  persist(*changed);
  return out;
}

std::vector<ApplyOutcome> ResourceState::commit(std::vector<PreparedObject> objects, bool remove,
                                                std::vector<ResourceEvent>* changed) {
  auto out = store_.commit(std::move(objects), remove, changed);
  persist(*changed, false);
  return out;
}

void ResourceState::flush() {
  if (!unsynced_) {
    return;
  }
  unsynced_ = false;
  if (Status s = files_.syncJournal(); !s.ok()) {
    spdlog::error("resources: persist: {}", s.error().message);
  }
}

std::vector<ResourceEvent> ResourceState::ingest(const std::vector<ResourceEvent>& events) {
  std::vector<ResourceEvent> changed;
  std::vector<nlohmann::json> upserts, deletes;
  for (const auto& e : events) {
    if (e.type == ResourceEventType::kUpsert) {
      upserts.push_back(e.object);
    } else if (e.type == ResourceEventType::kDelete) {
      deletes.push_back(e.object);
    } else {
      changed.push_back(e);
    }
  }
  for (const auto& o : store_.apply(std::move(upserts), &changed)) {
    if (o.action == ApplyAction::kRejected) {
      spdlog::warn("{}: rejected, skipped: {}", o.object, o.message);
    }
  }
  (void)store_.remove(std::move(deletes), &changed);
  persist(changed);
  return changed;
}

std::optional<nlohmann::json> ResourceState::pod(const std::string& ns, const std::string& name) const {
  return store_.get({ResourceKind::kPod, nsOrDefault(ns), name});
}

identity::Labels ResourceState::podIdentityLabels(const std::string& pod_ns, const std::string& name) const {
  if (name.empty()) {
    return {};
  }
  std::string ns = nsOrDefault(pod_ns);
  auto p = pod(ns, name);
  if (!p) {
    return {};
  }
  identity::PodIdentityInput in;
  in.ns = ns;
  in.cluster = cluster_name_;
  const auto& md = (*p)["metadata"];
  if (md.contains("labels") && md["labels"].is_object()) {
    for (const auto& [k, v] : md["labels"].items()) {
      in.pod_labels[k] = v.get<std::string>();
    }
  }
  if (p->contains("spec") && (*p)["spec"].is_object()) {
    in.service_account = (*p)["spec"].value("serviceAccountName", "default");
  }
  in.namespace_labels["kubernetes.io/metadata.name"] = ns;  // set on every namespace by the API server
  auto nsobj = store_.get({ResourceKind::kNamespace, "", ns});
  if (nsobj && (*nsobj)["metadata"].contains("labels") && (*nsobj)["metadata"]["labels"].is_object()) {
    for (const auto& [k, v] : (*nsobj)["metadata"]["labels"].items()) {
      in.namespace_labels[k] = v.get<std::string>();
    }
  }
  return identity::podIdentityLabels(in, filter_);
}

bool ResourceState::namespaceKnown(const std::string& ns) const {
  return store_.get({ResourceKind::kNamespace, "", nsOrDefault(ns)}).has_value();
}

NamedPorts ResourceState::namedPorts(const std::string& ns, const std::string& name) const {
  auto p = pod(ns, name);
  return p ? podNamedPorts(*p) : NamedPorts{};
}

}  // namespace plexus::agent
