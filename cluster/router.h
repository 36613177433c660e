#pragma once
// Routing for a cluster collection (docs/CLUSTER.md), as a client library: writes go by id hash
// (or key hash: ShardOfKey) to the shard's in-sync replicas and count as done when every one of them has applied them;
// searches go to one in-sync replica per shard and the top-k are merged. It follows the
// registry, the collections and the placement through etcd, and talks to each node's shard
// collections (LocalShardName) with the existing client (client/client.h), one connection per
// node, requests to different nodes in flight together (Client::Send / Receive).
//
//   STRATA_ASSIGN_OR_RETURN(auto router, ClusterRouter::Open({.etcd = "http://127.0.0.1:2379"}));
//   STRATA_ASSIGN_OR_RETURN(uint64_t n, router->Upsert("docs", records));
//   STRATA_ASSIGN_OR_RETURN(auto hits, router->Search("docs", query, {.k = 10}));
//
// A write goes to its shard's primary (the first replica of the in-sync set, model.h
// MakePrimaryAddress), which applies it and passes it on to the shard's other in-sync and
// catching-up replicas (Replicate) one write at a time, so that every replica applies the
// shard's writes in the primary's order. Each hop is addressed with the placement epoch it was
// routed with (model.h, ShardAddress); a replica that has seen a replica join the shard, or
// another primary, since refuses it, and so does a node that is not the primary (any more);
// the router retries once its view has the newer placement. A write fails (IOError naming the
// node and the shard) when a replica does not apply it; the replicas that did keep it
// (docs/CLUSTER.md: such a write was never acknowledged, and a replica's catch-up is what
// reconciles it). It is never acknowledged without a replica the placement still lists as in
// sync. Retry once the leader has updated the in-sync set.
// A search (and a get) asks one in-sync replica per shard -- the one this process has the
// fewest requests in flight to, placement order breaking ties -- and, for a shard whose
// replica fails or does not answer within the shard timeout (the request's
// SearchOptions::shard_timeout_ms, else RouterOptions::shard_timeout_ms), the next in-sync one.
// A shard none of whose replicas answered fails the read with an error naming the shard and
// what each replica said -- or, for a search that allows it (SearchOptions::allow_partial,
// SearchWith only), leaves the reply partial: the other shards' hits, and the missing shards
// with the reason (protocol::SearchWithReply::missing).
// Explain scatters the query as a search does and returns the merged hits with a plan that
// lists, per shard, the node that answered and that shard's own plan (api/explain.h).
// Drop removes the collection from etcd; the leader then removes its placement and every
// node drops its shard collections (docs/CLUSTER.md).
//
// Every node runs it for its clients' requests (route_hook.h).
//
// Thread-compatible: one thread uses a router at a time (its connections are not shared).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "api/explain.h"
#include "api/types.h"
#include "client/client.h"
#include "cluster/etcd_client.h"
#include "cluster/model.h"
#include "cluster/prefix_mirror.h"
#include "core/status.h"

