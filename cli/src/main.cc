// plexus: the operator CLI. Every command is a gRPC call to the agent's unix socket.
#include <cstdlib>
#include <iostream>

#include "context.h"

int main(int argc, char** argv) {
  plexus::cli::Context ctx;
  if (const char* env = std::getenv("PLEXUS_SOCKET")) {
    ctx.socket = env;
  }
  CLI::App app{"plexus: inspect and drive the plexus agent"};
  app.require_subcommand(1);
  app.add_option("--socket", ctx.socket, "agent socket (env PLEXUS_SOCKET)");
  app.add_option("--timeout", ctx.timeout_seconds, "seconds to wait for the agent")->check(CLI::PositiveNumber);
  int rc = 0;
  plexus::cli::addStatusCommands(app, ctx, rc);
  plexus::cli::addBpfCommands(app, ctx, rc);
  plexus::cli::addObserveCommand(app, ctx, rc);
  plexus::cli::addResourceCommands(app, ctx, rc);
  plexus::cli::addPolicyCommands(app, ctx, rc);
  plexus::cli::addMonitorCommand(app, ctx, rc);
  plexus::cli::addMapCommands(app, ctx, rc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return rc;
}
