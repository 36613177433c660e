#include "protocol/protocol.h"

#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

namespace strata::protocol {

// The wire is little-endian and values are copied with memcpy; on a big-endian host every
// Fixed<T> below would need a byte swap. Strata is only built for little-endian hosts.
static_assert(std::endian::native == std::endian::little,
              "the wire encoding assumes little-endian");
static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559);
static_assert(sizeof(double) == 8 && std::numeric_limits<double>::is_iec559);

namespace {

// Smallest encoded sizes, used to refuse a count before allocating for it: a count whose
// elements cannot fit in the bytes left is malformed whatever the elements hold.
constexpr uint64_t kMinStringBytes = 4;                           // u32 length
constexpr uint64_t kMinAttributeBytes = kMinStringBytes + 1 + 4;  // name, type, u32 minimum
constexpr uint64_t kNeighborBytes = 8 + 4;                        // u64 id, f32 distance
constexpr uint64_t kMinSpecBytes = kMinStringBytes + 4 + 1 + 4 + 4 + 8 + 8;
constexpr uint64_t kMinInfoBytes = kMinSpecBytes + 5 * 8;

// ---------------------------------------------------------------------------
// Writer: appends little-endian primitives to a byte vector, or, with no vector, only counts
// them (so that EncodedPayloadSize and the encoder share one description of the format).
// Thread-compatible.
// ---------------------------------------------------------------------------
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>* out) : out_(out) {}

  uint64_t size() const { return size_; }

  template <typename T>
  void Fixed(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    uint8_t bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    Bytes(bytes, sizeof(T));
  }
  void U8(uint8_t v) { Fixed(v); }
  void U16(uint16_t v) { Fixed(v); }
  void U32(uint32_t v) { Fixed(v); }
  void U64(uint64_t v) { Fixed(v); }
  void I64(int64_t v) { Fixed(v); }
  void F64(double v) { Fixed(v); }
  void Bool(bool v) { U8(v ? 1 : 0); }
  void String(std::string_view s) {
    STRATA_CHECK(s.size() <= std::numeric_limits<uint32_t>::max());
    U32(static_cast<uint32_t>(s.size()));
    Bytes(s.data(), s.size());
  }
  void Floats(std::span<const float> v) { Bytes(v.data(), v.size_bytes()); }
  void Count(size_t n) {
    STRATA_CHECK(n <= std::numeric_limits<uint32_t>::max());
    U32(static_cast<uint32_t>(n));
  }

 private:
  void Bytes(const void* data, size_t n) {
    size_ += n;
    if (out_ != nullptr && n > 0) {
      const auto* p = static_cast<const uint8_t*>(data);
      out_->insert(out_->end(), p, p + n);
    }
  }

  std::vector<uint8_t>* out_;
  uint64_t size_ = 0;
};

// ---------------------------------------------------------------------------
// Reader: bounds-checked little-endian reads from one payload. Every read names its field in
// the error; callers add the outer context ("upsert: record 3: ...") with WithContext.
// Thread-compatible.
// ---------------------------------------------------------------------------
std::string Prefix(std::string_view field) {
  return field.empty() ? std::string() : fmt::format("{}: ", field);
}