namespace strata::cluster {

struct RouterOptions {
  std::string etcd;  // comma-separated etcd client URLs
  std::string cluster = "strata";
  uint32_t etcd_timeout_ms = 2000;
  client::ClientOptions client{};  // for the connections to the nodes
  // How long a read (search, explain) waits for one shard replica before it asks the next one
  // (or, when none is left, counts the shard as missing); a request's
  // SearchOptions::shard_timeout_ms overrides it. 0: no limit but the connections' own.
  uint32_t shard_timeout_ms = 10000;
};

// The shard of id `id` in a collection of `shards` shards (splitmix64 of the id, mod shards).
uint32_t ShardOfId(VectorId id, uint32_t shards);
// The shard of a record written by string key: XXH64 of the key's bytes (seed 0), mod
// shards. A keyed record lives in its key's shard whatever its id (ShardOfId does not apply
// to keyed ids); both hashes are part of the on-disk layout of a cluster: never change them.
uint32_t ShardOfKey(std::string_view key, uint32_t shards);

// Keyed ids through the cluster (docs/CLUSTER.md, "Keyed ids"). Each shard collection hands
// out keyed ids from its own counter (every shard's first key gets kKeyedIdBase), so an id
// leaving the router names its shard: kKeyedIdBase | shard << 40 | (local - kKeyedIdBase);
// an id coming in (delete, get by id) goes to that shard only, as its local id. Ids below
// kKeyedIdBase are the same in and out.
inline constexpr int kClusterKeyedLocalBits = 40;
// The cluster id of shard `shard`'s local keyed id `local` (an id below kKeyedIdBase as it
// is). OutOfRange when local - kKeyedIdBase does not fit in 40 bits.
Result<VectorId> ClusterKeyedId(uint32_t shard, VectorId local);
// A cluster keyed id (IsKeyedId) as its shard and that shard's local id.
std::pair<uint32_t, VectorId> SplitClusterKeyedId(VectorId id);

// What routing reads: the registry, the collections and the placement, mirrored from etcd.
// Thread-safe (the mirrors are); shared by every router of a process.
class ClusterView {
 public:
  static Result<std::shared_ptr<ClusterView>> Open(const RouterOptions& options);
  ~ClusterView();
  ClusterView(const ClusterView&) = delete;
  ClusterView& operator=(const ClusterView&) = delete;

  const std::string& cluster() const { return cluster_; }
  uint32_t shard_timeout_ms() const { return shard_timeout_ms_; }
  // Whether `collection` is a collection of this cluster (as last seen).
  bool HasCollection(const std::string& collection) const;
  // The write_epoch of `collection`'s shard `shard` (model.h) as last seen; 0 when unknown.
  uint64_t WriteEpochOf(const std::string& collection, uint32_t shard) const;
  // The placement epoch of `collection` as last seen; 0 when unknown.
  uint64_t EpochOf(const std::string& collection) const;
  // Prometheus text: per shard replica, the requests this process's routers sent it (by
  // operation and result) and the seconds they took; per node, the requests in flight now.
  std::string MetricsText() const;

 private:
  friend class ClusterRouter;
  explicit ClusterView(std::string cluster, std::unique_ptr<EtcdClient> etcd, uint32_t shard_timeout_ms)
      : cluster_(std::move(cluster)), etcd_(std::move(etcd)), shard_timeout_ms_(shard_timeout_ms) {}
  const std::string cluster_;
  std::unique_ptr<EtcdClient> etcd_;
  const uint32_t shard_timeout_ms_;
  // Requests in flight from this process's routers, per node (the least-loaded choice), and
  // what they came to, per shard replica.
  struct ShardCounters {
    uint64_t ok = 0, failed = 0;
    double seconds = 0;
  };
  // (collection, shard, node, op) -> counters
  using ShardKey = std::tuple<std::string, uint32_t, std::string, std::string>;
  mutable std::mutex load_mu_;
  std::map<std::string, uint32_t> in_flight_;       // guarded by load_mu_
  std::map<ShardKey, ShardCounters> shard_counters_;  // guarded by load_mu_
  std::unique_ptr<PrefixMirror> nodes_;
  std::unique_ptr<PrefixMirror> collections_;
  std::unique_ptr<PrefixMirror> placement_;
};

class ClusterRouter {
 public:
  // A router with its own view (etcd mirrors).
  static Result<std::unique_ptr<ClusterRouter>> Open(const RouterOptions& options);
  // Runs a request for one of this process's own shards without a connection (inside a node:
  // its own engine, so that a node's workers never wait on its own queue).
  using LocalExecutor = std::function<Result<protocol::Response>(const protocol::Request&)>;
  // A router over a shared view: its own connections only. Requests for node `self` go to
  // `local` when both are given.
  static std::unique_ptr<ClusterRouter> Over(std::shared_ptr<ClusterView> view,
                                             const client::ClientOptions& client = {},
                                             std::string self = {}, LocalExecutor local = {});
  ClusterRouter(const ClusterRouter&) = delete;
  ClusterRouter& operator=(const ClusterRouter&) = delete;

