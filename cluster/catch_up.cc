#include "cluster/catch_up.h"

#include <algorithm>
#include <cstring>
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

Status ShardGate::CancelledIfStopping(const std::string& local) const {
  if (!catch_ups_cancelled()) return Status::Ok();
  return Cancelled("catch-up of {}: stopped (the node is shutting down)", local);
}

void ShardGate::ForgetOlderThan(Shard& shard, uint64_t since) {
  // Live writes of earlier catch-ups say nothing about this one.
  std::lock_guard touch(shard.touch_mu);
  std::erase_if(shard.touched, [&](const auto& kv) { return kv.second < since; });
  std::erase_if(shard.touched_keys, [&](const auto& kv) { return kv.second < since; });
  std::erase_if(shard.refused, [&](const auto& kv) { return kv.second.first < since; });
  std::erase_if(shard.refused_keys, [&](const auto& kv) { return kv.second < since; });
}

namespace detail {

Status RecordWriter::Flush() {
  pending_ids_.clear();
  pending_keys_.clear();
  if (batch_.size() == 0) return Status::Ok();
  Status s = engine_.Write(local_, batch_);
  batch_ = engine::WriteBatch();
  return s;
}

Status RecordWriter::Delete(VectorId id) {
  batch_.Delete(id);
  pending_ids_.insert(id);
  return Full();
}

Status RecordWriter::DeleteKey(const std::string& key) {
  // Which id it deletes depends on what the batch wrote before it.
  if (pending_keys_.contains(key)) STRATA_RETURN_IF_ERROR(Flush());
  batch_.DeleteByKey(key);
  pending_keys_.insert(key);
  return Full();
}

Status RecordWriter::Put(const Record& r) {
  if (r.key.empty()) {
    batch_.Upsert(r.id, r.vector, r.attributes);
    pending_ids_.insert(r.id);
    return Full();
  }
  // The key and id are checked against what is written: the batch first when it touches
  // either of them.
  if (pending_ids_.contains(r.id) || pending_keys_.contains(r.key)) STRATA_RETURN_IF_ERROR(Flush());
  pending_ids_.insert(r.id);
  pending_keys_.insert(r.key);
  auto held = engine_.FindKey(local_, r.key);
  auto there = engine_.Get(local_, r.id);
  const bool key_elsewhere = held && *held != r.id;
  const bool id_elsewhere = there && there->key != r.key;
  if (key_elsewhere) batch_.Delete(*held);
  if (id_elsewhere) batch_.Delete(r.id);
  batch_.UpsertByKeyWithId(r.key, r.id, r.vector, r.attributes);
  if (!key_elsewhere && !id_elsewhere) return Full();
  ++repairs_;
  return Flush();
}

}  // namespace detail

Result<uint64_t> ShardGate::CarryRefused(Shard& shard, const ShardAddress& address, const std::string& remote,
                                         client::Client& peer) {
  const uint64_t since = address.epoch;
  std::vector<std::pair<VectorId, std::string>> ids;  // (id, key: empty for one by id)
  std::vector<std::string> keys;
  for (const auto& [id, mark] : shard.refused) {
    if (mark.first >= since) ids.push_back({id, mark.second});
  }
  for (const auto& [key, epoch] : shard.refused_keys) {
    if (epoch >= since) keys.push_back(key);
  }
  detail::RecordWriter out(engine_, address.local);
  constexpr size_t kPage = 256;
  for (size_t from = 0; from < ids.size(); from += kPage) {
    std::vector<VectorId> page;
    for (size_t i = from; i < std::min(ids.size(), from + kPage); ++i) page.push_back(ids[i].first);
    STRATA_ASSIGN_OR_RETURN(auto records, peer.Get(remote, page));
    if (records.size() != page.size()) {
      return Error(IOError("catch-up of {}: the peer answered {} records for {} ids", address.local,
                           records.size(), page.size()));
    }
    for (size_t i = 0; i < page.size(); ++i) {
      if (!records[i]) {
        STRATA_RETURN_IF_ERROR(out.Delete(page[i]));
        continue;
      }
      records[i]->key = ids[from + i].second;  // a get between nodes carries no key
      STRATA_RETURN_IF_ERROR(out.Put(*records[i]));
    }
  }
  for (size_t from = 0; from < keys.size(); from += kPage) {
    const std::vector<std::string> page(keys.begin() + from, keys.begin() + std::min(keys.size(), from + kPage));
    STRATA_ASSIGN_OR_RETURN(auto records, peer.GetKeyed(remote, page));
    if (records.size() != page.size()) {
      return Error(IOError("catch-up of {}: the peer answered {} records for {} keys", address.local,
                           records.size(), page.size()));
    }
    for (size_t i = 0; i < page.size(); ++i) {
      STRATA_RETURN_IF_ERROR(records[i] ? out.Put(*records[i]) : out.DeleteKey(page[i]));
    }
  }
  STRATA_RETURN_IF_ERROR(out.Flush());
  shard.refused = {};
  shard.refused_keys = {};
  return uint64_t(ids.size() + keys.size());
}

