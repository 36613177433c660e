#pragma once
// Where a Strata cluster keeps its state in etcd (docs/CLUSTER.md has the model). Every key
// starts with "/strata/<cluster>/", so several clusters may share one etcd.
//
//   /strata/<c>/nodes/<node-id>        NodeRecord (JSON) under the node's lease
//   /strata/<c>/leader/<lease hex>     etcd's election keys; the oldest one leads
//   (later layers: collections/, placement/)
//
// Pure functions; thread-safe.

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
  // The node id of a key under nodes(); empty when `key` is not one.
  std::string NodeIdOf(std::string_view key) const {
    const std::string prefix = nodes();
    return key.starts_with(prefix) ? std::string(key.substr(prefix.size())) : std::string();
  }
};

}  // namespace strata::cluster
