#include "cluster/catch_up.h"

#include <algorithm>
#include <unordered_set>

#include "engine/strata.h"

namespace strata::cluster {

namespace {
constexpr uint32_t kListPage = 10000;
constexpr size_t kCopyBatch = 256;
}  // namespace

ShardGate::Shard& ShardGate::ShardOf(const std::string& local) {
  std::lock_guard lock(mu_);
  auto& s = shards_[local];
  if (!s) s = std::make_unique<Shard>();
  return *s;
}

Status ShardGate::Write(const ShardAddress& address, uint64_t view_write_epoch,
                        std::span<const VectorId> ids, const engine::WriteBatch& batch) {
  Shard& shard = ShardOf(address.local);
  std::shared_lock fence(shard.fence_mu);
  const uint64_t need = std::max(shard.fence, view_write_epoch);
  if (address.epoch < need) {
    return Cancelled("stale placement epoch {} for {}: this replica takes writes routed at epoch "
                     "{} or later (a replica joined the shard; retry with the newer placement)",
                     address.epoch, address.local, need);
  }
  if (!address.catching_up) return engine_.Write(address.local, batch);
  std::lock_guard touch(shard.touch_mu);
  for (VectorId id : ids) {
    uint64_t& e = shard.touched[id];
    e = std::max(e, address.epoch);
  }
  return engine_.Write(address.local, batch);
}

void ShardGate::Fence(const std::string& local, uint64_t epoch) {
  Shard& shard = ShardOf(local);
  std::unique_lock fence(shard.fence_mu);
  shard.fence = std::max(shard.fence, epoch);
}

void ShardGate::Forget(const std::string& local) {
  Shard& shard = ShardOf(local);
  std::lock_guard touch(shard.touch_mu);
  if (!shard.touched.empty()) shard.touched = {};
}

Result<CatchUpReport> ShardGate::CatchUp(const ShardAddress& address, client::Client& peer) {
  Shard& shard = ShardOf(address.local);
  const uint64_t since = address.epoch;
  {
    // Live writes of earlier catch-ups say nothing about this one.
    std::lock_guard touch(shard.touch_mu);
    std::erase_if(shard.touched, [&](const auto& kv) { return kv.second < since; });
  }
  STRATA_ASSIGN_OR_RETURN(CollectionInfo info, engine_.DescribeCollection(address.local));
  const uint32_t dim = info.spec.dim;
  const std::string remote = ShardAddress{address.local, address.collection, address.shard, since, false}.ToString();
  CatchUpReport report;
  std::unordered_set<VectorId> theirs;
  uint64_t cursor = 0;
  do {
    // The first page raises the peer's fence to `since` (and waits out older writes there).
    STRATA_ASSIGN_OR_RETURN(KeyPage page, peer.ListKeys(remote, cursor, kListPage));
    cursor = page.next_cursor;
    report.listed += page.ids.size();
    for (size_t from = 0; from < page.ids.size(); from += kCopyBatch) {
      std::vector<VectorId> ids;
      for (size_t i = from; i < std::min(page.ids.size(), from + kCopyBatch); ++i) {
        theirs.insert(page.ids[i]);
        if (!IsKeyedId(page.ids[i])) ids.push_back(page.ids[i]);
      }
      if (ids.empty()) continue;
      STRATA_ASSIGN_OR_RETURN(auto records, peer.Get(remote, ids));
      std::lock_guard touch(shard.touch_mu);
      engine::WriteBatch batch;
      for (const auto& r : records) {
        if (!r) continue;  // deleted there since it was listed (a live write says so here too)
        if (auto t = shard.touched.find(r->id); t != shard.touched.end() && t->second >= since) {
          ++report.skipped;
          continue;
        }
        if (r->vector.size() != dim) {
          return Error(Corruption("catch-up of {}: the peer's record {} has {} components, not {}",
                                  address.local, r->id, r->vector.size(), dim));
        }
        // What this replica kept from before (a restart) is not written again.
        if (auto mine = engine_.Get(address.local, r->id);
            mine && mine->vector == r->vector && mine->attributes == r->attributes) {
          ++report.same;
          continue;
        }
        batch.Upsert(r->id, r->vector, r->attributes);
        ++report.copied;
      }
      if (batch.size() > 0) STRATA_RETURN_IF_ERROR(engine_.Write(address.local, batch));
    }
  } while (cursor != 0);
  // What this replica holds that the peer did not list.
  std::vector<VectorId> extra;
  cursor = 0;
  do {
    STRATA_ASSIGN_OR_RETURN(KeyPage page, engine_.ListIds(address.local, cursor, kListPage));
    cursor = page.next_cursor;
    for (VectorId id : page.ids) {
      if (!IsKeyedId(id) && !theirs.contains(id)) extra.push_back(id);
    }
  } while (cursor != 0);
  for (size_t from = 0; from < extra.size(); from += kCopyBatch) {
    std::lock_guard touch(shard.touch_mu);
    engine::WriteBatch batch;
    for (size_t i = from; i < std::min(extra.size(), from + kCopyBatch); ++i) {
      if (auto t = shard.touched.find(extra[i]); t != shard.touched.end() && t->second >= since) continue;
      batch.Delete(extra[i]);
      ++report.deleted;
    }
    if (batch.size() > 0) STRATA_RETURN_IF_ERROR(engine_.Write(address.local, batch));
  }
  return report;
}

}  // namespace strata::cluster
