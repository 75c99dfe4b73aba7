#include "plexus/cni/spec.h"

#include <algorithm>
#include <array>
#include <set>
#include <sstream>
#include <string_view>

#include <fmt/format.h>

namespace plexus::cni {

namespace {
CniError err(int code, std::string msg, std::string details = "") {
  return CniError{code, std::move(msg), std::move(details)};
}

std::vector<int> versionParts(const std::string& v) {
  std::vector<int> parts;
  std::stringstream ss(v);
  std::string p;
  while (std::getline(ss, p, '.')) {
    try {
      parts.push_back(std::stoi(p));
    } catch (const std::exception&) {
      parts.push_back(0);
    }
  }
  parts.resize(3, 0);
  return parts;
}

std::string stripPrefix(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

bool asciiAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// The spec's identifier rule, shared by container IDs and network names.
std::optional<std::string> identifierProblem(const std::string& value) {
  if (value.empty()) {
    return "must not be empty";
  }
  if (!asciiAlnum(value.front())) {
    return "must start with a letter or digit";
  }
  for (char c : value) {
    if (!asciiAlnum(c) && c != '_' && c != '.' && c != '-') {
      return "may contain only letters, digits, '_', '.' and '-'";
    }
  }
  return std::nullopt;
}

// Whitespace as the kernel's isspace() sees a byte (ASCII space, \t \n \v \f \r, and 0xA0 of its Latin-1
// table), plus the UTF-8 encodings of Unicode's other White_Space characters, which libcni refuses.
bool hasWhitespace(std::string_view name) {
  static constexpr std::array<std::string_view, 7> kUnicodeSpaces = {
      "\xc2\x85", "\xe1\x9a\x80", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f",
      "\xe3\x80\x80"};
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c == ' ' || (c >= '\t' && c <= '\r') || c == 0xa0) {
      return true;
    }
    // U+2000..U+200A: E2 80 80..8A.
    if (c == 0xe2 && i + 2 < name.size() && static_cast<unsigned char>(name[i + 1]) == 0x80 &&
        static_cast<unsigned char>(name[i + 2]) >= 0x80 && static_cast<unsigned char>(name[i + 2]) <= 0x8a) {
      return true;
    }
    for (std::string_view s : kUnicodeSpaces) {
      if (name.substr(i, s.size()) == s) {
        return true;
      }
    }
  }
  return false;
}
}  // namespace

std::optional<std::string> containerIdProblem(const std::string& id) { return identifierProblem(id); }

std::optional<std::string> networkNameProblem(const std::string& name) { return identifierProblem(name); }

std::optional<std::string> ifnameProblem(const std::string& ifname) {
  if (ifname.empty()) {
    return "must not be empty";
  }
  if (ifname.size() > 15) {
    return fmt::format("is {} bytes, at most 15 fit an interface name", ifname.size());
  }
  if (ifname == "." || ifname == "..") {
    return "must not be '.' or '..'";
  }
  if (ifname.find_first_of("/:") != std::string::npos) {
    return "must not contain '/' or ':'";
  }
  if (hasWhitespace(ifname)) {
    return "must not contain whitespace";
  }
  return std::nullopt;
}

bool versionAtLeast(const std::string& version, const std::string& minimum) {
  return versionParts(version) >= versionParts(minimum);
}

