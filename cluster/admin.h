#pragma once
// Cluster administration through etcd alone (no node needed): create a sharded, replicated
// collection, and read the whole cluster's state -- for `strata-cli cluster ...`
// (client/cli_cluster.cc) and the tests.
//
// Free functions; thread-safe (EtcdClient is).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/etcd_client.h"
#include "cluster/model.h"
#include "cluster/node.h"
#include "core/status.h"

namespace strata::cluster {

// Writes the collection's record (create if absent; the leader then places it).
// InvalidArgument for a bad record, AlreadyExists when the name is taken.
Status CreateClusterCollection(EtcdClient& etcd, const std::string& cluster,
                               CollectionRecord record);

struct NodeStatus {
  NodeRecord record;
  int64_t lease_ttl_left_s = -1;  // -1: unknown (the lease lapsed meanwhile, or etcd did not say)
  bool leader = false;
};

struct ShardStatus {
  ShardPlacement placement;
  std::vector<ReplicaReport> reports;  // one per replica that reported, in placement order
};

struct CollectionStatus {
  CollectionRecord record;
  std::optional<uint64_t> placement_epoch;  // nullopt: not placed yet
  std::vector<ShardStatus> shards;
};

struct ClusterStatus {
  std::string cluster;
  std::string etcd;  // the endpoint that answered
  int64_t revision = 0;
  std::string leader;  // node id; empty when none
  std::vector<NodeStatus> nodes;
  std::vector<CollectionStatus> collections;
  std::vector<std::string> problems;  // records that did not parse

  // Every shard of every placed collection has every replica in sync and reporting "ready".
  bool AllReady() const;
  nlohmann::ordered_json ToJson() const;
  std::string ToText() const;
};

// One consistent read of /strata/<cluster>/ (a single range), then each node's lease TTL.
Result<ClusterStatus> ReadClusterStatus(EtcdClient& etcd, const std::string& cluster);

}  // namespace strata::cluster
