#pragma once
// Where a Strata cluster keeps its state in etcd (docs/CLUSTER.md has the model). Every key
// starts with "/strata/<cluster>/", so several clusters may share one etcd.
//
//   /strata/<c>/nodes/<node-id>        NodeRecord (JSON) under the node's lease
//   /strata/<c>/leader/<lease hex>     etcd's election keys; the oldest one leads
//   /strata/<c>/collections/<name>     CollectionRecord (cluster/model.h)
//   /strata/<c>/placement/<name>       Placement, written only by the leader
//   /strata/<c>/replicas/<name>/<shard>/<node>   ReplicaReport, under the replica's lease
//
// Pure functions; thread-safe.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace strata::cluster {

// A cluster name or node id: 1..64 characters of [A-Za-z0-9._-], not "." or "..".
// InvalidArgument naming `what` otherwise.
Status ValidateName(std::string_view what, std::string_view name);

struct ClusterKeys {
  std::string root;  // "/strata/<cluster>/"

  explicit ClusterKeys(std::string_view cluster) : root("/strata/" + std::string(cluster) + "/") {}
  std::string nodes() const { return root + "nodes/"; }
  std::string node(std::string_view id) const { return nodes() + std::string(id); }
  std::string election() const { return root + "leader"; }
  std::string collections() const { return root + "collections/"; }
  std::string collection(std::string_view name) const { return collections() + std::string(name); }
  std::string placements() const { return root + "placement/"; }
  std::string placement(std::string_view name) const { return placements() + std::string(name); }
  std::string replicas() const { return root + "replicas/"; }
  std::string replica(std::string_view collection, uint32_t shard, std::string_view node) const {
    return replicas() + std::string(collection) + "/" + std::to_string(shard) + "/" +
           std::string(node);
  }
  // The node id of a key under nodes(); empty when `key` is not one.
  std::string NodeIdOf(std::string_view key) const {
    const std::string prefix = nodes();
    return key.starts_with(prefix) ? std::string(key.substr(prefix.size())) : std::string();
  }
};

}  // namespace strata::cluster
