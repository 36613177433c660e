#include "protocol/protocol.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tests/protocol/counting_new.h"
#include "tests/protocol/sample_messages.h"

// Value equality for the message structs that do not define it in protocol.h (tests only;
// floats compare by value, so NaN content is checked bit for bit where it matters).
namespace strata::protocol {
bool operator==(const HelloRequest& a, const HelloRequest& b) {
  return a.client_name == b.client_name && a.token == b.token;
}
bool operator==(const PingRequest&, const PingRequest&) { return true; }
bool operator==(const CreateCollectionRequest& a, const CreateCollectionRequest& b) {
  return a.spec == b.spec;
}
bool operator==(const DropCollectionRequest& a, const DropCollectionRequest& b) {
  return a.name == b.name;
}
bool operator==(const ListCollectionsRequest&, const ListCollectionsRequest&) { return true; }
bool operator==(const DescribeCollectionRequest& a, const DescribeCollectionRequest& b) {
  return a.name == b.name;
}
bool operator==(const UpsertRequest& a, const UpsertRequest& b) {
  return a.collection == b.collection && a.dim == b.dim && a.records == b.records && a.element == b.element &&
         a.elements == b.elements && a.keyed == b.keyed;
}
bool operator==(const DeleteRequest& a, const DeleteRequest& b) {
  return a.collection == b.collection && a.ids == b.ids;
}
bool operator==(const GetRequest& a, const GetRequest& b) {
  return a.collection == b.collection && a.ids == b.ids;
}
bool operator==(const SearchRequest& a, const SearchRequest& b) {
  return a.collection == b.collection && a.options == b.options && a.dim == b.dim &&
         a.count == b.count && a.queries == b.queries && a.element == b.element && a.elements == b.elements;
}
bool operator==(const StatsRequest&, const StatsRequest&) { return true; }
bool operator==(const FlushRequest& a, const FlushRequest& b) {
  return a.collection == b.collection;
}
bool operator==(const CompactRequest& a, const CompactRequest& b) {
  return a.collection == b.collection;
}
bool operator==(const KeysRequest& a, const KeysRequest& b) {
  return a.collection == b.collection && a.keys == b.keys;
}
bool operator==(const ListKeysRequest& a, const ListKeysRequest& b) {
  return a.collection == b.collection && a.cursor == b.cursor && a.count == b.count;
}
bool operator==(const SnapshotRequest& a, const SnapshotRequest& b) {
  return a.collection == b.collection && a.name == b.name;
}
bool operator==(const ShardFilesRequest& a, const ShardFilesRequest& b) {
  return a.collection == b.collection && a.token == b.token && a.path == b.path && a.offset == b.offset &&
         a.length == b.length;
}
bool operator==(const Request& a, const Request& b) { return a.op == b.op && a.body == b.body; }

bool operator==(const HelloReply& a, const HelloReply& b) {
  return a.protocol_version == b.protocol_version && a.server_version == b.server_version &&
         a.max_payload == b.max_payload && a.max_batch == b.max_batch && a.max_k == b.max_k &&
         a.auth_required == b.auth_required;
}
bool operator==(const EmptyReply&, const EmptyReply&) { return true; }
bool operator==(const ListCollectionsReply& a, const ListCollectionsReply& b) {
  return a.collections == b.collections;
}
bool operator==(const DescribeCollectionReply& a, const DescribeCollectionReply& b) {
  return a.info == b.info;
}
bool operator==(const WriteReply& a, const WriteReply& b) { return a.applied == b.applied; }
bool operator==(const GetReply& a, const GetReply& b) { return a.records == b.records; }
bool operator==(const SearchReply& a, const SearchReply& b) {
  return a.results == b.results && a.explain == b.explain;
}
bool operator==(const StatsReply& a, const StatsReply& b) {
  return a.write_batches == b.write_batches && a.upserts == b.upserts && a.deletes == b.deletes &&
         a.searches == b.searches && a.gets == b.gets && a.wal_bytes == b.wal_bytes &&
         a.wal_fsyncs == b.wal_fsyncs && a.vectors == b.vectors &&
         a.memory_bytes == b.memory_bytes && a.disk_reads == b.disk_reads &&
         a.disk_read_bytes == b.disk_read_bytes && a.search_latency == b.search_latency &&
         a.write_latency == b.write_latency && a.connections == b.connections &&
         a.requests == b.requests && a.errors == b.errors && a.busy_rejections == b.busy_rejections;
}
bool operator==(const ErrorReply& a, const ErrorReply& b) {
  return a.code == b.code && a.message == b.message;
}
bool operator==(const KeyedSearchReply& a, const KeyedSearchReply& b) { return a.results == b.results; }
bool operator==(const ListKeysReply& a, const ListKeysReply& b) { return a.page == b.page; }
bool operator==(const IdsReply& a, const IdsReply& b) { return a.ids == b.ids; }
bool operator==(const SnapshotReply& a, const SnapshotReply& b) {
  return a.path == b.path && a.sequence == b.sequence && a.segments == b.segments &&
         a.files_linked == b.files_linked && a.files_copied == b.files_copied &&
         a.bytes_copied == b.bytes_copied;
}
bool operator==(const SearchWithReply& a, const SearchWithReply& b) {
  return a.with_attributes == b.with_attributes && a.results == b.results && a.warnings == b.warnings &&
         a.missing == b.missing;
}
bool operator==(const ShardFilesReply& a, const ShardFilesReply& b) {
  return a.token == b.token && a.sequence == b.sequence && a.files == b.files;
}
bool operator==(const ShardFileChunkReply& a, const ShardFileChunkReply& b) { return a.data == b.data; }
bool operator==(const Response& a, const Response& b) { return a.op == b.op && a.body == b.body; }
}  // namespace strata::protocol

