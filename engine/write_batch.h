#pragma once
// WriteBatch: upserts and deletes applied together. A batch is the unit of
// atomicity and durability: it is one WAL record, so after a crash it is either
// all there or not at all, and in the default durability mode it is acknowledged
// only once that record is on disk.
//
// Within a batch, operations apply in order (an upsert then a delete of the same
// id leaves it deleted); operations by key and by id may be mixed (api/types.h
// states the rule for keys).
//
// Value type; thread-compatible.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "api/types.h"
#include "core/element.h"
#include "core/status.h"
#include "core/types.h"
#include "engine/attributes.h"

namespace strata::engine {

struct WriteOp {
  enum class Kind : uint8_t { kUpsert = 1, kDelete = 2 };
  Kind kind = Kind::kUpsert;
  // By id: the record's id. By key: kInvalidVectorId as the caller wrote it; in a
  // batch read back from the log, the id the engine resolved the key to
  // (kInvalidVectorId for a delete of a key that was absent: a no-op).
  VectorId id = 0;
  std::vector<float> vector;  // upserts only
  Attributes attributes;      // upserts only
  std::string key;            // by key: the key (api/types.h has the rule)
  bool keyed = false;         // by key (an empty key too, which validation refuses)
  // Upserts: the element type the row arrived in (UpsertRow); `vector` holds it widened, and
  // the log stores it back in this type (kTypedBatchRecord), a quarter or half the bytes.
  ElementType element = ElementType::kFloat32;
  bool by_key() const { return keyed; }
  friend bool operator==(const WriteOp&, const WriteOp&) = default;
};

class WriteBatch {
 public:
  // By id: ids below kKeyedIdBase (the keyed range is the engine's to assign).
  void Upsert(VectorId id, std::span<const float> vector, Attributes attributes = {}) {
    ops_.push_back({WriteOp::Kind::kUpsert, id, {vector.begin(), vector.end()}, std::move(attributes), {}, false});
  }
  void Delete(VectorId id) { ops_.push_back({WriteOp::Kind::kDelete, id, {}, {}, {}, false}); }
  // By key (1..kMaxKeyBytes bytes, any bytes): replaces the live record with this key,
  // keeping its id, or creates one with a fresh id from the keyed range.
  void UpsertByKey(std::string key, std::span<const float> vector, Attributes attributes = {}) {
    ops_.push_back({WriteOp::Kind::kUpsert, kInvalidVectorId, {vector.begin(), vector.end()},
                    std::move(attributes), std::move(key), true});
  }
  // By key, with the id the record must have (an id of the keyed range): the form a
  // cluster's replicas take, so that every replica of a shard gives a key the id its primary
  // gave it (docs/CLUSTER.md). Collection::Write refuses it (AlreadyExists) when the key is
  // live under another id or the id is live under another key (or without one); otherwise it
  // replaces the key's record or creates it with this id, which may be below the engine's
  // keyed-id counter (a catch-up copies old records), and moves the counter past it. The log
  // records the id as it records an assigned one, so replay gives the key the same id.
  void UpsertByKeyWithId(std::string key, VectorId id, std::span<const float> vector,
                         Attributes attributes = {}) {
    ops_.push_back({WriteOp::Kind::kUpsert, id, {vector.begin(), vector.end()}, std::move(attributes),
                    std::move(key), true});
  }
  // Upsert and UpsertByKey with a row of `dim` values of another element type (core/element.h: float16,
  // int8, uint8; any alignment), widened to float32 here, one row at a time: the in-memory
  // segment holds float32, so a batch of narrow vectors (upsert_typed) is widened as it is
  // added, never copied whole as float32 first. The log keeps such a row in its own type.
  void UpsertRow(VectorId id, ElementType type, const void* row, size_t dim, Attributes attributes = {}) {
    WriteOp op{WriteOp::Kind::kUpsert, id, std::vector<float>(dim), std::move(attributes), {}, false, type};
    WidenRow(type, row, dim, op.vector.data());
    ops_.push_back(std::move(op));
  }
  void UpsertRowByKey(std::string key, ElementType type, const void* row, size_t dim, Attributes attributes = {}) {
    WriteOp op{WriteOp::Kind::kUpsert, kInvalidVectorId, std::vector<float>(dim), std::move(attributes),
               std::move(key), true, type};
    WidenRow(type, row, dim, op.vector.data());
    ops_.push_back(std::move(op));
  }
  // Deletes the live record with this key; a no-op when there is none.
  void DeleteByKey(std::string key) {
    ops_.push_back({WriteOp::Kind::kDelete, kInvalidVectorId, {}, {}, std::move(key), true});
  }
  const std::vector<WriteOp>& ops() const { return ops_; }
  size_t size() const { return ops_.size(); }
  bool empty() const { return ops_.empty(); }
  // Whether any operation is by key.
  bool has_keys() const {
    for (const WriteOp& op : ops_) {
      if (op.by_key()) return true;
    }
    return false;
  }
  void Clear() { ops_.clear(); }

  // The log's form of a batch (DecodeBatch): operations exactly as given, ids included.
  void Append(WriteOp op) { ops_.push_back(std::move(op)); }

 private:
  std::vector<WriteOp> ops_;
};

// Checks a batch against a collection's dimension: vectors of `dim` finite floats,
// valid attributes, at most `max_ops` operations; by id, ids below kKeyedIdBase for
// upserts and not kInvalidVectorId for deletes; by key, keys of 1..kMaxKeyBytes bytes,
// and an explicit id (UpsertByKeyWithId) only on upserts and in the keyed range.
// `replayed`: a batch read back from the log, whose keyed operations carry resolved
// ids (in the keyed range, or kInvalidVectorId for a delete of an absent key) and
// whose upserts by id may hold keyed-range ids written before keys existed.
Status ValidateBatch(const WriteBatch& batch, size_t dim, size_t max_ops, bool replayed = false);

// Log record types (the WAL's 1-byte record type): a batch without keys is written
// as kBatchRecord, byte for byte as before keys existed; a batch with keys as
// kKeyedBatchRecord, which adds each operation's key; a batch with any row that arrived
// as float16, int8 or uint8 (UpsertRow) as kTypedBatchRecord, which adds each upsert's
// element type and stores its vector in it (docs/formats/engine.md).
inline constexpr uint8_t kBatchRecord = 1;
inline constexpr uint8_t kKeyedBatchRecord = 2;
inline constexpr uint8_t kTypedBatchRecord = 3;

// Encoding (one WAL record): u32 op count, then per op u8 kind, u64 id, for
// kKeyedBatchRecord and kTypedBatchRecord a u32 key length and the key's bytes, and, for
// upserts, (kTypedBatchRecord: a u8 element type and dim values of it; otherwise) dim
// floats, then the attributes (attributes.h). Returns the record type. When
// `id_offsets` is given, it receives the byte offset of each keyed operation's id
// (in operation order), for the writer to fill in once it has resolved the keys.
uint8_t EncodeBatch(const WriteBatch& batch, std::vector<std::byte>& out,
                    std::vector<size_t>* id_offsets = nullptr);
Result<WriteBatch> DecodeBatch(std::span<const std::byte> bytes, size_t dim, uint8_t type = kBatchRecord);

}  // namespace strata::engine