Status ShardGate::Write(const ShardAddress& address, uint64_t view_write_epoch,
                        std::span<const VectorId> ids, std::span<const std::string> keys,
                        const engine::WriteBatch& batch, std::vector<VectorId>* resolved) {
  Shard& shard = ShardOf(address.local);
  std::shared_lock fence(shard.fence_mu);
  std::lock_guard apply(shard.apply_mu);
  const uint64_t need = std::max({shard.fence, view_write_epoch, shard.high_water});
  if (address.epoch < need) {
    return Cancelled("stale placement epoch {} for {}: this replica takes writes routed at epoch "
                     "{} or later (a replica joined the shard, or another primary took over; "
                     "retry with the newer placement)",
                     address.epoch, address.local, need);
  }
  if (!address.catching_up) {
    STRATA_RETURN_IF_ERROR(engine_.Write(address.local, batch, resolved));
    shard.high_water = std::max(shard.high_water, address.epoch);
    return Status::Ok();
  }
  std::lock_guard touch(shard.touch_mu);
  // Marked only once applied: a live write refused here (a keyed one whose key this replica
  // still holds under an older id) must not keep the copy from repairing that key. Its ids are
  // kept apart: a copy by files swaps in the peer's state from before such a write, so it
  // reads their records from the peer once more after the swap (CatchUpFromFiles).
  if (Status s = engine_.Write(address.local, batch, resolved); !s.ok()) {
    for (const engine::WriteOp& op : batch.ops()) {
      if (op.id == kInvalidVectorId) {  // a delete by key
        uint64_t& e = shard.refused_keys[op.key];
        e = std::max(e, address.epoch);
        continue;
      }
      auto& [epoch, key] = shard.refused[op.id];
      epoch = std::max(epoch, address.epoch);
      // A keyed id's key never changes (the wire's get does not carry it).
      if (!op.key.empty()) key = op.key;
    }
    return s;
  }
  shard.high_water = std::max(shard.high_water, address.epoch);
  for (VectorId id : ids) {
    uint64_t& e = shard.touched[id];
    e = std::max(e, address.epoch);
  }
  for (const std::string& key : keys) {
    uint64_t& e = shard.touched_keys[key];
    e = std::max(e, address.epoch);
  }
  return Status::Ok();
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
  if (!shard.touched_keys.empty()) shard.touched_keys = {};
  if (!shard.refused.empty()) shard.refused = {};
  if (!shard.refused_keys.empty()) shard.refused_keys = {};
}

void ShardGate::Dropped(const std::string& local) {
  Forget(local);
  Shard& shard = ShardOf(local);
  std::unique_lock fence(shard.fence_mu);
  shard.fence = 0;
  std::lock_guard apply(shard.apply_mu);
  shard.high_water = 0;
}