// A well-formed value over one of the DecodeLimits: OutOfRange (a server answers kTooLarge),
// naming the field, the value, the limit and the DecodeLimits member that sets it:
// "count: 5 exceeds the limit 4 (max_batch)".
Status OverLimit(std::string_view field, std::string_view what, uint64_t value, uint64_t limit,
                 std::string_view limit_name) {
  return OutOfRange("{}{}{} exceeds the limit {} ({})", Prefix(field), what, value, limit,
                    limit_name);
}

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}

  uint64_t left() const { return in_.size() - pos_; }

  template <typename T>
  Result<T> Fixed(std::string_view field) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (left() < sizeof(T)) {
      return Error(InvalidArgument("{}needs {} bytes, {} left", Prefix(field), sizeof(T), left()));
    }
    T value;
    std::memcpy(&value, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  Result<uint8_t> U8(std::string_view field) { return Fixed<uint8_t>(field); }
  Result<uint16_t> U16(std::string_view field) { return Fixed<uint16_t>(field); }
  Result<uint32_t> U32(std::string_view field) { return Fixed<uint32_t>(field); }
  Result<uint64_t> U64(std::string_view field) { return Fixed<uint64_t>(field); }
  Result<int64_t> I64(std::string_view field) { return Fixed<int64_t>(field); }
  Result<float> F32(std::string_view field) { return Fixed<float>(field); }
  Result<double> F64(std::string_view field) { return Fixed<double>(field); }

  Result<bool> Bool(std::string_view field) {
    STRATA_ASSIGN_OR_RETURN(uint8_t b, U8(field));
    if (b > 1) return Error(InvalidArgument("{}bool byte {} is neither 0 nor 1", Prefix(field), b));
    return b == 1;
  }

  // A string of at most `max_len` bytes (the length is checked against the bytes left first).
  Result<std::string> String(std::string_view field, uint32_t max_len) {
    STRATA_ASSIGN_OR_RETURN(uint32_t len, U32(field));
    if (len > left()) {
      return Error(
          InvalidArgument("{}string length {} exceeds {} bytes left", Prefix(field), len, left()));
    }
    if (len > max_len) return Error(OverLimit(field, "string length ", len, max_len, "max_string"));
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), len);
    pos_ += len;
    return s;
  }

  // A u32 count of elements that each take at least `min_bytes` bytes, refused before anything
  // is allocated for them: InvalidArgument (malformed) when that many elements cannot fit in the
  // bytes left, else OutOfRange when over `limit` (the DecodeLimits field `limit_name`). The fit
  // is checked first, so that a count the payload could not hold is reported as malformed
  // whatever the limit.
  Result<uint32_t> Count(std::string_view field, uint32_t limit, std::string_view limit_name,
                         uint64_t min_bytes) {
    STRATA_ASSIGN_OR_RETURN(uint32_t n, U32(field));
    return CheckCount(field, n, limit, limit_name, min_bytes);
  }
  Result<uint32_t> CheckCount(std::string_view field, uint64_t n, uint64_t limit,
                              std::string_view limit_name, uint64_t min_bytes) {
    // n < 2^32 and min_bytes < 2^40 here, so the product cannot overflow 64 bits.
    if (n * min_bytes > left()) {
      return Error(InvalidArgument("{}{} entries need at least {} bytes, {} left", Prefix(field), n,
                                   n * min_bytes, left()));
    }
    if (n > limit) return Error(OverLimit(field, "", n, limit, limit_name));
    return static_cast<uint32_t>(n);
  }

  // `n` floats (already bounded by a count check or a dim limit), copied with memcpy.
  Status Floats(std::string_view field, uint64_t n, std::vector<float>& out) {
    if (n > left() / sizeof(float)) {
      return InvalidArgument("{}{} floats need {} bytes, {} left", Prefix(field), n,
                             n * sizeof(float), left());
    }
    out.resize(n);
    if (n > 0) std::memcpy(out.data(), in_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
    return Status::Ok();
  }

  Status Finish() const {
    if (left() != 0) return InvalidArgument("{} trailing bytes after the last field", left());
    return Status::Ok();
  }

 private:
  std::span<const uint8_t> in_;
  uint64_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// Shared pieces.
// ---------------------------------------------------------------------------

void WriteSpec(Writer& w, const CollectionSpec& s) {
  w.String(s.name);
  w.U32(s.dim);
  w.U8(static_cast<uint8_t>(s.metric));
  w.U32(s.hnsw_M);
  w.U32(s.hnsw_ef_construction);
  w.U64(s.seal_threshold);
  w.U64(s.memory_budget_bytes);
}

Result<CollectionSpec> ReadSpec(Reader& r, const DecodeLimits& limits) {
  CollectionSpec s;
  STRATA_ASSIGN_OR_RETURN(s.name, r.String("name", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(s.dim, r.U32("dim"));
  if (s.dim > limits.max_dim) return Error(OverLimit("dim", "", s.dim, limits.max_dim, "max_dim"));
  STRATA_ASSIGN_OR_RETURN(uint8_t metric, r.U8("metric"));
  if (metric > static_cast<uint8_t>(WireMetric::kCosine)) {
    return Error(InvalidArgument("metric: unknown value {} (0 l2, 1 ip, 2 cosine)", metric));
  }
  s.metric = static_cast<WireMetric>(metric);
  STRATA_ASSIGN_OR_RETURN(s.hnsw_M, r.U32("hnsw_M"));
  STRATA_ASSIGN_OR_RETURN(s.hnsw_ef_construction, r.U32("hnsw_ef_construction"));
  STRATA_ASSIGN_OR_RETURN(s.seal_threshold, r.U64("seal_threshold"));
  STRATA_ASSIGN_OR_RETURN(s.memory_budget_bytes, r.U64("memory_budget_bytes"));
  return s;
}

void WriteInfo(Writer& w, const CollectionInfo& info) {
  WriteSpec(w, info.spec);
  w.U64(info.id);
  w.U64(info.num_vectors);
  w.U64(info.last_sequence);
  w.U64(info.memory_bytes);
  w.U64(info.sealed_segments);
}

Result<CollectionInfo> ReadInfo(Reader& r, const DecodeLimits& limits) {
  CollectionInfo info;
  STRATA_ASSIGN_OR_RETURN(info.spec, ReadSpec(r, limits));
  STRATA_ASSIGN_OR_RETURN(info.id, r.U64("id"));
  STRATA_ASSIGN_OR_RETURN(info.num_vectors, r.U64("num_vectors"));
  STRATA_ASSIGN_OR_RETURN(info.last_sequence, r.U64("last_sequence"));
  STRATA_ASSIGN_OR_RETURN(info.memory_bytes, r.U64("memory_bytes"));
  STRATA_ASSIGN_OR_RETURN(info.sealed_segments, r.U64("sealed_segments"));
  return info;
}

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

void WriteOptions(Writer& w, const SearchOptions& o) {
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
  if (strategy > static_cast<uint8_t>(WireStrategy::kPostFilter)) {
    return Error(InvalidArgument(
        "strategy: unknown value {} (0 auto, 1 index, 2 scan, 3 post_filter)", strategy));
  }
  o.strategy = static_cast<WireStrategy>(strategy);
  return o;
}

void WriteHistogram(Writer& w, const HistogramWire& h) {
  w.Count(h.upper_bounds_seconds.size());
  for (double b : h.upper_bounds_seconds) w.F64(b);
  w.Count(h.counts.size());
  for (uint64_t c : h.counts) w.U64(c);
  w.U64(h.count);
  w.F64(h.sum_seconds);
}

Result<HistogramWire> ReadHistogram(Reader& r) {
  HistogramWire h;
  // Bounded by the payload only: the server's histograms have a few dozen buckets.
  STRATA_ASSIGN_OR_RETURN(uint32_t nb,
                          r.Count("bound count", std::numeric_limits<uint32_t>::max(), "", 8));
  h.upper_bounds_seconds.reserve(nb);
  for (uint32_t i = 0; i < nb; ++i) {
    STRATA_ASSIGN_OR_RETURN(double b, r.F64("upper bound"));
    h.upper_bounds_seconds.push_back(b);
  }
  STRATA_ASSIGN_OR_RETURN(uint32_t nc,
                          r.Count("bucket count", std::numeric_limits<uint32_t>::max(), "", 8));
  h.counts.reserve(nc);
  for (uint32_t i = 0; i < nc; ++i) {
    STRATA_ASSIGN_OR_RETURN(uint64_t c, r.U64("bucket"));
    h.counts.push_back(c);
  }
  STRATA_ASSIGN_OR_RETURN(h.count, r.U64("count"));
  STRATA_ASSIGN_OR_RETURN(h.sum_seconds, r.F64("sum_seconds"));
  return h;
}

// The body alternative an opcode requires. A mismatch is a programmer error (the caller built
// the message), reported by STRATA_CHECK rather than by std::bad_variant_access.
template <typename T, typename Variant>
const T& BodyAs(const Variant& body) {
  const T* p = std::get_if<T>(&body);
  STRATA_CHECK(p != nullptr);
  return *p;
}

// ---------------------------------------------------------------------------
// Request payloads.
// ---------------------------------------------------------------------------

void WriteRequestPayload(Writer& w, const Request& req) {
  const RequestBody& b = req.body;
  switch (req.op) {
    case Op::kHello: {
      const auto& m = BodyAs<HelloRequest>(b);
      w.String(m.client_name);
      w.String(m.token);
      return;
    }
    case Op::kPing:
      (void)BodyAs<PingRequest>(b);
      return;
    case Op::kCreateCollection:
      WriteSpec(w, BodyAs<CreateCollectionRequest>(b).spec);
      return;
    case Op::kDropCollection:
      w.String(BodyAs<DropCollectionRequest>(b).name);
      return;
    case Op::kListCollections:
      (void)BodyAs<ListCollectionsRequest>(b);
      return;
    case Op::kDescribeCollection:
      w.String(BodyAs<DescribeCollectionRequest>(b).name);
      return;
    case Op::kUpsert: {
      const auto& m = BodyAs<UpsertRequest>(b);
      w.String(m.collection);
      w.U32(m.dim);
      w.Count(m.records.size());
      for (const Record& rec : m.records) {
        STRATA_CHECK(rec.vector.size() == m.dim);
        w.U64(rec.id);
        w.Floats(rec.vector);
        WriteAttributes(w, rec.attributes);
      }
      return;
    }
    case Op::kDelete: {
      const auto& m = BodyAs<DeleteRequest>(b);
      w.String(m.collection);
      w.Count(m.ids.size());
      for (VectorId id : m.ids) w.U64(id);
      return;
    }
    case Op::kGet: {
      const auto& m = BodyAs<GetRequest>(b);
      w.String(m.collection);
      w.Count(m.ids.size());
      for (VectorId id : m.ids) w.U64(id);
      return;
    }
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain: {
      const auto& m = BodyAs<SearchRequest>(b);
      STRATA_CHECK(m.queries.size() == uint64_t{m.count} * m.dim);
      w.String(m.collection);
      WriteOptions(w, m.options);
      w.U32(m.dim);
      w.U32(m.count);
      w.Floats(m.queries);
      return;
    }
    case Op::kStats:
      (void)BodyAs<StatsRequest>(b);
      return;
    case Op::kFlush:
      w.String(BodyAs<FlushRequest>(b).collection);
      return;
    case Op::kCompact:
      w.String(BodyAs<CompactRequest>(b).collection);
      return;
    case Op::kError:
      break;
  }
  STRATA_CHECK(false && "EncodeRequest: not a request opcode");
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

Result<UpsertRequest> ReadUpsert(Reader& r, const DecodeLimits& limits) {
  UpsertRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.dim, r.U32("dim"));
  if (m.dim > limits.max_dim) return Error(OverLimit("dim", "", m.dim, limits.max_dim, "max_dim"));
  // id + dim floats + attribute count, per record; dim <= max_dim keeps this far from overflow.
  const uint64_t min_record = 8 + uint64_t{m.dim} * sizeof(float) + 2;
  STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", limits.max_batch, "max_batch", min_record));
  m.records.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto fail = [i](const Status& s) { return Error(s.WithContext(fmt::format("record {}", i))); };
    Record rec;
    auto id = r.U64("id");
    if (!id) return fail(id.error());
    rec.id = *id;
    if (Status s = r.Floats("vector", m.dim, rec.vector); !s.ok()) return fail(s);
    auto attributes = ReadAttributes(r, limits);
    if (!attributes) return fail(attributes.error());
    rec.attributes = std::move(*attributes);
    m.records.push_back(std::move(rec));
  }
  return m;
}

Result<SearchRequest> ReadSearch(Reader& r, Op op, const DecodeLimits& limits) {
  SearchRequest m;
  STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(m.options, ReadOptions(r, limits));
  STRATA_ASSIGN_OR_RETURN(m.dim, r.U32("dim"));
  if (m.dim > limits.max_dim) return Error(OverLimit("dim", "", m.dim, limits.max_dim, "max_dim"));
  STRATA_ASSIGN_OR_RETURN(m.count, r.U32("count"));
  if (op == Op::kSearchBatch) {
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
  return m;
}

Result<RequestBody> ReadRequestBody(Reader& r, Op op, const DecodeLimits& limits) {
  const uint32_t max_string = limits.max_string;
  switch (op) {
    case Op::kHello: {
      HelloRequest m;
      STRATA_ASSIGN_OR_RETURN(m.client_name, r.String("client_name", max_string));
      STRATA_ASSIGN_OR_RETURN(m.token, r.String("token", max_string));
      return m;
    }
    case Op::kPing:
      return PingRequest{};
    case Op::kCreateCollection: {
      STRATA_ASSIGN_OR_RETURN(CollectionSpec spec, ReadSpec(r, limits));
      return CreateCollectionRequest{std::move(spec)};
    }
    case Op::kDropCollection: {
      STRATA_ASSIGN_OR_RETURN(std::string name, r.String("name", max_string));
      return DropCollectionRequest{std::move(name)};
    }
    case Op::kListCollections:
      return ListCollectionsRequest{};
    case Op::kDescribeCollection: {
      STRATA_ASSIGN_OR_RETURN(std::string name, r.String("name", max_string));
      return DescribeCollectionRequest{std::move(name)};
    }
    case Op::kUpsert:
      return ReadUpsert(r, limits);
    case Op::kDelete: {
      DeleteRequest m;
      STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", max_string));
      STRATA_ASSIGN_OR_RETURN(m.ids, ReadIds(r, limits));
      return m;
    }
    case Op::kGet: {
      GetRequest m;
      STRATA_ASSIGN_OR_RETURN(m.collection, r.String("collection", max_string));
      STRATA_ASSIGN_OR_RETURN(m.ids, ReadIds(r, limits));
      return m;
    }
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain:
      return ReadSearch(r, op, limits);
    case Op::kStats:
      return StatsRequest{};
    case Op::kFlush: {
      STRATA_ASSIGN_OR_RETURN(std::string name, r.String("collection", max_string));
      return FlushRequest{std::move(name)};
    }
    case Op::kCompact: {
      STRATA_ASSIGN_OR_RETURN(std::string name, r.String("collection", max_string));
      return CompactRequest{std::move(name)};
    }
    case Op::kError:
      break;
  }
  return Error(Unimplemented("unknown request opcode {}", static_cast<uint16_t>(op)));
}

// ---------------------------------------------------------------------------
// Response payloads.
// ---------------------------------------------------------------------------

void WriteResponsePayload(Writer& w, const Response& resp) {
  const ResponseBody& b = resp.body;
  switch (resp.op) {
    case Op::kHello: {
      const auto& m = BodyAs<HelloReply>(b);
      w.U16(m.protocol_version);
      w.String(m.server_version);
      w.U32(m.max_payload);
      w.U32(m.max_batch);
      w.U32(m.max_k);
      w.Bool(m.auth_required);
      return;
    }
    case Op::kPing:
    case Op::kCreateCollection:
    case Op::kDropCollection:
    case Op::kFlush:
    case Op::kCompact:
      (void)BodyAs<EmptyReply>(b);
      return;
    case Op::kListCollections: {
      const auto& m = BodyAs<ListCollectionsReply>(b);
      w.Count(m.collections.size());
      for (const CollectionInfo& info : m.collections) WriteInfo(w, info);
      return;
    }
    case Op::kDescribeCollection:
      WriteInfo(w, BodyAs<DescribeCollectionReply>(b).info);
      return;
    case Op::kUpsert:
    case Op::kDelete:
      w.U64(BodyAs<WriteReply>(b).applied);
      return;
    case Op::kGet: {
      const auto& m = BodyAs<GetReply>(b);
      w.Count(m.records.size());
      for (const std::optional<Record>& rec : m.records) {
        w.Bool(rec.has_value());
        if (rec) WriteFullRecord(w, *rec);
      }
      return;
    }
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain: {
      const auto& m = BodyAs<SearchReply>(b);
      w.Count(m.results.size());
      for (const std::vector<Neighbor>& list : m.results) {
        w.Count(list.size());
        for (const Neighbor& n : list) {
          w.U64(n.id);
          w.Fixed(n.distance);
        }
      }
      if (resp.op == Op::kExplain) w.String(m.explain_json);
      return;
    }
    case Op::kStats: {
      const auto& m = BodyAs<StatsReply>(b);
      for (uint64_t v :
           {m.write_batches, m.upserts, m.deletes, m.searches, m.gets, m.wal_bytes, m.wal_fsyncs,
            m.vectors, m.memory_bytes, m.disk_reads, m.disk_read_bytes}) {
        w.U64(v);
      }
      WriteHistogram(w, m.search_latency);
      WriteHistogram(w, m.write_latency);
      w.U64(m.connections);
      w.U64(m.requests);
      w.U64(m.errors);
      w.U64(m.busy_rejections);
      return;
    }
    case Op::kError: {
      const auto& m = BodyAs<ErrorReply>(b);
      w.U16(static_cast<uint16_t>(m.code));
      w.String(m.message);
      return;
    }
  }
  STRATA_CHECK(false && "EncodeResponse: unknown opcode");
}

Result<ResponseBody> ReadResponseBody(Reader& r, Op op, const DecodeLimits& limits) {
  // Strings a server writes for humans (versions, messages, plans) are bounded by the payload
  // only; names and attribute values obey limits.max_string as in requests.
  constexpr uint32_t kAnyLength = std::numeric_limits<uint32_t>::max();
  switch (op) {
    case Op::kHello: {
      HelloReply m;
      STRATA_ASSIGN_OR_RETURN(m.protocol_version, r.U16("protocol_version"));
      STRATA_ASSIGN_OR_RETURN(m.server_version, r.String("server_version", kAnyLength));
      STRATA_ASSIGN_OR_RETURN(m.max_payload, r.U32("max_payload"));
      STRATA_ASSIGN_OR_RETURN(m.max_batch, r.U32("max_batch"));
      STRATA_ASSIGN_OR_RETURN(m.max_k, r.U32("max_k"));
      STRATA_ASSIGN_OR_RETURN(m.auth_required, r.Bool("auth_required"));
      return m;
    }
    case Op::kPing:
    case Op::kCreateCollection:
    case Op::kDropCollection:
    case Op::kFlush:
    case Op::kCompact:
      return EmptyReply{};
    case Op::kListCollections: {
      ListCollectionsReply m;
      STRATA_ASSIGN_OR_RETURN(uint32_t n, r.Count("count", kAnyLength, "", kMinInfoBytes));
      m.collections.reserve(n);
      for (uint32_t i = 0; i < n; ++i) {
        auto info = ReadInfo(r, limits);
        if (!info) return Error(info.error().WithContext(fmt::format("collection {}", i)));
        m.collections.push_back(std::move(*info));
      }
      return m;
    }
    case Op::kDescribeCollection: {
      STRATA_ASSIGN_OR_RETURN(CollectionInfo info, ReadInfo(r, limits));
      return DescribeCollectionReply{std::move(info)};
    }
    case Op::kUpsert:
    case Op::kDelete: {
      STRATA_ASSIGN_OR_RETURN(uint64_t applied, r.U64("applied"));
      return WriteReply{applied};
    }
    case Op::kGet: {
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
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain: {
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
        STRATA_ASSIGN_OR_RETURN(m.explain_json, r.String("explain_json", kAnyLength));
      }
      return m;
    }
    case Op::kStats: {
      StatsReply m;
      const std::pair<uint64_t*, std::string_view> counters[] = {
          {&m.write_batches, "write_batches"},
          {&m.upserts, "upserts"},
          {&m.deletes, "deletes"},
          {&m.searches, "searches"},
          {&m.gets, "gets"},
          {&m.wal_bytes, "wal_bytes"},
          {&m.wal_fsyncs, "wal_fsyncs"},
          {&m.vectors, "vectors"},
          {&m.memory_bytes, "memory_bytes"},
          {&m.disk_reads, "disk_reads"},
          {&m.disk_read_bytes, "disk_read_bytes"}};
      for (const auto& [field, name] : counters) {
        STRATA_ASSIGN_OR_RETURN(*field, r.U64(name));
      }
      {
        auto h = ReadHistogram(r);
        if (!h) return Error(h.error().WithContext("search_latency"));
        m.search_latency = std::move(*h);
      }
      {
        auto h = ReadHistogram(r);
        if (!h) return Error(h.error().WithContext("write_latency"));
        m.write_latency = std::move(*h);
      }
      STRATA_ASSIGN_OR_RETURN(m.connections, r.U64("connections"));
      STRATA_ASSIGN_OR_RETURN(m.requests, r.U64("requests"));
      STRATA_ASSIGN_OR_RETURN(m.errors, r.U64("errors"));
      STRATA_ASSIGN_OR_RETURN(m.busy_rejections, r.U64("busy_rejections"));
      return m;
    }
    case Op::kError: {
      ErrorReply m;
      // Any code is kept as sent, so that a newer server's codes survive a round trip;
      // StatusFromError maps the ones this build does not know to Internal.
      STRATA_ASSIGN_OR_RETURN(uint16_t code, r.U16("code"));
      m.code = static_cast<ErrorCode>(code);
      STRATA_ASSIGN_OR_RETURN(m.message, r.String("message", kAnyLength));
      return m;
    }
  }
  return Error(Unimplemented("unknown response opcode {}", static_cast<uint16_t>(op)));
}

void BeginFrame(std::vector<uint8_t>& out) { out.resize(out.size() + kHeaderSize); }

void EndFrame(std::vector<uint8_t>& out, size_t frame_start, uint16_t opcode, uint64_t request_id) {
  const uint64_t payload = out.size() - frame_start - kHeaderSize;
  STRATA_CHECK(payload <= std::numeric_limits<uint32_t>::max());
  FrameHeader h;
  h.opcode = opcode;
  h.request_id = request_id;
  h.payload_size = static_cast<uint32_t>(payload);
  EncodeHeader(h, std::span<uint8_t, kHeaderSize>(out.data() + frame_start, kHeaderSize));
}

std::string OpLabel(uint16_t opcode) {
  const std::string_view name = OpName(static_cast<Op>(opcode));
  if (name == "unknown") return fmt::format("opcode {}", opcode);
  return std::string(name);
}

}  // namespace

// ---------------------------------------------------------------------------
// Names and codes.
// ---------------------------------------------------------------------------

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kHello:
      return "hello";
    case Op::kPing:
      return "ping";
    case Op::kCreateCollection:
      return "create_collection";
    case Op::kDropCollection:
      return "drop_collection";
    case Op::kListCollections:
      return "list_collections";
    case Op::kDescribeCollection:
      return "describe_collection";
    case Op::kUpsert:
      return "upsert";
    case Op::kDelete:
      return "delete";
    case Op::kGet:
      return "get";
    case Op::kSearch:
      return "search";
    case Op::kSearchBatch:
      return "search_batch";
    case Op::kExplain:
      return "explain";
    case Op::kStats:
      return "stats";
    case Op::kFlush:
      return "flush";
    case Op::kCompact:
      return "compact";
    case Op::kError:
      return "error";
  }
  return "unknown";
}

