// strata-server: serves a Strata data directory over TCP (server/serve.h).
//
//   strata-server --config configs/strata.toml
//   strata-server --data-dir /var/lib/strata --port 0 --port-file /run/strata.port
//   strata-server ... --cluster-etcd http://127.0.0.1:2379 --node-id n1 --advertise 10.0.0.1:7420
//
// Stops gracefully on SIGINT or SIGTERM. The program (not the strata_server library) links
// the cluster layer above it (cluster/, docs/CLUSTER.md) for the --cluster-* flags.

#include <fmt/core.h>

#include <CLI/CLI.hpp>

#include "cluster/serve_cluster.h"
#include "server/serve.h"

int main(int argc, char** argv) {
  CLI::App app{"strata-server: serves a Strata data directory over TCP"};
  app.set_version_flag("--version", std::string("strata-server ") + STRATA_VERSION);
  strata::server::ServeArgs args;
  strata::server::AddServeFlags(app, args);
  strata::cluster::ClusterArgs cluster;
  strata::cluster::AddClusterFlags(app, cluster);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;  // a usage error, as in strata and strata-cli
  }
  auto extension = strata::cluster::ClusterServeExtension(cluster);
  if (!extension) {
    fmt::print(stderr, "strata-server: error: {}\n", extension.error().ToString());
    return 2;
  }
  return strata::server::RunServe(args, *extension);
}
