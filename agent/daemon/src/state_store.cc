#include "plexus/agent/state_store.h"

#include "plexus/datapath/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace plexus::agent {

namespace fs = std::filesystem;

namespace {
Result<std::string> readFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    return makeError(ErrorCode::kNotFound, fmt::format("read {}: cannot open", path));
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

StateStore::StateStore(std::string dir) : dir_(std::move(dir)) {}

Status StateStore::init() {
  std::error_code ec;
  fs::create_directories(dir_ + "/endpoints", ec);
  if (ec) {
    return makeError(ErrorCode::kFailedPrecondition, fmt::format("state dir {}: {}", dir_, ec.message()));
  }
  return Status::Ok();
}

Status StateStore::saveIpam(const IpamSnapshot& s) {
  nlohmann::json allocations = nlohmann::json::object();
  for (const auto& [ip, owner] : s.allocations) {
    allocations[ip.toString()] = owner;
  }
  nlohmann::json j = {{"cidr", s.cidr}, {"last", s.last.toString()}, {"allocations", allocations}};
  return writeFileAtomic(dir_ + "/ipam.json", j.dump(2));
}

Result<std::optional<IpamSnapshot>> StateStore::loadIpam() const {
  std::string path = dir_ + "/ipam.json";
  if (!fs::exists(path)) {
    return std::optional<IpamSnapshot>();
  }
  auto text = readFile(path);
  if (!text.ok()) {
    return text.error();
  }
  try {
    auto j = nlohmann::json::parse(*text);
    IpamSnapshot s;
    s.cidr = j.at("cidr").get<std::string>();
    auto last = Ipv4::parse(j.value("last", "0.0.0.0"));
    s.last = last ? *last : Ipv4();
    for (const auto& [ip, owner] : j.at("allocations").items()) {
      auto parsed = Ipv4::parse(ip);
      if (!parsed) {
        return makeError(ErrorCode::kInvalidArgument, fmt::format("{}: allocation key {} is not an IPv4", path, ip));
      }
      s.allocations[*parsed] = owner.get<std::string>();
    }
    return std::optional<IpamSnapshot>(s);
  } catch (const nlohmann::json::exception& e) {
    return makeError(ErrorCode::kInvalidArgument, fmt::format("{}: {}", path, e.what()));
  }
}

std::string StateStore::endpointPath(uint16_t id) const { return fmt::format("{}/endpoints/{}.json", dir_, id); }

Status StateStore::saveEndpoint(const EndpointRecord& record) {
  return writeFileAtomic(endpointPath(record.id), toJson(record).dump(2));
}

Status StateStore::removeEndpoint(uint16_t id) {
  std::error_code ec;
  fs::remove(endpointPath(id), ec);
  if (ec) {
    return makeError(ErrorCode::kInternal, fmt::format("remove {}: {}", endpointPath(id), ec.message()));
  }
  return Status::Ok();
}

std::vector<EndpointRecord> StateStore::loadEndpoints(std::vector<std::string>* problems) const {
  std::vector<EndpointRecord> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ + "/endpoints", ec)) {
    if (entry.path().extension() != ".json") {
      continue;
    }
    auto text = readFile(entry.path());
    if (!text.ok()) {
      problems->push_back(text.error().message);
      continue;
    }
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_discarded()) {
      problems->push_back(fmt::format("{}: not valid JSON", entry.path().string()));
      continue;
    }
    auto rec = endpointFromJson(j);
    if (!rec.ok()) {
      problems->push_back(fmt::format("{}: {}", entry.path().string(), rec.error().message));
      continue;
    }
    out.push_back(std::move(rec.value()));
  }
  return out;
}

std::vector<PendingDelete> loadPendingDeletes(const std::string& dir, std::vector<std::string>* problems) {
  std::vector<PendingDelete> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".json") {
      continue;
    }
    auto text = readFile(entry.path());
    auto j = text.ok() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    if (!j.is_object() || !j.contains("container_id") || !j["container_id"].is_string()) {
      problems->push_back(fmt::format("{}: malformed pending delete, removed", entry.path().string()));
      fs::remove(entry.path(), ec);
      continue;
    }
    out.push_back(PendingDelete{entry.path().string(), j["container_id"].get<std::string>(),
                                j.value("ifname", "eth0"), j.value("netns", "")});
  }
  return out;
}

Status StateStore::saveIdentities(const nlohmann::json& snapshot) {
  return writeFileAtomic(dir_ + "/identities.json", snapshot.dump());
}

Result<std::optional<nlohmann::json>> StateStore::loadIdentities() const {
  std::string path = dir_ + "/identities.json";
  if (!fs::exists(path)) {
    return std::optional<nlohmann::json>();
  }
  auto text = readFile(path);
  if (!text.ok()) {
    return text.error();
  }
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded()) {
    return makeError(ErrorCode::kFailedPrecondition, fmt::format("{}: not JSON", path));
  }
  return std::optional<nlohmann::json>(std::move(j));
}

Status StateStore::appendJournal(const std::string& lines, bool durable) {
  std::string path = dir_ + "/resources.log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return errnoError("open " + path, errno);
  }
  size_t off = 0;
  while (off < lines.size()) {
    ssize_t n = ::write(fd, lines.data() + off, lines.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return errnoError("append " + path, err);
    }
    off += static_cast<size_t>(n);
  }
  int rc = durable ? ::fsync(fd) : 0;
  int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : errnoError("fsync " + path, err);
}

Status StateStore::syncJournal() {
  std::string path = dir_ + "/resources.log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? Status::Ok() : errnoError("open " + path, errno);  // folded into a snapshot meanwhile
  }
  int rc = ::fsync(fd);  // the file's data, whichever descriptor wrote it
  int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : errnoError("fsync " + path, err);
}

Status StateStore::writeSnapshot(const nlohmann::json& snapshot) {
  std::string path = dir_ + "/resources.json";
  PLEXUS_TRY(writeFileAtomic(path, snapshot.dump()), "snapshot " + path);
  return writeFileAtomic(dir_ + "/resources.log", "");
}

Result<AgentStore::StoredResources> StateStore::loadResources() const {
  StoredResources out;
  out.journal_name = dir_ + "/resources.log";
  std::string path = dir_ + "/resources.json";
  if (fs::exists(path)) {
    auto text = readFile(path);
    if (!text.ok()) {
      return text.error();
    }
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return makeError(ErrorCode::kFailedPrecondition, fmt::format("{}: not a JSON object", path));
    }
    out.snapshot = std::move(j);
  }
  if (fs::exists(dir_ + "/resources.log")) {
    auto text = readFile(dir_ + "/resources.log");
    if (!text.ok()) {
      return text.error();
    }
    out.journal = std::move(*text);
  }
  return out;
}

}  // namespace plexus::agent
