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
  CLI11_PARSE(app, argc, argv);
  return strata::server::RunServe(args);
}
