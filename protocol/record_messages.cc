// Record messages: upsert (records sharing one dim), delete and get (ids), the write
// reply (operations applied) and the get reply (full records, each with its own dim);
// with the attribute and record codecs they share.

#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/messages.h"

namespace strata::protocol::wire {

namespace {

// Smallest encoded size of an attribute: name, type, u32 minimum (see kMinStringBytes).
constexpr uint64_t kMinAttributeBytes = kMinStringBytes + 1 + 4;

}  // namespace

void WriteAttributes(Writer& w, const Attributes& attributes) {
  STRATA_CHECK(attributes.size() <= std::numeric_limits<uint16_t>::max());
  w.U16(static_cast<uint16_t>(attributes.size()));
  for (const Attribute& a : attributes) {
    w.String(a.name);
    w.U8(static_cast<uint8_t>(a.value.index()));
    switch (a.value.index()) {
      case 0:
        w.I64(std::get<int64_t>(a.value));
        break;
      case 1:
        w.F64(std::get<double>(a.value));
        break;
      case 2:
        w.String(std::get<std::string>(a.value));
        break;
      case 3: {
        const TagList& tags = std::get<TagList>(a.value);
        w.Count(tags.size());
        for (const std::string& t : tags) w.String(t);
        break;
      }
      default:
        STRATA_CHECK(false && "valueless attribute");
    }
  }
}

namespace {

Result<Attribute> ReadAttribute(Reader& r, const DecodeLimits& limits, size_t index) {
  Attribute a;
  {
    auto name = r.String("name", limits.max_string);
    if (!name) return Error(name.error().WithContext(fmt::format("attribute {}", index)));
    a.name = std::move(*name);
  }
  auto fail = [&](const Status& s) {
    return Error(s.WithContext(fmt::format("attribute '{}'", a.name)));
  };
  auto type = r.U8("type");
  if (!type) return fail(type.error());
  switch (*type) {
    case 0: {
      auto v = r.I64("int value");
      if (!v) return fail(v.error());
      a.value = *v;
      break;
    }
    case 1: {
      auto v = r.F64("double value");
      if (!v) return fail(v.error());
      a.value = *v;
      break;
    }
    case 2: {
      auto v = r.String("", limits.max_string);
      if (!v) return fail(v.error());
      a.value = std::move(*v);
      break;
    }
    case 3: {
      auto n = r.Count("tag count", limits.max_tags, "max_tags", kMinStringBytes);
      if (!n) return fail(n.error());
      TagList tags;
      tags.reserve(*n);
      for (uint32_t i = 0; i < *n; ++i) {
        auto t = r.String(fmt::format("tag {}", i), limits.max_string);
        if (!t) return fail(t.error());
        tags.push_back(std::move(*t));
      }
      a.value = std::move(tags);
      break;
    }
    default:
      return fail(InvalidArgument(
          "type: unknown attribute type {} (0 int, 1 double, 2 string, 3 tags)", *type));
  }
  return a;
}

}  // namespace

Result<Attributes> ReadAttributes(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(uint16_t n, r.U16("attribute count"));
  STRATA_RETURN_IF_ERROR(
      r.CheckCount("attribute count", n, limits.max_attributes, "max_attributes",
                   kMinAttributeBytes));
  Attributes attributes;
  attributes.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    STRATA_ASSIGN_OR_RETURN(Attribute a, ReadAttribute(r, limits, i));
    attributes.push_back(std::move(a));
  }
  return attributes;
}

