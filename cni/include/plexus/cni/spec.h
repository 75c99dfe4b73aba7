#pragma once
// The CNI specification's side of plexus-cni (pure): environment and CNI_ARGS parsing, network config,
// version negotiation, and result/error JSON for every supported version (SPEC.md of containernetworking/cni,
// versions 0.3.1, 0.4.0, 1.0.0, 1.1.0).

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace plexus::cni {

inline const std::vector<std::string> kSupportedVersions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};

// Error codes from the spec ("Error" section).
enum CniCode : int {
  kIncompatibleVersion = 1,
  kUnsupportedField = 2,
  kUnknownContainer = 3,
  kInvalidEnv = 4,
  kIoFailure = 5,
  kDecodeFailure = 6,
  kInvalidConfig = 7,
  kTryAgainLater = 11,
  kPluginNotAvailable = 50,
  kPluginNotAvailableLimited = 51,
  kAgentError = 100,  // plugin-specific: the agent refused the request (message says why)
  // plugin-specific: ADD would create what already exists (the interface in the pod, the container and interface
  // at the agent, a requested address another pod holds); nothing was changed.
  kAlreadyExists = 101,
};

struct CniError {
  int code = kAgentError;
  std::string msg;
  std::string details;
};

struct CniEnv {
  std::string command;
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::string args;
  std::string path;
};

// Reads CNI_* from a lookup function (getenv in the binary, a map in tests) and checks what the command needs:
// the variables it requires are present, and CNI_CONTAINERID and CNI_IFNAME (ADD, DEL, CHECK) follow the spec's
// rules. Every failure is invalid environment (4) and names the variable.
using EnvLookup = std::function<const char*(const char*)>;
std::optional<CniError> readEnv(const EnvLookup& lookup, CniEnv* out);

// The spec's rules (SPEC.md, "Parameters"): a container ID is non-empty, starts with a letter or digit and
// continues with letters, digits, '_', '.' or '-' (ASCII). An interface name is non-empty, at most 15 bytes
// (IFNAMSIZ less the NUL), neither "." nor "..", and has no '/', ':' or whitespace (the kernel's dev_valid_name).
// Both return why a value is invalid, or nullopt.
std::optional<std::string> containerIdProblem(const std::string& id);
std::optional<std::string> ifnameProblem(const std::string& ifname);
// A network name follows the container ID's rule (SPEC.md, "Network configuration format": name).
std::optional<std::string> networkNameProblem(const std::string& name);

// CNI_ARGS: "K=V;K=V". Keys in any order; unknown keys are an error unless IgnoreUnknown is true.
struct CniArgs {
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_uid;
  std::string infra_container_id;
  std::string ip;   // requested address, without prefix
  std::string mac;
};
std::optional<CniError> parseArgs(const std::string& text, CniArgs* out);

enum class ChainingMode { kNone, kGenericVeth };

struct NetConf {
  std::string cni_version;
  std::string name;
  std::string type;
  std::string socket;
  ChainingMode chaining = ChainingMode::kNone;
  int mtu = 0;
  std::string log_file;
  int timeout_seconds = 60;
  std::vector<std::string> runtime_ips;  // runtimeConfig.ips, without prefix
  std::string runtime_mac;               // runtimeConfig.mac
  nlohmann::json prev_result;            // null when absent
  // GC (1.1.0): the attachments to keep, as sent. The tagged 1.1.0 text names the key cni.dev/attachments,
  // libcni sends cni.dev/valid-attachments, newer libcni both. null when absent.
  nlohmann::json gc_attachments;         // cni.dev/attachments
  nlohmann::json gc_valid_attachments;   // cni.dev/valid-attachments
};

// Parses stdin. Malformed JSON is a decoding failure (6), a bad field or a missing or invalid `name` is invalid
// config (7), an unsupported cniVersion is incompatible (1). default_socket fills `socket` when absent.
// cni_version is filled before any other check, so a caller can answer in the config's version.
std::optional<CniError> parseNetConf(const std::string& text, const std::string& default_socket, NetConf* out);

struct GcAttachment {
  std::string container_id;
  std::string ifname;
  bool operator<(const GcAttachment& o) const {
    return container_id != o.container_id ? container_id < o.container_id : ifname < o.ifname;
  }
  bool operator==(const GcAttachment& o) const { return container_id == o.container_id && ifname == o.ifname; }
};

// GC's list of attachments to keep: the union of both keys (an attachment named under either is kept). nullopt
// when neither key carries a list (absent, or JSON null as a Go runtime marshals a nil slice): the caller must
// then remove nothing, never read it as "no attachment is valid". A key that is neither null nor a list of
// {containerID, ifname} objects is invalid config (7). An entry without ifname means eth0.
std::optional<CniError> gcAttachments(const NetConf& conf, std::optional<std::vector<GcAttachment>>* out);

bool versionAtLeast(const std::string& version, const std::string& minimum);

// One interface/address/route as the agent reports them, independent of version.
struct ResultInterface {
  std::string name;
  std::string mac;
  std::string sandbox;
};
struct ResultIp {
  std::string address;  // CIDR
  std::string gateway;
  int interface = -1;
};
struct ResultRoute {
  std::string dst;
  std::string gw;
};
struct Result {
  std::vector<ResultInterface> interfaces;
  std::vector<ResultIp> ips;
  std::vector<ResultRoute> routes;
  nlohmann::json dns = nlohmann::json::object();
};

nlohmann::json resultJson(const Result& r, const std::string& version);
// Re-renders a result (e.g. a chained plugin's prevResult) in the requested version's format.
nlohmann::json convertResult(const nlohmann::json& result, const std::string& version);
nlohmann::json errorJson(const CniError& e, const std::string& version);
nlohmann::json versionJson(const std::string& version);
// The text written to stdout (or a file) for any of the above. The environment is not checked for UTF-8, so a
// message quoting CNI_COMMAND or CNI_ARGS may carry bytes JSON cannot hold: they become U+FFFD instead of
// throwing (nlohmann's dump() throws type_error 316 on them; found by fuzz/fuzz_cni).
std::string dumpJson(const nlohmann::json& j);

// Generic-veth chaining: what the previous plugin created.
struct ChainedIface {
  std::string host_ifname;
  std::string container_ifname;
  std::string container_mac;
  std::vector<std::string> ips;  // CIDRs
};
std::optional<CniError> chainedFromPrevResult(const nlohmann::json& prev, const CniEnv& env, ChainedIface* out);

}  // namespace plexus::cni
