#pragma once
// strata-server's cluster flags and the membership that runs beside the server
// (server::ServeExtension): --cluster-etcd URL[,URL...] --node-id ID --advertise HOST[:PORT]
// [--cluster NAME] [--lease-ttl S] [--cluster-shard-timeout-ms MS]
// [--cluster-rereplicate-after-s S].
//
//   ClusterArgs cluster;
//   AddClusterFlags(app, cluster);
//   ... parse ...
//   STRATA_ASSIGN_OR_RETURN(auto extension, ClusterServeExtension(cluster));  // empty: no cluster
//   return server::RunServe(args, extension);
//
// Free functions; thread-compatible.

#include <string>

#include "core/status.h"
#include "server/serve.h"

namespace CLI {
class App;
}

namespace strata::cluster {

struct ClusterArgs {
  std::string etcd;       // empty: not in a cluster
  std::string node_id;
  std::string advertise;  // HOST:PORT; HOST alone or port 0: the port the server bound
  std::string cluster = "strata";
  uint32_t lease_ttl_s = 5;
  // How long a routed read waits for one shard replica (RouterOptions::shard_timeout_ms).
  uint32_t shard_timeout_ms = 10000;
  // How long the leader lets a shard run short of live replicas before it re-replicates it
  // (ServiceOptions::rereplicate_after_ms).
  double rereplicate_after_s = 30.0;
  std::string catch_up = "files";  // --cluster-catch-up: files or records
};

void AddClusterFlags(CLI::App& app, ClusterArgs& args);

// Checks the flags together (InvalidArgument naming the flag: --node-id and --advertise need
// --cluster-etcd and the other way round; names and URLs well formed). An empty factory when
// --cluster-etcd is not given.
Result<server::ServeExtensionFactory> ClusterServeExtension(const ClusterArgs& args);

}  // namespace strata::cluster
