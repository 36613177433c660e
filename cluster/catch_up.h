#pragma once
// A replica's side of the shard requests between nodes, and its catch-up (docs/CLUSTER.md,
// "Catch-up").
//
// Writes between nodes name a shard address (model.h: "<name>__s<k>@<epoch>[+]"): the
// placement epoch the shard's primary routed the write with, "+" when this replica was
// catching up in that placement. ShardGate::Write refuses a write whose epoch is older than
// the shard's write fence -- the highest write_epoch this node has seen, raised by a
// catching-up peer's first listing (Fence) -- because a router with an older view may have
// left out a replica that must have it; the router retries with its newer view. It also
// refuses a write older than one it has applied (the primary sends its writes with epochs
// that never decrease, so only a replaced primary's late write can be: docs/CLUSTER.md,
// "Writes through the primary").
//
// Catch-up of this node's copy of a shard, for the catch-up started at placement epoch E
// (ReplicaRef::since), from an in-sync peer P:
//  1. P raises its fence to E (its listing does it, waiting for the writes that passed the
//     older fence): from then on every write P applies was routed with a placement that lists
//     this replica as catching up, so it comes here too.
//  2. Every id P holds is listed and its record copied here -- unless this replica holds the
//     same key, vector and attributes already (what it kept from before a restart is not written
//     again), or a live write (routed at E or later, marked "+") has reached this id here
//     meanwhile: this replica's value for it is at least as new as the copy's. Copy batches and live writes are serialized per
//     shard, so neither overwrites a newer value with an older one.
//  3. Ids here that P did not list and that no live write reached are deleted (writes that were
//     never acknowledged, or deleted while this replica was away).
// Records written by string key are copied with their keys and ids (the peer's listing names
// both): a local record that holds the key under another id, or the id under another key (a
// write that was never acknowledged), is deleted in the same batch. A live write by key (a
// delete by key names no id) marks its key, so the copy skips it as it skips a marked id.
//
// Thread-safe: Write, Fence, Forget, OrderOf and CatchUp may run on any threads at once; CatchUp of one
// shard must not run twice at once (ClusterService runs one catch-up at a time).

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "api/types.h"
#include "client/client.h"
#include "cluster/model.h"
#include "core/status.h"
#include "engine/write_batch.h"

namespace strata {
class Engine;
}

namespace strata::cluster {

namespace detail {
// Writes records into an engine collection in batches, each as the record says: by id, or by
// key with its id -- a record that holds the key under another id, or the id under another
// key, deleted first in the same batch, which is then written at once (the batch's earlier
// records touch neither: one that does is written before the check). Thread-compatible.
class RecordWriter {
 public:
  RecordWriter(Engine& engine, std::string local) : engine_(engine), local_(std::move(local)) {}
  Status Put(const Record& r);
  Status Delete(VectorId id);
  Status DeleteKey(const std::string& key);
  Status Flush();
  // Records written so far whose key or id was held otherwise (deleted first).
  uint64_t repairs() const { return repairs_; }

 private:
  Status Full() { return batch_.size() >= kBatch ? Flush() : Status::Ok(); }
  static constexpr size_t kBatch = 256;
  Engine& engine_;
  const std::string local_;
  engine::WriteBatch batch_;
  std::unordered_set<VectorId> pending_ids_;     // what batch_ touches
  std::unordered_set<std::string> pending_keys_;
  uint64_t repairs_ = 0;
};
}  // namespace detail

struct CatchUpReport {
  // By files (CatchUpFromFiles): the files and bytes copied, the vectors the copy holds, and
  // the records written live meanwhile that were carried over into it.
  uint64_t files = 0;
  uint64_t bytes = 0;
  uint64_t vectors = 0;
  uint64_t carried = 0;
  double offer_s = 0, copy_s = 0, open_s = 0, carry_s = 0;  // the peer's copy, the transfer, the open, the rest
  // By records (CatchUp):
  uint64_t listed = 0;   // ids the peer listed
  uint64_t same = 0;     // records this replica already held as the peer does
  uint64_t copied = 0;   // records copied from the peer (missing or different here)
  uint64_t skipped = 0;  // ids a live write had reached here first
  uint64_t deleted = 0;  // ids here the peer did not hold
  uint64_t repaired = 0;  // of `copied`: keyed records whose key or id was held otherwise here
};

class ShardGate {
 public:
  explicit ShardGate(Engine& engine) : engine_(engine) {}

