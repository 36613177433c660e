// Messages for records by string key (api/types.h has the rule): delete_keyed and get_keyed (keys),
// the keyed get reply (full records with their keys), the keyed search reply (hits with
// keys) and list_keys. upsert_keyed (each record with its key instead of an id) is
// record_messages.cc's WriteUpsert / ReadUpsert with `keyed`. Keys travel as strings (u32 length + bytes, any bytes); their
// rules (1..kMaxKeyBytes bytes) are the engine's to check.

#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/messages.h"

namespace strata::protocol::wire {

namespace {

Result<std::string> ReadKey(Reader& r, const DecodeLimits& limits) { return r.String("key", limits.max_string); }

}  // namespace

void WriteKeys(Writer& w, const KeysRequest& m) {
  w.String(m.collection);
  w.Count(m.keys.size());
  for (const std::string& k : m.keys) w.String(k);
}

Result<KeysRequest> ReadKeys(Reader& r, const DecodeLimits& limits) {
  KeysRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", kMinStringBytes));
  m.keys.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto key = ReadKey(r, limits);
    if (!key) return Error(key.error().WithContext(fmt::format("key {}", i)));
    m.keys.push_back(std::move(*key));
  }
  return m;
}

void WriteKeyedGetReply(Writer& w, const GetReply& m) {
  w.Count(m.records.size());
  for (const std::optional<Record>& rec : m.records) {
    w.Bool(rec.has_value());
    if (!rec) continue;
    w.U64(rec->id);
    w.String(rec->key);
    w.Count(rec->vector.size());
    w.Floats(rec->vector);
    WriteAttributes(w, rec->attributes);
  }
}

Result<GetReply> ReadKeyedGetReply(Reader& r, const DecodeLimits& limits) {
  GetReply m;
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", 1));
  m.records.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto read = [&]() -> Result<std::optional<Record>> {
      STRATA_ASSIGN_OR_RETURN(bool found, r.Bool("found"));
      if (!found) return std::optional<Record>();
      Record rec;
      STRATA_ASSIGN_OR_RETURN(rec.id, r.U64("id"));
      STRATA_ASSIGN_OR_RETURN(rec.key, ReadKey(r, limits));
      STRATA_ASSIGN_OR_RETURN(uint32_t dim, r.U32("dim"));
      if (dim > limits.max_dim) return Error(OverLimit("dim", "", dim, limits.max_dim, "max_dim"));
      STRATA_RETURN_IF_ERROR(r.Floats("vector", dim, rec.vector));
      STRATA_ASSIGN_OR_RETURN(rec.attributes, ReadAttributes(r, limits));
      return std::optional<Record>(std::move(rec));
    };
    auto rec = read();
    if (!rec) return Error(rec.error().WithContext(fmt::format("record {}", i)));
    m.records.push_back(std::move(*rec));
  }
  return m;
}

void WriteKeyedSearchReply(Writer& w, const KeyedSearchReply& m) {
  w.Count(m.results.size());
  for (const std::vector<KeyedNeighbor>& list : m.results) {
    w.Count(list.size());
    for (const KeyedNeighbor& n : list) {
      w.U64(n.id);
      w.Fixed(n.distance);
      w.String(n.key);
    }
  }
}

Result<KeyedSearchReply> ReadKeyedSearchReply(Reader& r, const DecodeLimits& limits) {
  constexpr uint32_t kAnyLength = std::numeric_limits<uint32_t>::max();
  KeyedSearchReply m;
  STRATA_ASSIGN_OR_RETURN(uint32_t q, r.Count("query count", limits.max_batch, "max_batch", 4));
  m.results.reserve(q);
  for (uint32_t i = 0; i < q; ++i) {
    auto list = [&]() -> Result<std::vector<KeyedNeighbor>> {
      // id, distance and a key's length at least, per hit; bounded by the payload only.
      STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("neighbor count", kAnyLength, "", 8 + 4 + kMinStringBytes));
      std::vector<KeyedNeighbor> out(n);
      for (KeyedNeighbor& nb : out) {
        STRATA_ASSIGN_OR_RETURN(nb.id, r.U64("id"));
        STRATA_ASSIGN_OR_RETURN(nb.distance, r.F32("distance"));
        STRATA_ASSIGN_OR_RETURN(nb.key, ReadKey(r, limits));
      }
      return out;
    }();
    if (!list) return Error(list.error().WithContext(fmt::format("result {}", i)));
    m.results.push_back(std::move(*list));
  }
  return m;
}

