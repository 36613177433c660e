#pragma once
// Strata's wire protocol: frames, messages, and their encoding (docs/PROTOCOL.md).
//
// Every message travels in one frame: a fixed 24-byte little-endian header
// followed by `payload_size` bytes of payload.
//
//   offset  size  field
//   0       4     magic        "STRA" (0x41525453 read as a little-endian u32)
//   4       2     version      kProtocolVersion; a peer refuses any other
//   6       2     opcode       Op; a response carries the request's opcode | kResponseBit,
//                              an error response carries Op::kError
//   8       8     request_id   chosen by the client, echoed in the response (pipelining:
//                              responses may come back in any order)
//   16      4     payload_size bytes after the header; at most the receiver's max frame size
//   20      4     flags        0 (reserved; a non-zero value is a framing error)
//
// Payload primitives (all little-endian): u8/u16/u32/u64/i64, f32/f64 (IEEE-754),
// bool (u8 0 or 1; anything else is malformed), string (u32 length + bytes),
// vectors of floats as raw f32 arrays whose length follows from counts already read.
// A decoder checks every length against the bytes left before reading and refuses
// trailing bytes, so that what it allocates is bounded by a constant factor of the
// payload: up to about 8x (a tag of 4 wire bytes decodes to a 32-byte std::string, an
// attribute of 9 to some 70 bytes), not by what a header or count claims. A receiver
// that holds many decoded requests at once must budget for that factor.
//
// This layer knows nothing of the engine: the types that cross the wire (spec, options,
// records, attributes, explain) are the shared vocabulary of api/, which the engine and
// the client both speak, so that a client links strata_protocol, strata_api and
// strata_core only. The server maps engine calls to messages (server/convert.h).
//
// Thread safety: free functions over values; safe to call from any thread.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api/attributes.h"
#include "api/explain.h"
#include "api/histogram.h"
#include "api/types.h"
#include "core/element.h"
#include "core/metric.h"
#include "core/status.h"
#include "core/types.h"