Result<CatchUpReport> ShardGate::CatchUp(const ShardAddress& address, client::Client& peer) {
  Shard& shard = ShardOf(address.local);
  const uint64_t since = address.epoch;
  ForgetOlderThan(shard, since);
  STRATA_ASSIGN_OR_RETURN(CollectionInfo info, engine_.DescribeCollection(address.local));
  const uint32_t dim = info.spec.dim;
  const std::string remote = ShardAddress{address.local, address.collection, address.shard, since, false}.ToString();
  CatchUpReport report;
  std::unordered_set<VectorId> theirs;
  uint64_t cursor = 0;
  do {
    // The first page raises the peer's fence to `since` (and waits out older writes there).
    STRATA_RETURN_IF_ERROR(CancelledIfStopping(address.local));
    STRATA_ASSIGN_OR_RETURN(KeyPage page, peer.ListKeys(remote, cursor, kListPage));
    cursor = page.next_cursor;
    report.listed += page.ids.size();
    for (size_t from = 0; from < page.ids.size(); from += kCopyBatch) {
      std::vector<VectorId> ids;
      std::vector<std::string> keys;  // parallel to ids: the listing's key (empty: by id)
      for (size_t i = from; i < std::min(page.ids.size(), from + kCopyBatch); ++i) {
        theirs.insert(page.ids[i]);
        // A keyed-range id without a key (upserted by id by an old log) cannot be written
        // by id here; such records are left as they are.
        if (IsKeyedId(page.ids[i]) && page.keys[i].empty()) continue;
        ids.push_back(page.ids[i]);
        keys.push_back(page.keys[i]);
      }
      if (ids.empty()) continue;
      STRATA_RETURN_IF_ERROR(CancelledIfStopping(address.local));
      STRATA_ASSIGN_OR_RETURN(auto records, peer.Get(remote, ids));
      if (records.size() != ids.size()) {
        return Error(IOError("catch-up of {}: the peer answered {} records for {} ids", address.local,
                             records.size(), ids.size()));
      }
      std::lock_guard touch(shard.touch_mu);
      detail::RecordWriter out(engine_, address.local);
      for (size_t j = 0; j < records.size(); ++j) {
        auto& r = records[j];
        const std::string& key = keys[j];
        if (!r) continue;  // deleted there since it was listed (a live write says so here too)
        if (auto t = shard.touched.find(r->id); t != shard.touched.end() && t->second >= since) {
          ++report.skipped;
          continue;
        }
        if (auto t = shard.touched_keys.find(key); !key.empty() && t != shard.touched_keys.end() && t->second >= since) {
          ++report.skipped;
          continue;
        }
        if (r->vector.size() != dim) {
          return Error(Corruption("catch-up of {}: the peer's record {} has {} components, not {}",
                                  address.local, r->id, r->vector.size(), dim));
        }
        // What this replica kept from before (a restart) is not written again.
        auto mine = engine_.Get(address.local, r->id);
        // Bit for bit (-0.0 is not +0.0).
        const bool same_vector = mine && mine->vector.size() == r->vector.size() &&
                                 std::memcmp(mine->vector.data(), r->vector.data(),
                                             r->vector.size() * sizeof(float)) == 0;
        if (mine && mine->key == key && same_vector && mine->attributes == r->attributes) {
          ++report.same;
          continue;
        }
        ++report.copied;
        // By id, or by key with the peer's id (the listing's key: a get between nodes carries
        // none). A local record holding the key under another id, or the id under another key,
        // was never acknowledged (the in-sync peer would hold it): RecordWriter deletes it first.
        r->key = key;
        STRATA_RETURN_IF_ERROR(out.Put(*r));
      }
      STRATA_RETURN_IF_ERROR(out.Flush());
      report.repaired += out.repairs();
    }
  } while (cursor != 0);
  // What this replica holds that the peer did not list.
  std::vector<std::pair<VectorId, std::string>> extra;  // (id, key)
  cursor = 0;
  do {
    STRATA_ASSIGN_OR_RETURN(KeyPage page, engine_.ListIds(address.local, cursor, kListPage));
    cursor = page.next_cursor;
    for (size_t i = 0; i < page.ids.size(); ++i) {
      const VectorId id = page.ids[i];
      if (theirs.contains(id) || (IsKeyedId(id) && page.keys[i].empty())) continue;
      extra.push_back({id, std::move(page.keys[i])});
    }
  } while (cursor != 0);
  for (size_t from = 0; from < extra.size(); from += kCopyBatch) {
    std::lock_guard touch(shard.touch_mu);
    engine::WriteBatch batch;
    for (size_t i = from; i < std::min(extra.size(), from + kCopyBatch); ++i) {
      const auto& [id, key] = extra[i];
      if (auto t = shard.touched.find(id); t != shard.touched.end() && t->second >= since) continue;
      if (auto t = shard.touched_keys.find(key); !key.empty() && t != shard.touched_keys.end() && t->second >= since) {
        continue;  // a live write by key reached it
      }
      batch.Delete(id);
      ++report.deleted;
    }
    if (batch.size() > 0) STRATA_RETURN_IF_ERROR(engine_.Write(address.local, batch));
  }
  {
    // A live keyed write this replica refused after the listing passed its id (its old data
    // held the key under another id, which the pass above then deleted) is read from the peer.
    std::lock_guard touch(shard.touch_mu);
    STRATA_ASSIGN_OR_RETURN(const uint64_t refused, CarryRefused(shard, address, remote, peer));
    report.copied += refused;
  }
  return report;
}

}  // namespace strata::cluster
