#pragma once
// WriteBatch: upserts and deletes applied together. A batch is the unit of
// atomicity and durability: it is one WAL record, so after a crash it is either
// all there or not at all, and in the default durability mode it is acknowledged
// only once that record is on disk.
//
// Within a batch, operations apply in order (an upsert then a delete of the same
// id leaves it deleted).
//
// Value type; thread-compatible.

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"
#include "core/types.h"
#include "engine/attributes.h"

namespace strata::engine {

struct WriteOp {
  enum class Kind : uint8_t { kUpsert = 1, kDelete = 2 };
  Kind kind = Kind::kUpsert;
  VectorId id = 0;
  std::vector<float> vector;  // upserts only
  Attributes attributes;      // upserts only
  friend bool operator==(const WriteOp&, const WriteOp&) = default;
};

class WriteBatch {
 public:
  void Upsert(VectorId id, std::span<const float> vector, Attributes attributes = {}) {
    ops_.push_back({WriteOp::Kind::kUpsert, id, {vector.begin(), vector.end()}, std::move(attributes)});
  }
  void Delete(VectorId id) { ops_.push_back({WriteOp::Kind::kDelete, id, {}, {}}); }
  const std::vector<WriteOp>& ops() const { return ops_; }
  size_t size() const { return ops_.size(); }
  bool empty() const { return ops_.empty(); }
  void Clear() { ops_.clear(); }

 private:
  std::vector<WriteOp> ops_;
};

// Checks a batch against a collection's dimension: ids below kInvalidVectorId,
// vectors of `dim` finite floats, valid attributes, at most `max_ops` operations.
Status ValidateBatch(const WriteBatch& batch, size_t dim, size_t max_ops);

// Encoding (one WAL record): u32 op count, then per op u8 kind, u64 id and, for
// upserts, dim floats and the attributes (attributes.h).
void EncodeBatch(const WriteBatch& batch, std::vector<std::byte>& out);
Result<WriteBatch> DecodeBatch(std::span<const std::byte> bytes, size_t dim);

}  // namespace strata::engine