bool IsKnownRequestOp(uint16_t opcode) {
  return opcode >= static_cast<uint16_t>(Op::kHello) &&
         opcode <= static_cast<uint16_t>(Op::kCompact);
}

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "InvalidArgument";
    case ErrorCode::kNotFound:
      return "NotFound";
    case ErrorCode::kAlreadyExists:
      return "AlreadyExists";
    case ErrorCode::kCorruption:
      return "Corruption";
    case ErrorCode::kIOError:
      return "IOError";
    case ErrorCode::kOutOfRange:
      return "OutOfRange";
    case ErrorCode::kUnimplemented:
      return "Unimplemented";
    case ErrorCode::kResourceExhausted:
      return "ResourceExhausted";
    case ErrorCode::kCancelled:
      return "Cancelled";
    case ErrorCode::kInternal:
      return "Internal";
    case ErrorCode::kMalformed:
      return "Malformed";
    case ErrorCode::kUnknownOp:
      return "UnknownOp";
    case ErrorCode::kUnauthenticated:
      return "Unauthenticated";
    case ErrorCode::kBusy:
      return "Busy";
    case ErrorCode::kTooLarge:
      return "TooLarge";
    case ErrorCode::kShuttingDown:
      return "ShuttingDown";
  }
  return "Unknown";
}

