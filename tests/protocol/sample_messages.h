#pragma once
// One message of every request and response kind, with non-trivial content (every attribute
// type, empty and non-empty strings, absent and present records, histograms). Shared by
// protocol_test and the fuzz corpus generator (tests/fuzz/make_corpus.cc), so that the seeds
// are the same frames the tests prove valid.

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "protocol/protocol.h"

namespace strata::protocol::testing {

inline CollectionSpec SampleSpec() {
  CollectionSpec s;
  s.name = "docs";
  s.dim = 4;
  s.metric = Metric::kCosine;
  s.hnsw_M = 24;
  s.hnsw_ef_construction = 300;
  s.seal_threshold = 5000;
  s.memory_budget_bytes = uint64_t{1} << 33;
  return s;
}

// A spec with the parts only create_collection_with / describe_collection_with carry.
inline CollectionSpec SampleSpecWithCodes() {
  CollectionSpec s = SampleSpec();
  s.codes = VectorCodes::kSq8;
  s.rerank = 40;
  return s;
}

inline CollectionInfo SampleInfo(std::string name, Metric metric) {
  CollectionInfo info;
  info.spec = SampleSpec();
  info.spec.name = std::move(name);
  info.spec.metric = metric;
  info.id = 42;
  info.num_vectors = 123456789;
  info.last_sequence = uint64_t{1} << 40;
  info.memory_bytes = 987654321;
  info.sealed_segments = 3;
  return info;
}

// Records of dim 4 carrying every attribute type.
inline std::vector<Record> SampleRecords() {
  std::vector<Record> records(3);
  records[0].id = 1;
  records[0].vector = {0.5f, -1.25f, 3.0f, 1e-30f};
  records[0].attributes = {
      {"year", int64_t{-2024}},
      {"score", 2.5},
      {"lang", std::string("en")},
      {"note", std::string()},
      {"tags", TagList{"a", "", "a longer tag"}},
  };
  records[1].id = std::numeric_limits<VectorId>::max() - 1;
  records[1].vector = {0.0f, -0.0f, std::numeric_limits<float>::max(),
                       std::numeric_limits<float>::denorm_min()};
  records[2].id = 0;
  records[2].vector = {1, 2, 3, 4};
  records[2].attributes = {{"empty_tags", TagList{}},
                           {"", int64_t{std::numeric_limits<int64_t>::min()}}};
  return records;
}

// A plan with one segment (travels as JSON: values that round-trip exactly).
inline Explain SampleExplain() {
  Explain e;
  e.k = 3;
  e.recall_target = 0.95;
  e.filter = R"(lang == "en")";
  e.total_ms = 1.5;
  e.segments.push_back({.segment = "segment 2", .kind = "hnsw", .strategy = "index",
                        .reason = "calibrated", .rows = 400, .matching = 400, .ef = 64,
                        .predicted_recall = 0.96, .nodes_visited = 310, .distances = 2048,
                        .results = 3, .search_ms = 0.25});
  return e;
}

inline SearchRequest SampleSearch(uint32_t count, SearchStrategy strategy, std::string filter) {
  SearchRequest m;
  m.collection = "docs";
  m.options.k = 5;
  m.options.recall = 0.95;
  m.options.ef = 128;
  m.options.max_lists = 7;
  m.options.filter = std::move(filter);
  m.options.strategy = strategy;
  m.dim = 4;
  m.count = count;
  for (uint32_t i = 0; i < count * m.dim; ++i) m.queries.push_back(0.25f * float(i) - 1.0f);
  return m;
}

// One request per opcode, in opcode order (kHello .. kLastRequestOp).
inline std::vector<Request> SampleRequests() {
  std::vector<Request> out;
  out.push_back({Op::kHello, HelloRequest{"strata-test", "s3cret"}});
  out.push_back({Op::kPing, PingRequest{}});
  out.push_back({Op::kCreateCollection, CreateCollectionRequest{SampleSpec()}});
  out.push_back({Op::kDropCollection, DropCollectionRequest{"old"}});
  out.push_back({Op::kListCollections, ListCollectionsRequest{}});
  out.push_back({Op::kDescribeCollection, DescribeCollectionRequest{"docs"}});
  out.push_back({Op::kUpsert, UpsertRequest{"docs", 4, SampleRecords()}});
  out.push_back({Op::kDelete, DeleteRequest{"docs", {1, 2, std::numeric_limits<VectorId>::max()}}});
  out.push_back({Op::kGet, GetRequest{"docs", {7, 0, 8}}});
  out.push_back({Op::kSearch, SampleSearch(1, SearchStrategy::kIndex, R"(lang == "en")")});
  out.push_back({Op::kSearchBatch, SampleSearch(3, SearchStrategy::kPostFilter, "year >= 2000")});
  out.push_back({Op::kExplain, SampleSearch(1, SearchStrategy::kScan, "")});
  out.push_back({Op::kStats, StatsRequest{}});
  out.push_back({Op::kFlush, FlushRequest{"docs"}});
  out.push_back({Op::kCompact, CompactRequest{"docs"}});
  {
    std::vector<Record> records = SampleRecords();
    for (size_t i = 0; i < records.size(); ++i) {
      records[i].id = kInvalidVectorId;  // by key: ids do not travel
      records[i].key = i == 1 ? std::string("bin\0key\xff", 8) : "elem:" + std::to_string(i);
    }
    out.push_back({Op::kUpsertKeyed, UpsertRequest{"docs", 4, std::move(records)}});
  }
  out.push_back({Op::kDeleteKeyed, KeysRequest{"docs", {"a", "", std::string(1024, 'k')}}});
  out.push_back({Op::kGetKeyed, KeysRequest{"docs", {"elem:0", "missing"}}});
  out.push_back({Op::kSearchKeyed, SampleSearch(2, SearchStrategy::kAuto, "")});
  out.push_back({Op::kListKeys, ListKeysRequest{"docs", 17, 100}});
  out.push_back({Op::kSnapshot, SnapshotRequest{"docs", "docs-2026-12-05"}});
  {
    SearchRequest with = SampleSearch(2, SearchStrategy::kAuto, R"(lang == "en")");
    with.options.with_attributes = true;
    out.push_back({Op::kSearchWith, std::move(with)});
  }
  out.push_back({Op::kCreateCollectionWith, CreateCollectionRequest{SampleSpecWithCodes()}});
  out.push_back({Op::kDescribeCollectionWith, DescribeCollectionRequest{"docs"}});
  {
    std::vector<Record> records = SampleRecords();
    for (size_t i = 0; i < records.size(); ++i) {
      records[i].id = i == 0 ? kInvalidVectorId : kKeyedIdBase + 40 + i;  // find/assign, or given
      records[i].key = "elem:" + std::to_string(i);
    }
    out.push_back({Op::kUpsertKeyedIds, UpsertRequest{"docs", 4, std::move(records)}});
  }
  out.push_back({Op::kListCollectionsWith, ListCollectionsRequest{}});
  {
    // upsert_typed (29): uint8 vectors by key, the values in `elements`.
    UpsertRequest typed{"docs", 4, SampleRecords()};
    for (size_t i = 0; i < typed.records.size(); ++i) {
      typed.records[i].vector.clear();
      typed.records[i].id = kInvalidVectorId;
      typed.records[i].key = "u8:" + std::to_string(i);
      for (uint8_t j = 0; j < 4; ++j) typed.elements.push_back(uint8_t(i * 60 + j * 50 + 5));
    }
    typed.element = ElementType::kUint8;
    typed.keyed = true;
    out.push_back({Op::kUpsertTyped, std::move(typed)});
  }
  {
    // search_typed (30): two float16 queries (1.0, -2.0, 0.5, 65504 and zeros), attributes asked.
    SearchRequest typed = SampleSearch(2, SearchStrategy::kAuto, "");
    typed.queries.clear();
    typed.element = ElementType::kFloat16;
    for (uint16_t h : {0x3C00, 0xC000, 0x3800, 0x7BFF, 0, 0, 0, 0x8000}) {
      typed.elements.push_back(uint8_t(h & 0xff));
      typed.elements.push_back(uint8_t(h >> 8));
    }
    typed.options.with_attributes = true;
    out.push_back({Op::kSearchTyped, std::move(typed)});
  }
  out.push_back({Op::kShardFiles, ShardFilesRequest{.collection = "docs__s1@7"}});
  out.push_back({Op::kShardFileRead, ShardFilesRequest{"docs__s1@7", "00ff", "collections/3/wal-1.log", 1u << 20,
                                                       kMaxShardFileChunk}});
  out.push_back({Op::kShardFilesDone, ShardFilesRequest{.collection = "docs__s1@7", .token = "00ff"}});
  return out;
}

inline HistogramSnapshot SampleHistogram() {
  HistogramSnapshot h;
  h.upper_bounds_seconds = {50e-6, 100e-6, 200e-6};
  h.counts = {10, 0, 3, 1};
  h.count = 14;
  h.sum_seconds = 0.00123;
  return h;
}

// One response per opcode (kHello .. kLastRequestOp), then an error frame.
inline std::vector<Response> SampleResponses() {
  std::vector<Response> out;
  out.push_back(
      {Op::kHello, HelloReply{kProtocolVersion, "strata 0.1.0", 16u << 20, 10000, 1000, true}});
  out.push_back({Op::kPing, EmptyReply{}});
  out.push_back({Op::kCreateCollection, EmptyReply{}});
  out.push_back({Op::kDropCollection, EmptyReply{}});
  out.push_back(
      {Op::kListCollections, ListCollectionsReply{{SampleInfo("docs", Metric::kCosine),
                                                   SampleInfo("", Metric::kInnerProduct)}}});
  out.push_back(
      {Op::kDescribeCollection, DescribeCollectionReply{SampleInfo("docs", Metric::kL2)}});
  out.push_back({Op::kUpsert, WriteReply{3}});
  out.push_back({Op::kDelete, WriteReply{2}});
  {
    GetReply get;
    std::vector<Record> records = SampleRecords();
    get.records.push_back(records[0]);
    get.records.push_back(std::nullopt);
    Record short_record;  // a record may carry any dim of its own
    short_record.id = 9;
    short_record.vector = {7.0f};
    get.records.push_back(short_record);
    get.records.push_back(records[2]);
    out.push_back({Op::kGet, std::move(get)});
  }
  out.push_back({Op::kSearch, SearchReply{{{{3, 0.0f}, {1, 0.5f}, {99, 2.25f}}}, {}}});
  out.push_back({Op::kSearchBatch, SearchReply{{{{1, -0.75f}}, {}, {{5, 1.0f}, {6, 1.5f}}}, {}}});
  out.push_back(
      {Op::kExplain,
       SearchReply{{{{3, 0.0f}}}, SampleExplain()}});
  {
    StatsReply s;
    s.write_batches = 1;
    s.upserts = 2;
    s.deletes = 3;
    s.searches = 4;
    s.gets = 5;
    s.wal_bytes = 6;
    s.wal_fsyncs = 7;
    s.vectors = 8;
    s.memory_bytes = 9;
    s.disk_reads = 10;
    s.disk_read_bytes = 11;
    s.search_latency = SampleHistogram();
    // write_latency stays empty (no bounds, no buckets): also valid.
    s.connections = 12;
    s.requests = 13;
    s.errors = 14;
    s.busy_rejections = 15;
    out.push_back({Op::kStats, std::move(s)});
  }
  out.push_back({Op::kFlush, EmptyReply{}});
  out.push_back({Op::kCompact, EmptyReply{}});
  out.push_back({Op::kUpsertKeyed, WriteReply{3}});
  out.push_back({Op::kDeleteKeyed, WriteReply{1}});
  {
    GetReply get;
    Record rec = SampleRecords()[0];
    rec.id = kKeyedIdBase + 4;
    rec.key = "elem:0";
    get.records.push_back(rec);
    get.records.push_back(std::nullopt);
    out.push_back({Op::kGetKeyed, std::move(get)});
  }
  out.push_back({Op::kSearchKeyed,
                 KeyedSearchReply{{{{kKeyedIdBase, 0.5f, "elem:0"}, {7, 1.0f, ""}}, {}}}});
  out.push_back({Op::kListKeys, ListKeysReply{KeyPage{{"a", "b"}, {kKeyedIdBase, kKeyedIdBase + 9}, 10}}});
  out.push_back({Op::kSnapshot, SnapshotReply{"/srv/snapshots/docs-2026-12-05", 42, 3, 17, 2, 123456}});
  out.push_back({Op::kSearchWith,
                 SearchWithReply{true,
                                 {{{kKeyedIdBase, 0.5f, "elem:0", SampleRecords()[0].attributes}, {7, 1.0f, "", {}}},
                                  {}},
                                 {"attribute 'lnag' is on no record of collection 'docs'"},
                                 {}}});
  out.push_back({Op::kCreateCollectionWith, EmptyReply{}});
  {
    CollectionInfo info = SampleInfo("docs", Metric::kL2);
    info.spec = SampleSpecWithCodes();
    out.push_back({Op::kDescribeCollectionWith, DescribeCollectionReply{info}});
  }
  out.push_back({Op::kUpsertKeyedIds, IdsReply{{kKeyedIdBase, kKeyedIdBase + 41, 7}}});
  {
    CollectionInfo coded = SampleInfo("docs", Metric::kL2);
    coded.spec = SampleSpecWithCodes();
    out.push_back({Op::kListCollectionsWith,
                   ListCollectionsReply{{coded, SampleInfo("plain", Metric::kInnerProduct)}}});
  }
  out.push_back({Op::kUpsertTyped, WriteReply{3}});
  out.push_back({Op::kSearchTyped, SearchWithReply{false, {{{kKeyedIdBase, 0.5f, "u8:0", {}}}, {}}, {}, {}}});
  out.push_back({Op::kShardFiles, ShardFilesReply{"00ff", 42, {{"MANIFEST", 310, 0x0123456789abcdefULL},
                                                               {"collections/3/seg-1/index.hnsw", 1u << 30, 7}}}});
  out.push_back({Op::kShardFileRead, ShardFileChunkReply{std::string("\0bytes\xff", 7)}});
  out.push_back({Op::kShardFilesDone, EmptyReply{}});
  out.push_back({Op::kError, ErrorReply{ErrorCode::kNotFound, "collection 'x' not found"}});
  return out;
}

}  // namespace strata::protocol::testing