namespace strata::protocol {
namespace {

using testing::CountAllocations;
using testing::SampleRequests;
using testing::SampleResponses;

// ---------------------------------------------------------------------------
// Helpers: frames split back into header and payload.
// ---------------------------------------------------------------------------

struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;
};

Frame Split(const std::vector<uint8_t>& bytes) {
  EXPECT_GE(bytes.size(), kHeaderSize);
  auto h = DecodeHeader(std::span<const uint8_t, kHeaderSize>(bytes.data(), kHeaderSize),
                        kAbsoluteMaxPayload);
  EXPECT_TRUE(h.has_value()) << h.error().ToString();
  return Frame{*h, std::vector<uint8_t>(bytes.begin() + kHeaderSize, bytes.end())};
}

Frame EncodeReq(const Request& r, uint64_t id = 1) {
  std::vector<uint8_t> out;
  EncodeRequest(r, id, out);
  return Split(out);
}

Frame EncodeResp(const Response& r, uint64_t id = 1) {
  std::vector<uint8_t> out;
  EncodeResponse(r, id, out);
  return Split(out);
}

FrameHeader HeaderFor(uint16_t opcode, size_t payload_size = 0) {
  FrameHeader h;
  h.opcode = opcode;
  h.request_id = 5;
  h.payload_size = static_cast<uint32_t>(payload_size);
  return h;
}

Result<Request> DecodeReq(uint16_t opcode, const std::vector<uint8_t>& payload,
                          const DecodeLimits& limits = {}) {
  return DecodeRequest(HeaderFor(opcode, payload.size()), payload, limits);
}

Result<Response> DecodeResp(uint16_t opcode, const std::vector<uint8_t>& payload,
                            const DecodeLimits& limits = {}) {
  return DecodeResponse(HeaderFor(opcode, payload.size()), payload, limits);
}

uint16_t Reply(Op op) { return static_cast<uint16_t>(static_cast<uint16_t>(op) | kResponseBit); }

// Little-endian payload builder for hand-made (often malformed) payloads.
class Bytes {
 public:
  Bytes& U8(uint8_t v) { return Put(v); }
  Bytes& U16(uint16_t v) { return Put(v); }
  Bytes& U32(uint32_t v) { return Put(v); }
  Bytes& U64(uint64_t v) { return Put(v); }
  Bytes& I64(int64_t v) { return Put(v); }
  Bytes& F32(float v) { return Put(v); }
  Bytes& F64(double v) { return Put(v); }
  Bytes& Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& Raw(std::vector<uint8_t> b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  const std::vector<uint8_t>& get() const { return bytes_; }

 private:
  template <typename T>
  Bytes& Put(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    bytes_.insert(bytes_.end(), b, b + sizeof(T));
    return *this;
  }
  std::vector<uint8_t> bytes_;
};

// Search payload after the collection name and options.
Bytes SearchPayload(uint32_t dim, uint32_t count, size_t floats) {
  Bytes b;
  b.Str("c").U32(10).F64(0).U32(0).U32(0).Str("").U8(0).U32(dim).U32(count);
  for (size_t i = 0; i < floats; ++i) b.F32(float(i));
  return b;
}

void ExpectMalformed(const Result<Request>& r, std::string_view fragment) {
  ASSERT_FALSE(r.has_value()) << "decoded although malformed";
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
  EXPECT_NE(r.error().message().find(fragment), std::string::npos)
      << "'" << r.error().message() << "' does not mention '" << fragment << "'";
}

void ExpectMalformed(const Result<Response>& r, std::string_view fragment) {
  ASSERT_FALSE(r.has_value()) << "decoded although malformed";
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
  EXPECT_NE(r.error().message().find(fragment), std::string::npos)
      << "'" << r.error().message() << "' does not mention '" << fragment << "'";
}

// Well-formed but over one of the DecodeLimits: OutOfRange (a server's kTooLarge).
template <typename T>
void ExpectOverLimit(const Result<T>& r, std::string_view fragment) {
  ASSERT_FALSE(r.has_value()) << "decoded although over a limit";
  EXPECT_EQ(r.error().code(), StatusCode::kOutOfRange) << r.error().ToString();
  EXPECT_NE(r.error().message().find(fragment), std::string::npos)
      << "'" << r.error().message() << "' does not mention '" << fragment << "'";
}

// ---------------------------------------------------------------------------
// Round trips.
// ---------------------------------------------------------------------------

TEST(ProtocolRoundTrip, EveryRequestKind) {
  const std::vector<Request> requests = SampleRequests();
  ASSERT_EQ(requests.size(), 31u);  // kHello .. kListCollectionsWith, kUpsertTyped .. kShardFilesDone
  ASSERT_EQ(requests.back().op, kLastRequestOp);
  uint64_t id = 1000;
  for (const Request& req : requests) {
    SCOPED_TRACE(std::string(OpName(req.op)));
    std::vector<uint8_t> bytes;
    EncodeRequest(req, id, bytes);
    Frame f = Split(bytes);
    EXPECT_EQ(f.header.opcode, static_cast<uint16_t>(req.op));
    EXPECT_EQ(f.header.request_id, id);
    EXPECT_EQ(f.header.version, kProtocolVersion);
    EXPECT_EQ(f.header.flags, 0u);
    EXPECT_EQ(f.header.payload_size, bytes.size() - kHeaderSize);
    auto back = DecodeRequest(f.header, f.payload);
    ASSERT_TRUE(back.has_value()) << back.error().ToString();
    EXPECT_TRUE(*back == req);
    EXPECT_TRUE(ValidateForEncoding(req).ok());
    // Deterministic: the decoded message encodes to the same bytes.
    std::vector<uint8_t> again;
    EncodeRequest(*back, id, again);
    EXPECT_EQ(again, bytes);
    ++id;
  }
}

TEST(ProtocolRoundTrip, EveryResponseKind) {
  const std::vector<Response> responses = SampleResponses();
  ASSERT_EQ(responses.size(), 32u);  // kHello .. kListCollectionsWith, 29 .. 33, then kError
  uint64_t id = 1u << 31;
  for (const Response& resp : responses) {
    SCOPED_TRACE(std::string(OpName(resp.op)));
    std::vector<uint8_t> bytes;
    EncodeResponse(resp, id, bytes);
    Frame f = Split(bytes);
    const uint16_t want_opcode = resp.op == Op::kError ? uint16_t{0x7fff} : Reply(resp.op);
    EXPECT_EQ(f.header.opcode, want_opcode);
    EXPECT_EQ(f.header.request_id, id);
    auto back = DecodeResponse(f.header, f.payload);
    ASSERT_TRUE(back.has_value()) << back.error().ToString();
    EXPECT_TRUE(*back == resp);
    std::vector<uint8_t> again;
    EncodeResponse(*back, id, again);
    EXPECT_EQ(again, bytes);
    ++id;
  }
}

TEST(ProtocolRoundTrip, EmptyMessagesAndDefaults) {
  // Empty strings, no records, no attributes, default histograms.
  const std::vector<Request> requests = {
      {Op::kHello, HelloRequest{}},
      {Op::kUpsert, UpsertRequest{"", 0, {}}},
      {Op::kUpsert, UpsertRequest{"c", 2, {Record{5, {1, 2}, {}}}}},
      {Op::kDelete, DeleteRequest{}},
      {Op::kGet, GetRequest{"c", {}}},
      {Op::kSearchBatch, testing::SampleSearch(1, SearchStrategy::kAuto, "")},
  };
  for (const Request& req : requests) {
    Frame f = EncodeReq(req);
    auto back = DecodeRequest(f.header, f.payload);
    ASSERT_TRUE(back.has_value()) << OpName(req.op) << ": " << back.error().ToString();
    EXPECT_TRUE(*back == req) << OpName(req.op);
  }
  const std::vector<Response> responses = {
      {Op::kHello, HelloReply{}},
      {Op::kListCollections, ListCollectionsReply{}},
      {Op::kGet, GetReply{{std::nullopt, std::nullopt}}},
      {Op::kSearch, SearchReply{{{}}, {}}},
      {Op::kExplain, SearchReply{{{}}, {}}},
      {Op::kStats, StatsReply{}},
      {Op::kError, ErrorReply{ErrorCode::kBusy, ""}},
  };
  for (const Response& resp : responses) {
    Frame f = EncodeResp(resp);
    auto back = DecodeResponse(f.header, f.payload);
    ASSERT_TRUE(back.has_value()) << OpName(resp.op) << ": " << back.error().ToString();
    EXPECT_TRUE(*back == resp) << OpName(resp.op);
  }
}

TEST(ProtocolRoundTrip, FramesAppendToTheBuffer) {
  std::vector<uint8_t> out = {0xaa};
  EncodeRequest({Op::kPing, PingRequest{}}, 1, out);
  EncodeRequest({Op::kDropCollection, DropCollectionRequest{"x"}}, 2, out);
  ASSERT_EQ(out.size(), 1 + kHeaderSize + kHeaderSize + 5);
  EXPECT_EQ(out[0], 0xaa);
  std::vector<uint8_t> second(out.begin() + 1 + kHeaderSize, out.end());
  Frame f = Split(second);
  EXPECT_EQ(f.header.request_id, 2u);
  auto req = DecodeRequest(f.header, f.payload);
  ASSERT_TRUE(req.has_value());
  EXPECT_EQ(std::get<DropCollectionRequest>(req->body).name, "x");
}

TEST(ProtocolRoundTrip, ExplainOnlyTravelsWithExplainAsItsJson) {
  SearchReply reply{{{{1, 0.5f}}}, testing::SampleExplain()};
  Frame search = EncodeResp({Op::kSearch, reply});
  Frame explain = EncodeResp({Op::kExplain, reply});
  EXPECT_EQ(explain.payload.size(),
            search.payload.size() + 4 + reply.explain.ToJson().size());
  auto s = DecodeResponse(search.header, search.payload);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(std::get<SearchReply>(s->body).explain, Explain{});
  auto e = DecodeResponse(explain.header, explain.payload);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(std::get<SearchReply>(e->body).explain, reply.explain);
}

TEST(ProtocolDecode, ExplainThatIsNotItsJsonIsMalformed) {
  Bytes b;
  b.U32(1).U32(1).U64(7).F32(0.5f).Str("{\"k\": \"ten\"}");
  auto r = DecodeResp(Reply(Op::kExplain), b.get());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("explain: k"), std::string::npos) << r.error().message();
}

TEST(ProtocolValidate, EngineOnlyFieldsAreRefusedBeforeEncoding) {
  SearchRequest s = testing::SampleSearch(1, SearchStrategy::kAuto, "");
  s.options.prepared_filter = reinterpret_cast<const PreparedFilter*>(&s);  // never dereferenced
  Status st = ValidateForEncoding({Op::kSearch, s});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("prepared_filter"), std::string::npos) << st.message();

  CreateCollectionRequest create{testing::SampleSpec()};
  create.spec.dim = size_t{1} << 32;
  st = ValidateForEncoding({Op::kCreateCollection, create});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("u32"), std::string::npos) << st.message();
}