  // The view it routes by (shared by the routers Over it).
  const ClusterView& view() const { return *view_; }

  // Upserts by id. Returns the records written. NotFound for a collection that is not placed.
  Result<uint64_t> Upsert(const std::string& collection, std::span<const Record> records);
  // Deletes by id, routed as upserts are (every in-sync and catching-up replica of each id's
  // shard; a keyed id's shard is the one it names: ClusterKeyedId). Returns the number of ids
  // (deleting a missing id is not an error).
  Result<uint64_t> Delete(const std::string& collection, std::span<const VectorId> ids);
  // ---- Records by string key (api/types.h), each in its key's shard (ShardOfKey) ----
  // Upserts by key; returns each record's id (its cluster id: ClusterKeyedId), in order. The
  // shard's primary replica (the first of its in-sync set) finds or assigns each key's id; the
  // other in-sync and the catching-up replicas then write the same key with the same id
  // (upsert_keyed_ids), so that every replica gives a key one id. A replica that holds the key
  // under another id (or the id under another key) refuses it: the write fails, not
  // acknowledged (docs/CLUSTER.md).
  Result<std::vector<VectorId>> UpsertKeyed(const std::string& collection,
                                            std::span<const Record> records);
  // Deletes by key on every in-sync and catching-up replica of each key's shard. Returns the
  // number of keys (a missing key is not an error).
  Result<uint64_t> DeleteKeyed(const std::string& collection, std::span<const std::string> keys);
  // One entry per key, in order (nullopt: not there; records carry their keys), as Get.
  Result<std::vector<std::optional<Record>>> GetKeyed(const std::string& collection,
                                                      std::span<const std::string> keys);
  // A page of the collection's keys (Engine::ListKeys through the cluster): shard by shard,
  // each from one in-sync replica, a page's keys in id order within a shard, ids as the
  // cluster gives them. The cursor is the router's: 0 starts, a page's next_cursor continues
  // (shard << 40 | that shard's own cursor), 0 when every shard is done. A page may span
  // shards; the same guarantees as Engine::ListKeys hold per shard (a record live for the
  // whole listing is returned once). InvalidArgument for a cursor naming a shard past the
  // collection's.
  Result<KeyPage> ListKeys(const std::string& collection, uint64_t cursor, uint32_t count);
  // As SearchBatch; every hit carries its key (empty: written by id).
  Result<std::vector<std::vector<KeyedNeighbor>>> SearchKeyed(const std::string& collection,
                                                              const float* queries, uint32_t dim,
                                                              uint32_t count,
                                                              const SearchOptions& options);
  // Flushes (or compacts) every shard on every replica that holds it (in sync or catching up).
  Status FlushOrCompact(const std::string& collection, bool compact);
  // One entry per id, in order (nullopt: not there), each from one in-sync replica of its
  // shard (the next one when it fails); a keyed id is looked up in the shard it names.
  // Every id these reads return (records, hits) is a cluster id (ClusterKeyedId).
  Result<std::vector<std::optional<Record>>> Get(const std::string& collection,
                                                 std::span<const VectorId> ids);
  // `count` queries, row-major; one result list per query, the merged top-k.
  Result<std::vector<std::vector<Neighbor>>> SearchBatch(const std::string& collection,
                                                         const float* queries, uint32_t dim,
                                                         uint32_t count,
                                                         const SearchOptions& options);
  Result<std::vector<Neighbor>> Search(const std::string& collection, std::span<const float> query,
                                       const SearchOptions& options);
  // search_with over the shards: every hit with its key (and attributes on request), the
  // shards' filter warnings (each once), and with options.allow_partial the shards that did
  // not answer (the reply is then partial; InvalidArgument from a shard fails it still, and
  // so does every shard missing).
  Result<protocol::SearchWithReply> SearchWith(const std::string& collection, const float* queries,
                                               uint32_t dim, uint32_t count,
                                               const SearchOptions& options);
  // One query scattered as a search is; the merged hits and a plan whose `shards` hold, per
  // shard, the node (id and address) that answered and its own plan.
  Result<std::pair<std::vector<Neighbor>, strata::Explain>> Explain(const std::string& collection,
                                                                    std::span<const float> query,
                                                                    const SearchOptions& options);
  // Drops the collection: deletes its record in etcd (compare-and-swap on the record read),
  // then waits up to `wait_ms` for the leader to delete its placement and for every replica to
  // withdraw its reports (each node drops its shard collections, then its reports). NotFound
  // when the cluster has no such collection; IOError when the wait runs out (the record is
  // gone: the rest follows when the leader and the nodes get to it).
  Status Drop(const std::string& collection, uint32_t wait_ms = 30000);
  // The collection as one: its record's spec (named `collection`), and over one in-sync replica
  // per shard the vectors, memory and sealed segments summed, the largest last write batch.
  Result<CollectionInfo> Describe(const std::string& collection);

