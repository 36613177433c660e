#pragma once
// The cluster's records in etcd (docs/CLUSTER.md), their JSON, and the pure placement rules.
//
//   /strata/<c>/collections/<name>               CollectionRecord   written by a client (create
//                                                                   if absent)
//   /strata/<c>/placement/<name>                 Placement          written only by the leader,
//                                                                   fenced by its election key
//   /strata/<c>/replicas/<name>/<shard>/<node>   ReplicaReport      written by the replica, under
//                                                                   its lease
//
// A collection of `shards` x `replicas` is `shards` engine collections per replica node, each
// named LocalShardName(name, shard). A shard's `in_sync` set names the replicas (with the
// incarnation they were in sync at) that hold every acknowledged write; a node that lapses and
// registers again is a new incarnation and leaves the set until it has caught up.
//
// Pure functions and value types; thread-compatible.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/types.h"
#include "core/metric.h"
#include "core/status.h"

namespace strata::cluster {

// A cluster collection name: 1..56 characters of [A-Za-z0-9_-] (room for the shard suffix
// within the engine's 64), without "__" (which names a shard's engine collection).
Status ValidateCollectionName(std::string_view name);
// The engine collection holding shard `shard` of `collection` on a replica: "<name>__s<shard>".
std::string LocalShardName(std::string_view collection, uint32_t shard);

inline constexpr uint32_t kMaxShards = 1024;
inline constexpr uint32_t kMaxReplicas = 16;

struct CollectionRecord {
  std::string name;
  uint32_t dim = 0;
  Metric metric = Metric::kL2;
  uint32_t shards = 1;
  uint32_t replicas = 1;
  uint32_t hnsw_M = 16;
  uint32_t hnsw_ef_construction = 200;
  // The rest of every shard's engine collection spec (CollectionSpec's fields and defaults;
  // records written before these existed read as the defaults).
  uint64_t seal_threshold = 100000;
  uint64_t memory_budget_bytes = 0;
  VectorCodes codes = VectorCodes::kNone;
  uint32_t rerank = 0;
  int64_t created_unix_ms = 0;

  // The record of a collection whose shards are engine collections like `spec` (its name the
  // cluster collection's).
  static CollectionRecord FromSpec(const CollectionSpec& spec, uint32_t shards, uint32_t replicas);
  // The engine collection spec of shard `shard`: named LocalShardName(name, shard).
  CollectionSpec ShardSpec(uint32_t shard) const;

  Status Validate() const;
  std::string ToJson() const;
  static Result<CollectionRecord> FromJson(std::string_view json);
};

struct ReplicaRef {
  std::string node;
  uint64_t incarnation = 0;
  uint64_t since = 0;  // in `catching_up`: the placement epoch it was added at (0 elsewhere)
  friend bool operator==(const ReplicaRef&, const ReplicaRef&) = default;
};

struct ShardPlacement {
  uint32_t shard = 0;
  std::vector<std::string> replicas;  // the nodes that hold the shard, the first preferred
  std::vector<ReplicaRef> in_sync;    // those holding every acknowledged write
  // Replicas copying the shard from an in-sync peer (cluster/catch_up.h): writes go to them
  // too (a write needs every in-sync and every catching-up replica), searches do not.
  std::vector<ReplicaRef> catching_up;
  // The epoch at which the set of replicas that take writes last grew (a replica joined
  // catching_up) or the shard's primary changed; a replica refuses a write routed with an
  // older placement (the router's view lacked a replica that must have it, or named another
  // primary). 0: neither happened.
  uint64_t write_epoch = 0;
  friend bool operator==(const ShardPlacement&, const ShardPlacement&) = default;
};

struct Placement {
  std::string collection;
  uint64_t epoch = 0;  // from the record's creation revision, +1 on every change the leader writes
  std::vector<ShardPlacement> shards;
  friend bool operator==(const Placement&, const Placement&) = default;

  std::string ToJson() const;
  static Result<Placement> FromJson(std::string_view json);
};

// What a replica reports about its copy of a shard.
struct ReplicaReport {
  std::string node;
  uint64_t incarnation = 0;
  std::string state;           // "ready", or "error: ..." when the shard could not be made
  uint64_t num_vectors = 0;
  uint64_t last_sequence = 0;  // the engine's last applied write batch on this replica
  // This incarnation finished copying the shard from an in-sync peer for the catch-up that
  // started at this placement epoch (ReplicaRef::since); 0: none.
  uint64_t caught_up_epoch = 0;