void WriteListKeys(Writer& w, const ListKeysRequest& m) {
  w.String(m.collection);
  w.U64(m.cursor);
  w.U32(m.count);
}

Result<ListKeysRequest> ReadListKeys(Reader& r, const DecodeLimits& limits) {
  ListKeysRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.cursor, r.U64("cursor"));
  STRATA_ASSIGN_OR_RETURN(m.count, r.U32("count"));
  if (m.count > limits.max_batch) return Error(OverLimit("count", "", m.count, limits.max_batch, "max_batch"));
  return m;
}

void WriteUpsertKeyedIds(Writer& w, const UpsertRequest& m) {
  w.String(m.collection);
  w.U32(m.dim);
  w.Count(m.records.size());
  for (const Record& rec : m.records) {
    STRATA_CHECK(rec.vector.size() == m.dim);
    w.U64(rec.id);
    w.String(rec.key);
    w.Floats(rec.vector);
    WriteAttributes(w, rec.attributes);
  }
}

Result<UpsertRequest> ReadUpsertKeyedIds(Reader& r, const DecodeLimits& limits) {
  UpsertRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.dim, r.U32("dim"));
  if (m.dim > limits.max_dim) return Error(OverLimit("dim", "", m.dim, limits.max_dim, "max_dim"));
  // id + key length + dim floats + attribute count, per record.
  const uint64_t min_record = 8 + kMinStringBytes + uint64_t{m.dim} * sizeof(float) + 2;
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", min_record));
  m.records.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto fail = [i](const Status& s) { return Error(s.WithContext(fmt::format("record {}", i))); };
    Record rec;
    auto id = r.U64("id");
    if (!id) return fail(id.error());
    rec.id = *id;
    auto key = ReadKey(r, limits);
    if (!key) return fail(key.error());
    rec.key = std::move(*key);
    if (Status s = r.Floats("vector", m.dim, rec.vector); !s.ok()) return fail(s);
    auto attributes = ReadAttributes(r, limits);
    if (!attributes) return fail(attributes.error());
    rec.attributes = std::move(*attributes);
    m.records.push_back(std::move(rec));
  }
  return m;
}

void WriteIdsReply(Writer& w, const IdsReply& m) {
  w.Count(m.ids.size());
  for (VectorId id : m.ids) w.U64(id);
}

Result<IdsReply> ReadIdsReply(Reader& r, const DecodeLimits& limits) {
  IdsReply m;
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", 8));
  m.ids.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    STRATA_ASSIGN_OR_RETURN(VectorId id, r.U64("id"));
    m.ids.push_back(id);
  }
  return m;
}

void WriteListKeysReply(Writer& w, const ListKeysReply& m) {
  STRATA_CHECK(m.page.keys.size() == m.page.ids.size());
  w.U64(m.page.next_cursor);
  w.Count(m.page.keys.size());
  for (size_t i = 0; i < m.page.keys.size(); ++i) {
    w.U64(m.page.ids[i]);
    w.String(m.page.keys[i]);
  }
}

Result<ListKeysReply> ReadListKeysReply(Reader& r, const DecodeLimits& limits) {
  ListKeysReply m;
  STRATA_ASSIGN_OR_RETURN(m.page.next_cursor, r.U64("next_cursor"));
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", 8 + kMinStringBytes));
  m.page.keys.reserve(n);
  m.page.ids.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto id = r.U64("id");
    if (!id) return Error(id.error().WithContext(fmt::format("key {}", i)));
    auto key = ReadKey(r, limits);
    if (!key) return Error(key.error().WithContext(fmt::format("key {}", i)));
    m.page.ids.push_back(*id);
    m.page.keys.push_back(std::move(*key));
  }
  return m;
}

}  // namespace strata::protocol::wire