TEST(ProtocolRoundTrip, UnknownErrorCodeIsKeptAndMapsToInternal) {
  Bytes b;
  b.U16(777).Str("from a newer server");
  auto r = DecodeResp(0x7fff, b.get());
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  const auto& e = std::get<ErrorReply>(r->body);
  EXPECT_EQ(static_cast<uint16_t>(e.code), 777);
  EXPECT_EQ(ErrorCodeName(e.code), "Unknown");
  Frame again = EncodeResp(*r);
  EXPECT_EQ(again.payload, b.get());
  Status s = StatusFromError(e.code, e.message);
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("777"), std::string::npos);
  EXPECT_NE(s.message().find("from a newer server"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Byte layout (docs/PROTOCOL.md shows these bytes).
// ---------------------------------------------------------------------------

TEST(ProtocolLayout, PingFrameBytes) {
  std::vector<uint8_t> out;
  EncodeRequest({Op::kPing, PingRequest{}}, 0x0102030405060708ull, out);
  const std::vector<uint8_t> want = {0x53, 0x54, 0x52, 0x41,  // "STRA"
                                     0x01, 0x00,              // version 1
                                     0x02, 0x00,              // opcode 2 (ping)
                                     0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // request_id
                                     0x00, 0x00, 0x00, 0x00,   // payload_size 0
                                     0x00, 0x00, 0x00, 0x00};  // flags
  EXPECT_EQ(out, want);
  std::vector<uint8_t> reply;
  EncodeResponse({Op::kPing, EmptyReply{}}, 0x0102030405060708ull, reply);
  std::vector<uint8_t> want_reply = want;
  want_reply[7] = 0x80;  // opcode 0x8002
  EXPECT_EQ(reply, want_reply);
}

TEST(ProtocolLayout, PayloadFieldsInDocumentedOrder) {
  // Delete: string collection, u32 count, count x u64.
  Frame del = EncodeReq({Op::kDelete, DeleteRequest{"ab", {1, 0x1122334455667788ull}}});
  EXPECT_EQ(del.payload, Bytes().Str("ab").U32(2).U64(1).U64(0x1122334455667788ull).get());

  // Upsert with one attribute of each type.
  Record rec{9, {1.5f, -2.0f}, {}};
  rec.attributes = {
      {"i", int64_t{-3}}, {"d", 0.25}, {"s", std::string("xy")}, {"t", TagList{"p", ""}}};
  Frame up = EncodeReq({Op::kUpsert, UpsertRequest{"c", 2, {rec}}});
  Bytes want_up;
  want_up.Str("c").U32(2).U32(1).U64(9).F32(1.5f).F32(-2.0f).U16(4);
  want_up.Str("i").U8(0).I64(-3);
  want_up.Str("d").U8(1).F64(0.25);
  want_up.Str("s").U8(2).Str("xy");
  want_up.Str("t").U8(3).U32(2).Str("p").Str("");
  EXPECT_EQ(up.payload, want_up.get());

  // Search: collection, options (k, recall, ef, max_lists, filter, strategy), dim, count, floats.
  SearchRequest s;
  s.collection = "c";
  s.options = SearchOptions{7, 0.5, 33, 4, "f", SearchStrategy::kScan};
  s.dim = 2;
  s.count = 1;
  s.queries = {3.0f, 4.0f};
  Frame search = EncodeReq({Op::kSearch, s});
  EXPECT_EQ(search.payload, Bytes()
                                .Str("c")
                                .U32(7)
                                .F64(0.5)
                                .U32(33)
                                .U32(4)
                                .Str("f")
                                .U8(2)
                                .U32(2)
                                .U32(1)
                                .F32(3)
                                .F32(4)
                                .get());

  // Get reply: u32 count, then u8 found and (found) u64 id, u32 dim, floats, attributes.
  Frame get = EncodeResp({Op::kGet, GetReply{{std::nullopt, Record{4, {2.0f}, {}}}}});
  EXPECT_EQ(get.payload, Bytes().U32(2).U8(0).U8(1).U64(4).U32(1).F32(2).U16(0).get());

  // Search reply: u32 query count, per query u32 n then n x (u64 id, f32 distance).
  Frame sr = EncodeResp({Op::kSearchBatch, SearchReply{{{{5, 0.5f}}, {}}, {}}});
  EXPECT_EQ(sr.payload, Bytes().U32(2).U32(1).U64(5).F32(0.5f).U32(0).get());

  // Hello reply and error reply.
  Frame hello = EncodeResp({Op::kHello, HelloReply{1, "v", 100, 200, 300, true}});
  EXPECT_EQ(hello.payload, Bytes().U16(1).Str("v").U32(100).U32(200).U32(300).U8(1).get());
  Frame err = EncodeResp({Op::kError, ErrorReply{ErrorCode::kTooLarge, "big"}});
  EXPECT_EQ(err.header.opcode, 0x7fff);
  EXPECT_EQ(err.payload, Bytes().U16(104).Str("big").get());
}

TEST(ProtocolLayout, KeyedMessagesInDocumentedOrder) {
  // upsert_keyed: string collection, u32 dim, u32 count, count x (string key, floats, attributes).
  Record rec{kInvalidVectorId, {1.5f, -2.0f}, {}, "k1"};
  Frame up = EncodeReq({Op::kUpsertKeyed, UpsertRequest{"c", 2, {rec}}});
  EXPECT_EQ(up.header.opcode, 16);
  EXPECT_EQ(up.payload, Bytes().Str("c").U32(2).U32(1).Str("k1").F32(1.5f).F32(-2.0f).U16(0).get());
  // delete_keyed (17) and get_keyed (18): string collection, u32 count, count x string key.
  Frame del = EncodeReq({Op::kDeleteKeyed, KeysRequest{"c", {"a", "bc"}}});
  EXPECT_EQ(del.header.opcode, 17);
  EXPECT_EQ(del.payload, Bytes().Str("c").U32(2).Str("a").Str("bc").get());
  EXPECT_EQ(EncodeReq({Op::kGetKeyed, KeysRequest{"c", {"a", "bc"}}}).payload, del.payload);
  // get_keyed reply: per key u8 found, then u64 id, string key, u32 dim, floats, attributes.
  Frame get = EncodeResp({Op::kGetKeyed, GetReply{{std::nullopt, Record{kKeyedIdBase, {2.0f}, {}, "a"}}}});
  EXPECT_EQ(get.payload,
            Bytes().U32(2).U8(0).U8(1).U64(kKeyedIdBase).Str("a").U32(1).F32(2).U16(0).get());
  // search_keyed (19) takes a search request; its reply adds a key to every hit.
  Frame sr = EncodeResp({Op::kSearchKeyed, KeyedSearchReply{{{{kKeyedIdBase, 0.5f, "a"}, {3, 1.0f, ""}}}}});
  EXPECT_EQ(sr.header.opcode, 0x8013);
  EXPECT_EQ(sr.payload, Bytes().U32(1).U32(2).U64(kKeyedIdBase).F32(0.5f).Str("a").U64(3).F32(1.0f).Str("").get());
  // list_keys (20): string collection, u64 cursor, u32 count; reply u64 next_cursor, u32 n,
  // n x (u64 id, string key).
  Frame lk = EncodeReq({Op::kListKeys, ListKeysRequest{"c", 5, 10}});
  EXPECT_EQ(lk.payload, Bytes().Str("c").U64(5).U32(10).get());
  Frame lr = EncodeResp({Op::kListKeys, ListKeysReply{KeyPage{{"a"}, {kKeyedIdBase + 4}, 5}}});
  EXPECT_EQ(lr.payload, Bytes().U64(5).U32(1).U64(kKeyedIdBase + 4).Str("a").get());
  // A keyed search carries one query or more (like a batch), never none.
  SearchRequest none = testing::SampleSearch(1, SearchStrategy::kAuto, "");
  none.count = 0;
  none.queries.clear();
  EXPECT_FALSE(ValidateForEncoding({Op::kSearchKeyed, none}).ok());
}

TEST(ProtocolLayout, SnapshotInDocumentedOrder) {
  // snapshot (21): string collection, string name.
  Frame req = EncodeReq({Op::kSnapshot, SnapshotRequest{"docs", "nightly-1"}});
  EXPECT_EQ(req.header.opcode, 21);
  EXPECT_EQ(req.payload, Bytes().Str("docs").Str("nightly-1").get());
  // Its reply (0x8015): string path, then u64 sequence, segments, files_linked, files_copied,
  // bytes_copied.
  Frame rep = EncodeResp({Op::kSnapshot, SnapshotReply{"/s/nightly-1", 7, 2, 9, 1, 4096}});
  EXPECT_EQ(rep.header.opcode, 0x8015);
  EXPECT_EQ(rep.payload, Bytes().Str("/s/nightly-1").U64(7).U64(2).U64(9).U64(1).U64(4096).get());
  // Strict: a byte more is malformed, as is a reply cut inside its counters.
  std::vector<uint8_t> longer = req.payload;
  longer.push_back(0);
  ExpectMalformed(DecodeRequest(req.header, longer), "trailing");
  std::vector<uint8_t> shorter(rep.payload.begin(), rep.payload.end() - 1);
  EXPECT_FALSE(DecodeResponse(rep.header, shorter).has_value());
  // The name obeys max_string like any other name.
  DecodeLimits tight;
  tight.max_string = 4;
  ExpectOverLimit(DecodeRequest(req.header, req.payload, tight), "name");
  // A request body of another opcode is refused before encoding.
  EXPECT_FALSE(ValidateForEncoding({Op::kSnapshot, CompactRequest{"docs"}}).ok());
  EXPECT_TRUE(ValidateForEncoding({Op::kSnapshot, SnapshotRequest{"docs", "n"}}).ok());
}

TEST(ProtocolLayout, SearchWithInDocumentedOrder) {
  // search_with (22): a search request (1 or more queries), then u32 fields (bit 0: attributes).
  SearchRequest m;
  m.collection = "c";
  m.options.k = 2;
  m.options.filter = "a == 1";
  m.options.with_attributes = true;
  m.dim = 1;
  m.count = 1;
  m.queries = {0.5f};
  Frame req = EncodeReq({Op::kSearchWith, m});
  EXPECT_EQ(req.header.opcode, 22);
  EXPECT_EQ(req.payload, Bytes().Str("c").U32(2).F64(0).U32(0).U32(0).Str("a == 1").U8(0).U32(1).U32(1).F32(0.5f)
                             .U32(1).get());
  // Unknown field bits are malformed, so that a client learns the server lacks them.
  std::vector<uint8_t> unknown = req.payload;
  unknown.back() = 0x02;
  ExpectMalformed(DecodeRequest(req.header, unknown), "fields");
  // The older searches have no room for with_attributes: refused before encoding.
  EXPECT_FALSE(ValidateForEncoding({Op::kSearch, m}).ok());
  EXPECT_FALSE(ValidateForEncoding({Op::kSearchKeyed, m}).ok());
  EXPECT_TRUE(ValidateForEncoding({Op::kSearchWith, m}).ok());
  // Its reply (0x8016): u32 fields, u32 query count, per query u32 n and n x (u64 id, f32
  // distance, string key, [attributes]), then u32 count x string warnings.
  Attributes at = {{"n", int64_t{3}}};
  Frame rep = EncodeResp({Op::kSearchWith, SearchWithReply{true, {{{5, 0.25f, "", at}}}, {"w"}, {}}});
  EXPECT_EQ(rep.header.opcode, 0x8016);
  EXPECT_EQ(rep.payload, Bytes().U32(1).U32(1).U32(1).U64(5).F32(0.25f).Str("").U16(1).Str("n").U8(0).I64(3)
                             .U32(1).Str("w").get());
  // Without attributes the hits end at their key.
  Frame plain = EncodeResp({Op::kSearchWith, SearchWithReply{false, {{{5, 0.25f, "k", {}}}}, {}, {}}});
  EXPECT_EQ(plain.payload, Bytes().U32(0).U32(1).U32(1).U64(5).F32(0.25f).Str("k").U32(0).get());
  auto back = DecodeResponse(rep.header, rep.payload);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  const auto& r = std::get<SearchWithReply>(back->body);
  EXPECT_EQ(r.results[0][0].attributes, at);
  EXPECT_EQ(r.warnings, std::vector<std::string>{"w"});
  std::vector<uint8_t> shorter(rep.payload.begin(), rep.payload.end() - 1);
  EXPECT_FALSE(DecodeResponse(rep.header, shorter).has_value());
}

TEST(ProtocolLayout, SearchWithPartialRepliesInDocumentedOrder) {
  // Cluster collections: fields bit 1 = allow partial, bit 2 = a u32 shard timeout follows.
  SearchRequest m;
  m.collection = "c";
  m.options.k = 2;
  m.dim = 1;
  m.count = 1;
  m.queries = {0.5f};
  const auto head = [] { return Bytes().Str("c").U32(2).F64(0).U32(0).U32(0).Str("").U8(0).U32(1).U32(1).F32(0.5f); };
  // Neither: the bytes a request had before the bits existed.
  EXPECT_EQ(EncodeReq({Op::kSearchWith, m}).payload, head().U32(0).get());
  m.options.allow_partial = true;
  m.options.shard_timeout_ms = 250;
  Frame req = EncodeReq({Op::kSearchWith, m});
  EXPECT_EQ(req.payload, head().U32(6).U32(250).get());
  auto back = DecodeRequest(req.header, req.payload);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_TRUE(std::get<SearchRequest>(back->body).options.allow_partial);
  EXPECT_EQ(std::get<SearchRequest>(back->body).options.shard_timeout_ms, 250u);
  m.options.shard_timeout_ms = 0;
  EXPECT_EQ(EncodeReq({Op::kSearchWith, m}).payload, head().U32(2).get());
  // Bit 2 with a zero timeout is malformed; the older searches have no room for either.
  ExpectMalformed(DecodeRequest(req.header, head().U32(4).U32(0).get()), "shard_timeout_ms");
  EXPECT_FALSE(ValidateForEncoding({Op::kSearch, m}).ok());
  EXPECT_FALSE(ValidateForEncoding({Op::kExplain, m}).ok());
  // The reply: bit 1 when shards are missing, then u32 count x (u32 shard, string reason)
  // after the warnings; a whole reply has the bytes it had before.
  SearchWithReply partial{false, {{{5, 0.25f, "", {}}}}, {}, {{2, "n2: no answer"}}};
  Frame rep = EncodeResp({Op::kSearchWith, partial});
  EXPECT_EQ(rep.payload, Bytes().U32(2).U32(1).U32(1).U64(5).F32(0.25f).Str("").U32(0)
                             .U32(1).U32(2).Str("n2: no answer").get());
  auto reply = DecodeResponse(rep.header, rep.payload);
  ASSERT_TRUE(reply.has_value()) << reply.error().ToString();
  EXPECT_EQ(std::get<SearchWithReply>(reply->body), partial);
  EXPECT_TRUE(std::get<SearchWithReply>(reply->body).partial());
  // Bit 1 with no missing shard is malformed.
  ExpectMalformed(DecodeResponse(rep.header, Bytes().U32(2).U32(0).U32(0).U32(0).get()), "missing shard count");
}

TEST(ProtocolLayout, CollectionSpecWithCodesInDocumentedOrder) {
  CollectionSpec spec;
  spec.name = "c";
  spec.dim = 3;
  spec.metric = Metric::kCosine;
  spec.codes = VectorCodes::kSq8;
  spec.rerank = 40;
  Bytes v1;  // version 1's CollectionSpec
  v1.Str("c").U32(3).U8(2).U32(16).U32(200).U64(100000).U64(0);
  // create_collection_with (23): the spec, then u32 fields (bit 0: u8 codes, u32 rerank).
  Frame req = EncodeReq({Op::kCreateCollectionWith, CreateCollectionRequest{spec}});
  EXPECT_EQ(req.header.opcode, 23);
  EXPECT_EQ(req.payload, Bytes(v1).U32(1).U8(1).U32(40).get());
  auto back = DecodeRequest(req.header, req.payload);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(std::get<CreateCollectionRequest>(back->body).spec, spec);
  // A create_collection (3) keeps its bytes: a spec without codes encodes as before, and
  // one with codes is refused before encoding (version 1's spec has no room for them).
  CollectionSpec plain = spec;
  plain.codes = VectorCodes::kNone;
  plain.rerank = 0;
  EXPECT_EQ(EncodeReq({Op::kCreateCollection, CreateCollectionRequest{plain}}).payload, v1.get());
  EXPECT_FALSE(ValidateForEncoding({Op::kCreateCollection, CreateCollectionRequest{spec}}).ok());
  EXPECT_TRUE(ValidateForEncoding({Op::kCreateCollectionWith, CreateCollectionRequest{spec}}).ok());
  // Fields absent: the defaults; unknown bits and unknown codes are malformed.
  Frame none = req;
  none.payload = Bytes(v1).U32(0).get();
  auto defaults = DecodeRequest(none.header, none.payload);
  ASSERT_TRUE(defaults.has_value()) << defaults.error().ToString();
  EXPECT_EQ(std::get<CreateCollectionRequest>(defaults->body).spec, plain);
  ExpectMalformed(DecodeRequest(req.header, Bytes(v1).U32(3).U8(1).U32(40).get()), "fields");
  ExpectMalformed(DecodeRequest(req.header, Bytes(v1).U32(1).U8(2).U32(40).get()), "codes");
  // describe_collection_with (24): a name; its reply, a CollectionInfo and the same fields.
  Frame desc = EncodeReq({Op::kDescribeCollectionWith, DescribeCollectionRequest{"c"}});
  EXPECT_EQ(desc.header.opcode, 24);
  EXPECT_EQ(desc.payload, Bytes().Str("c").get());
  CollectionInfo info;
  info.spec = spec;
  info.id = 5;
  info.num_vectors = 6;
  Frame rep = EncodeResp({Op::kDescribeCollectionWith, DescribeCollectionReply{info}});
  EXPECT_EQ(rep.header.opcode, 0x8018);
  EXPECT_EQ(rep.payload, Bytes(v1).U64(5).U64(6).U64(0).U64(0).U64(0).U32(1).U8(1).U32(40).get());
  auto info_back = DecodeResponse(rep.header, rep.payload);
  ASSERT_TRUE(info_back.has_value()) << info_back.error().ToString();
  EXPECT_EQ(std::get<DescribeCollectionReply>(info_back->body).info, info);
  // list_collections_with (26): an empty request; its reply, u32 count, then each
  // CollectionInfo followed by the same fields. list_collections (5) keeps version 1's bytes.
  Frame list = EncodeReq({Op::kListCollectionsWith, ListCollectionsRequest{}});
  EXPECT_EQ(list.header.opcode, 26);
  EXPECT_TRUE(list.payload.empty());
  Frame list_rep = EncodeResp({Op::kListCollectionsWith, ListCollectionsReply{{info, info}}});
  EXPECT_EQ(list_rep.header.opcode, 0x801a);
  EXPECT_EQ(list_rep.payload, Bytes().U32(2).Raw(rep.payload).Raw(rep.payload).get());
  auto list_back = DecodeResponse(list_rep.header, list_rep.payload);
  ASSERT_TRUE(list_back.has_value()) << list_back.error().ToString();
  EXPECT_EQ(std::get<ListCollectionsReply>(list_back->body).collections, (std::vector<CollectionInfo>{info, info}));
  ExpectMalformed(DecodeResponse(list_rep.header, Bytes().U32(1).Raw(Bytes(v1).U64(5).U64(6).U64(0).U64(0).U64(0).get())
                                                      .U32(1).U8(7).U32(40).get()),
                  "codes");
  Frame old_rep = EncodeResp({Op::kListCollections, ListCollectionsReply{{info}}});
  EXPECT_EQ(old_rep.payload, Bytes().U32(1).Raw(Bytes(v1).U64(5).U64(6).U64(0).U64(0).U64(0).get()).get());
}

std::vector<uint8_t> FromHex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

TEST(ProtocolLayout, WorkedExamplesOfTheDocs) {
  // docs/PROTOCOL.md, "Worked examples": the search, its reply and the error frame.
  SearchRequest s;
  s.collection = "docs";
  s.options.k = 3;
  s.dim = 2;
  s.count = 1;
  s.queries = {1.0f, 0.5f};
  std::vector<uint8_t> out;
  EncodeRequest({Op::kSearch, s}, 7, out);
  EXPECT_EQ(out,
            FromHex("5354524101000a000700000000000000310000000000000004000000646f6373030000000000"
                    "0000000000000000000000000000000000000002000000010000000000803f0000003f"));
  out.clear();
  EncodeResponse({Op::kSearch, SearchReply{{{{42, 0.25f}, {7, 1.0f}}}, {}}}, 7, out);
  EXPECT_EQ(out,
            FromHex("5354524101000a800700000000000000200000000000000001000000020000002a0000000000"
                    "00000000803e07000000000000000000803f"));
  out.clear();
  EncodeResponse({Op::kError, ErrorReply{ErrorCode::kNotFound, "collection 'docs' not found"}}, 7,
                 out);
  EXPECT_EQ(out, FromHex("535452410100ff7f0700000000000000210000000000000002001b000000636f6c6c6563"
                         "74696f6e2027646f637327206e6f7420666f756e64"));
}

// ---------------------------------------------------------------------------
// Header.
// ---------------------------------------------------------------------------

std::vector<uint8_t> PingBytes() {
  std::vector<uint8_t> out;
  EncodeRequest({Op::kPing, PingRequest{}}, 1, out);
  return out;
}

Result<FrameHeader> Header(const std::vector<uint8_t>& bytes, uint32_t max) {
  return DecodeHeader(std::span<const uint8_t, kHeaderSize>(bytes.data(), kHeaderSize), max);
}

TEST(ProtocolHeader, BadMagicRefused) {
  std::vector<uint8_t> b = PingBytes();
  b[3] = 'B';
  auto h = Header(b, 1024);
  ASSERT_FALSE(h.has_value());
  EXPECT_EQ(h.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(h.error().message().find("magic"), std::string::npos);
}

TEST(ProtocolHeader, OtherVersionRefused) {
  for (uint16_t v : {uint16_t{0}, uint16_t{2}, uint16_t{0xffff}}) {
    std::vector<uint8_t> b = PingBytes();
    std::memcpy(b.data() + 4, &v, 2);
    auto h = Header(b, 1024);
    ASSERT_FALSE(h.has_value()) << v;
    EXPECT_NE(h.error().message().find("version"), std::string::npos);
  }
}

TEST(ProtocolHeader, NonZeroFlagsRefused) {
  std::vector<uint8_t> b = PingBytes();
  b[23] = 0x80;
  auto h = Header(b, 1024);
  ASSERT_FALSE(h.has_value());
  EXPECT_NE(h.error().message().find("flags"), std::string::npos);
}

TEST(ProtocolHeader, PayloadOverTheLimitIsOutOfRange) {
  std::vector<uint8_t> b = PingBytes();
  const uint32_t size = 1025;
  std::memcpy(b.data() + 16, &size, 4);
  auto over = Header(b, 1024);
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code(), StatusCode::kOutOfRange);
  EXPECT_NE(over.error().message().find("1025"), std::string::npos);
  auto at = Header(b, 1025);
  ASSERT_TRUE(at.has_value());
  EXPECT_EQ(at->payload_size, 1025u);
}

TEST(ProtocolHeader, UnknownOpcodeIsNotAFramingError) {
  std::vector<uint8_t> b = PingBytes();
  b[6] = 0x42;
  auto h = Header(b, 1024);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->opcode, 0x42);
  auto req = DecodeRequest(*h, {});
  ASSERT_FALSE(req.has_value());
  EXPECT_EQ(req.error().code(), StatusCode::kUnimplemented);
}

// ---------------------------------------------------------------------------
// Malformed payloads.
// ---------------------------------------------------------------------------

TEST(ProtocolMalformed, EveryStrictPrefixOfARequestFails) {
  for (const Request& req : SampleRequests()) {
    Frame f = EncodeReq(req);
    for (size_t n = 0; n < f.payload.size(); ++n) {
      std::vector<uint8_t> prefix(f.payload.begin(), f.payload.begin() + n);
      auto r = DecodeRequest(f.header, prefix);
      ASSERT_FALSE(r.has_value()) << OpName(req.op) << " prefix of " << n << " bytes decoded";
      EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
      // The message starts with the op's name and says what was short.
      EXPECT_EQ(r.error().message().rfind(OpName(req.op), 0), 0u) << r.error().message();
    }
  }
}

// PeekUpsertHead reads what DecodeRequest would find in an upsert's head (element, dim,
// count) without its records, and refuses what DecodeRequest refuses there.
TEST(ProtocolPeek, UpsertHeadsAgreeWithTheDecodedRequest) {
  int upserts = 0;
  for (const Request& req : SampleRequests()) {
    SCOPED_TRACE(std::string(OpName(req.op)));
    Frame f = EncodeReq(req);
    auto head = PeekUpsertHead(f.header, f.payload);
    const auto* m = std::get_if<UpsertRequest>(&req.body);
    if (m == nullptr) {
      ASSERT_FALSE(head.has_value());
      EXPECT_NE(head.error().message().find("not an upsert"), std::string::npos) << head.error().message();
      continue;
    }
    ++upserts;
    ASSERT_TRUE(head.has_value()) << head.error().ToString();
    EXPECT_EQ(head->element, m->element);
    EXPECT_EQ(head->dim, m->dim);
    EXPECT_EQ(head->count, m->records.size());
  }
  EXPECT_EQ(upserts, 4);  // upsert, upsert_keyed, upsert_keyed_ids, upsert_typed
  // A count the payload cannot hold, or over the limit, is refused as the decoder refuses it.
  const uint16_t keyed_ids = uint16_t(Op::kUpsertKeyedIds);
  protocol::FrameHeader h;
  h.opcode = keyed_ids;
  const std::vector<uint8_t> huge = Bytes().Str("c").U32(1).U32(1000000).get();
  auto r = PeekUpsertHead(h, huge);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
  EXPECT_EQ(r.error().message().rfind("upsert_keyed_ids: count", 0), 0u) << r.error().message();
  DecodeLimits limits;
  limits.max_batch = 2;
  std::vector<uint8_t> three = Bytes().Str("c").U32(0).U32(3).get();
  three.resize(three.size() + 3 * 14);
  ExpectOverLimit(PeekUpsertHead(h, three, limits), "count: 3 exceeds the limit 2 (max_batch)");
  h.opcode = uint16_t(Op::kUpsertTyped);
  r = PeekUpsertHead(h, Bytes().U8(9).U8(0).Str("c").U32(1).U32(0).get());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
}

// PeekWriteCollection names the collection of every write as the decoded request does, and
// nothing for other requests or a payload cut inside the name.
TEST(ProtocolPeek, WriteCollectionsAgreeWithTheDecodedRequest) {
  int writes = 0;
  for (const Request& req : SampleRequests()) {
    SCOPED_TRACE(std::string(OpName(req.op)));
    Frame f = EncodeReq(req);
    auto name = PeekWriteCollection(f.header, f.payload);
    std::string want;
    if (const auto* m = std::get_if<UpsertRequest>(&req.body)) want = m->collection;
    if (const auto* m = std::get_if<DeleteRequest>(&req.body)) want = m->collection;
    if (const auto* m = std::get_if<KeysRequest>(&req.body); m != nullptr && req.op == Op::kDeleteKeyed) {
      want = m->collection;
    }
    if (want.empty()) {
      EXPECT_FALSE(name.has_value());
      continue;
    }
    ++writes;
    ASSERT_TRUE(name.has_value()) << name.error().ToString();
    EXPECT_EQ(*name, want);
    std::vector<uint8_t> cut(f.payload.begin(), f.payload.begin() + (req.op == Op::kUpsertTyped ? 5 : 3));
    EXPECT_FALSE(PeekWriteCollection(f.header, cut).has_value());
  }
  EXPECT_EQ(writes, 6);  // upsert, upsert_keyed, upsert_keyed_ids, upsert_typed, delete, delete_keyed
}

TEST(ProtocolMalformed, EveryStrictPrefixOfAResponseFails) {
  for (const Response& resp : SampleResponses()) {
    Frame f = EncodeResp(resp);
    for (size_t n = 0; n < f.payload.size(); ++n) {
      std::vector<uint8_t> prefix(f.payload.begin(), f.payload.begin() + n);
      auto r = DecodeResponse(f.header, prefix);
      ASSERT_FALSE(r.has_value()) << OpName(resp.op) << " prefix of " << n << " bytes decoded";
      EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
    }
  }
}

TEST(ProtocolMalformed, TrailingBytesFail) {
  for (const Request& req : SampleRequests()) {
    Frame f = EncodeReq(req);
    f.payload.push_back(0);
    ExpectMalformed(DecodeRequest(f.header, f.payload), "1 trailing bytes");
  }
  for (const Response& resp : SampleResponses()) {
    Frame f = EncodeResp(resp);
    f.payload.push_back(0);
    f.payload.push_back(0);
    ExpectMalformed(DecodeResponse(f.header, f.payload), "2 trailing bytes");
  }
}

TEST(ProtocolMalformed, EmptyPayloadOpsRefuseBytes) {
  for (Op op : {Op::kPing, Op::kListCollections, Op::kStats}) {
    ExpectMalformed(DecodeReq(static_cast<uint16_t>(op), {0}), "trailing");
    auto ok = DecodeReq(static_cast<uint16_t>(op), {});
    EXPECT_TRUE(ok.has_value()) << OpName(op);
  }
}

TEST(ProtocolMalformed, ErrorNamesRecordAttributeAndField) {
  // Four upsert records of dim 1; the fourth has an attribute "lang" whose string length says
  // 99999 with 16 bytes left.
  Bytes b;
  b.Str("docs").U32(1).U32(4);
  for (int i = 0; i < 3; ++i) b.U64(i).F32(1).U16(0);
  b.U64(3).F32(1).U16(1).Str("lang").U8(2).U32(99999);
  b.Raw(std::vector<uint8_t>(16, 'x'));
  auto r = DecodeReq(static_cast<uint16_t>(Op::kUpsert), b.get());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(),
            "upsert: record 3: attribute 'lang': string length 99999 exceeds 16 bytes left");
}