namespace {

// A record in a GetReply carries its own dim (an upsert's records share the request's).
void WriteFullRecord(Writer& w, const Record& rec) {
  w.U64(rec.id);
  w.Count(rec.vector.size());
  w.Floats(rec.vector);
  WriteAttributes(w, rec.attributes);
}

Result<Record> ReadFullRecord(Reader& r, const DecodeLimits& limits) {
  Record rec;
  STRATA_ASSIGN_OR_RETURN(rec.id, r.U64("id"));
  STRATA_ASSIGN_OR_RETURN(uint32_t dim, r.U32("dim"));
  if (dim > limits.max_dim) return Error(OverLimit("dim", "", dim, limits.max_dim, "max_dim"));
  STRATA_RETURN_IF_ERROR(r.Floats("vector", dim, rec.vector));
  STRATA_ASSIGN_OR_RETURN(rec.attributes, ReadAttributes(r, limits));
  return rec;
}

// An upsert record's head: its key (keyed; the id is then the engine's to assign or find) or
// its id.
Status ReadRecordHead(Reader& r, const DecodeLimits& limits, bool keyed, Record& rec) {
  if (keyed) {
    rec.id = kInvalidVectorId;
    auto key = r.String("key", limits.max_string);
    if (!key) return key.error();
    rec.key = std::move(*key);
  } else {
    auto id = r.U64("id");
    if (!id) return id.error();
    rec.id = *id;
  }
  return Status::Ok();
}

Result<std::vector<VectorId>> ReadIds(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", 8));
  std::vector<VectorId> ids;
  ids.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    STRATA_ASSIGN_OR_RETURN(VectorId id, r.U64("id"));
    ids.push_back(id);
  }
  return ids;
}

}  // namespace

void WriteUpsert(Writer& w, const UpsertRequest& m, bool keyed) {
  w.String(m.collection);
  w.U32(m.dim);
  w.Count(m.records.size());
  for (const Record& rec : m.records) {
    STRATA_CHECK(rec.vector.size() == m.dim);
    if (keyed) {
      w.String(rec.key);
    } else {
      w.U64(rec.id);
    }
    w.Floats(rec.vector);
    WriteAttributes(w, rec.attributes);
  }
}

Result<UpsertRequest> ReadUpsert(Reader& r, const DecodeLimits& limits, bool keyed) {
  UpsertRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.dim, r.U32("dim"));
  if (m.dim > limits.max_dim) return Error(OverLimit("dim", "", m.dim, limits.max_dim, "max_dim"));
  // id (or key length) + dim floats + attribute count, per record; dim <= max_dim keeps this
  // far from overflow.
  const uint64_t min_record = (keyed ? kMinStringBytes : 8) + uint64_t{m.dim} * sizeof(float) + 2;
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", min_record));
  m.records.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto fail = [i](const Status& s) { return Error(s.WithContext(fmt::format("record {}", i))); };
    Record rec;
    if (Status s = ReadRecordHead(r, limits, keyed, rec); !s.ok()) return fail(s);
    if (Status s = r.Floats("vector", m.dim, rec.vector); !s.ok()) return fail(s);
    auto attributes = ReadAttributes(r, limits);
    if (!attributes) return fail(attributes.error());
    rec.attributes = std::move(*attributes);
    m.records.push_back(std::move(rec));
  }
  return m;
}

namespace {
constexpr uint8_t kUpsertFlagKeyed = 1u << 0;
}  // namespace

void WriteUpsertTyped(Writer& w, const UpsertRequest& m) {
  STRATA_CHECK(static_cast<uint8_t>(m.element) <= kLastElementType);
  w.U8(static_cast<uint8_t>(m.element));
  w.U8(m.keyed ? kUpsertFlagKeyed : 0);
  if (m.element == ElementType::kFloat32) {
    WriteUpsert(w, m, m.keyed);
    return;
  }
  const uint64_t row_bytes = uint64_t{m.dim} * ElementSize(m.element);
  STRATA_CHECK(m.elements.size() == m.records.size() * row_bytes);
  w.String(m.collection);
  w.U32(m.dim);
  w.Count(m.records.size());
  for (size_t i = 0; i < m.records.size(); ++i) {
    const Record& rec = m.records[i];
    STRATA_CHECK(rec.vector.empty());
    if (m.keyed) {
      w.String(rec.key);
    } else {
      w.U64(rec.id);
    }
    w.Raw(std::span<const uint8_t>(m.elements.data() + i * row_bytes, row_bytes));
    WriteAttributes(w, rec.attributes);
  }
}