  // The primary's part of a write (a router Over a view with `self` and `local` only): a
  // write (upsert, upsert_keyed_ids, delete, delete_keyed) addressed to `address` with
  // `primary` set. It waits (up to 2 s) until this node's view has the placement epoch the
  // write was routed at, then holds `order` (the shard's: ShardGate::OrderOf) while it reads
  // the placement, checks that `self` is the shard's primary there and that `lease_held`
  // (when given) says yes, and applies the write here (`local`) and on every other in-sync
  // and catching-up replica, each addressed with that placement's epoch; for a keyed upsert
  // it applies it here first and sends the others the ids it found or gave. Returns this
  // node's response (the count, or the keys' ids). Cancelled, naming the reason, when this
  // node is not the primary in its view ("is not the primary of") or has not seen the epoch
  // (the router routes again), or when `lease_held` says no ("orders no write": the write
  // fails). IOError naming the replica that did not apply it.
  Result<protocol::Response> Replicate(const ShardAddress& address, const protocol::Request& request,
                                       std::mutex& order, const std::function<bool()>& lease_held = {});

 private:
  ClusterRouter(std::shared_ptr<ClusterView> view, const client::ClientOptions& client,
                std::string self, LocalExecutor local)
      : view_(std::move(view)), client_options_(client), self_(std::move(self)),
        local_(std::move(local)) {}
  struct Route {
    CollectionRecord record;
    Placement placement;
  };
  Result<Route> RouteOf(const std::string& collection) const;
  // One try of a write: `records` to upsert, or (records empty) `ids` or `keys` to delete;
  // each shard's part to its primary.
  Result<uint64_t> WriteOnce(const std::string& collection, std::span<const Record> records,
                             std::span<const VectorId> ids, std::span<const std::string> keys);
  // One try of UpsertKeyed.
  Result<std::vector<VectorId>> UpsertKeyedOnce(const std::string& collection,
                                                std::span<const Record> records);
  // Runs `once` again while a replica answers "stale placement epoch" (a replica joined the
  // shard, or another primary took over) or a node answers that it is not the primary (any
  // more): once this view has the newer placement.
  template <typename F>
  auto RetryStale(const std::string& collection, F once) -> decltype(once());
  Result<uint64_t> Write(const std::string& collection, std::span<const Record> records,
                         std::span<const VectorId> ids, std::span<const std::string> keys = {});
  // The reads of Get / GetKeyed and SearchKeyed: Scatter over `shards` with the shard timeout
  // of the view, no partial reply; a shard with no in-sync replica fails it before anything is
  // sent. `take` reads a reply (false: the wrong shape; an error fails the read at once).
  Status ReadShards(const Route& route, const std::string& collection, std::string_view what,
                    const std::vector<uint32_t>& shards,
                    const std::function<protocol::Request(uint32_t shard)>& make,
                    const std::function<Result<bool>(uint32_t shard, protocol::Response& reply)>& take);
  // Per shard, its in-sync replicas to ask in turn: the least loaded first (requests this
  // process has in flight to each node), then placement order.
  std::vector<std::vector<std::string>> ReadCandidates(const Route& route) const;
  // The open connection to `node` (from its registered address), connecting when needed.
  Result<client::Client*> Connection(const std::string& node);
  // Sends every request, then collects every response; the statuses in order. With a
  // deadline, a request not answered by then fails (its connection stays open: a late answer
  // is skipped when it comes).
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;
  std::vector<Result<protocol::Response>> FanOut(
      const std::vector<std::pair<std::string, protocol::Request>>& requests,
      Deadline deadline = std::nullopt);
  // FanOut's sending and collecting, without the counting.
  std::vector<Result<protocol::Response>> FanOutOnce(
      const std::vector<std::pair<std::string, protocol::Request>>& requests, Deadline deadline);
  // Every read's scatter: to each of `shards` the request `make` builds for it, to one
  // in-sync replica (ReadCandidates), the next one when a replica fails, does not answer
  // within `timeout_ms` (0: no limit) or gives a reply `take` refuses (false: the wrong
  // shape). `take` gets each reply with the node that gave it and the wall time of its
  // fan-out; an error from it fails the read at once. A shard none of whose replicas answered
  // fails the read (IOError naming the shard and each replica's failure) unless
  // `allow_partial` (then it is in the shards returned, by shard, unless every asked shard
  // is). InvalidArgument from a replica (the request's fault) fails the read at once.
  using TakeReply = std::function<Result<bool>(uint32_t shard, const std::string& node, double ms,
                                               protocol::Response& reply)>;
  Result<std::vector<protocol::MissingShard>> Scatter(
      const Route& route, const std::string& collection, std::string_view what,
      const std::vector<uint32_t>& shards,
      const std::function<protocol::Request(uint32_t shard)>& make, const TakeReply& take,
      uint32_t timeout_ms, bool allow_partial);
  // The searches' and Explain's Scatter over every shard: per shard its response (`fits`
  // true) and the node that gave it.
  struct Scattered {
    std::vector<std::optional<protocol::Response>> responses;  // per shard; nullopt: missing
    std::vector<std::string> nodes;                              // per shard: who answered
    std::vector<double> ms;  // per shard: the wall time of the fan-out it answered in
    std::vector<protocol::MissingShard> missing;
  };
  Result<Scattered> ScatterRead(const Route& route, const std::string& collection,
                                std::string_view what,
                                const std::function<protocol::Request(uint32_t shard)>& make,
                                const std::function<bool(const protocol::Response&)>& fits,
                                uint32_t timeout_ms, bool allow_partial);
  // SearchBatch's and SearchWith's ScatterRead: `count` queries of dimension `dim` checked
  // against `collection`, the request `op` to each shard (the options less allow_partial and
  // shard_timeout_ms), the shard timeout of `options` (0: the view's).
  Result<Scattered> ScatterSearch(const std::string& collection, protocol::Op op,
                                  const float* queries, uint32_t dim, uint32_t count,
                                  const SearchOptions& options,
                                  const std::function<bool(const protocol::Response&)>& fits,
                                  bool allow_partial);
  // The registered address of `node`; "" when it is not registered.
  std::string AddressOfNode(const std::string& node) const;

  const std::shared_ptr<ClusterView> view_;
  const client::ClientOptions client_options_;
  const std::string self_;
  const LocalExecutor local_;
  std::map<std::string, std::unique_ptr<client::Client>> connections_;  // by node id
  std::map<std::string, std::string> connected_to_;  // node id -> address of its connection
};

}  // namespace strata::cluster
