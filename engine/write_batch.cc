#include "engine/write_batch.h"
#include "engine/attribute_codec.h"

#include "core/vector_set.h"

namespace strata::engine {

Status ValidateBatch(const WriteBatch& batch, size_t dim, size_t max_ops) {
  if (batch.size() > max_ops) {
    return InvalidArgument("batch has {} operations, at most {} allowed", batch.size(), max_ops);
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    const WriteOp& op = batch.ops()[i];
    if (op.id == kInvalidVectorId) return InvalidArgument("operation {}: id {} is reserved", i, op.id);
    if (op.kind != WriteOp::Kind::kUpsert) continue;
    if (op.vector.size() != dim) {
      return InvalidArgument("operation {} (id {}): vector has dimension {}, the collection {}", i,
                             op.id, op.vector.size(), dim);
    }
    if (!AllFinite(op.vector.data(), dim)) {
      return InvalidArgument("operation {} (id {}): vector has a NaN or infinite component", i, op.id);
    }
    if (Status s = ValidateAttributes(op.attributes); !s.ok()) {
      return s.WithContext(fmt::format("operation {} (id {})", i, op.id));
    }
  }
  return Status::Ok();
}

void EncodeBatch(const WriteBatch& batch, std::vector<std::byte>& out) {
  ByteWriter w(out);
  w.Put<uint32_t>(uint32_t(batch.size()));
  for (const WriteOp& op : batch.ops()) {
    w.Put<uint8_t>(uint8_t(op.kind));
    w.Put<uint64_t>(op.id);
    if (op.kind == WriteOp::Kind::kUpsert) {
      w.PutBytes(op.vector.data(), op.vector.size() * sizeof(float));
      EncodeAttributes(op.attributes, w);
    }
  }
}

Result<WriteBatch> DecodeBatch(std::span<const std::byte> bytes, size_t dim) {
  ByteReader r(bytes);
  uint32_t count = 0;
  STRATA_RETURN_IF_ERROR(r.Get(count, "batch operation count"));
  // Every operation takes at least 9 bytes: a count beyond that is damage, not
  // a reason to allocate.
  if (uint64_t(count) * 9 > r.remaining()) {
    return Error(Corruption("batch claims {} operations in {} bytes", count, r.remaining()));
  }
  WriteBatch batch;
  std::vector<float> vec(dim);
  for (uint32_t i = 0; i < count; ++i) {
    uint8_t kind = 0;
    uint64_t id = 0;
    STRATA_RETURN_IF_ERROR(r.Get(kind, "operation kind"));
    STRATA_RETURN_IF_ERROR(r.Get(id, "operation id"));
    if (kind == uint8_t(WriteOp::Kind::kDelete)) {
      batch.Delete(id);
    } else if (kind == uint8_t(WriteOp::Kind::kUpsert)) {
      STRATA_RETURN_IF_ERROR(r.GetBytes(vec.data(), dim * sizeof(float), "upsert vector"));
      Attributes attrs;
      STRATA_RETURN_IF_ERROR(DecodeAttributes(r, attrs));
      batch.Upsert(id, vec, std::move(attrs));
    } else {
      return Error(Corruption("operation {} has unknown kind {}", i, kind));
    }
  }
  if (!r.done()) return Error(Corruption("{} bytes follow the batch's last operation", r.remaining()));
  return batch;
}

}  // namespace strata::engine