ErrorCode ErrorCodeFromStatus(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
      return ErrorCode::kInvalidArgument;
    case StatusCode::kNotFound:
      return ErrorCode::kNotFound;
    case StatusCode::kAlreadyExists:
      return ErrorCode::kAlreadyExists;
    case StatusCode::kCorruption:
      return ErrorCode::kCorruption;
    case StatusCode::kIOError:
      return ErrorCode::kIOError;
    case StatusCode::kOutOfRange:
      return ErrorCode::kOutOfRange;
    case StatusCode::kUnimplemented:
      return ErrorCode::kUnimplemented;
    case StatusCode::kResourceExhausted:
      return ErrorCode::kResourceExhausted;
    case StatusCode::kCancelled:
      return ErrorCode::kCancelled;
    case StatusCode::kInternal:
      return ErrorCode::kInternal;
    case StatusCode::kOk:
      break;  // an OK status is not an error; treat it as a server bug
  }
  return ErrorCode::kInternal;
}

Status StatusFromError(ErrorCode code, std::string_view message) {
  StatusCode status;
  switch (code) {
    // 1..10 mirror StatusCode: the code itself says what happened, the text is kept as is.
    case ErrorCode::kInvalidArgument:
      return Status(StatusCode::kInvalidArgument, std::string(message));
    case ErrorCode::kNotFound:
      return Status(StatusCode::kNotFound, std::string(message));
    case ErrorCode::kAlreadyExists:
      return Status(StatusCode::kAlreadyExists, std::string(message));
    case ErrorCode::kCorruption:
      return Status(StatusCode::kCorruption, std::string(message));
    case ErrorCode::kIOError:
      return Status(StatusCode::kIOError, std::string(message));
    case ErrorCode::kOutOfRange:
      return Status(StatusCode::kOutOfRange, std::string(message));
    case ErrorCode::kUnimplemented:
      return Status(StatusCode::kUnimplemented, std::string(message));
    case ErrorCode::kResourceExhausted:
      return Status(StatusCode::kResourceExhausted, std::string(message));
    case ErrorCode::kCancelled:
      return Status(StatusCode::kCancelled, std::string(message));
    case ErrorCode::kInternal:
      return Status(StatusCode::kInternal, std::string(message));
    // Server-only codes: the closest StatusCode, and the code's name in front of the text.
    case ErrorCode::kMalformed:
      status = StatusCode::kInvalidArgument;
      break;
    case ErrorCode::kUnknownOp:
      status = StatusCode::kUnimplemented;
      break;
    case ErrorCode::kUnauthenticated:
      status = StatusCode::kInvalidArgument;
      break;
    case ErrorCode::kBusy:
      status = StatusCode::kResourceExhausted;
      break;
    case ErrorCode::kTooLarge:
      status = StatusCode::kOutOfRange;
      break;
    case ErrorCode::kShuttingDown:
      status = StatusCode::kCancelled;
      break;
    default:
      return Status(StatusCode::kInternal,
                    fmt::format("error code {}: {}", static_cast<uint16_t>(code), message));
  }
  return Status(status, fmt::format("{}: {}", ErrorCodeName(code), message));
}

