#pragma once
// What every plexus command shares: the agent socket, the output format, and error reporting.

#include <chrono>
#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include "plexus/api/paths.h"
#include "plexus/cli/format.h"
#include "plexus/common/result.h"
#include "plexus/v1/policy.pb.h"

namespace plexus::cli {

struct Context {
  std::string socket = api::kDefaultSocket;
  OutputFormat out;  // -o, as outputOption() parsed it
  int timeout_seconds = 15;

  std::shared_ptr<grpc::Channel> channel() const {
    return grpc::CreateChannel(api::grpcTarget(socket), grpc::InsecureChannelCredentials());
  }
  void deadline(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds));
  }
  // -o json, yaml or jsonpath=: the command prints one document through print().
  bool structured() const { return out.structured(); }
};

// Adds -o/--output to a command: its text forms (the first is the default) and json, yaml, jsonpath=EXPR. A bad
// value (or a malformed template) fails the parse with a message naming the accepted values.
inline CLI::Option* outputOption(CLI::App* cmd, Context& ctx, const std::vector<std::string>& text_forms = {"table"}) {
  return cmd
      ->add_option_function<std::string>(
          "-o,--output",
          [&ctx, text_forms](const std::string& v) {
            auto f = parseOutput(v, text_forms);
            if (!f.ok()) {
              throw CLI::ValidationError(f.error().message);
            }
            ctx.out = *f;
          },
          outputChoices(text_forms) + " (jsonpath: kubectl's, see docs/cli.md)")
      ->type_name("FORMAT");
}

// Prints the document of a structured -o; returns the exit code.
inline int printDocument(const Context& c, const nlohmann::json& doc) {
  auto text = renderDocument(doc, c.out);
  if (!text.ok()) {
    std::cerr << "error: " << text.error().message << "\n";
    return 1;
  }
  std::cout << *text;
  return 0;
}

// Prints a gRPC failure the way an operator needs it and returns the exit code.
inline int reportError(const Context& c, const grpc::Status& s) {
  if (s.error_code() == grpc::UNAVAILABLE || s.error_code() == grpc::DEADLINE_EXCEEDED) {
    std::cerr << "error: cannot reach the plexus agent on " << c.socket << " (" << s.error_message()
              << "); is plexus-agent running?\n";
    return 1;
  }
  std::cerr << "error: " << s.error_message() << "\n";
  return 1;
}

// Each command group adds its subcommands; the callback sets the exit code.
void addStatusCommands(CLI::App& app, Context& ctx, int& rc);
void addBpfCommands(CLI::App& app, Context& ctx, int& rc);
void addObserveCommand(CLI::App& app, Context& ctx, int& rc);
void addResourceCommands(CLI::App& app, Context& ctx, int& rc);
void addPolicyCommands(CLI::App& app, Context& ctx, int& rc);
void addMonitorCommand(CLI::App& app, Context& ctx, int& rc);
void addMapCommands(CLI::App& app, Context& ctx, int& rc);

// An endpoint's compiled policy (plexus endpoint get shows it).
Result<v1::GetEndpointPolicyResponse> endpointPolicy(const Context& c, const std::string& selector);
void printEndpointPolicy(const v1::GetEndpointPolicyResponse& p);

}  // namespace plexus::cli