TEST(ProtocolMalformed, HugeCountsFailWithoutAllocating) {
  DecodeLimits unlimited;
  unlimited.max_batch = std::numeric_limits<uint32_t>::max();
  unlimited.max_tags = std::numeric_limits<uint32_t>::max();
  unlimited.max_attributes = std::numeric_limits<uint32_t>::max();
  const uint32_t huge = std::numeric_limits<uint32_t>::max();
  struct Case {
    const char* name;
    bool request;
    uint16_t opcode;
    std::vector<uint8_t> payload;
  };
  const std::vector<Case> cases = {
      {"upsert records", true, uint16_t(Op::kUpsert), Bytes().Str("c").U32(4).U32(huge).get()},
      {"upsert records, dim 0", true, uint16_t(Op::kUpsert),
       Bytes().Str("c").U32(0).U32(huge).U16(0).get()},
      {"delete ids", true, uint16_t(Op::kDelete), Bytes().Str("c").U32(huge).U16(0).get()},
      {"get ids", true, uint16_t(Op::kGet), Bytes().Str("").U32(huge).get()},
      {"batch queries", true, uint16_t(Op::kSearchBatch), SearchPayload(65536, huge, 2).get()},
      {"string", true, uint16_t(Op::kDropCollection), Bytes().U32(huge).U32(0).get()},
      {"tags", true, uint16_t(Op::kUpsert),
       Bytes().Str("c").U32(0).U32(1).U64(1).U16(1).Str("t").U8(3).U32(huge).get()},
      {"attributes", true, uint16_t(Op::kUpsert),
       Bytes().Str("c").U32(0).U32(1).U64(1).U16(0xffff).get()},
      {"get reply records", false, Reply(Op::kGet), Bytes().U32(huge).U8(0).get()},
      {"search reply lists", false, Reply(Op::kSearchBatch), Bytes().U32(huge).U32(0).get()},
      {"search reply neighbors", false, Reply(Op::kSearch), Bytes().U32(1).U32(huge).get()},
      {"collections", false, Reply(Op::kListCollections), Bytes().U32(huge).get()},
      {"histogram", false, Reply(Op::kStats),
       Bytes().Raw(std::vector<uint8_t>(88, 0)).U32(huge).get()},
      {"record dim", false, Reply(Op::kGet), Bytes().U32(1).U8(1).U64(1).U32(65536).get()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_LE(c.payload.size(), 100u);
    size_t allocated = 0;
    bool failed = false;
    {
      CountAllocations count;
      if (c.request) {
        auto r = DecodeReq(c.opcode, c.payload, unlimited);
        failed = !r.has_value() && r.error().code() == StatusCode::kInvalidArgument;
      } else {
        auto r = DecodeResp(c.opcode, c.payload, unlimited);
        failed = !r.has_value() && r.error().code() == StatusCode::kInvalidArgument;
      }
      allocated = count.bytes();
    }
    EXPECT_TRUE(failed);
    // Only the error message and a few small strings: nothing sized by the count.
    EXPECT_LT(allocated, 2048u);
  }
}

TEST(ProtocolMalformed, DecodingAllocatesInProportionToThePayload) {
  // A get reply of absent records is the widest legitimate expansion (1 wire byte each).
  Bytes b;
  b.U32(4000);
  for (int i = 0; i < 4000; ++i) b.U8(0);
  size_t largest = 0;
  {
    CountAllocations count;
    auto r = DecodeResp(Reply(Op::kGet), b.get());
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(std::get<GetReply>(r->body).records.size(), 4000u);
    largest = count.largest();
  }
  EXPECT_LE(largest, 4000u * sizeof(std::optional<Record>));
}

TEST(ProtocolMalformed, CountTimesDimMustMatchThePayload) {
  // dim 3, count 2: 6 floats needed.
  ExpectMalformed(DecodeReq(uint16_t(Op::kSearchBatch), SearchPayload(3, 2, 5).get()), "queries");
  ExpectMalformed(DecodeReq(uint16_t(Op::kSearchBatch), SearchPayload(3, 2, 7).get()), "trailing");
  EXPECT_TRUE(DecodeReq(uint16_t(Op::kSearchBatch), SearchPayload(3, 2, 6).get()).has_value());
  // An overflowing product in 32 bits (65536 x 65537 = 2^32 + 65536) is caught in 64.
  DecodeLimits limits;
  limits.max_batch = std::numeric_limits<uint32_t>::max();
  ExpectMalformed(
      DecodeReq(uint16_t(Op::kSearchBatch), SearchPayload(65536, 65537, 16384).get(), limits),
      "queries");
}

TEST(ProtocolMalformed, BadBoolRefused) {
  ExpectMalformed(DecodeResp(Reply(Op::kGet), Bytes().U32(1).U8(2).get()), "neither 0 nor 1");
  ExpectMalformed(
      DecodeResp(Reply(Op::kHello), Bytes().U16(1).Str("v").U32(1).U32(1).U32(1).U8(0xff).get()),
      "auth_required");
}

TEST(ProtocolMalformed, BadEnumsRefused) {
  Frame create = EncodeReq({Op::kCreateCollection, CreateCollectionRequest{testing::SampleSpec()}});
  create.payload[4 + 4 + 4] = 3;  // metric after name "docs" and dim
  ExpectMalformed(DecodeRequest(create.header, create.payload), "metric");

  SearchRequest s = testing::SampleSearch(1, SearchStrategy::kAuto, "");
  Frame search = EncodeReq({Op::kSearch, s});
  // strategy sits before dim, count and the 16 query bytes.
  search.payload[search.payload.size() - 16 - 8 - 1] = 4;
  ExpectMalformed(DecodeRequest(search.header, search.payload), "strategy");

  Bytes attr;
  attr.Str("c").U32(0).U32(1).U64(1).U16(1).Str("a").U8(4).I64(0);
  ExpectMalformed(DecodeReq(uint16_t(Op::kUpsert), attr.get()), "attribute 'a': type");

  Frame info = EncodeResp({Op::kDescribeCollection, DescribeCollectionReply{}});
  info.payload[4 + 4] = 0xff;  // metric after empty name and dim
  ExpectMalformed(DecodeResponse(info.header, info.payload), "metric");
}

TEST(ProtocolMalformed, SearchCountRules) {
  for (Op op : {Op::kSearch, Op::kExplain}) {
    ExpectMalformed(DecodeReq(uint16_t(op), SearchPayload(2, 0, 0).get()), "exactly 1");
    ExpectMalformed(DecodeReq(uint16_t(op), SearchPayload(2, 2, 4).get()), "exactly 1");
    EXPECT_TRUE(DecodeReq(uint16_t(op), SearchPayload(2, 1, 2).get()).has_value());
  }
  ExpectMalformed(DecodeReq(uint16_t(Op::kSearchBatch), SearchPayload(2, 0, 0).get()),
                  "at least 1");
  auto batch = DecodeReq(uint16_t(Op::kSearchBatch), SearchPayload(2, 3, 6).get());
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(std::get<SearchRequest>(batch->body).count, 3u);
}

TEST(ProtocolMalformed, LimitsApply) {
  DecodeLimits limits;
  limits.max_batch = 2;
  limits.max_dim = 3;
  limits.max_string = 4;
  limits.max_attributes = 1;
  limits.max_tags = 1;
  const uint16_t upsert = uint16_t(Op::kUpsert);
  ExpectOverLimit(
      DecodeReq(uint16_t(Op::kDelete), Bytes().Str("c").U32(3).U64(1).U64(2).U64(3).get(), limits),
      "count: 3 exceeds the limit 2 (max_batch)");
  ExpectOverLimit(DecodeReq(uint16_t(Op::kDropCollection), Bytes().Str("abcde").get(), limits),
                  "string length 5 exceeds the limit 4 (max_string)");
  ExpectOverLimit(DecodeReq(upsert, Bytes().Str("c").U32(4).U32(0).get(), limits),
                  "dim: 4 exceeds the limit 3 (max_dim)");
  ExpectOverLimit(DecodeReq(upsert,
                            Bytes()
                                .Str("c")
                                .U32(0)
                                .U32(1)
                                .U64(1)
                                .U16(2)
                                .Str("a")
                                .U8(0)
                                .I64(1)
                                .Str("b")
                                .U8(0)
                                .I64(2)
                                .get(),
                            limits),
                  "attribute count: 2 exceeds the limit 1 (max_attributes)");
  ExpectOverLimit(DecodeReq(upsert,
                            Bytes()
                                .Str("c")
                                .U32(0)
                                .U32(1)
                                .U64(1)
                                .U16(1)
                                .Str("a")
                                .U8(3)
                                .U32(2)
                                .Str("x")
                                .Str("y")
                                .get(),
                            limits),
                  "tag count: 2 exceeds the limit 1 (max_tags)");
  ExpectOverLimit(DecodeReq(uint16_t(Op::kSearchBatch), SearchPayload(1, 3, 3).get(), limits),
                  "count: 3 exceeds the limit 2 (max_batch)");
  ExpectOverLimit(DecodeResp(Reply(Op::kGet), Bytes().U32(3).U8(0).U8(0).U8(0).get(), limits),
                  "count: 3 exceeds the limit 2 (max_batch)");
  // A count the payload cannot hold is malformed (InvalidArgument), over the limit or not:
  // only a well-formed request is "too large".
  ExpectMalformed(DecodeReq(uint16_t(Op::kDelete), Bytes().Str("c").U32(3).U64(1).get(), limits),
                  "3 entries need at least 24 bytes");
  ExpectMalformed(DecodeReq(uint16_t(Op::kSearchBatch), SearchPayload(1, 3, 2).get(), limits),
                  "3 floats need 12 bytes");
  // Within the limits the same shapes decode.
  EXPECT_TRUE(DecodeReq(uint16_t(Op::kDelete), Bytes().Str("c").U32(2).U64(1).U64(2).get(), limits)
                  .has_value());
}

TEST(ProtocolMalformed, NonFiniteFloatsPassTheDecoder) {
  // Finiteness is the server's business: the decoder keeps the exact bits.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float payload_nan = std::bit_cast<float>(uint32_t{0x7fa00001});  // signalling, payload
  const float inf = std::numeric_limits<float>::infinity();
  SearchRequest s;
  s.collection = "c";
  s.dim = 3;
  s.count = 1;
  s.queries = {nan, payload_nan, -inf};
  s.options.recall = std::numeric_limits<double>::quiet_NaN();
  Frame f = EncodeReq({Op::kSearch, s});
  auto r = DecodeRequest(f.header, f.payload);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  const auto& q = std::get<SearchRequest>(r->body);
  ASSERT_EQ(q.queries.size(), 3u);
  EXPECT_TRUE(std::isnan(q.queries[0]));
  EXPECT_EQ(std::bit_cast<uint32_t>(q.queries[1]), 0x7fa00001u);
  EXPECT_EQ(q.queries[2], -inf);
  EXPECT_TRUE(std::isnan(q.options.recall));

  UpsertRequest u{
      "c", 2, {Record{1, {nan, inf}, {{"x", std::numeric_limits<double>::infinity()}}}}};
  Frame fu = EncodeReq({Op::kUpsert, u});
  auto ru = DecodeRequest(fu.header, fu.payload);
  ASSERT_TRUE(ru.has_value()) << ru.error().ToString();
  EXPECT_TRUE(std::isnan(std::get<UpsertRequest>(ru->body).records[0].vector[0]));

  Frame fr = EncodeResp({Op::kSearch, SearchReply{{{{1, nan}}}, {}}});
  auto rr = DecodeResponse(fr.header, fr.payload);
  ASSERT_TRUE(rr.has_value());
  EXPECT_TRUE(std::isnan(std::get<SearchReply>(rr->body).results[0][0].distance));
}

TEST(ProtocolMalformed, OpcodeChecks) {
  // Requests: unknown, a response opcode, the error opcode.
  for (uint16_t opcode : {uint16_t{0}, uint16_t{999}, Reply(Op::kPing), uint16_t{0x7fff}}) {
    auto r = DecodeReq(opcode, {});
    ASSERT_FALSE(r.has_value()) << opcode;
    EXPECT_EQ(r.error().code(), StatusCode::kUnimplemented) << opcode;
  }
  // Responses: a request opcode is refused as such; unknown ones are Unimplemented.
  auto req_op = DecodeResp(uint16_t(Op::kPing), {});
  ASSERT_FALSE(req_op.has_value());
  EXPECT_EQ(req_op.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(req_op.error().message().find("not a response"), std::string::npos);
  for (uint16_t opcode : {uint16_t{0x8000}, uint16_t{0x83e7}, uint16_t{0xffff}, uint16_t{0x42}}) {
    auto r = DecodeResp(opcode, {});
    ASSERT_FALSE(r.has_value()) << opcode;
    EXPECT_EQ(r.error().code(), StatusCode::kUnimplemented) << opcode;
  }
}

// ---------------------------------------------------------------------------
// Names, codes and encoder preconditions.
// ---------------------------------------------------------------------------

TEST(ProtocolNames, OpsAndCodes) {
  EXPECT_EQ(OpName(Op::kHello), "hello");
  EXPECT_EQ(OpName(Op::kSearchBatch), "search_batch");
  EXPECT_EQ(OpName(Op::kError), "error");
  EXPECT_EQ(OpName(static_cast<Op>(99)), "unknown");
  EXPECT_EQ(OpName(Op::kUpsertKeyed), "upsert_keyed");
  EXPECT_EQ(OpName(Op::kListKeys), "list_keys");
  EXPECT_EQ(OpName(Op::kSnapshot), "snapshot");
  EXPECT_EQ(OpName(Op::kSearchWith), "search_with");
  EXPECT_EQ(OpName(Op::kCreateCollectionWith), "create_collection_with");
  EXPECT_EQ(OpName(Op::kDescribeCollectionWith), "describe_collection_with");
  EXPECT_EQ(OpName(Op::kUpsertKeyedIds), "upsert_keyed_ids");
  EXPECT_EQ(OpName(Op::kUpsertTyped), "upsert_typed");
  EXPECT_EQ(OpName(Op::kSearchTyped), "search_typed");
  EXPECT_EQ(OpName(Op::kShardFiles), "shard_files");
  EXPECT_EQ(OpName(Op::kShardFileRead), "shard_file_read");
  EXPECT_EQ(OpName(Op::kShardFilesDone), "shard_files_done");
  EXPECT_EQ(OpName(Op::kListCollectionsWith), "list_collections_with");
  // 27 and 28 are left for requests defined elsewhere: unknown here.
  for (uint16_t op = 0; op < 40; ++op) {
    EXPECT_EQ(IsKnownRequestOp(op), (op >= 1 && op <= 26) || (op >= 29 && op <= 33)) << op;
  }
  EXPECT_FALSE(IsKnownRequestOp(0x7fff));
  EXPECT_FALSE(IsKnownRequestOp(Reply(Op::kPing)));
  EXPECT_EQ(ErrorCodeName(ErrorCode::kBusy), "Busy");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kNotFound), "NotFound");
}