// ---------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------

void EncodeHeader(const FrameHeader& header, std::span<uint8_t, kHeaderSize> out) {
  auto put = [&](size_t offset, auto value) {
    std::memcpy(out.data() + offset, &value, sizeof(value));
  };
  put(0, kMagic);
  put(4, header.version);
  put(6, header.opcode);
  put(8, header.request_id);
  put(16, header.payload_size);
  put(20, header.flags);
}

Result<FrameHeader> DecodeHeader(std::span<const uint8_t, kHeaderSize> in, uint32_t max_payload) {
  auto get = [&]<typename T>(size_t offset, T& value) {
    std::memcpy(&value, in.data() + offset, sizeof(T));
  };
  uint32_t magic = 0;
  get(0, magic);
  if (magic != kMagic) {
    return Error(
        InvalidArgument("frame header: magic 0x{:08x} is not 0x{:08x} (\"STRA\")", magic, kMagic));
  }
  FrameHeader h;
  get(4, h.version);
  get(6, h.opcode);
  get(8, h.request_id);
  get(16, h.payload_size);
  get(20, h.flags);
  if (h.version != kProtocolVersion) {
    return Error(
        InvalidArgument("frame header: protocol version {} is not supported (this peer "
                        "speaks {})",
                        h.version, kProtocolVersion));
  }
  if (h.flags != 0) {
    return Error(InvalidArgument("frame header: flags 0x{:08x} must be 0", h.flags));
  }
  if (h.payload_size > max_payload) {
    return Error(OutOfRange("frame header: payload_size {} exceeds the limit {}", h.payload_size,
                            max_payload));
  }
  return h;
}

