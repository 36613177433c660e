// The wire protocol's entry points: opcode and error-code names, frame headers, the
// encoding check, and EncodeRequest/DecodeRequest/EncodeResponse/DecodeResponse, which
// frame a payload and map each opcode to its message codec (messages.h; one file per
// message family, each message's encoder next to its decoder).

#include "protocol/protocol.h"

#include <cstring>
#include <type_traits>
#include <variant>
#include <limits>
#include <utility>

#include "protocol/messages.h"
#include "protocol/wire.h"

namespace strata::protocol {

namespace {

using wire::Reader;
using wire::Writer;

// The body alternative an opcode requires. A mismatch is a programmer error (the caller built
// the message), reported by STRATA_CHECK rather than by std::bad_variant_access.
template <typename T, typename Variant>
const T& BodyAs(const Variant& body) {
  const T* p = std::get_if<T>(&body);
  STRATA_CHECK(p != nullptr);
  return *p;
}

// ---------------------------------------------------------------------------
// Opcodes to message codecs.
// ---------------------------------------------------------------------------

void WriteRequestPayload(Writer& w, const Request& req) {
  const RequestBody& b = req.body;
  switch (req.op) {
    case Op::kHello:
      wire::WriteHello(w, BodyAs<HelloRequest>(b));
      return;
    case Op::kPing:
      (void)BodyAs<PingRequest>(b);
      return;
    case Op::kCreateCollection:
      wire::WriteCreateCollection(w, BodyAs<CreateCollectionRequest>(b));
      return;
    case Op::kDropCollection:
      wire::WriteDropCollection(w, BodyAs<DropCollectionRequest>(b));
      return;
    case Op::kListCollections:
    case Op::kListCollectionsWith:
      (void)BodyAs<ListCollectionsRequest>(b);
      return;
    case Op::kDescribeCollection:
    case Op::kDescribeCollectionWith:
      wire::WriteDescribeCollection(w, BodyAs<DescribeCollectionRequest>(b));
      return;
    case Op::kCreateCollectionWith:
      wire::WriteCreateCollectionWith(w, BodyAs<CreateCollectionRequest>(b));
      return;
    case Op::kUpsert:
      wire::WriteUpsert(w, BodyAs<UpsertRequest>(b));
      return;
    case Op::kDelete:
      wire::WriteDelete(w, BodyAs<DeleteRequest>(b));
      return;
    case Op::kGet:
      wire::WriteGet(w, BodyAs<GetRequest>(b));
      return;
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain:
    case Op::kSearchKeyed:
    case Op::kSearchWith:
      wire::WriteSearch(w, req.op, BodyAs<SearchRequest>(b));
      return;
    case Op::kStats:
      (void)BodyAs<StatsRequest>(b);
      return;
    case Op::kFlush:
      wire::WriteFlush(w, BodyAs<FlushRequest>(b));
      return;
    case Op::kCompact:
      wire::WriteCompact(w, BodyAs<CompactRequest>(b));
      return;
    case Op::kUpsertKeyed:
      wire::WriteUpsert(w, BodyAs<UpsertRequest>(b), /*keyed=*/true);
      return;
    case Op::kUpsertKeyedIds:
      wire::WriteUpsertKeyedIds(w, BodyAs<UpsertRequest>(b));
      return;
    case Op::kDeleteKeyed:
    case Op::kGetKeyed:
      wire::WriteKeys(w, BodyAs<KeysRequest>(b));
      return;
    case Op::kListKeys:
      wire::WriteListKeys(w, BodyAs<ListKeysRequest>(b));
      return;
    case Op::kSnapshot:
      wire::WriteSnapshot(w, BodyAs<SnapshotRequest>(b));
      return;
    case Op::kUpsertTyped:
      wire::WriteUpsertTyped(w, BodyAs<UpsertRequest>(b));
      return;
    case Op::kSearchTyped:
      wire::WriteSearchTyped(w, BodyAs<SearchRequest>(b));
      return;
    case Op::kShardFiles:
    case Op::kShardFileRead:
    case Op::kShardFilesDone:
      wire::WriteShardFiles(w, BodyAs<ShardFilesRequest>(b));
      return;
    case Op::kError:
      break;
  }
  STRATA_CHECK(false && "EncodeRequest: not a request opcode");
}

Result<RequestBody> ReadRequestBody(Reader& r, Op op, const DecodeLimits& limits) {
  switch (op) {
    case Op::kHello:
      return wire::ReadHello(r, limits);
    case Op::kPing:
      return PingRequest{};
    case Op::kCreateCollection:
      return wire::ReadCreateCollection(r, limits);
    case Op::kDropCollection:
      return wire::ReadDropCollection(r, limits);
    case Op::kListCollections:
    case Op::kListCollectionsWith:
      return ListCollectionsRequest{};
    case Op::kDescribeCollection:
    case Op::kDescribeCollectionWith:
      return wire::ReadDescribeCollection(r, limits);
    case Op::kCreateCollectionWith:
      return wire::ReadCreateCollectionWith(r, limits);
    case Op::kUpsert:
      return wire::ReadUpsert(r, limits);
    case Op::kDelete:
      return wire::ReadDelete(r, limits);
    case Op::kGet:
      return wire::ReadGet(r, limits);
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain:
      return wire::ReadSearch(r, op, limits);
    case Op::kStats:
      return StatsRequest{};
    case Op::kFlush:
      return wire::ReadFlush(r, limits);
    case Op::kCompact:
      return wire::ReadCompact(r, limits);
    case Op::kUpsertKeyed:
      return wire::ReadUpsert(r, limits, /*keyed=*/true);
    case Op::kUpsertKeyedIds:
      return wire::ReadUpsertKeyedIds(r, limits);
    case Op::kDeleteKeyed:
    case Op::kGetKeyed:
      return wire::ReadKeys(r, limits);
    case Op::kSearchKeyed:
    case Op::kSearchWith:
      return wire::ReadSearch(r, op, limits);
    case Op::kListKeys:
      return wire::ReadListKeys(r, limits);
    case Op::kSnapshot:
      return wire::ReadSnapshot(r, limits);
    case Op::kUpsertTyped:
      return wire::ReadUpsertTyped(r, limits);
    case Op::kSearchTyped:
      return wire::ReadSearchTyped(r, limits);
    case Op::kShardFiles:
    case Op::kShardFileRead:
    case Op::kShardFilesDone:
      return wire::ReadShardFiles(r, op, limits);
    case Op::kError:
      break;
  }
  return Error(Unimplemented("unknown request opcode {}", static_cast<uint16_t>(op)));
}

void WriteResponsePayload(Writer& w, const Response& resp) {
  const ResponseBody& b = resp.body;
  switch (resp.op) {
    case Op::kHello:
      wire::WriteHelloReply(w, BodyAs<HelloReply>(b));
      return;
    case Op::kPing:
    case Op::kCreateCollection:
    case Op::kCreateCollectionWith:
    case Op::kDropCollection:
    case Op::kFlush:
    case Op::kCompact:
      (void)BodyAs<EmptyReply>(b);
      return;
    case Op::kListCollections:
      wire::WriteListCollectionsReply(w, BodyAs<ListCollectionsReply>(b));
      return;
    case Op::kListCollectionsWith:
      wire::WriteListCollectionsWithReply(w, BodyAs<ListCollectionsReply>(b));
      return;
    case Op::kDescribeCollection:
      wire::WriteDescribeCollectionReply(w, BodyAs<DescribeCollectionReply>(b));
      return;
    case Op::kDescribeCollectionWith:
      wire::WriteDescribeCollectionWithReply(w, BodyAs<DescribeCollectionReply>(b));
      return;
    case Op::kUpsert:
    case Op::kDelete:
      wire::WriteWriteReply(w, BodyAs<WriteReply>(b));
      return;
    case Op::kGet:
      wire::WriteGetReply(w, BodyAs<GetReply>(b));
      return;
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain:
      wire::WriteSearchReply(w, resp.op, BodyAs<SearchReply>(b));
      return;
    case Op::kStats:
      wire::WriteStatsReply(w, BodyAs<StatsReply>(b));
      return;
    case Op::kUpsertKeyed:
    case Op::kDeleteKeyed:
    case Op::kUpsertTyped:
      wire::WriteWriteReply(w, BodyAs<WriteReply>(b));
      return;
    case Op::kGetKeyed:
      wire::WriteKeyedGetReply(w, BodyAs<GetReply>(b));
      return;
    case Op::kSearchKeyed:
      wire::WriteKeyedSearchReply(w, BodyAs<KeyedSearchReply>(b));
      return;
    case Op::kListKeys:
      wire::WriteListKeysReply(w, BodyAs<ListKeysReply>(b));
      return;
    case Op::kSnapshot:
      wire::WriteSnapshotReply(w, BodyAs<SnapshotReply>(b));
      return;
    case Op::kSearchWith:
    case Op::kSearchTyped:
      wire::WriteSearchWithReply(w, BodyAs<SearchWithReply>(b));
      return;
    case Op::kUpsertKeyedIds:
      wire::WriteIdsReply(w, BodyAs<IdsReply>(b));
      return;
    case Op::kShardFiles:
      wire::WriteShardFilesReply(w, BodyAs<ShardFilesReply>(b));
      return;
    case Op::kShardFileRead:
      wire::WriteShardFileChunkReply(w, BodyAs<ShardFileChunkReply>(b));
      return;
    case Op::kShardFilesDone:
      (void)BodyAs<EmptyReply>(b);
      return;
    case Op::kError:
      wire::WriteErrorReply(w, BodyAs<ErrorReply>(b));
      return;
  }
  STRATA_CHECK(false && "EncodeResponse: unknown opcode");
}

// Strings a server writes for humans (versions, messages, plans) are bounded by the payload
// only; names and attribute values obey limits.max_string as in requests.
Result<ResponseBody> ReadResponseBody(Reader& r, Op op, const DecodeLimits& limits) {
  switch (op) {
    case Op::kHello:
      return wire::ReadHelloReply(r);
    case Op::kPing:
    case Op::kCreateCollection:
    case Op::kCreateCollectionWith:
    case Op::kDropCollection:
    case Op::kFlush:
    case Op::kCompact:
      return EmptyReply{};
    case Op::kListCollections:
      return wire::ReadListCollectionsReply(r, limits);
    case Op::kListCollectionsWith:
      return wire::ReadListCollectionsWithReply(r, limits);
    case Op::kDescribeCollection:
      return wire::ReadDescribeCollectionReply(r, limits);
    case Op::kDescribeCollectionWith:
      return wire::ReadDescribeCollectionWithReply(r, limits);
    case Op::kUpsert:
    case Op::kDelete:
      return wire::ReadWriteReply(r);
    case Op::kGet:
      return wire::ReadGetReply(r, limits);
    case Op::kSearch:
    case Op::kSearchBatch:
    case Op::kExplain:
      return wire::ReadSearchReply(r, op, limits);
    case Op::kStats:
      return wire::ReadStatsReply(r);
    case Op::kUpsertKeyed:
    case Op::kDeleteKeyed:
    case Op::kUpsertTyped:
      return wire::ReadWriteReply(r);
    case Op::kGetKeyed:
      return wire::ReadKeyedGetReply(r, limits);
    case Op::kSearchKeyed:
      return wire::ReadKeyedSearchReply(r, limits);
    case Op::kListKeys:
      return wire::ReadListKeysReply(r, limits);
    case Op::kSnapshot:
      return wire::ReadSnapshotReply(r);
    case Op::kSearchWith:
    case Op::kSearchTyped:
      return wire::ReadSearchWithReply(r, limits);
    case Op::kUpsertKeyedIds:
      return wire::ReadIdsReply(r, limits);
    case Op::kShardFiles:
      return wire::ReadShardFilesReply(r, limits);
    case Op::kShardFileRead:
      return wire::ReadShardFileChunkReply(r, limits);
    case Op::kShardFilesDone:
      return EmptyReply{};
    case Op::kError:
      return wire::ReadErrorReply(r);
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
    case Op::kCreateCollectionWith: {
      const auto* m = std::get_if<CreateCollectionRequest>(&request.body);
      if (m == nullptr) return wrong_body();
      if (m->spec.dim > std::numeric_limits<uint32_t>::max()) {
        return InvalidArgument("{}: dim {} does not fit the wire's u32", op, m->spec.dim);
      }
      if (request.op == Op::kCreateCollection &&
          (m->spec.codes != VectorCodes::kNone || m->spec.rerank != 0)) {
        return InvalidArgument("{}: codes and rerank travel only in create_collection_with (23)", op);
      }
      break;
    }
    case Op::kDropCollection:
      if (!std::holds_alternative<DropCollectionRequest>(request.body)) return wrong_body();
      break;
    case Op::kListCollections:
    case Op::kListCollectionsWith:
      if (!std::holds_alternative<ListCollectionsRequest>(request.body)) return wrong_body();
      break;
    case Op::kDescribeCollection:
    case Op::kDescribeCollectionWith:
      if (!std::holds_alternative<DescribeCollectionRequest>(request.body)) return wrong_body();
      break;
    case Op::kUpsert:
    case Op::kUpsertKeyed:
    case Op::kUpsertKeyedIds: {
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
    case Op::kExplain:
    case Op::kSearchKeyed:
    case Op::kSearchWith: {
      const auto* m = std::get_if<SearchRequest>(&request.body);
      if (m == nullptr) return wrong_body();
      if (m->queries.size() != uint64_t{m->count} * m->dim) {
        return InvalidArgument("{}: {} query floats, count {} x dim {} needs {}", op,
                               m->queries.size(), m->count, m->dim, uint64_t{m->count} * m->dim);
      }
      const bool many = request.op == Op::kSearchBatch || request.op == Op::kSearchKeyed ||
                        request.op == Op::kSearchWith;
      if (many ? m->count == 0 : m->count != 1) {
        return InvalidArgument(
            "{}: count {} (search and explain carry 1 query, search_batch, search_keyed and "
            "search_with at least 1)",
            op, m->count);
      }
      if (m->options.with_attributes && request.op != Op::kSearchWith) {
        return InvalidArgument("{}: options.with_attributes needs the search_with request", op);
      }
      if ((m->options.allow_partial || m->options.shard_timeout_ms != 0) && request.op != Op::kSearchWith) {
        return InvalidArgument(
            "{}: options.allow_partial and shard_timeout_ms need the search_with request", op);
      }
      if (m->options.prepared_filter != nullptr) {
        return InvalidArgument(
            "{}: options.prepared_filter is the embedded engine's; send the filter text", op);
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
    case Op::kDeleteKeyed:
    case Op::kGetKeyed:
      if (!std::holds_alternative<KeysRequest>(request.body)) return wrong_body();
      break;
    case Op::kListKeys:
      if (!std::holds_alternative<ListKeysRequest>(request.body)) return wrong_body();
      break;
    case Op::kSnapshot:
      if (!std::holds_alternative<SnapshotRequest>(request.body)) return wrong_body();
      break;
    case Op::kShardFiles:
    case Op::kShardFileRead:
    case Op::kShardFilesDone: {
      const auto* m = std::get_if<ShardFilesRequest>(&request.body);
      if (m == nullptr) return wrong_body();
      if (request.op == Op::kShardFileRead && (m->length == 0 || m->length > kMaxShardFileChunk)) {
        return InvalidArgument("{}: length {} must be in 1..{}", op, m->length, kMaxShardFileChunk);
      }
      break;
    }
    case Op::kUpsertTyped: {
      const auto* m = std::get_if<UpsertRequest>(&request.body);
      if (m == nullptr) return wrong_body();
      if (static_cast<uint8_t>(m->element) > kLastElementType) {
        return InvalidArgument("{}: element type {} is not one of float32, float16, int8, uint8", op,
                               static_cast<uint8_t>(m->element));
      }
      if (m->element != ElementType::kFloat32) {
        const uint64_t need = uint64_t{m->records.size()} * m->dim * ElementSize(m->element);
        if (m->elements.size() != need) {
          return InvalidArgument("{}: {} bytes of {} values, {} records x dim {} needs {}", op,
                                 m->elements.size(), ElementTypeName(m->element), m->records.size(), m->dim,
                                 need);
        }
      } else if (!m->elements.empty()) {
        return InvalidArgument("{}: float32 vectors travel in the records, not in elements", op);
      }
      for (size_t i = 0; i < m->records.size(); ++i) {
        const size_t want = m->element == ElementType::kFloat32 ? m->dim : 0;
        if (m->records[i].vector.size() != want) {
          return InvalidArgument("{}: record {}: vector has {} components, {} expected ({} element type)", op, i,
                                 m->records[i].vector.size(), want, ElementTypeName(m->element));
        }
        STRATA_RETURN_IF_ERROR(check_attributes(m->records[i].attributes, i));
      }
      break;
    }
    case Op::kSearchTyped: {
      const auto* m = std::get_if<SearchRequest>(&request.body);
      if (m == nullptr) return wrong_body();
      if (static_cast<uint8_t>(m->element) > kLastElementType) {
        return InvalidArgument("{}: element type {} is not one of float32, float16, int8, uint8", op,
                               static_cast<uint8_t>(m->element));
      }
      const uint64_t values = uint64_t{m->count} * m->dim;
      const bool narrow = m->element != ElementType::kFloat32;
      if (narrow ? (m->elements.size() != values * ElementSize(m->element) || !m->queries.empty())
                 : (m->queries.size() != values || !m->elements.empty())) {
        return InvalidArgument("{}: {} query floats and {} bytes of {} values, count {} x dim {} needs {} values",
                               op, m->queries.size(), m->elements.size(), ElementTypeName(m->element), m->count,
                               m->dim, values);
      }
      if (m->count == 0) return InvalidArgument("{}: count 0 (search_typed carries at least 1 query)", op);
      if (m->options.prepared_filter != nullptr) {
        return InvalidArgument("{}: options.prepared_filter is the embedded engine's; send the filter text", op);
      }
      break;
    }
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

namespace {

Result<UpsertHead> ReadUpsertHead(Reader& r, Op op, const DecodeLimits& limits) {
  // The least each record takes besides its vector, as its codec counts it (ReadUpsert,
  // ReadUpsertKeyedIds, ReadUpsertTyped): an id or a key's length, and the attribute count.
  uint64_t per_record = 0;
  UpsertHead head;
  switch (op) {
    case Op::kUpsert:
      per_record = 8 + 2;
      break;
    case Op::kUpsertKeyed:
      per_record = wire::kMinStringBytes + 2;
      break;
    case Op::kUpsertKeyedIds:
      per_record = 8 + wire::kMinStringBytes + 2;
      break;
    case Op::kUpsertTyped: {
      STRATA_ASSIGN_OR_RETURN(uint8_t element, r.U8("element type"));
      STRATA_ASSIGN_OR_RETURN(head.element, ElementTypeFromByte(element));
      STRATA_ASSIGN_OR_RETURN(uint8_t flags, r.U8("flags"));
      per_record = ((flags & 1u) != 0 ? wire::kMinStringBytes : 8) + 2;
      break;
    }
    default:
      return Error(InvalidArgument("opcode {} is not an upsert", static_cast<uint16_t>(op)));
  }
  STRATA_ASSIGN_OR_RETURN(std::string collection, r.String("collection", limits.max_string));
  STRATA_ASSIGN_OR_RETURN(head.dim, r.U32("dim"));
  if (head.dim > limits.max_dim) {
    return Error(wire::OverLimit("dim", "", head.dim, limits.max_dim, "max_dim"));
  }
  const uint64_t min_record = per_record + uint64_t{head.dim} * ElementSize(head.element);
  STRATA_ASSIGN_OR_RETURN(head.count, r.Count("count", limits.max_batch, "max_batch", min_record));
  return head;
}

}  // namespace

Result<UpsertHead> PeekUpsertHead(const FrameHeader& header, std::span<const uint8_t> payload,
                                  const DecodeLimits& limits) {
  Reader r(payload);
  auto head = ReadUpsertHead(r, static_cast<Op>(header.opcode), limits);
  if (!head) return Error(head.error().WithContext(OpLabel(header.opcode)));
  return head;
}

const std::string* RequestCollection(const Request& request) {
  const std::string* name = nullptr;
  std::visit(
      [&](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, DropCollectionRequest> || std::is_same_v<M, DescribeCollectionRequest>) {
          name = &m.name;
        } else if constexpr (requires { m.collection; }) {
          if constexpr (std::is_same_v<std::decay_t<decltype(m.collection)>, std::string>) name = &m.collection;
        }
      },
      request.body);
  return name;
}

Result<std::string> PeekWriteCollection(const FrameHeader& header, std::span<const uint8_t> payload,
                                        const DecodeLimits& limits) {
  Reader r(payload);
  switch (static_cast<Op>(header.opcode)) {
    case Op::kUpsertTyped:
      // u8 element type, u8 flags, then an upsert's payload.
      for (const char* field : {"element type", "flags"}) {
        if (auto b = r.U8(field); !b) return Error(b.error().WithContext(OpLabel(header.opcode)));
      }
      break;
    case Op::kUpsert:
    case Op::kUpsertKeyed:
    case Op::kUpsertKeyedIds:
    case Op::kDelete:
    case Op::kDeleteKeyed:
      break;
    default:
      return Error(InvalidArgument("opcode {} is not a write", header.opcode));
  }
  auto collection = r.String("collection", limits.max_string);
  if (!collection) return Error(collection.error().WithContext(OpLabel(header.opcode)));
  return collection;
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