Result<UpsertRequest> ReadUpsertTyped(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(uint8_t element_byte, r.U8("element type"));
  STRATA_ASSIGN_OR_RETURN(ElementType element, ElementTypeFromByte(element_byte));
  STRATA_ASSIGN_OR_RETURN(uint8_t flags, r.U8("flags"));
  if (flags & ~kUpsertFlagKeyed) {
    return Error(InvalidArgument("flags: unknown bits 0x{:x} (bit 0: keyed)", flags & ~kUpsertFlagKeyed));
  }
  const bool keyed = (flags & kUpsertFlagKeyed) != 0;
  if (element == ElementType::kFloat32) {
    STRATA_ASSIGN_OR_RETURN(UpsertRequest m, ReadUpsert(r, limits, keyed));
    m.keyed = keyed;
    return m;
  }
  UpsertRequest m;
  m.element = element;
  m.keyed = keyed;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.dim, r.U32("dim"));
  if (m.dim > limits.max_dim) return Error(OverLimit("dim", "", m.dim, limits.max_dim, "max_dim"));
  const uint64_t row_bytes = uint64_t{m.dim} * ElementSize(element);
  const uint64_t min_record = (keyed ? kMinStringBytes : 8) + row_bytes + 2;
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", min_record));
  m.records.reserve(n);
  m.elements.reserve(n * row_bytes);  // the count check bounds it by the payload
  for (uint32_t i = 0; i < n; ++i) {
    auto fail = [i](const Status& s) { return Error(s.WithContext(fmt::format("record {}", i))); };
    Record rec;
    if (Status s = ReadRecordHead(r, limits, keyed, rec); !s.ok()) return fail(s);
    if (Status s = r.AppendBytes("vector", row_bytes, m.elements); !s.ok()) return fail(s);
    auto attributes = ReadAttributes(r, limits);
    if (!attributes) return fail(attributes.error());
    rec.attributes = std::move(*attributes);
    m.records.push_back(std::move(rec));
  }
  return m;
}

void WriteDelete(Writer& w, const DeleteRequest& m) {
  w.String(m.collection);
  w.Count(m.ids.size());
  for (VectorId id : m.ids) w.U64(id);
}

Result<DeleteRequest> ReadDelete(Reader& r, const DecodeLimits& limits) {
  DeleteRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.ids, ReadIds(r, limits));
  return m;
}

void WriteWriteReply(Writer& w, const WriteReply& m) { w.U64(m.applied); }

Result<WriteReply> ReadWriteReply(Reader& r) {
  STRATA_ASSIGN_OR_RETURN(uint64_t applied, r.U64("applied"));
  return WriteReply{applied};
}

void WriteGet(Writer& w, const GetRequest& m) {
  w.String(m.collection);
  w.Count(m.ids.size());
  for (VectorId id : m.ids) w.U64(id);
}

Result<GetRequest> ReadGet(Reader& r, const DecodeLimits& limits) {
  GetRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.ids, ReadIds(r, limits));
  return m;
}

void WriteGetReply(Writer& w, const GetReply& m) {
  w.Count(m.records.size());
  for (const std::optional<Record>& rec : m.records) {
    w.Bool(rec.has_value());
    if (rec) WriteFullRecord(w, *rec);
  }
}

Result<GetReply> ReadGetReply(Reader& r, const DecodeLimits& limits) {
  GetReply m;
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", 1));
  m.records.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto fail = [i](const Status& s) {
      return Error(s.WithContext(fmt::format("record {}", i)));
    };
    auto found = r.Bool("found");
    if (!found) return fail(found.error());
    if (!*found) {
      m.records.emplace_back(std::nullopt);
      continue;
    }
    auto rec = ReadFullRecord(r, limits);
    if (!rec) return fail(rec.error());
    m.records.emplace_back(std::move(*rec));
  }
  return m;
}

}  // namespace strata::protocol::wire