Status ValidateForEncoding(const Request& request) {
  const std::string_view op = OpName(request.op);
  if (!IsKnownRequestOp(static_cast<uint16_t>(request.op))) {
    return InvalidArgument("request: opcode {} is not a request",
                           static_cast<uint16_t>(request.op));
  }
  auto wrong_body = [&] {
    return InvalidArgument("{}: the request body is another opcode's (variant index {})", op,
                           request.body.index());
  };
  auto check_attributes = [&](const Attributes& attributes, size_t i) -> Status {
    if (attributes.size() > std::numeric_limits<uint16_t>::max()) {
      return InvalidArgument("{}: record {}: {} attributes, at most 65535 fit", op, i,
                             attributes.size());
    }
    for (const Attribute& a : attributes) {
      if (a.value.valueless_by_exception()) {
        return InvalidArgument("{}: record {}: attribute '{}' has no value", op, i, a.name);
      }
    }
    return Status::Ok();
  };
  switch (request.op) {
    case Op::kHello:
      if (!std::holds_alternative<HelloRequest>(request.body)) return wrong_body();
      break;
    case Op::kPing:
      if (!std::holds_alternative<PingRequest>(request.body)) return wrong_body();
      break;
    case Op::kCreateCollection:
      if (!std::holds_alternative<CreateCollectionRequest>(request.body)) return wrong_body();
      break;
    case Op::kDropCollection:
      if (!std::holds_alternative<DropCollectionRequest>(request.body)) return wrong_body();
      break;
    case Op::kListCollections:
      if (!std::holds_alternative<ListCollectionsRequest>(request.body)) return wrong_body();
      break;
    case Op::kDescribeCollection:
      if (!std::holds_alternative<DescribeCollectionRequest>(request.body)) return wrong_body();
      break;
    case Op::kUpsert: {
      const auto* m = std::get_if<UpsertRequest>(&request.body);
      if (m == nullptr) return wrong_body();
      for (size_t i = 0; i < m->records.size(); ++i) {
        if (m->records[i].vector.size() != m->dim) {
          return InvalidArgument("{}: record {}: vector has {} components, dim is {}", op, i,
                                 m->records[i].vector.size(), m->dim);
        }
        STRATA_RETURN_IF_ERROR(check_attributes(m->records[i].attributes, i));
      }
      break;
    }
    case Op::kDelete:
      if (!std::holds_alternative<DeleteRequest>(request.body)) return wrong_body();
      break;
    case Op::kGet:
      if (!std::holds_alternative<GetRequest>(request.body)) return wrong_body();
      break;
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain: {
      const auto* m = std::get_if<SearchRequest>(&request.body);
      if (m == nullptr) return wrong_body();
      if (m->queries.size() != uint64_t{m->count} * m->dim) {
        return InvalidArgument("{}: {} query floats, count {} x dim {} needs {}", op,
                               m->queries.size(), m->count, m->dim, uint64_t{m->count} * m->dim);
      }
      if (request.op == Op::kSearchBatch ? m->count == 0 : m->count != 1) {
        return InvalidArgument(
            "{}: count {} (search and explain carry 1 query, a batch at least 1)", op, m->count);
      }
      break;
    }
    case Op::kStats:
      if (!std::holds_alternative<StatsRequest>(request.body)) return wrong_body();
      break;
    case Op::kFlush:
      if (!std::holds_alternative<FlushRequest>(request.body)) return wrong_body();
      break;
    case Op::kCompact:
      if (!std::holds_alternative<CompactRequest>(request.body)) return wrong_body();
      break;
    case Op::kError:
      break;
  }
  Writer counter(nullptr);
  WriteRequestPayload(counter, request);
  if (counter.size() > kAbsoluteMaxPayload) {
    return OutOfRange("{}: payload of {} bytes exceeds the absolute limit {}", op, counter.size(),
                      kAbsoluteMaxPayload);
  }
  return Status::Ok();
}

