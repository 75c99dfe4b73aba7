// libFuzzer target: `plexus observe`'s filter (docs/fuzzing.md).
//
// Input: the first line is the --since value; each further line is one filter flag as "name=value", with the
// names of the CLI's flags (namespace, pod, label, ip, port, identity, each also as from-X and to-X; verdict,
// protocol, type, tcp-flags, node-name, until), or "not" alone: the flags after it until the next "not" form a
// deny filter, as --not does. --since and --until go through the CLI's parseSince(); each filter goes through
// the agent's parseFlowFilter() (what Observer.GetFlows does with the request's filters) and, when accepted, the
// query is matched against a small flow store.

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "plexus/agent/flow_store.h"
#include "plexus/cli/since.h"

namespace {

using namespace plexus;
using namespace plexus::agent;

uint32_t number(std::string_view v) {
  uint32_t n = 0;
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

PeerFilterSpec* peer(std::string_view* name, FlowFilterSpec* spec) {
  if (name->substr(0, 5) == "from-") {
    name->remove_prefix(5);
    return &spec->source;
  }
  if (name->substr(0, 3) == "to-") {
    name->remove_prefix(3);
    return &spec->destination;
  }
  return &spec->either;
}

void addFlag(std::string_view line, FlowFilterSpec* spec) {
  size_t eq = line.find('=');
  if (eq == std::string_view::npos) {
    return;
  }
  std::string_view name = line.substr(0, eq);
  std::string value(line.substr(eq + 1));
  if (name == "verdict") {
    spec->verdicts.push_back(value);
  } else if (name == "protocol") {
    spec->protocols.push_back(value);
  } else if (name == "type") {
    spec->types.push_back(value);
  } else if (name == "tcp-flags") {
    spec->tcp_flags.push_back(value);
  } else if (name == "node-name") {
    spec->node_names.push_back(value);
  } else if (name == "until") {
    int64_t until = 0;
    if (cli::parseSince(value, 1700000000, &until)) {
      spec->until_unix_nano = until;
    }
  } else {
    PeerFilterSpec* p = peer(&name, spec);
    if (name == "namespace") {
      p->namespaces.push_back(value);
    } else if (name == "pod") {
      p->pods.push_back(value);
    } else if (name == "label") {
      p->labels.push_back(value);
    } else if (name == "ip") {
      p->ips.push_back(value);
    } else if (name == "identity") {
      p->identities.push_back(number(value));
    } else if (name == "port") {
      p->ports.push_back(number(value));
    }
  }
}

FlowRecord flow(const char* src, const char* src_pod, const char* dst, const char* dst_pod, uint8_t verdict,
                uint8_t proto, uint16_t dport, int64_t time) {
  FlowRecord f;
  f.time_unix_nano = time;
  f.verdict = verdict;
  f.protocol = proto;
  f.source.ip = *Ipv4::parse(src);
  f.source.port = 40000;
  f.source.identity = 300;
  f.source.pod = std::make_shared<FlowPod>(FlowPod{"default", src_pod, {"app=client", "k8s:tier=front"}});
  f.tcp_flags = 0x12;
  f.node_name = "kind-worker";
  f.destination.ip = *Ipv4::parse(dst);
  f.destination.port = dport;
  f.destination.identity = 301;
  f.destination.pod = std::make_shared<FlowPod>(
      FlowPod{dst_pod[0] ? "prod" : "", dst_pod, {"k8s:app=web", "k8s:io.kubernetes.pod.namespace=prod"}});
  return f;
}

const FlowStore& store() {
  static const FlowStore* s = [] {
    auto* fs = new FlowStore(8);
    fs->add(flow("10.0.0.5", "client", "10.0.0.6", "web", 1, 6, 80, 1700000000000000000));
    fs->add(flow("10.0.0.5", "client", "10.96.0.10", "", 3, 17, 53, 1700000001000000000));
    fs->add(flow("10.0.0.7", "", "10.0.0.6", "web", 2, 1, 0, 1700000002000000000));
    return fs;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t end = input.find('\n');
  std::string since(input.substr(0, end));
  std::vector<FlowFilterSpec> specs(1);  // specs[0] the filter, the rest deny filters (one per "not")
  int64_t since_nano = 0;
  if (cli::parseSince(since, 1700000000, &since_nano)) {
    specs[0].since_unix_nano = since_nano;
  }
  size_t pos = end == std::string_view::npos ? input.size() : end + 1;
  while (pos < input.size()) {
    end = input.find('\n', pos);
    if (end == std::string_view::npos) {
      end = input.size();
    }
    std::string_view line = input.substr(pos, end - pos);
    if (line == "not") {
      specs.emplace_back();
    } else {
      addFlag(line, &specs.back());
    }
    pos = end + 1;
  }
  FlowQuery query;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto filter = parseFlowFilter(specs[i]);
    if (!filter.ok()) {
      return 0;
    }
    if (i == 0) {
      query.filter = std::move(*filter);
    } else {
      query.deny.push_back(std::move(*filter));
    }
  }
  (void)store().last(0, query);
  (void)store().last(1, query);
  (void)store().first(1, query);
  uint64_t after = 0;
  (void)store().waitNewer(&after, query, std::chrono::milliseconds(0));
  return 0;
}
