// Collection: records by string key (api/types.h has the rule; collection.h the
// model). Keys live with their rows -- in the in-memory segment's rows and key map,
// in a sealed segment's KEYS sections -- so that a lookup reads one snapshot like a
// lookup by id, and sees a batch entirely or not at all.

#include <algorithm>
#include <optional>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "engine/collection.h"

namespace strata::engine {

namespace {

constexpr size_t kMaxKeyPage = 100000;

}  // namespace

Collection::Location Collection::LocateId(const Snapshot& s, VectorId id) const {
  if (auto r = s.memory->RowAt(id, s.memory_rows, s.sequence)) return {s.memory.get(), nullptr, *r};
  if (s.frozen) {
    if (auto r = s.frozen->RowAt(id, s.frozen_rows, s.sequence)) return {s.frozen.get(), nullptr, *r};
  }
  for (auto it = s.sealed.rbegin(); it != s.sealed.rend(); ++it) {
    auto row = it->segment->Find(id);
    if (row && !(it->deletes && it->deletes->rows.Test(uint32_t(*row)))) {
      return {nullptr, it->segment.get(), uint32_t(*row)};
    }
  }
  return {};
}

Collection::Location Collection::LocateKey(const Snapshot& s, std::string_view key) const {
  if (auto r = s.memory->RowAtKey(key, s.memory_rows, s.sequence)) return {s.memory.get(), nullptr, *r};
  if (s.frozen) {
    if (auto r = s.frozen->RowAtKey(key, s.frozen_rows, s.sequence)) return {s.frozen.get(), nullptr, *r};
  }
  for (auto it = s.sealed.rbegin(); it != s.sealed.rend(); ++it) {
    auto row = it->segment->FindKey(key);
    if (row && !(it->deletes && it->deletes->rows.Test(uint32_t(*row)))) {
      return {nullptr, it->segment.get(), uint32_t(*row)};
    }
  }
  return {};
}

Result<Record> Collection::ReadAt(const Location& at) const {
  if (at.sealed) return at.sealed->Read(at.row);
  const MemorySegment& m = *at.memory;
  const float* v = m.vector(at.row);
  return Record{m.id(at.row), std::vector<float>(v, v + spec_.dim), m.attributes(at.row), m.key(at.row)};
}

Result<std::vector<VectorId>> Collection::ResolveKeys(const WriteBatch& batch) {
  const std::shared_ptr<const Snapshot> s = snapshot();  // the writer's: every earlier batch is in it
  std::vector<VectorId> ids(batch.size(), kInvalidVectorId);
  // What this batch did so far: key -> id (kInvalidVectorId: deleted), keyed ids that
  // went (deleted by id, or with their key), and the ids it gave keys.
  std::unordered_map<std::string_view, VectorId> keys;
  std::unordered_set<VectorId> deleted;
  std::unordered_map<VectorId, std::string_view> owners;
  // The keyed-id counter as this batch leaves it; kept only when the batch is resolved.
  uint64_t next_key_id = next_key_id_;
  for (size_t i = 0; i < batch.size(); ++i) {
    const WriteOp& op = batch.ops()[i];
    if (!op.by_key()) {
      ids[i] = op.id;
      if (op.kind == WriteOp::Kind::kDelete && IsKeyedId(op.id)) {
        deleted.insert(op.id);
        owners.erase(op.id);
      }
      continue;
    }
    VectorId current = kInvalidVectorId;
    if (auto it = keys.find(op.key); it != keys.end()) {
      current = it->second;
    } else if (const Location at = LocateKey(*s, op.key)) {
      current = at.memory ? at.memory->id(at.row) : at.sealed->ids()[at.row];
    }
    if (current != kInvalidVectorId && deleted.count(current)) current = kInvalidVectorId;
    // The snapshot's id of this key went to another key earlier in the batch (it was
    // deleted, then given again with UpsertByKeyWithId): this key no longer has it.
    if (auto o = owners.find(current); current != kInvalidVectorId && o != owners.end() && o->second != op.key) {
      current = kInvalidVectorId;
    }
    if (op.kind == WriteOp::Kind::kUpsert) {
      if (op.id != kInvalidVectorId) {
        // UpsertByKeyWithId: the key's id is given; the key and the id must agree with
        // what is live (ValidateBatch checked the id is in the keyed range).
        if (current != kInvalidVectorId && current != op.id) {
          return Error(AlreadyExists(
              "operation {}: key '{}' is live under id {} in collection '{}', not under the id {} given",
              i, KeyForMessage(op.key), current, spec_.name, op.id));
        }
        if (current == kInvalidVectorId) {
          std::optional<std::string> holder;  // the key holding op.id ("" : written by id)
          if (auto o = owners.find(op.id); o != owners.end()) {
            holder = std::string(o->second);
          } else if (!deleted.count(op.id)) {
            if (const Location at = LocateId(*s, op.id)) {
              holder = std::string(at.memory ? at.memory->key(at.row) : at.sealed->key(at.row));
            }
          }
          if (holder) {
            return Error(AlreadyExists(
                "operation {}: id {} is live in collection '{}' under {}, not under key '{}'", i, op.id,
                spec_.name, holder->empty() ? std::string("no key") : fmt::format("key '{}'", KeyForMessage(*holder)),
                KeyForMessage(op.key)));
          }
        }
        current = op.id;
        // Fresh ids given later (in this batch too) come after it.
        next_key_id = std::max(next_key_id, op.id + 1);
      } else if (current == kInvalidVectorId) {
        if (next_key_id >= kInvalidVectorId) {
          return Error(ResourceExhausted("collection '{}': every id of the keyed range has been given out", spec_.name));
        }
        current = next_key_id++;
      }
      deleted.erase(current);
      keys[op.key] = current;
      owners[current] = op.key;
      ids[i] = current;
    } else {
      ids[i] = current;  // kInvalidVectorId when absent: a no-op
      keys[op.key] = kInvalidVectorId;
      if (current != kInvalidVectorId) {
        deleted.insert(current);
        owners.erase(current);
      }
    }
  }
  next_key_id_ = next_key_id;
  return ids;
}

Result<Record> Collection::GetByKey(std::string_view key) const {
  STRATA_RETURN_IF_ERROR(ValidateKey(key));
  const std::shared_ptr<const Snapshot> s = snapshot();
  if (const Location at = LocateKey(*s, key)) return ReadAt(at);
  return Error(NotFound("key '{}' is not in collection '{}'", KeyForMessage(key), spec_.name));
}

Result<VectorId> Collection::FindKey(std::string_view key) const {
  STRATA_RETURN_IF_ERROR(ValidateKey(key));
  const std::shared_ptr<const Snapshot> s = snapshot();
  if (const Location at = LocateKey(*s, key)) return at.memory ? at.memory->id(at.row) : at.sealed->ids()[at.row];
  return Error(NotFound("key '{}' is not in collection '{}'", KeyForMessage(key), spec_.name));
}

void Collection::CollectKeyed(const Snapshot& s, VectorId from, size_t count,
                              std::vector<std::pair<VectorId, std::string>>& out, bool keyed_only) const {
  if (keyed_only) from = std::max(from, kKeyedIdBase);
  auto from_memory = [&](const MemorySegment& m, uint32_t limit) {
    // Rows are in write order, not id order: every row is looked at, and only the
    // `count` smallest ids of this segment are kept.
    std::vector<std::pair<VectorId, uint32_t>> found;
    for (uint32_t r = 0; r < limit; ++r) {
      const VectorId id = m.id(r);
      if (id >= from && id != kInvalidVectorId && m.removed_at(r) > s.sequence &&
          (!keyed_only || (IsKeyedId(id) && !m.key(r).empty()))) {
        found.emplace_back(id, r);
      }
    }
    if (found.size() > count) {
      std::nth_element(found.begin(), found.begin() + ptrdiff_t(count), found.end());
      found.resize(count);
    }
    for (const auto& [id, r] : found) out.emplace_back(id, m.key(r));
  };
  from_memory(*s.memory, s.memory_rows);
  if (s.frozen) from_memory(*s.frozen, s.frozen_rows);
  for (const SealedEntry& e : s.sealed) {
    const auto ids = e.segment->ids();
    size_t taken = 0;
    for (auto it = std::lower_bound(ids.begin(), ids.end(), from); it != ids.end() && taken < count; ++it) {
      const auto r = uint32_t(it - ids.begin());
      if ((e.deletes && e.deletes->rows.Test(r)) || (keyed_only && e.segment->key(r).empty())) continue;
      out.emplace_back(*it, std::string(e.segment->key(r)));
      ++taken;
    }
  }
}

Result<KeyPage> Collection::ListKeys(uint64_t cursor, size_t count) const {
  if (count == 0 || count > kMaxKeyPage) {
    return Error(InvalidArgument("count is {}; it must be in 1..{}", count, kMaxKeyPage));
  }
  if (cursor >= kInvalidVectorId - kKeyedIdBase) {
    return Error(InvalidArgument("cursor {} is past the keyed range", cursor));
  }
  const std::shared_ptr<const Snapshot> s = snapshot();
  std::vector<std::pair<VectorId, std::string>> found;
  CollectKeyed(*s, kKeyedIdBase + cursor, count, found);
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  KeyPage page;
  const size_t n = std::min(count, found.size());
  page.keys.reserve(n);
  page.ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    page.ids.push_back(found[i].first);
    page.keys.push_back(std::move(found[i].second));
  }
  // A full page may have more after it; a short one ends the listing.
  page.next_cursor = n == count ? page.ids.back() - kKeyedIdBase + 1 : 0;
  return page;
}

