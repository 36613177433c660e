// strata-cli cluster status | create: a cluster's state and its sharded, replicated collections,
// read and written through etcd (cluster/admin.h; docs/CLUSTER.md). No server is contacted:
// --host and --port do not apply.

#include <chrono>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "client/cli.h"
#include "cluster/admin.h"

namespace strata::cli {

namespace {

struct ClusterGlobal {
  std::string etcd = "http://127.0.0.1:2379";
  std::string cluster = "strata";
  uint32_t timeout_ms = 3000;
};

struct ClusterCreateArgs {
  CreateArgs spec;  // every shard's engine collection (the flags of create)
  uint32_t shards = 1;
  uint32_t replicas = 1;
  double wait_s = 0;
};

Result<std::unique_ptr<cluster::EtcdClient>> Etcd(const ClusterGlobal& c) {
  return cluster::EtcdClient::Create(c.etcd, {.timeout_ms = c.timeout_ms});
}

int CmdClusterStatus(const ClusterGlobal& c, bool json) {
  auto etcd = Etcd(c);
  if (!etcd) return Fail(etcd.error());
  auto status = cluster::ReadClusterStatus(**etcd, c.cluster);
  if (!status) return Fail(status.error());
  if (json) {
    fmt::print("{}\n", Dump(status->ToJson()));
  } else {
    fmt::print("{}", status->ToText());
  }
  return 0;
}

int CmdClusterCreate(const ClusterGlobal& c, const ClusterCreateArgs& a) {
  auto spec = SpecFromFlags(a.spec);
  if (!spec) return Usage(spec.error());
  auto etcd = Etcd(c);
  if (!etcd) return Fail(etcd.error());
  const cluster::CollectionRecord record =
      cluster::CollectionRecord::FromSpec(*spec, a.shards, a.replicas);
  if (Status s = cluster::CreateClusterCollection(**etcd, c.cluster, record); !s.ok()) {
    return Fail(s);
  }
  fmt::print("created cluster collection '{}' ({} shards x {} replicas) in cluster '{}'\n", record.name,
             a.shards, a.replicas, c.cluster);
  if (a.wait_s <= 0) return 0;
  // Until the leader has placed it and every replica reports its shard.
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(a.wait_s * 1000));
  for (;;) {
    auto status = cluster::ReadClusterStatus(**etcd, c.cluster);
    if (!status) return Fail(status.error());
    for (const cluster::CollectionStatus& col : status->collections) {
      if (col.record.name != record.name) continue;
      cluster::ClusterStatus one = *status;
      one.collections = {col};
      if (one.AllReady()) {
        fmt::print("placed (epoch {}); every replica reports its shard ready\n",
                   *col.placement_epoch);
        return 0;
      }
    }
    if (std::chrono::steady_clock::now() >= until) {
      return Fail(ResourceExhausted(
          "collection '{}' is not placed and ready after {} s (is a leader up, with {} live "
          "nodes? see strata-cli cluster status)",
          record.name, a.wait_s, a.replicas));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

void AddClusterCommands(CLI::App& app, int& rc) {
  static ClusterGlobal c;
  static bool status_json = false;
  static ClusterCreateArgs create_args;
  auto* cmd = app.add_subcommand(
      "cluster", "A cluster's nodes, leader, collections, shards and in-sync sets, through etcd");
  cmd->require_subcommand(1);
  cmd->add_option("--etcd", c.etcd, "etcd client URLs, comma-separated")
      ->envname("STRATA_ETCD")
      ->capture_default_str();
  cmd->add_option("--cluster", c.cluster, "Cluster name (its keys live under /strata/NAME/)")
      ->capture_default_str();
  cmd->add_option("--etcd-timeout-ms", c.timeout_ms, "Longest etcd call")->capture_default_str();

  auto* status = cmd->add_subcommand("status", "Nodes, leases, leader, shards, in-sync sets, lag");
  status->add_flag("--json", status_json, "Print one JSON object");
  status->callback([&rc] { rc = CmdClusterStatus(c, status_json); });

  auto* create = cmd->add_subcommand("create", "Create a sharded, replicated collection");
  AddCreateFlags(*create, create_args.spec);
  create->add_option("--shards", create_args.shards, "Shards")->capture_default_str();
  create->add_option("--replicas", create_args.replicas, "Replicas of each shard")
      ->capture_default_str();
  create->add_option("--wait", create_args.wait_s,
                     "Seconds to wait until it is placed and every replica is ready (0: no wait)")
      ->capture_default_str();
  create->callback([&rc] { rc = CmdClusterCreate(c, create_args); });
}

}  // namespace strata::cli