std::optional<CniError> readEnv(const EnvLookup& lookup, CniEnv* out) {
  auto get = [&](const char* name) {
    const char* v = lookup(name);
    return v ? std::string(v) : std::string();
  };
  out->command = get("CNI_COMMAND");
  out->container_id = get("CNI_CONTAINERID");
  out->netns = get("CNI_NETNS");
  out->ifname = get("CNI_IFNAME");
  out->args = get("CNI_ARGS");
  out->path = get("CNI_PATH");
  std::vector<std::string> required;
  const std::string& c = out->command;
  if (c.empty()) {
    return err(kInvalidEnv, "required env variables [CNI_COMMAND] missing");
  }
  if (c == "ADD") {
    required = {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"};
  } else if (c == "DEL") {
    required = {"CNI_CONTAINERID", "CNI_IFNAME"};  // CNI_NETNS may be empty on repeated DELs
  } else if (c == "CHECK") {
    required = {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"};
  } else if (c != "VERSION" && c != "STATUS" && c != "GC") {
    return err(kInvalidEnv, fmt::format("unknown CNI_COMMAND: {}", c));
  }
  std::vector<std::string> missing;
  for (const auto& r : required) {
    if (get(r.c_str()).empty()) {
      missing.push_back(r);
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) {
      list += (list.empty() ? "" : " ") + m;
    }
    return err(kInvalidEnv, fmt::format("required env variables [{}] missing", list));
  }
  // Checked before anything is created: the agent names host veths and records after these, and a DEL queued
  // while the agent is down names a file after them (a '/' or ".." would leave the queue directory).
  if (c == "ADD" || c == "DEL" || c == "CHECK") {
    if (auto why = containerIdProblem(out->container_id)) {
      return err(kInvalidEnv, fmt::format("CNI_CONTAINERID {:?}: {}", out->container_id, *why));
    }
    if (auto why = ifnameProblem(out->ifname)) {
      return err(kInvalidEnv, fmt::format("CNI_IFNAME {:?}: {}", out->ifname, *why));
    }
  }
  return std::nullopt;
}

std::optional<CniError> parseArgs(const std::string& text, CniArgs* out) {
  std::map<std::string, std::string> kv;
  std::stringstream ss(text);
  std::string pair;
  while (std::getline(ss, pair, ';')) {
    if (pair.empty()) {
      continue;
    }
    auto eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) {
      return err(kInvalidEnv, fmt::format("CNI_ARGS: invalid pair {:?}", pair));
    }
    kv[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  bool ignore_unknown = false;
  if (auto it = kv.find("IgnoreUnknown"); it != kv.end()) {
    std::string v = it->second;
    std::transform(v.begin(), v.end(), v.begin(), ::tolower);
    ignore_unknown = v == "1" || v == "true";
  }
  for (const auto& [k, v] : kv) {
    if (k == "IgnoreUnknown") {
      continue;
    } else if (k == "K8S_POD_NAMESPACE") {
      out->pod_namespace = v;
    } else if (k == "K8S_POD_NAME") {
      out->pod_name = v;
    } else if (k == "K8S_POD_UID") {
      out->pod_uid = v;
    } else if (k == "K8S_POD_INFRA_CONTAINER_ID") {
      out->infra_container_id = v;
    } else if (k == "IP") {
      out->ip = stripPrefix(v);
    } else if (k == "MAC") {
      out->mac = v;
    } else if (!ignore_unknown) {
      return err(kInvalidEnv, fmt::format("CNI_ARGS: unknown key {:?} (set IgnoreUnknown=1 to allow)", k));
    }
  }
  return std::nullopt;
}

std::optional<CniError> parseNetConf(const std::string& text, const std::string& default_socket, NetConf* out) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return err(kDecodeFailure, "network config: not a JSON object");
  }
  try {
    out->cni_version = j.value("cniVersion", "");
    if (out->cni_version.empty()) {
      out->cni_version = "0.1.0";
    }
    if (std::find(kSupportedVersions.begin(), kSupportedVersions.end(), out->cni_version) ==
        kSupportedVersions.end()) {
      return err(kIncompatibleVersion,
                 fmt::format("incompatible CNI versions: config is {:?}, plugin supports 0.3.1, 0.4.0, 1.0.0, 1.1.0",
                             out->cni_version));
    }
    if (!j.contains("name")) {
      return err(kInvalidConfig, "network config: name: missing (every network configuration has a name)");
    }
    if (!j["name"].is_string()) {
      return err(kInvalidConfig, "network config: name: must be a string");
    }
    out->name = j["name"].get<std::string>();
    if (auto why = networkNameProblem(out->name)) {
      return err(kInvalidConfig, fmt::format("network config: name {:?}: {}", out->name, *why));
    }
    out->type = j.value("type", "");
    out->socket = j.value("socket", default_socket);
    if (out->socket.empty()) {
      return err(kInvalidConfig, "network config: socket: must not be empty");
    }
    std::string mode = j.value("chaining-mode", "none");
    if (mode == "none" || mode.empty()) {
      out->chaining = ChainingMode::kNone;
    } else if (mode == "generic-veth") {
      out->chaining = ChainingMode::kGenericVeth;
    } else {
      return err(kInvalidConfig, fmt::format("network config: chaining-mode {:?}: must be none or generic-veth", mode));
    }
    if (j.contains("mtu")) {
      if (!j["mtu"].is_number_integer() || j["mtu"].get<int>() < 576 || j["mtu"].get<int>() > 65535) {
        return err(kInvalidConfig, "network config: mtu: must be an integer 576-65535");
      }
      out->mtu = j["mtu"];
    }
    out->log_file = j.value("log-file", "");
    if (j.contains("timeout-seconds")) {
      if (!j["timeout-seconds"].is_number_integer() || j["timeout-seconds"].get<int>() < 1) {
        return err(kInvalidConfig, "network config: timeout-seconds: must be a positive integer");
      }
      out->timeout_seconds = j["timeout-seconds"];
    }
    if (j.contains("runtimeConfig") && j["runtimeConfig"].is_object()) {
      const auto& rc = j["runtimeConfig"];
      if (rc.contains("ips") && rc["ips"].is_array()) {
        for (const auto& ip : rc["ips"]) {
          if (!ip.is_string()) {
            return err(kInvalidConfig, "network config: runtimeConfig.ips: must be strings");
          }
          out->runtime_ips.push_back(stripPrefix(ip.get<std::string>()));
        }
      }
      if (rc.contains("mac") && rc["mac"].is_string()) {
        out->runtime_mac = rc["mac"];
      }
    }
    out->prev_result = j.contains("prevResult") ? j["prevResult"] : nlohmann::json(nullptr);
    out->gc_attachments = j.contains("cni.dev/attachments") ? j["cni.dev/attachments"] : nlohmann::json(nullptr);
    out->gc_valid_attachments =
        j.contains("cni.dev/valid-attachments") ? j["cni.dev/valid-attachments"] : nlohmann::json(nullptr);
  } catch (const nlohmann::json::exception& e) {
    return err(kInvalidConfig, fmt::format("network config: {}", e.what()));
  }
  return std::nullopt;
}

std::optional<CniError> gcAttachments(const NetConf& conf, std::optional<std::vector<GcAttachment>>* out) {
  out->reset();
  std::set<GcAttachment> keep;
  bool listed = false;
  const std::pair<const char*, const nlohmann::json*> keys[] = {
      {"cni.dev/valid-attachments", &conf.gc_valid_attachments}, {"cni.dev/attachments", &conf.gc_attachments}};
  for (const auto& [key, list] : keys) {
    if (list->is_null()) {
      continue;
    }
    if (!list->is_array()) {
      return err(kInvalidConfig, fmt::format("{}: must be a list of attachments", key));
    }
    listed = true;
    for (const auto& a : *list) {
      if (!a.is_object() || !a.contains("containerID") || !a["containerID"].is_string()) {
        return err(kInvalidConfig, fmt::format("{}: each attachment needs a containerID string", key));
      }
      if (a.contains("ifname") && !a["ifname"].is_string()) {
        return err(kInvalidConfig, fmt::format("{}: an attachment's ifname must be a string", key));
      }
      std::string ifname = a.value("ifname", "");
      keep.insert(GcAttachment{a["containerID"].get<std::string>(), ifname.empty() ? "eth0" : ifname});
    }
  }
  if (listed) {
    *out = std::vector<GcAttachment>(keep.begin(), keep.end());
  }
  return std::nullopt;
}

nlohmann::json resultJson(const Result& r, const std::string& version) {
  bool v0 = !versionAtLeast(version, "1.0.0");
  nlohmann::json j = {{"cniVersion", version}};
  nlohmann::json itfs = nlohmann::json::array();
  for (const auto& i : r.interfaces) {
    nlohmann::json o = {{"name", i.name}, {"mac", i.mac}};
    if (!i.sandbox.empty()) {
      o["sandbox"] = i.sandbox;
    }
    itfs.push_back(o);
  }
  j["interfaces"] = itfs;
  nlohmann::json ips = nlohmann::json::array();
  for (const auto& ip : r.ips) {
    nlohmann::json o = {{"address", ip.address}};
    if (v0) {
      o["version"] = "4";  // 0.3.x and 0.4.0 carry the IP version; 1.0.0 dropped it
    }
    if (!ip.gateway.empty()) {
      o["gateway"] = ip.gateway;
    }
    if (ip.interface >= 0) {
      o["interface"] = ip.interface;
    }
    ips.push_back(o);
  }
  j["ips"] = ips;
  nlohmann::json routes = nlohmann::json::array();
  for (const auto& rt : r.routes) {
    nlohmann::json o = {{"dst", rt.dst}};
    if (!rt.gw.empty()) {
      o["gw"] = rt.gw;
    }
    routes.push_back(o);
  }
  j["routes"] = routes;
  j["dns"] = r.dns.is_object() ? r.dns : nlohmann::json::object();
  return j;
}

nlohmann::json convertResult(const nlohmann::json& result, const std::string& version) {
  nlohmann::json j = result;
  j["cniVersion"] = version;
  bool v0 = !versionAtLeast(version, "1.0.0");
  if (j.contains("ips") && j["ips"].is_array()) {
    for (auto& ip : j["ips"]) {
      if (!ip.is_object()) {
        continue;  // passed on as the previous plugin wrote it
      }
      if (v0 && !ip.contains("version")) {
        bool v6 = ip.contains("address") && ip["address"].is_string() &&
                  ip["address"].get<std::string>().find(':') != std::string::npos;
        ip["version"] = v6 ? "6" : "4";
      } else if (!v0) {
        ip.erase("version");
      }
    }
  }
  return j;
}

nlohmann::json errorJson(const CniError& e, const std::string& version) {
  nlohmann::json j = {{"cniVersion", version}, {"code", e.code}, {"msg", e.msg}};
  if (!e.details.empty()) {
    j["details"] = e.details;
  }
  return j;
}

nlohmann::json versionJson(const std::string& version) {
  nlohmann::json j = {{"cniVersion", version}, {"supportedVersions", kSupportedVersions}};
  return j;
}

std::string dumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {
// prevResult is another plugin's output: check the shape chaining reads before reading it. An interface that
// was not an object, or a name that was not a string, made value() throw type_error (found by fuzz_cni).
std::optional<CniError> checkPrevResult(const nlohmann::json& prev) {
  for (const char* list : {"interfaces", "ips"}) {
    if (!prev.contains(list)) {
      continue;
    }
    if (!prev[list].is_array()) {
      return err(kInvalidConfig, fmt::format("prevResult.{}: must be a list", list));
    }
    for (size_t i = 0; i < prev[list].size(); ++i) {
      const auto& e = prev[list][i];
      if (!e.is_object()) {
        return err(kInvalidConfig, fmt::format("prevResult.{}[{}]: must be an object", list, i));
      }
      for (const char* key : {"name", "mac", "sandbox", "address", "gateway"}) {
        if (e.contains(key) && !e[key].is_string()) {
          return err(kInvalidConfig, fmt::format("prevResult.{}[{}].{}: must be a string", list, i, key));
        }
      }
      if (e.contains("interface") && (!e["interface"].is_number_integer() || e["interface"].get<int64_t>() < 0 ||
                                      e["interface"].get<int64_t>() > 1000000)) {
        return err(kInvalidConfig, fmt::format("prevResult.{}[{}].interface: must be an interface index", list, i));
      }
    }
  }
  return std::nullopt;
}
}  // namespace

std::optional<CniError> chainedFromPrevResult(const nlohmann::json& prev, const CniEnv& env, ChainedIface* out) {
  if (!prev.is_object() || !prev.contains("interfaces") || !prev["interfaces"].is_array()) {
    return err(kInvalidConfig, "chaining-mode generic-veth needs a prevResult with interfaces from the previous plugin");
  }
  if (auto e = checkPrevResult(prev)) {
    return e;
  }
  const auto& itfs = prev["interfaces"];
  int container_index = -1;
  for (size_t i = 0; i < itfs.size(); ++i) {
    const auto& itf = itfs[i];
    std::string sandbox = itf.value("sandbox", "");
    std::string name = itf.value("name", "");
    if (!sandbox.empty() && (sandbox == env.netns || name == env.ifname)) {
      container_index = static_cast<int>(i);
      out->container_ifname = name;
      out->container_mac = itf.value("mac", "");
    }
  }
  for (size_t i = 0; i < itfs.size(); ++i) {
    const auto& itf = itfs[i];
    if (itf.value("sandbox", "").empty() && out->host_ifname.empty()) {
      out->host_ifname = itf.value("name", "");
    }
  }
  if (container_index < 0 || out->host_ifname.empty()) {
    return err(kInvalidConfig, fmt::format("prevResult has no host-side veth and container interface {} to chain on",
                                           env.ifname));
  }
  if (prev.contains("ips") && prev["ips"].is_array()) {
    for (const auto& ip : prev["ips"]) {
      int idx = ip.value("interface", container_index);
      std::string addr = ip.value("address", "");
      if (idx == container_index && !addr.empty() && addr.find(':') == std::string::npos) {
        out->ips.push_back(addr);
      }
    }
  }
  if (out->ips.empty()) {
    return err(kInvalidConfig, "prevResult has no IPv4 address for the container interface");
  }
  return std::nullopt;
}

}  // namespace plexus::cni
