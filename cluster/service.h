#pragma once
// What a node does in a cluster besides being a member (docs/CLUSTER.md):
//  - as the leader: places each new collection's shards on the live nodes, and keeps every
//    shard's in-sync set current with the registry (UpdateInSync), each write a
//    compare-and-swap fenced by the leader's election key;
//  - as the leader, also the catch-up rules (UpdateCatchUp): a replica back (or new) joins the
//    shard's catching-up set, and the in-sync set once its report says it has caught up;
//  - as the leader, re-replication (Rereplicate): a shard short of live replicas for longer
//    than `rereplicate_after_ms` gets the least-loaded node without a replica of it, which
//    then catches up as a returning replica does; the dead node leaves the shard's replicas;
//  - as a replica: makes the engine collection of every shard placed on it
//    (LocalShardName) and reports it under its lease (ReplicaReport: state, vectors, last
//    write batch, the catch-up it finished); catches up the shards where it is catching up
//    (catch_up.h), one at a time on a thread of its own;
//  - a dropped collection (its record deleted: ClusterRouter::Drop): the leader deletes its
//    placement (fenced, and only while etcd says the record is absent); each replica then
//    drops the shard collections it made for it this run and withdraws their reports.
// One thread does both, when the collections or the placement change, and every `poll_ms`
// (the registry, the leadership and the reports).
//
// Thread-safe: every method may be called from any thread; the destructor stops the thread,
// then the node (which leaves the cluster).

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cluster/catch_up.h"
#include "cluster/model.h"
#include "cluster/node.h"
#include "cluster/prefix_mirror.h"
#include "cluster/shard_copy.h"
#include "core/status.h"

namespace strata {
class Engine;
}

namespace strata::cluster {

struct ServiceOptions {
  uint32_t poll_ms = 250;         // the loop's longest sleep
  uint32_t report_every_ms = 1000;  // how often a replica refreshes its reports' figures
  // Re-replication (model.h Rereplicate): how long the leader lets a shard run with fewer live
  // replicas than its collection's `replicas` before it adds another node to it, so that a
  // node that restarts quickly returns to its own replica instead.
  uint32_t rereplicate_after_ms = 30000;
  // How a replica catches up (catch_up.h): from the peer's files (a copy of its segment files
  // and log, the default), or record by record (reads every record of the peer and writes what
  // differs: cheaper for a replica that kept nearly all of its data, far dearer for one that
  // lost it -- docs/CLUSTER.md, "Catch-up").
  enum class CatchUpMode { kFiles, kRecords };
  CatchUpMode catch_up = CatchUpMode::kFiles;
};

class ClusterService {
 public:
  // Joins the cluster (ClusterNode::Start) and starts the loop. `engine` is borrowed, must
  // outlive the service, and holds the shards placed on this node.
  static Result<std::unique_ptr<ClusterService>> Start(const NodeOptions& node, Engine& engine,
                                                       const ServiceOptions& options = {});
  ~ClusterService();
  ClusterService(const ClusterService&) = delete;
  ClusterService& operator=(const ClusterService&) = delete;

  ClusterNode& node() { return *node_; }
  // Applies the shard requests of other nodes (catch_up.h); the request hook uses it.
  ShardGate& gate() { return gate_; }
  // Serves this node's shard files to catching-up peers (shard_copy.h); the hook uses it.
  ShardCopies& copies() { return copies_; }
  // The placement of `collection` as this node last saw it; NotFound when there is none yet.
  Result<Placement> PlacementOf(const std::string& collection) const;

 private:
  ClusterService(std::unique_ptr<ClusterNode> node, Engine& engine, const ServiceOptions& options);
  void Run();
  void Wake();
  // The leader's part: place new collections, update in-sync sets.
  void ReconcileAsLeader();
  // The replica's part: make local shards, write reports, start catch-ups.
  void ReconcileReplicas(bool refresh_figures);
  // The leader's part of a drop: the placements whose collection record is gone.
  void DeleteDroppedPlacements(const EtcdCompare& fence);
  // The replica's part of a drop: the shards held_ whose record and placement are gone.
  void DropDroppedShards();
  // Catches up one shard from an in-sync peer (on catchup_thread_).
  void RunCatchUp(ShardAddress address, std::string peer);
  // The advertised address of a registered node.
  std::optional<std::string> AddressOf(const std::string& node) const;

  std::unique_ptr<ClusterNode> node_;
  Engine& engine_;
  const ServiceOptions options_;
  std::unique_ptr<PrefixMirror> collections_;
  std::unique_ptr<PrefixMirror> placement_;
  std::unique_ptr<PrefixMirror> reports_;
  ShardGate gate_;
  ShardCopies copies_;

  // The loop thread's own state.
  std::map<std::string, std::string> reported_;  // report key -> "lease:json" last written
  std::map<std::string, std::string> place_failures_;  // collection -> last error logged
  // The leader's: since when it has seen each (collection, shard) short of live replicas
  // (the grace period of re-replication starts again on a new leader).
  std::map<std::pair<std::string, uint32_t>, std::chrono::steady_clock::time_point> short_since_;
  // Shard collections this node holds that the placement does not give it (logged once).
  std::map<std::string, uint64_t> stale_logged_;
  // The shard collections this node made or found for a placement since it started:
  // local name -> (collection, shard). Only these are dropped with their collection.
  std::map<std::string, std::pair<std::string, uint32_t>> held_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;   // guarded by mu_
  bool dirty_ = false;  // guarded by mu_
  // Catch-ups: local shard -> the epoch of the catch-up this incarnation finished; the one
  // running, if any (one at a time, on catchup_thread_).
  std::map<std::string, uint64_t> caught_up_;  // guarded by mu_
  bool catchup_running_ = false;               // guarded by mu_
  bool force_report_ = false;                  // guarded by mu_
  std::thread catchup_thread_;                 // started and joined by the loop thread
  std::thread thread_;
};

}  // namespace strata::cluster