namespace strata::protocol {

inline constexpr uint32_t kMagic = 0x41525453;  // "STRA"
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kHeaderSize = 24;
inline constexpr uint16_t kResponseBit = 0x8000;
// Largest frame any peer may be configured to accept (the server's own limit is smaller).
inline constexpr uint32_t kAbsoluteMaxPayload = 1u << 30;

enum class Op : uint16_t {
  kHello = 1,
  kPing = 2,
  kCreateCollection = 3,
  kDropCollection = 4,
  kListCollections = 5,
  kDescribeCollection = 6,
  kUpsert = 7,
  kDelete = 8,
  kGet = 9,
  kSearch = 10,       // one query
  kSearchBatch = 11,  // many queries, one response
  kExplain = 12,      // one query; the response adds the plan and its cost (JSON)
  kStats = 13,
  kFlush = 14,
  kCompact = 15,
  // Records by string key (api/types.h has the rule), added within version 1:
  kUpsertKeyed = 16,  // UpsertRequest, each record's key instead of its id
  kDeleteKeyed = 17,  // KeysRequest
  kGetKeyed = 18,     // KeysRequest; the reply's records carry their keys
  kSearchKeyed = 19,  // SearchRequest (1 or more queries); every hit carries its key
  kListKeys = 20,     // ListKeysRequest: a page of keys (Engine::ListKeys)
  // Added within version 1: a consistent copy of a collection (Engine::Snapshot), written
  // under the server's snapshot_dir only.
  kSnapshot = 21,     // SnapshotRequest; SnapshotReply
  // Added within version 1: a search (1 or more queries) whose reply carries each hit's key,
  // its attributes on request (SearchOptions::with_attributes) and the filter's warnings.
  kSearchWith = 22,   // SearchRequest + u32 fields; SearchWithReply
  // Added within version 1: a collection spec with the parts that came after version 1's
  // CollectionSpec (codes, rerank), named by a u32 fields word (docs/PROTOCOL.md).
  kCreateCollectionWith = 23,    // CreateCollectionRequest: spec + fields; EmptyReply
  kDescribeCollectionWith = 24,  // DescribeCollectionRequest; DescribeCollectionReply + fields
  // Added within version 1: upsert by key with the id each key must have (or kInvalidVectorId:
  // the server finds or assigns it, as upsert_keyed does), replying with every record's id.
  // What a cluster's router uses to make a shard's replicas agree on each key's id
  // (docs/CLUSTER.md).
  kUpsertKeyedIds = 25,  // UpsertRequest, each record's id and key; IdsReply
  // Added within version 1: list_collections whose infos carry the spec's parts after version
  // 1's CollectionSpec (codes, rerank), each info followed by describe_collection_with's fields.
  kListCollectionsWith = 26,  // ListCollectionsRequest; ListCollectionsReply + fields per info
  // Added within version 1: vectors as float16, int8 or uint8 (core/element.h), sent as they
  // are instead of widened to float32 (docs/PROTOCOL.md). 27 and 28 are left for other requests.
  kUpsertTyped = 29,  // UpsertRequest (element, keyed); WriteReply
  kSearchTyped = 30,  // SearchRequest (element) as search_with; SearchWithReply
  // Added within version 1, between cluster nodes only (a server without a cluster answers
  // Unimplemented): a shard replica's files, for another replica's catch-up (docs/CLUSTER.md,
  // "Catch-up"). The collection is a shard address; all three carry ShardFilesRequest.
  kShardFiles = 31,      // a consistent copy of the shard taken now; ShardFilesReply
  kShardFileRead = 32,   // a piece of one of its files; ShardFileChunkReply
  kShardFilesDone = 33,  // the copy is no longer needed (its files are removed); EmptyReply
  kError = 0x7fff,    // only in responses: ErrorReply
};
// The highest request opcode: request opcodes are 1..kLastRequestOp (tables indexed by
// opcode, such as the server's per-op counters, size themselves by it).
inline constexpr Op kLastRequestOp = Op::kShardFilesDone;
std::string_view OpName(Op op);  // "search", "upsert", ...; "unknown" otherwise
bool IsKnownRequestOp(uint16_t opcode);

// Error codes carried by error frames. 1..10 mirror StatusCode; the rest belong to the server.
enum class ErrorCode : uint16_t {
  kInvalidArgument = 1,
  kNotFound = 2,
  kAlreadyExists = 3,
  kCorruption = 4,
  kIOError = 5,
  kOutOfRange = 6,
  kUnimplemented = 7,
  kResourceExhausted = 8,
  kCancelled = 9,
  kInternal = 10,
  kMalformed = 100,        // the payload could not be decoded (the connection stays usable)
  kUnknownOp = 101,
  kUnauthenticated = 102,  // hello with a valid token required first
  kBusy = 103,             // the server's queue is full; retry later
  kTooLarge = 104,         // a batch, k or frame over the server's limits
  kShuttingDown = 105,
};
std::string_view ErrorCodeName(ErrorCode code);
ErrorCode ErrorCodeFromStatus(StatusCode code);
// The status a client returns for an error frame (server-only codes map to the
// closest StatusCode; the message keeps the server's text, prefixed with the code name).
Status StatusFromError(ErrorCode code, std::string_view message);

struct FrameHeader {
  uint16_t version = kProtocolVersion;
  uint16_t opcode = 0;
  uint64_t request_id = 0;
  uint32_t payload_size = 0;
  uint32_t flags = 0;
};
void EncodeHeader(const FrameHeader& header, std::span<uint8_t, kHeaderSize> out);
// Checks magic, version, flags and payload_size <= max_payload. A failure here is a
// framing error: the receiver answers with an error frame (if it can) and closes.
Result<FrameHeader> DecodeHeader(std::span<const uint8_t, kHeaderSize> in, uint32_t max_payload);

// ---------------------------------------------------------------------------
// Types that cross the wire.
// ---------------------------------------------------------------------------

// The shared vocabulary (api/types.h, api/attributes.h, api/explain.h): CollectionSpec,
// CollectionInfo, SearchOptions, SearchStrategy, Record, Attributes, Explain,
// HistogramSnapshot, and core's
// Metric and Neighbor. Enums travel as their u8 value (Metric 0 l2, 1 ip, 2 cosine;
// SearchStrategy 0 auto, 1 index, 2 scan, 3 post-filter); CollectionSpec::dim as u32;
// size_t counts as u64. SearchOptions::prepared_filter is the embedded engine's and never
// crosses the wire (ValidateForEncoding refuses a request that sets it).

// ---------------------------------------------------------------------------
// Requests. Each struct is one opcode's payload.
// ---------------------------------------------------------------------------

struct HelloRequest {            // kHello: string client_name, string token
  std::string client_name;
  std::string token;             // empty unless the server requires one
};
struct PingRequest {};           // kPing: empty payload
struct CreateCollectionRequest { CollectionSpec spec; };
struct DropCollectionRequest { std::string name; };
struct ListCollectionsRequest {};
struct DescribeCollectionRequest { std::string name; };
// kUpsert: string collection, u32 dim, u32 count, then count x (u64 id, dim x f32,
// u16 attribute count, attributes). Applied atomically as one write batch. kUpsertKeyed:
// each record's string key instead of its id. kUpsertKeyedIds: each record's u64 id, then
// its string key.
// kUpsertTyped: u8 element type (0 float32, 1 float16, 2 int8, 3 uint8), u8 flags (bit 0:
// records by key), then kUpsert's payload (kUpsertKeyed's with bit 0) whose vectors are dim x
// that element type. Only kUpsertTyped reads `element`, `elements` and `keyed`.
struct UpsertRequest {
  std::string collection;
  uint32_t dim = 0;
  std::vector<Record> records;   // each vector has `dim` components (empty: see `elements`)
  ElementType element = ElementType::kFloat32;
  // Other than float32: the records' vectors, records.size() x dim values of `element`,
  // row-major, little-endian, the records' own vectors being empty. float32 travels in them.
  std::vector<uint8_t> elements{};
  bool keyed = false;            // kUpsertTyped: records named by Record::key
};
struct DeleteRequest {           // string collection, u32 count, count x u64
  std::string collection;
  std::vector<VectorId> ids;
};
struct GetRequest {              // string collection, u32 count, count x u64
  std::string collection;
  std::vector<VectorId> ids;
};
// kSearch / kExplain: exactly one query; kSearchBatch, kSearchKeyed, kSearchWith: one or
// more. Payload: string collection, options (u32 k, f64 recall, u32 ef, u32 max_lists, string
// filter, u8 strategy), u32 dim, u32 count, count x dim x f32 (row-major); kSearchWith then
// adds u32 fields: bit 0 = options.with_attributes, bit 1 = options.allow_partial, bit 2 = a
// u32 options.shard_timeout_ms follows (other bits: malformed). Only kSearchWith carries
// with_attributes, allow_partial and shard_timeout_ms (ValidateForEncoding refuses them on the
// others); a request without bits 1 and 2 has the bytes it had before they existed.
// kSearchTyped: u8 element type, then kSearchWith's payload whose queries are count x dim
// values of that type; its reply is kSearchWith's.
struct SearchRequest {
  std::string collection;
  SearchOptions options{};
  uint32_t dim = 0;
  uint32_t count = 0;
  std::vector<float> queries{};  // count * dim (empty for another element: see `elements`)
  // kSearchTyped only: other than float32, the queries as count x dim values of `element`.
  ElementType element = ElementType::kFloat32;
  std::vector<uint8_t> elements{};
};
// kDeleteKeyed / kGetKeyed: string collection, u32 count, count x string key.
struct KeysRequest {
  std::string collection;
  std::vector<std::string> keys;
};
// kListKeys: string collection, u64 cursor (0: from the start), u32 count (most keys wanted).
struct ListKeysRequest {
  std::string collection;
  uint64_t cursor = 0;
  uint32_t count = 0;
};
struct StatsRequest {};
struct FlushRequest { std::string collection; };
struct CompactRequest { std::string collection; };
// kSnapshot: string collection, string name. `name` is one path component that the server
// creates inside its snapshot_dir (it checks the name: [A-Za-z0-9._-], not "." or "..").
struct SnapshotRequest {
  std::string collection;
  std::string name;
};

// kShardFiles, kShardFileRead, kShardFilesDone: string collection (a shard address), string
// token (kShardFiles' reply names it; empty in kShardFiles), string path (one of the reply's
// files), u64 offset, u32 length (1..kMaxShardFileChunk; path, offset and length are read by
// kShardFileRead only, and sent empty / 0 by the other two).
inline constexpr uint32_t kMaxShardFileChunk = 1u << 20;
struct ShardFilesRequest {
  std::string collection;
  std::string token;
  std::string path;
  uint64_t offset = 0;
  uint32_t length = 0;
};

using RequestBody = std::variant<HelloRequest, PingRequest, CreateCollectionRequest,
                                 DropCollectionRequest, ListCollectionsRequest,
                                 DescribeCollectionRequest, UpsertRequest, DeleteRequest,
                                 GetRequest, SearchRequest, StatsRequest, FlushRequest,
                                 CompactRequest, KeysRequest, ListKeysRequest, SnapshotRequest,
                                 ShardFilesRequest>;
struct Request {
  // kSearch, kSearchBatch, kExplain, kSearchKeyed and kSearchWith share SearchRequest; kUpsert,
  // kUpsertKeyed and kUpsertKeyedIds share UpsertRequest (by key: Record::key, the id is not
  // sent; kUpsertKeyedIds: both, kInvalidVectorId for "find or assign").
  Op op = Op::kPing;
  RequestBody body;
};

// ---------------------------------------------------------------------------
// Responses (opcode = request opcode | kResponseBit, or kError).
// ---------------------------------------------------------------------------

struct HelloReply {
  uint16_t protocol_version = kProtocolVersion;
  std::string server_version;
  uint32_t max_payload = 0;      // the server's frame limit
  uint32_t max_batch = 0;        // most records / ids / queries per request
  uint32_t max_k = 0;
  bool auth_required = false;
};
struct EmptyReply {};            // ping, create, drop, flush, compact
// kListCollections: u32 n, n x CollectionInfo; kListCollectionsWith: each CollectionInfo
// followed by u32 fields and the parts they name (as kDescribeCollectionWith's).
struct ListCollectionsReply { std::vector<CollectionInfo> collections; };
struct DescribeCollectionReply { CollectionInfo info; };
struct WriteReply { uint64_t applied = 0; };   // upsert / delete: operations applied
// For every requested id (or key: kGetKeyed), in order: u8 found, then (found) the record
// (kGetKeyed: with its key after its id).
struct GetReply { std::vector<std::optional<Record>> records; };
// kSearchKeyed: per query u32 n, n x (u64 id, f32 distance, string key; empty: written by id).
struct KeyedSearchReply { std::vector<std::vector<KeyedNeighbor>> results; };
// kUpsertKeyedIds: u32 n, n x u64: each record's id, in request order.
struct IdsReply { std::vector<VectorId> ids; };
// kListKeys: u64 next_cursor (0: done), u32 n, n x (u64 id, string key).
struct ListKeysReply { KeyPage page; };
// kSnapshot: string path (the directory written, absolute on the server's host), then
// u64 each: sequence (the last write batch in the snapshot; 0: none), segments (sealed
// segments in it), files_linked, files_copied, bytes_copied (Engine's SnapshotReport).
struct SnapshotReply {
  std::string path;
  uint64_t sequence = 0;
  uint64_t segments = 0;
  uint64_t files_linked = 0;
  uint64_t files_copied = 0;
  uint64_t bytes_copied = 0;
};
// kSearchWith: u32 fields (bit 0: hits carry attributes), u32 query count, per query u32 n,
// n x (u64 id, f32 distance, string key (empty: written by id), [u16 + attributes when bit 0]),
// then u32 count x string warnings: why the filter may match nothing although it parses
// (attributes no record has, a comparison with a type the attribute never holds:
// Engine::FilterWarnings); empty without a filter or when there is nothing to say. Bit 1 of
// fields (a cluster collection searched with allow_partial, some shards missing): then
// u32 count x (u32 shard, string reason), the shards whose hits are not in the results.
struct MissingShard {
  uint32_t shard = 0;
  std::string reason;  // names the replica(s) tried and why each failed
  friend bool operator==(const MissingShard&, const MissingShard&) = default;
};
struct SearchWithReply {
  bool with_attributes = false;
  std::vector<std::vector<KeyedNeighbor>> results;
  std::vector<std::string> warnings;
  std::vector<MissingShard> missing;  // non-empty: the reply is partial
  bool partial() const { return !missing.empty(); }
};
// Per query: u32 n, n x (u64 id, f32 distance). kExplain adds the plan as a string, its
// JSON form (Explain::ToJson; decoded with Explain::FromJson, a malformed plan being
// InvalidArgument).
struct SearchReply {
  std::vector<std::vector<Neighbor>> results;
  Explain explain{};             // kExplain only
};
struct StatsReply {              // the engine's counters (EngineCounters) and the server's
  uint64_t write_batches = 0, upserts = 0, deletes = 0, searches = 0, gets = 0;
  uint64_t wal_bytes = 0, wal_fsyncs = 0, vectors = 0, memory_bytes = 0;
  uint64_t disk_reads = 0, disk_read_bytes = 0;
  HistogramSnapshot search_latency, write_latency;
  uint64_t connections = 0;      // open now
  uint64_t requests = 0;         // answered since start
  uint64_t errors = 0;           // error frames sent since start
  uint64_t busy_rejections = 0;
};
struct ErrorReply {              // u16 code, string message
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// kShardFiles: string token (names the copy in the next requests), u64 sequence (the last
// write batch in it; Engine's SnapshotReport), u32 n, n x (string path (relative, '/'
// separated), u64 size, u64 xxh64 of the whole file, seed 0).
struct ShardFile {
  std::string path;
  uint64_t size = 0;
  uint64_t xxh64 = 0;
  friend bool operator==(const ShardFile&, const ShardFile&) = default;
};
struct ShardFilesReply {
  std::string token;
  uint64_t sequence = 0;
  std::vector<ShardFile> files;
};
// kShardFileRead: string data: the file's bytes from the offset asked, as many as asked, fewer
// only where the file ends (none at or past its end).
struct ShardFileChunkReply { std::string data; };

using ResponseBody = std::variant<HelloReply, EmptyReply, ListCollectionsReply,
                                  DescribeCollectionReply, WriteReply, GetReply, SearchReply,
                                  StatsReply, ErrorReply, KeyedSearchReply, ListKeysReply,
                                  SnapshotReply, SearchWithReply, IdsReply, ShardFilesReply,
                                  ShardFileChunkReply>;
struct Response {
  Op op = Op::kPing;             // the request's op, or kError
  ResponseBody body;
};

// Limits a decoder enforces (beyond the frame size, which DecodeHeader checks); a value
// over one of them is OutOfRange (see DecodeRequest).
struct DecodeLimits {
  uint32_t max_batch = 100000;   // records / ids / queries per request
  uint32_t max_dim = 65536;
  uint32_t max_string = 1u << 20;  // filter expressions, names, attribute strings
  uint32_t max_attributes = 256;
  uint32_t max_tags = 1024;
};

// Whole frames (header + payload) appended to `out`.
void EncodeRequest(const Request& request, uint64_t request_id, std::vector<uint8_t>& out);
void EncodeResponse(const Response& response, uint64_t request_id, std::vector<uint8_t>& out);

// Decodes one payload for the opcode in `header`. InvalidArgument naming the field
// at fault for malformed input (short, trailing bytes, bad enum or bool, a count the
// payload cannot hold, count * dim not matching); OutOfRange for a well-formed count,
// dim or string length over one of `limits`, naming the field, the value and the
// DecodeLimits member ("upsert: count: 5 exceeds the limit 4 (max_batch)"): a server
// answers that with kTooLarge rather than kMalformed. Unimplemented for an unknown
// opcode. Checks shape only: finite floats, k and collection existence are the
// server's business.
Result<Request> DecodeRequest(const FrameHeader& header, std::span<const uint8_t> payload,
                              const DecodeLimits& limits = {});
Result<Response> DecodeResponse(const FrameHeader& header, std::span<const uint8_t> payload,
                                const DecodeLimits& limits = {});

// The head of an upsert's payload (upsert, upsert_keyed, upsert_keyed_ids, upsert_typed), read
// without its records: what a server needs to size the memory the upsert will hold (its reply,
// its rows widened to float32) before it decodes the records. The count is checked as
// DecodeRequest checks it (it must fit the payload and `limits`), so a head that is returned
// bounds what the decoded request can be; an error is what DecodeRequest would say about the
// head (or InvalidArgument for another opcode), and the server then leaves the answer to it.
struct UpsertHead {
  ElementType element = ElementType::kFloat32;  // upsert_typed's; float32 for the others
  uint32_t dim = 0;
  uint32_t count = 0;  // records
};
Result<UpsertHead> PeekUpsertHead(const FrameHeader& header, std::span<const uint8_t> payload,
                                  const DecodeLimits& limits = {});

// The collection a write names (upsert, upsert_keyed, upsert_keyed_ids, upsert_typed, delete,
// delete_keyed), read from the head of its payload without decoding the rest: what a server
// needs to choose the pool that runs the write (a cluster node's requests between nodes run
// on pools of their own: server_impl.h). An error for another opcode or a payload too short.
Result<std::string> PeekWriteCollection(const FrameHeader& header, std::span<const uint8_t> payload,
                                        const DecodeLimits& limits = {});
// The collection a decoded request names: `collection`, or `name` for describe_collection and
// drop_collection; nullptr for one that names none (hello, ping, create_collection,
// list_collections, stats). Points into `request`.
const std::string* RequestCollection(const Request& request);

// ---------------------------------------------------------------------------
// Details of the functions above, and helpers added after the first contract.
// ---------------------------------------------------------------------------
//
// DecodeHeader: a payload_size over max_payload is OutOfRange (a server answers kTooLarge);
// bad magic, version or flags are InvalidArgument (kMalformed). Both close the connection.
//
// DecodeRequest / DecodeResponse read only header.opcode; the payload span is authoritative
// (DecodeHeader and the frame reader are responsible for payload_size). DecodeResponse:
// an opcode without kResponseBit that names a request is InvalidArgument; any other unknown
// opcode is Unimplemented. Limits apply to responses too, except that strings a server writes
// for people (server_version, error messages, explain_json) and the neighbor and collection
// counts are bounded only by the payload. An ErrorReply keeps any u16 code as sent, known or
// not (StatusFromError maps unknown codes to Internal), so that a newer server's codes
// survive.
//
// EncodeRequest / EncodeResponse abort (STRATA_CHECK) on a message that cannot be encoded
// faithfully: a body that is not the op's alternative, an upsert record whose vector is not
// `dim` floats long, queries.size() != count * dim, more than 65535 attributes on a record,
// a payload over 4 GiB, a collection spec whose dim exceeds u32, search options with a
// prepared_filter. Those are programmer errors; a caller holding user input checks the
// request first with ValidateForEncoding.

// InvalidArgument naming the record or field for each of the conditions above, plus the search
// count rules (kSearch / kExplain: count == 1; kSearchBatch: count >= 1) and a payload over
// kAbsoluteMaxPayload (OutOfRange). OK means EncodeRequest will not abort; a server may still
// refuse counts, dims or strings over its own limits (DecodeLimits, HelloReply).
Status ValidateForEncoding(const Request& request);

// The float32 form of a typed request's vectors (upsert_typed, search_typed), for the paths
// that need them whole: a search's queries, a cluster node routing typed upserts to its
// shards. InvalidArgument naming the op when `elements` is not count x dim values of
// `element`, or when a widened float16 value is infinite or NaN. A float32 request's own
// vectors are returned as they are.
Result<std::vector<float>> WidenedQueries(const SearchRequest& m);
Result<std::vector<Record>> WidenedRecords(const UpsertRequest& m);
// The size check both make of an upsert_typed of float16, int8 or uint8: `elements` holds
// records x dim values of `element` (InvalidArgument naming the sizes otherwise).
Status CheckTypedRows(const UpsertRequest& m);

}  // namespace strata::protocol
