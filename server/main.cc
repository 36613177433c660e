// strata-server: serves a Strata data directory over TCP (server/serve.h).
//
//   strata-server --config configs/strata.toml
//   strata-server --data-dir /var/lib/strata --port 0 --port-file /run/strata.port
//
// Stops gracefully on SIGINT or SIGTERM.

#include <CLI/CLI.hpp>

#include "server/serve.h"

int main(int argc, char** argv) {
  CLI::App app{"strata-server: serves a Strata data directory over TCP"};
  app.set_version_flag("--version", std::string("strata-server ") + STRATA_VERSION);
  strata::server::ServeArgs args;
  strata::server::AddServeFlags(app, args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;  // a usage error, as in strata and strata-cli
  }
  return strata::server::RunServe(args);
}
