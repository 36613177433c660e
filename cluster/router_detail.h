#pragma once
// Helpers shared by the parts of ClusterRouter (router.cc: writes; router_primary.cc: the
// primary's part of a write; router_reads.cc: reads).
// Not part of the router's interface. Pure functions, safe from any thread.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "api/types.h"
#include "cluster/model.h"
#include "core/status.h"
#include "protocol/protocol.h"

namespace strata::cluster::router_detail {

// An id leaving the router from collection `collection`'s shard `shard`: a keyed id as its
// cluster id (ClusterKeyedId).
Status ToClusterId(const std::string& collection, uint32_t shard, VectorId& id);
// Whether a write failed only because it was routed by an older placement (a replica's
// "stale placement epoch", or a node that "is not the primary of" the shard any more): the
// router routes it again once its view has moved.
bool Rerouted(const Status& error);
// `request` (a write: upsert, upsert_keyed_ids, delete, delete_keyed) addressed to `address`.
protocol::Request Readdressed(const protocol::Request& request, const std::string& address);
// Shards 0 .. shards - 1.
std::vector<uint32_t> AllShards(uint32_t shards);
// The shards that have positions of the caller's list (per shard, its positions).
std::vector<uint32_t> ShardsWith(const std::vector<std::vector<size_t>>& positions);
// A routed search's `count` queries of dimension `dim` against collection `collection`.
Status CheckQueries(const CollectionRecord& record, const std::string& collection, uint32_t dim,
                    uint32_t count);
// Per shard, the request `op` of a routed search: the queries, with the request's options less
// what the router acts on itself (allow_partial, shard_timeout_ms), which the shards get as
// their defaults (search_batch and search_keyed cannot carry them). Holds `collection` by
// reference: it must outlive the function.
std::function<protocol::Request(uint32_t shard)> ShardSearches(const std::string& collection,
                                                               protocol::Op op,
                                                               const SearchOptions& options,
                                                               const float* queries, uint32_t dim,
                                                               uint32_t count);

}  // namespace strata::cluster::router_detail