TEST(ProtocolNames, StatusCodesMirrorErrorCodes) {
  for (int c = 1; c <= 10; ++c) {
    const auto code = static_cast<StatusCode>(c);
    const ErrorCode e = ErrorCodeFromStatus(code);
    EXPECT_EQ(static_cast<int>(e), c);
    Status s = StatusFromError(e, "text");
    EXPECT_EQ(s.code(), code);
    EXPECT_EQ(s.message(), "text");
  }
  EXPECT_EQ(ErrorCodeFromStatus(StatusCode::kOk), ErrorCode::kInternal);
}

TEST(ProtocolNames, ServerCodesMapToTheClosestStatus) {
  struct Case {
    ErrorCode code;
    StatusCode status;
  };
  for (const Case& c : {Case{ErrorCode::kMalformed, StatusCode::kInvalidArgument},
                        Case{ErrorCode::kUnknownOp, StatusCode::kUnimplemented},
                        Case{ErrorCode::kUnauthenticated, StatusCode::kInvalidArgument},
                        Case{ErrorCode::kBusy, StatusCode::kResourceExhausted},
                        Case{ErrorCode::kTooLarge, StatusCode::kOutOfRange},
                        Case{ErrorCode::kShuttingDown, StatusCode::kCancelled}}) {
    Status s = StatusFromError(c.code, "server says");
    EXPECT_EQ(s.code(), c.status) << ErrorCodeName(c.code);
    EXPECT_EQ(s.message(), std::string(ErrorCodeName(c.code)) + ": server says");
  }
}

