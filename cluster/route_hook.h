#pragma once
// The cluster's request hook inside a node (server/request_hook.h): a client's upsert, delete
// and get (by id or by key), search, batch search, keyed search, search_with (partial replies
// on request), explain (per shard and node), describe, flush, compact or drop for a cluster
// collection is routed by ClusterRouter (router.h) --
// the node's own shards through its engine, the others through connections to their nodes.
// Requests that name a shard address ("<name>__s<k>@<epoch>[+|!]", from another node's router
// or a catching-up peer) go through the ShardGate (catch_up.h): writes (by id, and by key:
// upsert_keyed_ids, delete_keyed) checked against the shard's write fence, the id listing
// (which raises the fence) and gets of a catch-up; a write marked "!" is this node's to order
// as the shard's primary and pass on to the other replicas (ClusterRouter::Replicate).
// Other requests for a cluster collection are refused (Unimplemented: not routed yet); requests
// for any other collection (a shard's engine collection among them) go to the engine as before.
// A node whose lease may have lapsed (ClusterNode::LeaseHeld) routes no write.
//
// Thread-safe: Handle runs on every worker thread at once; each call takes a router from a pool
// (a router's connections serve one call at a time).

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cluster/catch_up.h"
#include "cluster/node.h"
#include "cluster/router.h"
#include "cluster/shard_copy.h"
#include "server/request_hook.h"

namespace strata {
class Engine;
}

namespace strata::cluster {

class ClusterRequestHook : public server::RequestHook {
 public:
  // `node` and `engine` are borrowed and must outlive the hook.
  // `gate` applies the shard requests from other nodes (catch_up.h); `copies` serves a
  // catching-up peer this node's shard files (shard_copy.h); both borrowed too.
  ClusterRequestHook(std::shared_ptr<ClusterView> view, const ClusterNode& node, Engine& engine,
                     ShardGate& gate, ShardCopies& copies);
  std::optional<protocol::Response> Handle(const protocol::Request& request) override;
  // A shard address: kOrdered for a write addressed to this node as the shard's primary ("!":
  // model.h; ClusterRouter::Replicate), kHere otherwise (a replica's part of a write, a peer's
  // catch-up); a cluster collection (a name this node's view knows as one): kRouted; anything
  // else (a shard replica's engine collection NAME__sK among them): kEngine.
  Place PlaceOf(const std::string& collection) const override;
  // The per-shard counters of this node's routing (ClusterView::MetricsText).
  std::string MetricsText() const override { return view_->MetricsText(); }

 private:
  std::unique_ptr<ClusterRouter> Acquire();
  void Release(std::unique_ptr<ClusterRouter> router);
  // `call` on a router from the pool (Acquire, Release); its result (a Result<T>, or a Status)
  // answered by `reply` (given the T, or nothing), its error as an error reply.
  template <typename Call, typename Reply>
  protocol::Response Routed(Call call, Reply reply);
  // Routed for the writes (a count: WriteReply) and the gets (records: GetReply), as `op`.
  template <typename Call>
  protocol::Response RoutedWrite(protocol::Op op, Call call);
  template <typename Call>
  protocol::Response RoutedGet(protocol::Op op, Call call);
  // A shard request for this node's own engine (upsert, search batch).
  Result<protocol::Response> RunLocal(const protocol::Request& request);
  // A request naming a shard address (model.h): an upsert through the gate, the id listing
  // and the gets of a peer's catch-up, the shard files of a peer's catch-up by files.
  Result<protocol::Response> RunShard(const ShardAddress& address, const protocol::Request& request);

  const std::shared_ptr<ClusterView> view_;
  const ClusterNode& node_;
  Engine& engine_;
  ShardGate& gate_;
  ShardCopies& copies_;
  std::mutex mu_;
  std::vector<std::unique_ptr<ClusterRouter>> idle_;  // guarded by mu_
};

}  // namespace strata::cluster
