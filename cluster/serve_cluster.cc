#include "cluster/serve_cluster.h"

#include <CLI/CLI.hpp>

#include "cluster/etcd_http.h"
#include "cluster/route_hook.h"
#include "cluster/service.h"
#include "server/server.h"

namespace strata::cluster {

void AddClusterFlags(CLI::App& app, ClusterArgs& args) {
  app.add_option("--cluster-etcd", args.etcd,
                 "Join a cluster coordinated by etcd at these client URLs (comma-separated, "
                 "http://HOST:PORT); see docs/CLUSTER.md");
  app.add_option("--node-id", args.node_id, "This node's id in the cluster ([A-Za-z0-9._-], unique)");
  app.add_option("--advertise", args.advertise,
                 "HOST:PORT where clients and the other nodes reach this node (HOST alone: the "
                 "port the server bound)");
  app.add_option("--cluster", args.cluster, "Cluster name: its keys live under /strata/NAME/ in etcd")
      ->capture_default_str();
  app.add_option("--lease-ttl", args.lease_ttl_s,
                 "Seconds without a lease renewal after which the node counts as gone")
      ->capture_default_str();
  app.add_option("--cluster-shard-timeout-ms", args.shard_timeout_ms,
                 "How long a search routed by this node waits for one shard replica before it "
                 "asks the next one, then fails the reply (or, if the request allows, leaves it "
                 "partial); a request may set its own (0: no limit)")
      ->capture_default_str();
  app.add_option("--cluster-rereplicate-after-s", args.rereplicate_after_s,
                 "As the leader: how long a shard may run with fewer live replicas than its "
                 "collection's replicas before another node gets a replica of it and catches up "
                 "(a node back sooner returns to its own replica)")
      ->capture_default_str();
  app.add_option("--cluster-catch-up", args.catch_up,
                 "How a replica that comes back (or is new) catches up from an in-sync peer: "
                 "files (a copy of the peer's segment files and log) or records (every record "
                 "read, what differs written; docs/CLUSTER.md)")
      ->capture_default_str();
}

namespace {

class ClusterExtension : public server::ServeExtension {
 public:
  ClusterExtension(std::unique_ptr<ClusterService> service, server::Server& server,
                   std::shared_ptr<ClusterRequestHook> hook)
      : service_(std::move(service)), server_(server), hook_(std::move(hook)) {
    server_.SetRequestHook(hook_);
  }
  ~ClusterExtension() override {
    server_.SetRequestHook(nullptr);
    hook_.reset();
    service_.reset();  // leaves the cluster
  }

 private:
  std::unique_ptr<ClusterService> service_;
  server::Server& server_;
  std::shared_ptr<ClusterRequestHook> hook_;
};

}  // namespace

Result<server::ServeExtensionFactory> ClusterServeExtension(const ClusterArgs& args) {
  if (args.etcd.empty()) {
    if (!args.node_id.empty() || !args.advertise.empty()) {
      return Error(InvalidArgument("--node-id and --advertise need --cluster-etcd"));
    }
    return server::ServeExtensionFactory();
  }
  if (args.node_id.empty()) return Error(InvalidArgument("--cluster-etcd needs --node-id"));
  if (args.advertise.empty()) return Error(InvalidArgument("--cluster-etcd needs --advertise"));
  STRATA_RETURN_IF_ERROR(ParseEtcdEndpoints(args.etcd));
  STRATA_RETURN_IF_ERROR(ValidateName("--node-id", args.node_id));
  STRATA_RETURN_IF_ERROR(ValidateName("--cluster", args.cluster));
  if (args.lease_ttl_s == 0) return Error(InvalidArgument("--lease-ttl must be >= 1"));
  if (args.catch_up != "files" && args.catch_up != "records") {
    return Error(InvalidArgument("--cluster-catch-up must be files or records, got '{}'", args.catch_up));
  }
  if (!(args.rereplicate_after_s >= 0.0 && args.rereplicate_after_s <= 86400.0)) {
    return Error(InvalidArgument("--cluster-rereplicate-after-s must be within [0, 86400], got {}",
                                 args.rereplicate_after_s));
  }
  return server::ServeExtensionFactory(
      [args](Engine& engine, server::Server& server,
             const server::ServerConfig&) -> Result<std::unique_ptr<server::ServeExtension>> {
        NodeOptions options;
        options.etcd = args.etcd;
        options.node_id = args.node_id;
        options.cluster = args.cluster;
        options.lease_ttl_s = args.lease_ttl_s;
        // HOST, HOST:0 or [V6]: the bound port.
        std::string advertise = args.advertise;
        const size_t colon = advertise.rfind(':');
        const bool has_port = colon != std::string::npos && advertise.find(']', colon) == std::string::npos &&
                              (advertise.front() == '[' || advertise.find(':') == colon);
        if (!has_port) {
          advertise += ":" + std::to_string(server.port());
        } else if (advertise.substr(colon + 1) == "0") {
          advertise = advertise.substr(0, colon + 1) + std::to_string(server.port());
        }
        options.advertise = advertise;
        ServiceOptions service_options;
        service_options.rereplicate_after_ms = uint32_t(args.rereplicate_after_s * 1000.0);
        service_options.catch_up = args.catch_up == "records" ? ServiceOptions::CatchUpMode::kRecords
                                                              : ServiceOptions::CatchUpMode::kFiles;
        STRATA_ASSIGN_OR_RETURN(auto service, ClusterService::Start(options, engine, service_options));
        // Routing: a client may send a cluster collection's requests to any node.
        STRATA_ASSIGN_OR_RETURN(auto view, ClusterView::Open({.etcd = options.etcd,
                                                              .cluster = options.cluster,
                                                              .etcd_timeout_ms = options.etcd_timeout_ms,
                                                              .shard_timeout_ms = args.shard_timeout_ms}));
        auto hook = std::make_shared<ClusterRequestHook>(std::move(view), service->node(), engine,
                                                         service->gate(), service->copies());
        return std::unique_ptr<server::ServeExtension>(
            new ClusterExtension(std::move(service), server, std::move(hook)));
      });
}

}  // namespace strata::cluster