void EncodeRequest(const Request& request, uint64_t request_id, std::vector<uint8_t>& out) {
  STRATA_CHECK(IsKnownRequestOp(static_cast<uint16_t>(request.op)));
  const size_t start = out.size();
  BeginFrame(out);
  Writer w(&out);
  WriteRequestPayload(w, request);
  EndFrame(out, start, static_cast<uint16_t>(request.op), request_id);
}

void EncodeResponse(const Response& response, uint64_t request_id, std::vector<uint8_t>& out) {
  const bool is_error = response.op == Op::kError;
  STRATA_CHECK(is_error || IsKnownRequestOp(static_cast<uint16_t>(response.op)));
  const size_t start = out.size();
  BeginFrame(out);
  Writer w(&out);
  WriteResponsePayload(w, response);
  const uint16_t opcode =
      is_error ? static_cast<uint16_t>(Op::kError)
               : static_cast<uint16_t>(static_cast<uint16_t>(response.op) | kResponseBit);
  EndFrame(out, start, opcode, request_id);
}

Result<Request> DecodeRequest(const FrameHeader& header, std::span<const uint8_t> payload,
                              const DecodeLimits& limits) {
  if (!IsKnownRequestOp(header.opcode)) {
    return Error(
        Unimplemented("unknown request opcode {} (0x{:04x})", header.opcode, header.opcode));
  }
  const Op op = static_cast<Op>(header.opcode);
  Reader r(payload);
  auto body = ReadRequestBody(r, op, limits);
  if (!body) return Error(body.error().WithContext(OpName(op)));
  if (Status s = r.Finish(); !s.ok()) return Error(s.WithContext(OpName(op)));
  return Request{op, std::move(*body)};
}

Result<Response> DecodeResponse(const FrameHeader& header, std::span<const uint8_t> payload,
                                const DecodeLimits& limits) {
  Op op;
  if (header.opcode == static_cast<uint16_t>(Op::kError)) {
    op = Op::kError;
  } else if ((header.opcode & kResponseBit) != 0 &&
             IsKnownRequestOp(static_cast<uint16_t>(header.opcode & ~kResponseBit))) {
    op = static_cast<Op>(header.opcode & ~kResponseBit);
  } else if ((header.opcode & kResponseBit) == 0 && IsKnownRequestOp(header.opcode)) {
    return Error(InvalidArgument("opcode {} ({}) is a request, not a response", header.opcode,
                                 OpLabel(header.opcode)));
  } else {
    return Error(
        Unimplemented("unknown response opcode {} (0x{:04x})", header.opcode, header.opcode));
  }
  const std::string context = fmt::format("{} reply", OpName(op));
  Reader r(payload);
  auto body = ReadResponseBody(r, op, limits);
  if (!body) return Error(body.error().WithContext(context));
  if (Status s = r.Finish(); !s.ok()) return Error(s.WithContext(context));
  return Response{op, std::move(*body)};
}

}  // namespace strata::protocol