TEST(ProtocolEncode, ValidateForEncodingCatchesShapeErrors) {
  Request bad_dim{Op::kUpsert, UpsertRequest{"c", 3, {Record{1, {1, 2}, {}}}}};
  Status s = ValidateForEncoding(bad_dim);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("record 0"), std::string::npos) << s.message();

  Request wrong_body{Op::kSearch, PingRequest{}};
  EXPECT_EQ(ValidateForEncoding(wrong_body).code(), StatusCode::kInvalidArgument);

  SearchRequest q = testing::SampleSearch(2, SearchStrategy::kAuto, "");
  EXPECT_FALSE(ValidateForEncoding({Op::kSearch, q}).ok());
  EXPECT_TRUE(ValidateForEncoding({Op::kSearchBatch, q}).ok());
  q.queries.pop_back();
  EXPECT_FALSE(ValidateForEncoding({Op::kSearchBatch, q}).ok());

  Record many;
  many.attributes.resize(65536, Attribute{"a", int64_t{1}});
  EXPECT_FALSE(ValidateForEncoding({Op::kUpsert, UpsertRequest{"c", 0, {many}}}).ok());
  EXPECT_FALSE(ValidateForEncoding({Op::kError, PingRequest{}}).ok());
}

TEST(ProtocolEncodeDeathTest, MismatchedDimIsAProgrammerError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Request bad{Op::kUpsert, UpsertRequest{"c", 3, {Record{1, {1, 2}, {}}}}};
  std::vector<uint8_t> out;
  EXPECT_DEATH(EncodeRequest(bad, 1, out), "STRATA_CHECK");
}

}  // namespace
}  // namespace strata::protocol

