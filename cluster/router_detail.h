#pragma once
// Helpers shared by the two halves of ClusterRouter (router.cc: writes; router_reads.cc: reads).
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