  std::string ToJson() const;
  static Result<ReplicaReport> FromJson(std::string_view json);
};

// node id -> incarnation, of the registered nodes.
using LiveNodes = std::map<std::string, uint64_t>;

// Places a new collection: each shard on `replicas` distinct live nodes, the least loaded first
// (`load`: shards each node already holds, over every collection), the first replicas (where
// searches go first) spread over the nodes; ties rotate with the shard. Every replica starts in sync (the
// shard is empty). The placement's epoch, and every shard's write_epoch, start at
// `first_epoch`: the leader gives the etcd revision that created the collection's record, so
// that a name dropped and created again never reuses an epoch of the old collection (a
// replica then refuses the old collection's late writes, and its fence or high-water epoch
// from the old one never holds the new one's writes back). ResourceExhausted when fewer than
// `replicas` nodes are live.
Result<Placement> PlaceCollection(const CollectionRecord& collection, const LiveNodes& live,
                                  std::map<std::string, uint32_t> load, uint64_t first_epoch = 1);

// Brings every in-sync set up to date with the registry (the leader's rule); `epoch` is the
// epoch the placement will be written at if anything changes (placement.epoch + 1):
//  - a replica not registered any more leaves the set -- unless it is the last one(s): the set
//    is never emptied, since only its members hold every acknowledged write (the shard waits
//    for one of them to return);
//  - a replica registered again under a new incarnation while still in the set stays, at the
//    new incarnation: no write can have been acknowledged without it while it was listed (a
//    write needs every in-sync replica), and its log kept what it acknowledged;
//  - when the set's first member (the shard's primary, which orders the shard's writes) is
//    another node or incarnation afterwards, the shard's write_epoch becomes `epoch`, so that
//    the replicas refuse what the old primary still sends (routed at an older epoch).
// Returns whether anything changed.
bool UpdateInSync(Placement& placement, const LiveNodes& live, uint64_t epoch);

// The catch-up rules (the leader's too), run after UpdateInSync; `epoch` is the epoch the
// placement will be written at if anything changes (placement.epoch + 1):
//  - a catching-up replica whose node is gone or registered again (another incarnation)
//    leaves catching_up (it starts over when it is back);
//  - one whose report (same incarnation) says it caught up at or after the epoch it was added
//    at joins the in-sync set;
//  - a replica of the shard that is live and in neither set joins catching_up at `epoch`,
//    and the shard's write_epoch becomes `epoch`.
// `reports`: (node -> report) per shard index. Returns whether anything changed.
using ShardReports = std::vector<std::map<std::string, ReplicaReport>>;
bool UpdateCatchUp(Placement& placement, const LiveNodes& live, const ShardReports& reports,
                   uint64_t epoch);

// Re-replication (the leader's rule, run after UpdateInSync and before UpdateCatchUp): the
// shards with fewer live replicas (nodes of `replicas` that are registered: in sync, catching
// up or about to) than the collection's `replicas`.
std::vector<uint32_t> ShortShards(const Placement& placement, uint32_t replicas,
                                  const LiveNodes& live);

// For each shard of ShortShards for which `due(shard)` says its grace period has passed, and
// that keeps at least one registered in-sync replica (the new one copies from it): the least
// loaded registered node that holds no replica of the shard (fewest replicas in `load`, over
// every collection; ties by node id) replaces, in `replicas`, the first node there that is not
// registered and in neither set (the dead one: it stays out of the placement when it returns).
// It is in neither set, so UpdateCatchUp then adds it to `catching_up`. `load` is updated
// (the new node +1, the replaced one -1). Returns the (shard, dead node, new node) replacements.
struct Replacement {
  uint32_t shard = 0;
  std::string removed;  // empty when the shard had fewer than `replicas` nodes listed
  std::string added;
};
std::vector<Replacement> Rereplicate(Placement& placement, uint32_t replicas,
                                     const LiveNodes& live, std::map<std::string, uint32_t>& load,
                                     const std::function<bool(uint32_t shard)>& due);

// How nodes address a shard replica in requests between them: "<LocalShardName>@<epoch>",
// "+" appended for a replica that is catching up, "!" for a write sent to the shard's primary
// (the first of its in-sync set), which orders it and passes it on to every other replica
// (docs/CLUSTER.md, "Writes through the primary"). The epoch is the placement epoch the request
// was routed with; the receiving node checks it against the shard's write fence.
struct ShardAddress {
  std::string local;  // the engine collection, LocalShardName(collection, shard)
  std::string collection;
  uint32_t shard = 0;
  uint64_t epoch = 0;
  bool catching_up = false;
  bool primary = false;  // "!": to the primary, to be ordered and replicated
  std::string ToString() const;
};
ShardAddress MakeShardAddress(std::string_view collection, uint32_t shard, uint64_t epoch,
                              bool catching_up = false);
// The address of a write for shard `shard`'s primary to order and replicate ("!").
ShardAddress MakePrimaryAddress(std::string_view collection, uint32_t shard, uint64_t epoch);
// nullopt when `name` is not a shard address (no '@'); InvalidArgument when it is malformed.
std::optional<Result<ShardAddress>> ParseShardAddress(std::string_view name);

}  // namespace strata::cluster
