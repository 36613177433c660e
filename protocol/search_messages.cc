// Search messages: search, search_batch and explain share one request (options, dim,
// count, the queries) and one reply (a neighbour list per query; explain adds the plan);
// search_with adds the fields wanted to the request and keys, attributes and the filter's
// warnings to the reply.

#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "protocol/messages.h"

namespace strata::protocol::wire {

namespace {

constexpr uint64_t kNeighborBytes = 8 + 4;  // u64 id, f32 distance
// search_with's fields: what each hit carries beyond id, distance and key.
constexpr uint32_t kFieldAttributes = 1u << 0;
// Request: options.allow_partial; reply: the missing shards follow the warnings.
constexpr uint32_t kFieldPartial = 1u << 1;
// Request only: a u32 options.shard_timeout_ms follows the fields word.
constexpr uint32_t kFieldShardTimeout = 1u << 2;
constexpr uint32_t kKnownRequestFields = kFieldAttributes | kFieldPartial | kFieldShardTimeout;
constexpr uint32_t kKnownReplyFields = kFieldAttributes | kFieldPartial;

void WriteOptions(Writer& w, const SearchOptions& o) {
  STRATA_CHECK(o.prepared_filter == nullptr);  // the engine's, never on the wire
  w.U32(o.k);
  w.F64(o.recall);
  w.U32(o.ef);
  w.U32(o.max_lists);
  w.String(o.filter);
  w.U8(static_cast<uint8_t>(o.strategy));
}

Result<SearchOptions> ReadOptions(Reader& r, const DecodeLimits& limits) {
  SearchOptions o;
  STRATA_ASSIGN_OR_RETURN(o.k, r.U32("k"));
  STRATA_ASSIGN_OR_RETURN(o.recall, r.F64("recall"));
  STRATA_ASSIGN_OR_RETURN(o.ef, r.U32("ef"));
  STRATA_ASSIGN_OR_RETURN(o.max_lists, r.U32("max_lists"));
  STRATA_ASSIGN_OR_RETURN(o.filter, r.String("filter", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(uint8_t strategy, r.U8("strategy"));
  if (strategy > static_cast<uint8_t>(SearchStrategy::kPostFilter)) {
    return Error(InvalidArgument(
        "strategy: unknown value {} (0 auto, 1 index, 2 scan, 3 post_filter)", strategy));
  }
  o.strategy = static_cast<SearchStrategy>(strategy);
  return o;
}

}  // namespace

namespace {

// search_with's (and search_typed's) trailing fields word and what it announces.
void WriteRequestFields(Writer& w, const SearchOptions& o) {
  const uint32_t fields = (o.with_attributes ? kFieldAttributes : 0) | (o.allow_partial ? kFieldPartial : 0) |
                          (o.shard_timeout_ms != 0 ? kFieldShardTimeout : 0);
  w.U32(fields);
  if (fields & kFieldShardTimeout) w.U32(o.shard_timeout_ms);
}

Status ReadRequestFields(Reader& r, SearchOptions& o) {
  STRATA_ASSIGN_OR_RETURN(uint32_t fields, r.U32("fields"));
  if (fields & ~kKnownRequestFields) {
    return InvalidArgument("fields: unknown bits 0x{:x} (bit 0: attributes, 1: allow partial, 2: shard timeout)",
                           fields & ~kKnownRequestFields);
  }
  o.with_attributes = (fields & kFieldAttributes) != 0;
  o.allow_partial = (fields & kFieldPartial) != 0;
  if (fields & kFieldShardTimeout) {
    STRATA_ASSIGN_OR_RETURN(o.shard_timeout_ms, r.U32("shard_timeout_ms"));
    if (o.shard_timeout_ms == 0) {
      return InvalidArgument("shard_timeout_ms: 0 with fields bit 2 set (leave the bit out)");
    }
  }
  return Status::Ok();
}

}  // namespace

void WriteSearch(Writer& w, Op op, const SearchRequest& m) {
  STRATA_CHECK(m.queries.size() == uint64_t{m.count} * m.dim);
  // Only search_with carries it; the older searches have no room (ValidateForEncoding).
  STRATA_CHECK(op == Op::kSearchWith || !m.options.with_attributes);
  w.String(m.collection);
  WriteOptions(w, m.options);
  w.U32(m.dim);
  w.U32(m.count);
  w.Floats(m.queries);
  if (op == Op::kSearchWith) WriteRequestFields(w, m.options);
}

Result<SearchRequest> ReadSearch(Reader& r, Op op, const DecodeLimits& limits) {
  SearchRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.options, ReadOptions(r, limits));
  STRATA_ASSIGN_OR_RETURN(m.dim, r.U32("dim"));
  if (m.dim > limits.max_dim) return Error(OverLimit("dim", "", m.dim, limits.max_dim, "max_dim"));
  STRATA_ASSIGN_OR_RETURN(m.count, r.U32("count"));
  if (op == Op::kSearchBatch || op == Op::kSearchKeyed || op == Op::kSearchWith) {
    if (m.count == 0) return Error(InvalidArgument("count: a search batch needs at least 1 query"));
  } else if (m.count != 1) {
    return Error(InvalidArgument("count: {} carries exactly 1 query, got {}", OpName(op), m.count));
  }
  // 64-bit: count < 2^32 and dim <= max_dim < 2^32, so count * dim cannot overflow. As for
  // counts, a payload too short for the queries is malformed before a count over the limit is
  // refused as too large (and nothing is allocated for either).
  const uint64_t floats = uint64_t{m.count} * m.dim;
  if (floats > r.left() / sizeof(float)) {
    return Error(InvalidArgument("queries: {} floats need {} bytes, {} left", floats,
                                 floats * sizeof(float), r.left()));
  }
  if (m.count > limits.max_batch) {
    return Error(OverLimit("count", "", m.count, limits.max_batch, "max_batch"));
  }
  STRATA_RETURN_IF_ERROR(r.Floats("queries", floats, m.queries));
  if (op == Op::kSearchWith) STRATA_RETURN_IF_ERROR(ReadRequestFields(r, m.options));
  return m;
}

void WriteSearchTyped(Writer& w, const SearchRequest& m) {
  STRATA_CHECK(static_cast<uint8_t>(m.element) <= kLastElementType);
  w.U8(static_cast<uint8_t>(m.element));
  if (m.element == ElementType::kFloat32) {
    WriteSearch(w, Op::kSearchWith, m);
    return;
  }
  STRATA_CHECK(m.queries.empty());
  STRATA_CHECK(m.elements.size() == uint64_t{m.count} * m.dim * ElementSize(m.element));
  w.String(m.collection);
  WriteOptions(w, m.options);
  w.U32(m.dim);
  w.U32(m.count);
  w.Raw(m.elements);
  WriteRequestFields(w, m.options);
}

Result<SearchRequest> ReadSearchTyped(Reader& r, const DecodeLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(uint8_t element_byte, r.U8("element type"));
  STRATA_ASSIGN_OR_RETURN(ElementType element, ElementTypeFromByte(element_byte));
  if (element == ElementType::kFloat32) return ReadSearch(r, Op::kSearchWith, limits);
  SearchRequest m;
  m.element = element;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.options, ReadOptions(r, limits));
  STRATA_ASSIGN_OR_RETURN(m.dim, r.U32("dim"));
  if (m.dim > limits.max_dim) return Error(OverLimit("dim", "", m.dim, limits.max_dim, "max_dim"));
  STRATA_ASSIGN_OR_RETURN(m.count, r.U32("count"));
  if (m.count == 0) return Error(InvalidArgument("count: a search batch needs at least 1 query"));
  const uint64_t bytes = uint64_t{m.count} * m.dim * ElementSize(element);
  if (bytes > r.left()) {
    return Error(InvalidArgument("queries: {} x {} {} values need {} bytes, {} left", m.count, m.dim,
                                 ElementTypeName(element), bytes, r.left()));
  }
  if (m.count > limits.max_batch) return Error(OverLimit("count", "", m.count, limits.max_batch, "max_batch"));
  STRATA_RETURN_IF_ERROR(r.AppendBytes("queries", bytes, m.elements));
  STRATA_RETURN_IF_ERROR(ReadRequestFields(r, m.options));
  return m;
}

void WriteSearchWithReply(Writer& w, const SearchWithReply& m) {
  w.U32((m.with_attributes ? kFieldAttributes : 0) | (m.missing.empty() ? 0 : kFieldPartial));
  w.Count(m.results.size());
  for (const std::vector<KeyedNeighbor>& list : m.results) {
    w.Count(list.size());
    for (const KeyedNeighbor& n : list) {
      w.U64(n.id);
      w.Fixed(n.distance);
      w.String(n.key);
      if (m.with_attributes) WriteAttributes(w, n.attributes);
    }
  }
  w.Count(m.warnings.size());
  for (const std::string& warning : m.warnings) w.String(warning);
  if (!m.missing.empty()) {
    w.Count(m.missing.size());
    for (const MissingShard& s : m.missing) {
      w.U32(s.shard);
      w.String(s.reason);
    }
  }
}

Result<SearchWithReply> ReadSearchWithReply(Reader& r, const DecodeLimits& limits) {
  // Neighbour lists and warnings are bounded by the payload only.
  constexpr uint32_t kAnyLength = std::numeric_limits<uint32_t>::max();
  SearchWithReply m;
  STRATA_ASSIGN_OR_RETURN(uint32_t fields, r.U32("fields"));
  if (fields & ~kKnownReplyFields) {
    return Error(InvalidArgument("fields: unknown bits 0x{:x} (bit 0: attributes, 1: partial)",
                                 fields & ~kKnownReplyFields));
  }
  m.with_attributes = (fields & kFieldAttributes) != 0;
  // Per hit at least: id, distance, the key's length (and the attribute count).
  const uint64_t min_hit = kNeighborBytes + 4 + (m.with_attributes ? 2 : 0);
  STRATA_ASSIGN_OR_RETURN(uint32_t q, r.Count("query count", limits.max_batch, "max_batch", 4));
  m.results.reserve(q);
  for (uint32_t i = 0; i < q; ++i) {
    auto n = r.Count("neighbor count", kAnyLength, "", min_hit);
    if (!n) return Error(n.error().WithContext(fmt::format("result {}", i)));
    std::vector<KeyedNeighbor> list(*n);
    for (size_t j = 0; j < list.size(); ++j) {
      KeyedNeighbor& nb = list[j];
      const std::string where = fmt::format("result {} hit {}", i, j);
      STRATA_ASSIGN_OR_RETURN(nb.id, r.U64("id"));
      STRATA_ASSIGN_OR_RETURN(nb.distance, r.F32("distance"));
      auto key = r.String("key", limits.max_string);
      if (!key) return Error(key.error().WithContext(where));
      nb.key = std::move(*key);
      if (m.with_attributes) {
        auto attributes = ReadAttributes(r, limits);
        if (!attributes) return Error(attributes.error().WithContext(where));
        nb.attributes = std::move(*attributes);
      }
    }
    m.results.push_back(std::move(list));
  }
  STRATA_ASSIGN_OR_RETURN(uint32_t nw, r.Count("warning count", kAnyLength, "", 4));
  m.warnings.reserve(nw);
  for (uint32_t i = 0; i < nw; ++i) {
    STRATA_ASSIGN_OR_RETURN(std::string warning, r.String("warning", kAnyLength));
    m.warnings.push_back(std::move(warning));
  }
  if (fields & kFieldPartial) {
    STRATA_ASSIGN_OR_RETURN(uint32_t nm, r.Count("missing shard count", kAnyLength, "", 8));
    if (nm == 0) return Error(InvalidArgument("missing shard count: 0 with fields bit 1 set"));
    for (uint32_t i = 0; i < nm; ++i) {
      MissingShard s;
      STRATA_ASSIGN_OR_RETURN(s.shard, r.U32("missing shard"));
      STRATA_ASSIGN_OR_RETURN(s.reason, r.String("missing shard reason", kAnyLength));
      m.missing.push_back(std::move(s));
    }
  }
  return m;
}

void WriteSearchReply(Writer& w, Op op, const SearchReply& m) {
  w.Count(m.results.size());
  for (const std::vector<Neighbor>& list : m.results) {
    w.Count(list.size());
    for (const Neighbor& n : list) {
      w.U64(n.id);
      w.Fixed(n.distance);
    }
  }
  if (op == Op::kExplain) w.String(m.explain.ToJson());
}

Result<SearchReply> ReadSearchReply(Reader& r, Op op, const DecodeLimits& limits) {
  // Neighbour lists and the plan are bounded by the payload only.
  constexpr uint32_t kAnyLength = std::numeric_limits<uint32_t>::max();
  SearchReply m;
  STRATA_ASSIGN_OR_RETURN(uint32_t q, r.Count("query count", limits.max_batch, "max_batch", 4));
  m.results.reserve(q);
  for (uint32_t i = 0; i < q; ++i) {
    auto n = r.Count("neighbor count", kAnyLength, "", kNeighborBytes);
    if (!n) return Error(n.error().WithContext(fmt::format("result {}", i)));
    std::vector<Neighbor> list(*n);
    for (Neighbor& nb : list) {
      // The count check above guarantees these bytes are present.
      nb.id = *r.U64("id");
      nb.distance = *r.F32("distance");
    }
    m.results.push_back(std::move(list));
  }
  if (op == Op::kExplain) {
    STRATA_ASSIGN_OR_RETURN(std::string json, r.String("explain_json", kAnyLength));
    STRATA_ASSIGN_OR_RETURN(m.explain, Explain::FromJson(json));
  }
  return m;
}

}  // namespace strata::protocol::wire