// ---------------------------------------------------------------------------
// upsert_typed (29) and search_typed (30): vectors as float16, int8 or uint8.
// ---------------------------------------------------------------------------
namespace strata::protocol {
namespace {

Frame EncodeOne(const Request& req) {
  std::vector<uint8_t> bytes;
  EncodeRequest(req, 1, bytes);
  return Split(bytes);
}

UpsertRequest TypedUpsert(ElementType element, uint32_t dim, size_t rows) {
  UpsertRequest m;
  m.collection = "c";
  m.dim = dim;
  m.element = element;
  for (size_t i = 0; i < rows; ++i) {
    m.records.push_back(Record{.id = 10 + i, .vector = {}, .attributes = {}, .key = {}});
    for (size_t j = 0; j < dim * ElementSize(element); ++j) m.elements.push_back(uint8_t(i * 31 + j));
  }
  return m;
}

TEST(ProtocolTyped, EveryElementTypeRoundTripsWithItsOwnWidth) {
  for (ElementType element : {ElementType::kFloat16, ElementType::kInt8, ElementType::kUint8}) {
    SCOPED_TRACE(std::string(ElementTypeName(element)));
    const UpsertRequest m = TypedUpsert(element, 16, 3);
    Frame f = EncodeOne({Op::kUpsertTyped, m});
    // u8 element, u8 flags, string "c", u32 dim, u32 count, 3 x (u64 id, 16 values, u16 0).
    EXPECT_EQ(f.payload.size(), 2 + 5 + 4 + 4 + 3 * (8 + 16 * ElementSize(element) + 2));
    EXPECT_EQ(f.payload[0], static_cast<uint8_t>(element));
    EXPECT_EQ(f.payload[1], 0);
    auto back = DecodeRequest(f.header, f.payload);
    ASSERT_TRUE(back.has_value()) << back.error().ToString();
    EXPECT_TRUE(std::get<UpsertRequest>(back->body) == m);

    SearchRequest s{.collection = "c", .options = {}, .dim = 16, .count = 2};
    s.element = element;
    s.elements.assign(2 * 16 * ElementSize(element), uint8_t(element == ElementType::kFloat16 ? 0x3c : 7));
    Frame sf = EncodeOne({Op::kSearchTyped, s});
    auto sback = DecodeRequest(sf.header, sf.payload);
    ASSERT_TRUE(sback.has_value()) << sback.error().ToString();
    EXPECT_TRUE(std::get<SearchRequest>(sback->body) == s);
  }
  // The same records as float32 take 4 bytes a value: a uint8 upsert is about 4x smaller.
  UpsertRequest f32{"c", 128, {}};
  for (int i = 0; i < 100; ++i) f32.records.push_back(Record{.id = uint64_t(i), .vector = std::vector<float>(128, 1.f)});
  const size_t float_bytes = EncodeOne({Op::kUpsert, f32}).payload.size();
  const size_t u8_bytes = EncodeOne({Op::kUpsertTyped, TypedUpsert(ElementType::kUint8, 128, 100)}).payload.size();
  EXPECT_LT(u8_bytes * 3.5, float_bytes) << u8_bytes << " vs " << float_bytes;
}

TEST(ProtocolTyped, Float32AndKeyedForms) {
  // float32 in upsert_typed: the vectors travel in the records, as in upsert (with the 2 bytes).
  UpsertRequest f32{"c", 2, {Record{.id = 1, .vector = {0.5f, -1.f}}}};
  Frame f = EncodeOne({Op::kUpsertTyped, f32});
  std::vector<uint8_t> plain;
  EncodeRequest({Op::kUpsert, f32}, 1, plain);
  EXPECT_EQ(f.payload.size(), plain.size() - kHeaderSize + 2);
  auto back = DecodeRequest(f.header, f.payload);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_TRUE(std::get<UpsertRequest>(back->body) == f32);
  // By key: flags bit 0, each record's key instead of its id.
  UpsertRequest keyed = TypedUpsert(ElementType::kInt8, 3, 2);
  keyed.keyed = true;
  keyed.records[0].key = "a";
  keyed.records[1].key = "bb";
  for (Record& r : keyed.records) r.id = kInvalidVectorId;
  Frame kf = EncodeOne({Op::kUpsertTyped, keyed});
  EXPECT_EQ(kf.payload[1], 1);
  auto kback = DecodeRequest(kf.header, kf.payload);
  ASSERT_TRUE(kback.has_value()) << kback.error().ToString();
  EXPECT_TRUE(std::get<UpsertRequest>(kback->body) == keyed);
}

TEST(ProtocolTyped, BadElementTypeFlagsAndLengthsNameTheField) {
  Frame f = EncodeOne({Op::kUpsertTyped, TypedUpsert(ElementType::kUint8, 4, 2)});
  std::vector<uint8_t> bad = f.payload;
  bad[0] = 9;
  auto r = DecodeRequest(f.header, bad);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("element type: unknown value 9 (0 float32, 1 float16, 2 int8, 3 uint8)"),
            std::string::npos)
      << r.error().ToString();
  bad = f.payload;
  bad[1] = 2;
  r = DecodeRequest(f.header, bad);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("flags: unknown bits 0x2"), std::string::npos) << r.error().ToString();
  // A payload cut inside the second record's values: the count no longer fits (each uint8
  // record of dim 4 takes at least 8 + 4 + 2 bytes).
  bad.assign(f.payload.begin(), f.payload.end() - 4);
  r = DecodeRequest(f.header, bad);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("count: 2 entries need at least 28 bytes, 24 left"), std::string::npos)
      << r.error().ToString();
  // An attribute count past the end names the record.
  UpsertRequest with_attr = TypedUpsert(ElementType::kUint8, 4, 2);
  with_attr.records[1].attributes = {{"a", int64_t(1)}};
  Frame af = EncodeOne({Op::kUpsertTyped, with_attr});
  bad.assign(af.payload.begin(), af.payload.end() - 3);
  r = DecodeRequest(af.header, bad);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("record 1"), std::string::npos) << r.error().ToString();
  // search_typed: an unknown element, and queries the payload cannot hold.
  SearchRequest s{.collection = "c", .options = {}, .dim = 8, .count = 1};
  s.element = ElementType::kFloat16;
  s.elements.assign(16, 0);
  Frame sf = EncodeOne({Op::kSearchTyped, s});
  bad = sf.payload;
  bad[0] = 4;
  auto sr = DecodeRequest(sf.header, bad);
  ASSERT_FALSE(sr.has_value());
  EXPECT_NE(sr.error().message().find("element type: unknown value 4"), std::string::npos);
  bad.assign(sf.payload.begin(), sf.payload.end() - 8);  // 4 bytes of fields and 4 of values gone
  sr = DecodeRequest(sf.header, bad);
  ASSERT_FALSE(sr.has_value());
  EXPECT_NE(sr.error().message().find("1 x 8 float16 values need 16 bytes"), std::string::npos)
      << sr.error().ToString();
}