Result<KeyPage> Collection::ListIds(uint64_t cursor, size_t count) const {
  if (count == 0 || count > kMaxKeyPage) {
    return Error(InvalidArgument("count is {}; it must be in 1..{}", count, kMaxKeyPage));
  }
  if (cursor >= kInvalidVectorId) return Error(InvalidArgument("cursor {} is past the ids", cursor));
  const std::shared_ptr<const Snapshot> s = snapshot();
  std::vector<std::pair<VectorId, std::string>> found;
  CollectKeyed(*s, cursor, count, found, /*keyed_only=*/false);
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  KeyPage page;
  const size_t n = std::min(count, found.size());
  page.keys.reserve(n);
  page.ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    page.ids.push_back(found[i].first);
    page.keys.push_back(std::move(found[i].second));
  }
  // A full page may have more after it; a short one ends the listing. The next cursor is the
  // id after the last one listed (0 only when the listing ends).
  page.next_cursor = n == count && page.ids.back() + 1 < kInvalidVectorId ? page.ids.back() + 1 : 0;
  return page;
}

Result<std::vector<std::string>> Collection::RandomKeys(size_t count, uint64_t seed) const {
  if (count == 0 || count > kMaxKeyPage) {
    return Error(InvalidArgument("count is {}; it must be in 1..{}", count, kMaxKeyPage));
  }
  const std::shared_ptr<const Snapshot> s = snapshot();
  // The rows that may hold keys, segment by segment: all in-memory rows, and the
  // keyed-range tail of each sealed segment (ids are sorted there).
  struct Range {
    const MemorySegment* memory = nullptr;
    const SealedEntry* sealed = nullptr;
    size_t begin = 0, end = 0;
  };
  std::vector<Range> ranges;
  size_t total = 0;
  auto add = [&](Range r) {
    if (r.end > r.begin) {
      total += r.end - r.begin;
      ranges.push_back(r);
    }
  };
  add({s->memory.get(), nullptr, 0, s->memory_rows});
  if (s->frozen) add({s->frozen.get(), nullptr, 0, s->frozen_rows});
  for (const SealedEntry& e : s->sealed) {
    const auto ids = e.segment->ids();
    add({nullptr, &e, size_t(std::lower_bound(ids.begin(), ids.end(), kKeyedIdBase) - ids.begin()), ids.size()});
  }
  std::mt19937_64 rng(seed);
  std::vector<std::string> out;
  // Probing: a random row, kept when it is live and keyed. When the rows are few or
  // mostly dead, every live key is listed and a random sample of them taken instead.
  if (total > 4 * count + 64) {
    std::unordered_set<VectorId> taken;
    const size_t probes = 16 * count + 256;
    for (size_t p = 0; p < probes && out.size() < count; ++p) {
      size_t at = size_t(rng() % total);
      const Range* r = nullptr;
      for (const Range& x : ranges) {
        if (at < x.end - x.begin) {
          r = &x;
          break;
        }
        at -= x.end - x.begin;
      }
      const auto row = uint32_t(r->begin + at);
      if (r->memory) {
        const MemorySegment& m = *r->memory;
        if (m.removed_at(row) <= s->sequence || m.key(row).empty() || !taken.insert(m.id(row)).second) continue;
        out.push_back(m.key(row));
      } else {
        const SealedEntry& e = *r->sealed;
        if ((e.deletes && e.deletes->rows.Test(row)) || e.segment->key(row).empty() ||
            !taken.insert(e.segment->ids()[row]).second) {
          continue;
        }
        out.emplace_back(e.segment->key(row));
      }
    }
    if (out.size() == count) return out;
    out.clear();
  }
  std::vector<std::pair<VectorId, std::string>> all;
  CollectKeyed(*s, kKeyedIdBase, SIZE_MAX, all);
  std::shuffle(all.begin(), all.end(), rng);
  if (all.size() > count) all.resize(count);
  for (auto& [id, key] : all) out.push_back(std::move(key));
  return out;
}

}  // namespace strata::engine
