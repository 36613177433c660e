#include "engine/write_batch.h"
#include "engine/narrow.h"

#include <cmath>

#include "index/distance/half.h"
#include "engine/attribute_codec.h"

#include "core/vector_set.h"

namespace strata::engine {

namespace {

// How an operation is named in an error: its id, or its key.
std::string OpName(const WriteOp& op) {
  return op.by_key() ? fmt::format("key '{}'", KeyForMessage(op.key)) : fmt::format("id {}", op.id);
}

}  // namespace

Status ValidateBatch(const WriteBatch& batch, size_t dim, size_t max_ops, bool replayed) {
  if (batch.size() > max_ops) {
    return InvalidArgument("batch has {} operations, at most {} allowed", batch.size(), max_ops);
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    const WriteOp& op = batch.ops()[i];
    if (op.by_key()) {
      if (Status s = ValidateKey(op.key); !s.ok()) return s.WithContext(fmt::format("operation {}", i));
      if (replayed) {
        const bool absent_delete = op.kind == WriteOp::Kind::kDelete && op.id == kInvalidVectorId;
        if (!IsKeyedId(op.id) && !absent_delete) {
          return InvalidArgument("operation {} ({}): id {} is outside the keyed range", i, OpName(op), op.id);
        }
      } else if (op.id != kInvalidVectorId) {
        if (op.kind != WriteOp::Kind::kUpsert) {
          return InvalidArgument("operation {} ({}): a delete by key takes no id", i, OpName(op));
        }
        if (!IsKeyedId(op.id)) {
          return InvalidArgument(
              "operation {} ({}): id {} is outside the keyed range: a key's id is from {} (2^63) up", i,
              OpName(op), op.id, kKeyedIdBase);
        }
      }
    } else if (!op.key.empty()) {
      return InvalidArgument("operation {}: an operation by id (id {}) carries a key; write by key instead", i,
                             op.id);
    } else if (op.id == kInvalidVectorId) {
      return InvalidArgument("operation {}: id {} is reserved", i, op.id);
    } else if (!replayed && op.kind == WriteOp::Kind::kUpsert && IsKeyedId(op.id)) {
      return InvalidArgument(
          "operation {}: id {} is reserved: ids from {} (2^63) up are assigned to records written by key",
          i, op.id, kKeyedIdBase);
    }
    if (op.kind != WriteOp::Kind::kUpsert) continue;
    if (op.vector.size() != dim) {
      return InvalidArgument("operation {} ({}): vector has dimension {}, the collection {}", i, OpName(op),
                             op.vector.size(), dim);
    }
    if (!AllFinite(op.vector.data(), dim)) {
      return InvalidArgument("operation {} ({}): vector has a NaN or infinite component", i, OpName(op));
    }
    if (Status s = ValidateAttributes(op.attributes); !s.ok()) {
      return s.WithContext(fmt::format("operation {} ({})", i, OpName(op)));
    }
  }
  return Status::Ok();
}


uint8_t EncodeBatch(const WriteBatch& batch, std::vector<std::byte>& out, std::vector<size_t>* id_offsets) {
  bool typed = false;
  for (const WriteOp& op : batch.ops()) {
    typed |= op.kind == WriteOp::Kind::kUpsert && op.element != ElementType::kFloat32;
  }
  const bool keyed = typed || batch.has_keys();
  ByteWriter w(out);
  w.Put<uint32_t>(uint32_t(batch.size()));
  std::vector<uint8_t> narrow;
  for (const WriteOp& op : batch.ops()) {
    w.Put<uint8_t>(uint8_t(op.kind));
    if (id_offsets && op.by_key()) id_offsets->push_back(out.size());
    w.Put<uint64_t>(op.id);
    if (keyed) w.PutString(op.key);
    if (op.kind == WriteOp::Kind::kUpsert) {
      if (typed) {
        // The row in the type it came in; float32 where it is one (or, defensively, where a
        // value is not one of its type's: nothing is ever rounded on its way to the log).
        narrow.resize(op.vector.size() * ElementSize(op.element));
        const bool fits = op.element != ElementType::kFloat32 &&
                          NarrowRow(op.element, op.vector.data(), op.vector.size(), narrow.data());
        w.Put<uint8_t>(uint8_t(fits ? op.element : ElementType::kFloat32));
        if (fits) w.PutBytes(narrow.data(), narrow.size());
        else w.PutBytes(op.vector.data(), op.vector.size() * sizeof(float));
      } else {
        w.PutBytes(op.vector.data(), op.vector.size() * sizeof(float));
      }
      EncodeAttributes(op.attributes, w);
    }
  }
  return typed ? kTypedBatchRecord : keyed ? kKeyedBatchRecord : kBatchRecord;
}

Result<WriteBatch> DecodeBatch(std::span<const std::byte> bytes, size_t dim, uint8_t type) {
  if (type != kBatchRecord && type != kKeyedBatchRecord && type != kTypedBatchRecord) {
    return Error(Corruption("unknown batch record type {}", type));
  }
  const bool typed = type == kTypedBatchRecord;
  const bool keyed = type == kKeyedBatchRecord || typed;
  ByteReader r(bytes);
  uint32_t count = 0;
  STRATA_RETURN_IF_ERROR(r.Get(count, "batch operation count"));
  // Every operation takes at least 9 bytes (13 with a key length): a count beyond
  // that is damage, not a reason to allocate.
  if (uint64_t(count) * (keyed ? 13 : 9) > r.remaining()) {
    return Error(Corruption("batch claims {} operations in {} bytes", count, r.remaining()));
  }
  WriteBatch batch;
  std::vector<float> vec(dim);
  std::vector<uint8_t> raw;
  for (uint32_t i = 0; i < count; ++i) {
    WriteOp op;
    uint8_t kind = 0;
    STRATA_RETURN_IF_ERROR(r.Get(kind, "operation kind"));
    STRATA_RETURN_IF_ERROR(r.Get(op.id, "operation id"));
    if (keyed) {
      STRATA_RETURN_IF_ERROR(r.GetString(op.key, kMaxKeyBytes, "operation key"));
      op.keyed = !op.key.empty();
    }
    if (kind == uint8_t(WriteOp::Kind::kDelete)) {
      op.kind = WriteOp::Kind::kDelete;
    } else if (kind == uint8_t(WriteOp::Kind::kUpsert)) {
      op.kind = WriteOp::Kind::kUpsert;
      if (typed) {
        uint8_t element = 0;
        STRATA_RETURN_IF_ERROR(r.Get(element, "upsert element type"));
        if (element > kLastElementType) {
          return Error(Corruption("operation {} has unknown element type {}", i, element));
        }
        op.element = ElementType(element);
      }
      if (op.element == ElementType::kFloat32) {
        STRATA_RETURN_IF_ERROR(r.GetBytes(vec.data(), dim * sizeof(float), "upsert vector"));
      } else {
        raw.resize(dim * ElementSize(op.element));
        STRATA_RETURN_IF_ERROR(r.GetBytes(raw.data(), raw.size(), "upsert vector"));
        WidenRow(op.element, raw.data(), dim, vec.data());
      }
      op.vector = vec;
      STRATA_RETURN_IF_ERROR(DecodeAttributes(r, op.attributes));
    } else {
      return Error(Corruption("operation {} has unknown kind {}", i, kind));
    }
    batch.Append(std::move(op));
  }
  if (!r.done()) return Error(Corruption("{} bytes follow the batch's last operation", r.remaining()));
  return batch;
}

}  // namespace strata::engine