  // Applies a write batch (upserts and deletes by id or by key) addressed to `address` on
  // this node's engine; `ids` and `keys` are the ids and keys it touches (a keyed upsert
  // with its id names both). `view_write_epoch`: the shard's write_epoch in this node's view
  // of the placement (0 when unknown). Cancelled with "stale placement epoch" when
  // address.epoch is older than the fence. `resolved`: as Engine::Write's `ids`.
  Status Write(const ShardAddress& address, uint64_t view_write_epoch, std::span<const VectorId> ids,
               std::span<const std::string> keys, const engine::WriteBatch& batch,
               std::vector<VectorId>* resolved = nullptr);
  // Raises the write fence of engine collection `local` to `epoch`; returns once every write
  // that passed an older fence has finished.
  void Fence(const std::string& local, uint64_t epoch);
  // Drops what catch-up tracks for `local` (the replica is in sync again).
  void Forget(const std::string& local);
  // Forgets `local` altogether (its collection was dropped): what catch-up tracks, its write
  // fence and its high-water epoch (a collection created again under the name starts at a
  // higher epoch anyway: model.h, PlaceCollection).
  void Dropped(const std::string& local);
  // Copies shard `address.local` from `peer` for the catch-up started at `address.epoch`,
  // record by record (see above).
  Result<CatchUpReport> CatchUp(const ShardAddress& address, client::Client& peer);
  // The same by the peer's files (ShardCopies on the peer, docs/CLUSTER.md "Catch-up"): the
  // peer raises its fence and takes a consistent copy of the shard; its files are copied here
  // into a scratch folder of the engine and checked (size, xxh64); then, with the live "+"
  // writes held back, the records they reached here (ids and keys marked, as above) are read
  // from the local collection, the copy takes its place (Engine::ReplaceCollection), and
  // those records are written into it again (a record a live write deleted, deleted). Every
  // write the peer applied after its copy reaches this replica too, live: before the swap
  // (marked, carried over) or after it (applied to the copy). One write may be in the copy
  // and reach this replica only after the swap -- the last one the primary sent before the
  // copy (it sends the next only once every replica has applied it) -- and is applied again
  // over its own result, which changes nothing.
  Result<CatchUpReport> CatchUpFromFiles(const ShardAddress& address, client::Client& peer);
  // Makes every catch-up running or started from now on stop at its next file piece or copy
  // batch with Cancelled (the node is shutting down: a long copy must not hold it up). Live
  // writes are not affected.
  void CancelCatchUps() { cancelled_.store(true, std::memory_order_relaxed); }
  bool catch_ups_cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  // The mutex the shard's primary holds while it applies a write and passes it on to the
  // other replicas (ClusterRouter::Replicate), so that every replica applies the shard's
  // writes in one order.
  std::mutex& OrderOf(const std::string& local) { return ShardOf(local).order_mu; }

 private:
  struct Shard {
    std::mutex order_mu;         // OrderOf: held by the primary across a write's replication
    std::shared_mutex fence_mu;  // writes share it; Fence takes it alone
    uint64_t fence = 0;          // guarded by fence_mu
    // Writes apply one at a time (they come from the shard's primary one at a time anyway)
    // and never at an epoch older than one applied before: an old primary's write that
    // arrives late (it was stopped, its view lagging) cannot land after the new primary's.
    std::mutex apply_mu;         // taken inside fence_mu (shared), before touch_mu
    uint64_t high_water = 0;     // the highest epoch of a write applied; guarded by apply_mu
    std::mutex touch_mu;         // serializes live "+" writes with copy batches
    std::unordered_map<VectorId, uint64_t> touched;  // id -> epoch of its last live "+" write
    std::unordered_map<std::string, uint64_t> touched_keys;  // key -> the same, for keyed writes
    // id -> (epoch, key) of the last live "+" write naming it that this replica refused (a
    // keyed write whose key its old data held under another id, or any write its engine
    // failed), and key -> epoch for a refused delete by key: guarded by touch_mu too. Their
    // records are read from the peer again at the end of a catch-up (CarryRefused).
    std::unordered_map<VectorId, std::pair<uint64_t, std::string>> refused;
    std::unordered_map<std::string, uint64_t> refused_keys;
  };
  Shard& ShardOf(const std::string& local);
  // Drops the marks of live writes older than a catch-up started at `since`.
  static void ForgetOlderThan(Shard& shard, uint64_t since);
  // With touch_mu held: writes into the local collection the peer's record now (or none) of
  // every id and key that a live write of the catch-up at `since` named and this replica
  // refused, and forgets those marks. Returns how many ids and keys it wrote.
  Result<uint64_t> CarryRefused(Shard& shard, const ShardAddress& address, const std::string& remote,
                                client::Client& peer);

  Status CancelledIfStopping(const std::string& local) const;

  Engine& engine_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Shard>> shards_;  // guarded by mu_ (entries live on)
};

}  // namespace strata::cluster