TEST(ProtocolTyped, ValidateRefusesWhatCannotBeEncoded) {
  UpsertRequest m = TypedUpsert(ElementType::kFloat16, 4, 2);
  m.elements.pop_back();
  Status s = ValidateForEncoding({Op::kUpsertTyped, m});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("15 bytes of float16 values, 2 records x dim 4 needs 16"), std::string::npos)
      << s.ToString();
  m = TypedUpsert(ElementType::kUint8, 4, 1);
  m.records[0].vector = {1, 2, 3, 4};
  s = ValidateForEncoding({Op::kUpsertTyped, m});
  EXPECT_NE(s.message().find("record 0: vector has 4 components, 0 expected (uint8 element type)"),
            std::string::npos)
      << s.ToString();
  m = TypedUpsert(ElementType::kUint8, 4, 1);
  m.element = static_cast<ElementType>(7);
  s = ValidateForEncoding({Op::kUpsertTyped, m});
  EXPECT_NE(s.message().find("element type 7"), std::string::npos) << s.ToString();
  SearchRequest q{.collection = "c", .options = {}, .dim = 4, .count = 1};
  q.element = ElementType::kInt8;
  q.elements.assign(3, 0);
  s = ValidateForEncoding({Op::kSearchTyped, q});
  EXPECT_NE(s.message().find("3 bytes of int8 values, count 1 x dim 4"), std::string::npos) << s.ToString();
}

TEST(ProtocolTyped, WidenRowIsExactForEveryType) {
  const uint8_t u8[3] = {0, 128, 255};
  const int8_t i8[3] = {-128, 0, 127};
  const uint16_t f16[5] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x7C00};  // 1, -2, 2^-24, 65504, inf
  float out[5];
  WidenRow(ElementType::kUint8, u8, 3, out);
  EXPECT_EQ(out[0], 0.f);
  EXPECT_EQ(out[1], 128.f);
  EXPECT_EQ(out[2], 255.f);
  WidenRow(ElementType::kInt8, i8, 3, out);
  EXPECT_EQ(out[0], -128.f);
  EXPECT_EQ(out[2], 127.f);
  WidenRow(ElementType::kFloat16, f16, 5, out);
  EXPECT_EQ(out[0], 1.f);
  EXPECT_EQ(out[1], -2.f);
  EXPECT_EQ(out[2], 0x1p-24f);
  EXPECT_EQ(out[3], 65504.f);
  EXPECT_TRUE(std::isinf(out[4]));
  EXPECT_EQ(ParseElementType("uint8").value(), ElementType::kUint8);
  EXPECT_EQ(ParseElementType("float64").error().message(),
            "unknown element type 'float64' (expected float32, float16, int8 or uint8)");
}

}  // namespace
}  // namespace strata::protocol
