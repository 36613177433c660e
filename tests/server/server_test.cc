// The server over real sockets: a Server on 127.0.0.1, port 0, over an engine in a
// temporary directory, driven by the raw-socket TestClient.

#include "server/log.h"
#include "server/request_hook.h"
#include "server/server.h"

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/server/test_client.h"

namespace strata::server {
namespace {

namespace fs = std::filesystem;
using protocol::ErrorCode;
using protocol::Op;
using testing::AsError;
using testing::Frame;
using testing::TestClient;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "strata-server-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::vector<float> Vec(VectorId id, uint32_t dim) {
  std::vector<float> v(dim);
  for (uint32_t j = 0; j < dim; ++j) v[j] = float((id * 31 + j * 7) % 101) / 10.0f;
  return v;
}

std::vector<Record> Records(VectorId first, size_t n, uint32_t dim) {
  std::vector<Record> out;
  for (size_t i = 0; i < n; ++i) out.push_back({first + i, Vec(first + i, dim), {}});
  return out;
}

// A copy of the reply's body; fails the test (and returns nullopt) unless `f` is a
// reply (not an error) of `op`.
template <typename T>
std::optional<T> Reply(const std::optional<Frame>& f, Op op) {
  if (!f) {
    ADD_FAILURE() << "no frame";
    return std::nullopt;
  }
  if (const auto* e = AsError(f)) {
    ADD_FAILURE() << "error " << static_cast<int>(e->code) << ": " << e->message;
    return std::nullopt;
  }
  EXPECT_EQ(f->response.op, op);
  EXPECT_EQ(f->header.opcode,
            static_cast<uint16_t>(static_cast<uint16_t>(op) | protocol::kResponseBit));
  const T* body = std::get_if<T>(&f->response.body);
  EXPECT_NE(body, nullptr);
  if (body == nullptr) return std::nullopt;
  return *body;
}

// Fails the test unless `f` is an error frame with `code`; returns its message.
std::string ExpectError(const std::optional<Frame>& f, ErrorCode code) {
  if (!f) {
    ADD_FAILURE() << "no frame";
    return {};
  }
  const auto* e = AsError(f);
  if (e == nullptr) {
    ADD_FAILURE() << "not an error frame (op " << static_cast<int>(f->response.op) << ")";
    return {};
  }
  EXPECT_EQ(e->code, code) << e->message;
  EXPECT_EQ(f->header.opcode, static_cast<uint16_t>(Op::kError));
  return e->message;
}

std::vector<uint8_t> RawFrame(uint16_t opcode, uint64_t request_id, std::vector<uint8_t> payload,
                              std::optional<uint32_t> declared_size = std::nullopt) {
  protocol::FrameHeader h;
  h.opcode = opcode;
  h.request_id = request_id;
  h.payload_size = declared_size.value_or(uint32_t(payload.size()));
  std::vector<uint8_t> out(protocol::kHeaderSize);
  protocol::EncodeHeader(
      h, std::span<uint8_t, protocol::kHeaderSize>(out.data(), protocol::kHeaderSize));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

template <typename Pred>
bool Eventually(Pred pred, int timeout_ms = 10000) {
  const auto deadline = testing::Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (testing::Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

double SecondsSince(testing::Clock::time_point t) {
  return std::chrono::duration<double>(testing::Clock::now() - t).count();
}

// Requests of `op` ("search_batch", ...) answered so far, from the server's metrics.
uint64_t AnsweredOf(const Server& server, std::string_view op) {
  for (const auto& [name, n] : server.metrics().requests_by_op) {
    if (name == op) return n;
  }
  return 0;
}

// A token as the server accepts them: at least 16 bytes, no blanks around it.
const std::string kToken = "s3cret-0123456789abcdef";

// This process's resident set (VmRSS), in bytes; the servers of these tests run in it.
uint64_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  uint64_t kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "VmRSS:", 6) == 0) {
      kib = std::strtoull(line + 6, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kib * 1024;
}

// Closes `c` with a reset (SO_LINGER 0) rather than an orderly FIN.
void Reset(std::unique_ptr<TestClient>& c) {
  linger l{1, 0};
  ::setsockopt(c->fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  c.reset();
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::err); }

  ServerConfig Config() const {
    ServerConfig c;
    c.port = 0;
    c.metrics_port = 0;
    c.data_dir = dir_.path().string();
    c.worker_threads = 2;
    c.durability = Durability::kNone;
    c.background_compaction = false;
    c.log_level = "error";
    return c;
  }

  void Start(const ServerConfig& config) {
    auto engine = Engine::Open(config.data_dir, EngineOptionsFor(config));
    ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
    engine_ = std::move(*engine);
    auto server = Server::Start(config, *engine_);
    ASSERT_TRUE(server.has_value()) << server.error().ToString();
    server_ = std::move(*server);
    ASSERT_NE(server_->port(), 0);
  }

  std::unique_ptr<TestClient> Connect() {
    auto c = TestClient::Connect(server_->port());
    EXPECT_NE(c, nullptr);
    return c;
  }

  void ExpectPing(TestClient& c, uint64_t id = 77) {
    auto f = c.Call(testing::PingRequest(), id);
    ASSERT_TRUE(f.has_value()) << c.last_error();
    Reply<protocol::EmptyReply>(f, Op::kPing);
    EXPECT_EQ(f->header.request_id, id);
  }

  // Creates `name` (L2, `dim`) and upserts ids 1..n.
  void Fill(TestClient& c, const std::string& name, uint32_t dim, size_t n) {
    Reply<protocol::EmptyReply>(c.Call(testing::CreateRequest(name, dim)), Op::kCreateCollection);
    for (size_t first = 1; first <= n; first += 1000) {
      const size_t count = std::min<size_t>(1000, n + 1 - first);
      auto f = c.Call(testing::UpsertRequest(name, dim, Records(first, count, dim)));
      auto w = Reply<protocol::WriteReply>(f, Op::kUpsert);
      ASSERT_TRUE(w.has_value());
      ASSERT_EQ(w->applied, count);
    }
  }

  // `count` search_batch requests (ids 1 to count), each an exact scan of `queries` (rows of 16)
  // over `collection`, k each: work that holds the workers for a known time (SlowQueries).
  static std::vector<uint8_t> ScanBatches(const std::string& collection, const std::vector<float>& queries,
                                          uint64_t count, uint32_t k) {
    std::vector<uint8_t> bytes;
    for (uint64_t id = 1; id <= count; ++id) {
      protocol::EncodeRequest(
          testing::SearchRequest(Op::kSearchBatch, collection, 16, queries, k, SearchStrategy::kScan), id, bytes);
    }
    return bytes;
  }

  // Queries (rows of `dim`) for an exact-scan search batch over `collection` that
  // takes the server about `seconds`: measured here, since the cost differs by
  // orders of magnitude between sanitizer and release builds.
  // At most 4000 queries: where a scan is faster than seconds / 4000 a query, the batch takes
  // less; `batch_seconds`, when given, is what the returned batch is expected to take.
  std::vector<float> SlowQueries(TestClient& c, const std::string& collection, uint32_t dim,
                                 double seconds, double* batch_seconds = nullptr) {
    auto queries = [&](size_t n) {
      std::vector<float> q;
      for (size_t i = 0; i < n; ++i) {
        const auto v = Vec(i % 500 + 1, dim);
        q.insert(q.end(), v.begin(), v.end());
      }
      return q;
    };
    size_t n = 4;
    for (;;) {
      const auto start = testing::Clock::now();
      auto f = c.Call(testing::SearchRequest(Op::kSearchBatch, collection, dim, queries(n), 10,
                                             SearchStrategy::kScan));
      EXPECT_TRUE(f.has_value() && AsError(f) == nullptr);
      const double took = SecondsSince(start);
      if (took >= seconds / 4 || n >= 4000) {
        const double per_query = took / double(n);
        const size_t count = std::clamp<size_t>(size_t(seconds / per_query), 1, 4000);
        if (batch_seconds) *batch_seconds = per_query * double(count);
        return queries(count);
      }
      n *= 4;
    }
  }

  void TearDown() override {
    server_.reset();
    engine_.reset();
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Server> server_;
};

// ---------------------------------------------------------------------------
// Every op.
// ---------------------------------------------------------------------------

TEST_F(ServerTest, EveryOpRoundTrips) {
  ServerConfig config = Config();
  Start(config);
  auto c = Connect();

  auto hello_frame = c->Call(testing::HelloRequest(""), 5);
  auto hello = Reply<protocol::HelloReply>(hello_frame, Op::kHello);
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello_frame->header.request_id, 5u);
  EXPECT_EQ(hello->protocol_version, protocol::kProtocolVersion);
  EXPECT_EQ(hello->server_version.rfind("strata ", 0), 0u) << hello->server_version;
  EXPECT_EQ(hello->max_payload, config.max_frame_bytes);
  EXPECT_EQ(hello->max_batch, config.max_batch);
  EXPECT_EQ(hello->max_k, config.max_k);
  EXPECT_FALSE(hello->auth_required);

  ExpectPing(*c, 6);
  Reply<protocol::EmptyReply>(c->Call(testing::CreateRequest("docs", 4)), Op::kCreateCollection);
  ExpectError(c->Call(testing::CreateRequest("docs", 4)), ErrorCode::kAlreadyExists);

  auto list = Reply<protocol::ListCollectionsReply>(
      c->Call({Op::kListCollections, protocol::ListCollectionsRequest{}}), Op::kListCollections);
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->collections.size(), 1u);
  EXPECT_EQ(list->collections[0].spec.name, "docs");
  EXPECT_EQ(list->collections[0].spec.dim, 4u);

  auto describe = [&] {
    return c->Call({Op::kDescribeCollection, protocol::DescribeCollectionRequest{"docs"}});
  };
  auto info = Reply<protocol::DescribeCollectionReply>(describe(), Op::kDescribeCollection);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->info.spec.name, "docs");
  EXPECT_EQ(info->info.num_vectors, 0u);

  std::vector<Record> records = Records(1, 3, 4);
  records[0].attributes = {{"lang", std::string("en")},
                           {"year", int64_t{2020}},
                           {"score", 0.5},
                           {"tags", TagList{"a", "b"}}};
  records[1].attributes = {{"lang", std::string("de")}};
  records[2].attributes = {{"lang", std::string("de")}};
  auto write =
      Reply<protocol::WriteReply>(c->Call(testing::UpsertRequest("docs", 4, records)), Op::kUpsert);
  ASSERT_TRUE(write.has_value());
  EXPECT_EQ(write->applied, 3u);

  auto got = Reply<protocol::GetReply>(c->Call(testing::GetRequest("docs", {1, 2, 42})), Op::kGet);
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->records.size(), 3u);
  ASSERT_TRUE(got->records[0].has_value());
  EXPECT_EQ(*got->records[0], records[0]);
  ASSERT_TRUE(got->records[1].has_value());
  EXPECT_EQ(got->records[1]->vector, records[1].vector);
  EXPECT_FALSE(got->records[2].has_value());

  auto search = Reply<protocol::SearchReply>(
      c->Call(testing::SearchRequest(Op::kSearch, "docs", 4, Vec(2, 4), 2)), Op::kSearch);
  ASSERT_TRUE(search.has_value());
  ASSERT_EQ(search->results.size(), 1u);
  ASSERT_EQ(search->results[0].size(), 2u);
  EXPECT_EQ(search->results[0][0].id, 2u);
  EXPECT_EQ(search->results[0][0].distance, 0.0f);
  EXPECT_EQ(search->explain, Explain{});

  protocol::Request filtered = testing::SearchRequest(Op::kSearch, "docs", 4, Vec(2, 4), 3);
  std::get<protocol::SearchRequest>(filtered.body).options.filter = "lang == \"en\"";
  auto only_en = Reply<protocol::SearchReply>(c->Call(filtered), Op::kSearch);
  ASSERT_TRUE(only_en.has_value());
  ASSERT_EQ(only_en->results[0].size(), 1u);
  EXPECT_EQ(only_en->results[0][0].id, 1u);

  std::vector<float> two = Vec(1, 4);
  const std::vector<float> q3 = Vec(3, 4);
  two.insert(two.end(), q3.begin(), q3.end());
  auto batch = Reply<protocol::SearchReply>(
      c->Call(testing::SearchRequest(Op::kSearchBatch, "docs", 4, two, 1)), Op::kSearchBatch);
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->results.size(), 2u);
  EXPECT_EQ(batch->results[0].at(0).id, 1u);
  EXPECT_EQ(batch->results[1].at(0).id, 3u);

  auto explain = Reply<protocol::SearchReply>(
      c->Call(testing::SearchRequest(Op::kExplain, "docs", 4, Vec(2, 4), 1)), Op::kExplain);
  ASSERT_TRUE(explain.has_value());
  EXPECT_EQ(explain->results.at(0).at(0).id, 2u);
  // The engine's Explain, carried as its JSON and decoded back into the same struct.
  EXPECT_EQ(explain->explain.k, 1u);
  ASSERT_FALSE(explain->explain.segments.empty()) << explain->explain.ToJson();
  EXPECT_FALSE(explain->explain.segments[0].segment.empty()) << explain->explain.ToJson();

  auto deleted =
      Reply<protocol::WriteReply>(c->Call(testing::DeleteRequest("docs", {2})), Op::kDelete);
  ASSERT_TRUE(deleted.has_value());
  EXPECT_EQ(deleted->applied, 1u);
  auto after_delete =
      Reply<protocol::GetReply>(c->Call(testing::GetRequest("docs", {2})), Op::kGet);
  ASSERT_TRUE(after_delete.has_value());
  EXPECT_FALSE(after_delete->records.at(0).has_value());

  auto stats =
      Reply<protocol::StatsReply>(c->Call({Op::kStats, protocol::StatsRequest{}}), Op::kStats);
  ASSERT_TRUE(stats.has_value());
  EXPECT_EQ(stats->upserts, 3u);
  EXPECT_EQ(stats->deletes, 1u);
  EXPECT_EQ(stats->vectors, 2u);
  EXPECT_GE(stats->searches, 5u);
  EXPECT_EQ(stats->connections, 1u);
  EXPECT_GE(stats->requests, 14u);
  EXPECT_EQ(stats->errors, 1u);  // the second create
  EXPECT_EQ(stats->search_latency.counts.size(),
            stats->search_latency.upper_bounds_seconds.size() + 1);

  Reply<protocol::EmptyReply>(c->Call({Op::kFlush, protocol::FlushRequest{"docs"}}), Op::kFlush);
  Reply<protocol::EmptyReply>(c->Call({Op::kCompact, protocol::CompactRequest{"docs"}}),
                              Op::kCompact);
  auto compacted = Reply<protocol::DescribeCollectionReply>(describe(), Op::kDescribeCollection);
  ASSERT_TRUE(compacted.has_value());
  EXPECT_EQ(compacted->info.num_vectors, 2u);
  EXPECT_GE(compacted->info.sealed_segments, 1u);
  auto again = Reply<protocol::SearchReply>(
      c->Call(testing::SearchRequest(Op::kSearch, "docs", 4, Vec(3, 4), 1)), Op::kSearch);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->results.at(0).at(0).id, 3u);

  Reply<protocol::EmptyReply>(
      c->Call({Op::kDropCollection, protocol::DropCollectionRequest{"docs"}}), Op::kDropCollection);
  auto empty = Reply<protocol::ListCollectionsReply>(
      c->Call({Op::kListCollections, protocol::ListCollectionsRequest{}}), Op::kListCollections);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->collections.empty());
  ExpectError(describe(), ErrorCode::kNotFound);
}

// list_collections_with (26) carries each collection's codes and rerank, as
// describe_collection_with (24) does; list_collections (5) keeps version 1's layout, which
// has no place for them.
TEST_F(ServerTest, ListCollectionsWithCarriesEachCollectionsCodes) {
  Start(Config());
  auto c = Connect();
  CollectionSpec coded;
  coded.name = "coded";
  coded.dim = 8;
  coded.codes = VectorCodes::kSq8;
  coded.rerank = 40;
  Reply<protocol::EmptyReply>(
      c->Call({Op::kCreateCollectionWith, protocol::CreateCollectionRequest{coded}}), Op::kCreateCollectionWith);
  Reply<protocol::EmptyReply>(c->Call(testing::CreateRequest("plain", 8)), Op::kCreateCollection);
  auto by_name = [](const protocol::ListCollectionsReply& list, const std::string& name) {
    for (const CollectionInfo& info : list.collections) {
      if (info.spec.name == name) return info.spec;
    }
    ADD_FAILURE() << name << " is not listed";
    return CollectionSpec{};
  };
  auto with = Reply<protocol::ListCollectionsReply>(
      c->Call({Op::kListCollectionsWith, protocol::ListCollectionsRequest{}}), Op::kListCollectionsWith);
  ASSERT_TRUE(with.has_value());
  ASSERT_EQ(with->collections.size(), 2u);
  EXPECT_EQ(by_name(*with, "coded").codes, VectorCodes::kSq8);
  EXPECT_EQ(by_name(*with, "coded").rerank, 40u);
  EXPECT_EQ(by_name(*with, "plain").codes, VectorCodes::kNone);
  auto old = Reply<protocol::ListCollectionsReply>(
      c->Call({Op::kListCollections, protocol::ListCollectionsRequest{}}), Op::kListCollections);
  ASSERT_TRUE(old.has_value());
  ASSERT_EQ(old->collections.size(), 2u);
  EXPECT_EQ(by_name(*old, "coded").dim, 8u);
  EXPECT_EQ(by_name(*old, "coded").codes, VectorCodes::kNone);
}

TEST_F(ServerTest, ACollectionCreatedAgainWithAnotherDimensionIsUsable) {
  Start(Config());
  auto c = Connect();
  Fill(*c, "docs", 4, 10);
  Reply<protocol::EmptyReply>(
      c->Call({Op::kDropCollection, protocol::DropCollectionRequest{"docs"}}), Op::kDropCollection);
  Fill(*c, "docs", 8, 10);
  auto s = Reply<protocol::SearchReply>(
      c->Call(testing::SearchRequest(Op::kSearch, "docs", 8, Vec(4, 8), 1)), Op::kSearch);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->results.at(0).at(0).id, 4u);
}

TEST_F(ServerTest, LargeFramesAreReadInPieces) {
  Start(Config());
  auto c = Connect();
  Reply<protocol::EmptyReply>(c->Call(testing::CreateRequest("big", 256)), Op::kCreateCollection);
  // ~620 KB of payload: more than the first read chunk, so the buffer grows as bytes arrive.
  auto f = c->Call(testing::UpsertRequest("big", 256, Records(1, 600, 256)));
  auto w = Reply<protocol::WriteReply>(f, Op::kUpsert);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->applied, 600u);
  auto got =
      Reply<protocol::GetReply>(c->Call(testing::GetRequest("big", {1, 300, 600})), Op::kGet);
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->records.size(), 3u);
  const VectorId ids[] = {1, 300, 600};
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(got->records[i].has_value());
    EXPECT_EQ(got->records[i]->vector, Vec(ids[i], 256));
  }
}

// ---------------------------------------------------------------------------
// Bad input.
// ---------------------------------------------------------------------------

TEST_F(ServerTest, MalformedPayloadIsAnsweredAndTheConnectionStaysOpen) {
  Start(Config());
  auto c = Connect();
  ASSERT_TRUE(c->SendRaw(RawFrame(static_cast<uint16_t>(Op::kCreateCollection), 41, {1, 2, 3})));
  auto f = c->ReadFrame();
  ExpectError(f, ErrorCode::kMalformed);
  EXPECT_EQ(f->header.request_id, 41u);
  // Trailing bytes after a ping's empty payload.
  ASSERT_TRUE(c->SendRaw(RawFrame(static_cast<uint16_t>(Op::kPing), 42, {0})));
  ExpectError(c->ReadFrame(), ErrorCode::kMalformed);
  ExpectPing(*c);
}

TEST_F(ServerTest, UnknownOpcodeIsAnsweredAndTheConnectionStaysOpen) {
  Start(Config());
  auto c = Connect();
  ASSERT_TRUE(c->SendRaw(RawFrame(999, 9, {})));
  auto f = c->ReadFrame();
  const std::string message = ExpectError(f, ErrorCode::kUnknownOp);
  EXPECT_NE(message.find("999"), std::string::npos) << message;
  EXPECT_EQ(f->header.request_id, 9u);
  ASSERT_TRUE(c->SendRaw(RawFrame(static_cast<uint16_t>(Op::kError), 10, {})));
  ExpectError(c->ReadFrame(), ErrorCode::kUnknownOp);
  ASSERT_TRUE(
      c->SendRaw(RawFrame(static_cast<uint16_t>(Op::kPing) | protocol::kResponseBit, 11, {})));
  ExpectError(c->ReadFrame(), ErrorCode::kUnknownOp);
  ExpectPing(*c);
}

// The shard-file requests are between cluster nodes: a server that is not one says so.
TEST_F(ServerTest, ShardFileRequestsAreRefusedByAServerThatIsNotAClusterNode) {
  Start(Config());
  auto c = Connect();
  for (const Op op : {Op::kShardFiles, Op::kShardFileRead, Op::kShardFilesDone}) {
    protocol::ShardFilesRequest m{.collection = "docs__s0@3", .token = "t", .path = "MANIFEST", .length = 10};
    const std::string message = ExpectError(c->Call(protocol::Request{op, m}), ErrorCode::kUnimplemented);
    EXPECT_NE(message.find("not a cluster node"), std::string::npos) << message;
  }
  ExpectPing(*c);
}

TEST_F(ServerTest, NonFiniteComponentsAreRefusedNamingRecordAndComponent) {
  Start(Config());
  auto c = Connect();
  Fill(*c, "docs", 4, 5);
  std::vector<Record> records = Records(100, 2, 4);
  records[1].vector[2] = std::numeric_limits<float>::quiet_NaN();
  std::string m =
      ExpectError(c->Call(testing::UpsertRequest("docs", 4, records)), ErrorCode::kInvalidArgument);
  EXPECT_NE(m.find("record 1"), std::string::npos) << m;
  EXPECT_NE(m.find("component 2"), std::string::npos) << m;
  EXPECT_NE(m.find("NaN"), std::string::npos) << m;
  // All or nothing: record 0 was not written either.
  auto got = Reply<protocol::GetReply>(c->Call(testing::GetRequest("docs", {100})), Op::kGet);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->records.at(0).has_value());

  std::vector<float> q = Vec(1, 4);
  q[3] = std::numeric_limits<float>::infinity();
  m = ExpectError(c->Call(testing::SearchRequest(Op::kSearch, "docs", 4, q, 3)),
                  ErrorCode::kInvalidArgument);
  EXPECT_NE(m.find("component 3"), std::string::npos) << m;
  EXPECT_NE(m.find("inf"), std::string::npos) << m;

  std::vector<float> batch = Vec(1, 4);
  std::vector<float> bad = Vec(2, 4);
  bad[0] = -std::numeric_limits<float>::infinity();
  batch.insert(batch.end(), bad.begin(), bad.end());
  m = ExpectError(c->Call(testing::SearchRequest(Op::kSearchBatch, "docs", 4, batch, 3)),
                  ErrorCode::kInvalidArgument);
  EXPECT_NE(m.find("query 1"), std::string::npos) << m;
  EXPECT_NE(m.find("component 0"), std::string::npos) << m;
  ExpectPing(*c);
}

TEST_F(ServerTest, DimensionMismatchNamesBothDimensions) {
  // The engine's own check speaks (the server's cached dimension may be stale, and
  // re-reading it would walk the collection): its messages name both dimensions.
  Start(Config());
  auto c = Connect();
  Fill(*c, "docs", 4, 5);
  std::string m = ExpectError(c->Call(testing::SearchRequest(Op::kSearch, "docs", 3, Vec(1, 3), 1)),
                              ErrorCode::kInvalidArgument);
  EXPECT_NE(m.find("query has dimension 3, collection 'docs' has 4"), std::string::npos) << m;
  std::vector<float> two = Vec(1, 3);
  const std::vector<float> second = Vec(2, 3);
  two.insert(two.end(), second.begin(), second.end());
  m = ExpectError(c->Call(testing::SearchRequest(Op::kSearchBatch, "docs", 3, two, 1)),
                  ErrorCode::kInvalidArgument);
  EXPECT_NE(m.find("queries have dimension 3, collection 'docs' has 4"), std::string::npos) << m;
  m = ExpectError(c->Call(testing::UpsertRequest("docs", 5, Records(50, 1, 5))),
                  ErrorCode::kInvalidArgument);
  EXPECT_NE(m.find("upsert"), std::string::npos) << m;
  EXPECT_NE(m.find("id 50"), std::string::npos) << m;
  EXPECT_NE(m.find("dimension 5, the collection 4"), std::string::npos) << m;
  // Nothing was written, and the right dimension still works.
  auto got = Reply<protocol::GetReply>(c->Call(testing::GetRequest("docs", {50})), Op::kGet);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->records.at(0).has_value());
  ExpectPing(*c);
}

TEST_F(ServerTest, KMustBeBetweenOneAndMaxK) {
  ServerConfig config = Config();
  config.max_k = 50;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 4, 5);
  std::string m = ExpectError(c->Call(testing::SearchRequest(Op::kSearch, "docs", 4, Vec(1, 4), 0)),
                              ErrorCode::kInvalidArgument);
  EXPECT_NE(m.find("k"), std::string::npos) << m;
  m = ExpectError(c->Call(testing::SearchRequest(Op::kSearch, "docs", 4, Vec(1, 4), 51)),
                  ErrorCode::kTooLarge);
  EXPECT_NE(m.find("max_k"), std::string::npos) << m;
  ExpectError(c->Call(testing::SearchRequest(Op::kSearchBatch, "docs", 4, Vec(1, 4), 51)),
              ErrorCode::kTooLarge);
  ExpectError(c->Call(testing::SearchRequest(Op::kExplain, "docs", 4, Vec(1, 4), 0)),
              ErrorCode::kInvalidArgument);
  auto ok = Reply<protocol::SearchReply>(
      c->Call(testing::SearchRequest(Op::kSearch, "docs", 4, Vec(1, 4), 50)), Op::kSearch);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->results.at(0).size(), 5u);
}

TEST_F(ServerTest, BatchesOverMaxBatchAreTooLarge) {
  ServerConfig config = Config();
  config.max_batch = 4;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 4, 4);
  std::string m = ExpectError(c->Call(testing::UpsertRequest("docs", 4, Records(10, 5, 4))),
                              ErrorCode::kTooLarge);
  // Refused by the decoder, from the count (before any record is decoded).
  EXPECT_NE(m.find("count: 5 exceeds the limit 4 (max_batch)"), std::string::npos) << m;
  ExpectError(c->Call(testing::DeleteRequest("docs", {1, 2, 3, 4, 5})), ErrorCode::kTooLarge);
  ExpectError(c->Call(testing::GetRequest("docs", {1, 2, 3, 4, 5})), ErrorCode::kTooLarge);
  std::vector<float> five;
  for (VectorId id = 1; id <= 5; ++id) {
    const auto v = Vec(id, 4);
    five.insert(five.end(), v.begin(), v.end());
  }
  ExpectError(c->Call(testing::SearchRequest(Op::kSearchBatch, "docs", 4, five, 1)),
              ErrorCode::kTooLarge);
  five.resize(16);
  auto ok = Reply<protocol::SearchReply>(
      c->Call(testing::SearchRequest(Op::kSearchBatch, "docs", 4, five, 1)), Op::kSearchBatch);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->results.size(), 4u);
  auto got =
      Reply<protocol::GetReply>(c->Call(testing::GetRequest("docs", {1, 2, 3, 4})), Op::kGet);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->records.size(), 4u);
}

TEST_F(ServerTest, UnknownCollectionIsNotFound) {
  Start(Config());
  auto c = Connect();
  ExpectError(c->Call(testing::SearchRequest(Op::kSearch, "nope", 4, Vec(1, 4), 1)),
              ErrorCode::kNotFound);
  ExpectError(c->Call(testing::UpsertRequest("nope", 4, Records(1, 1, 4))), ErrorCode::kNotFound);
  ExpectError(c->Call(testing::GetRequest("nope", {1})), ErrorCode::kNotFound);
  ExpectError(c->Call(testing::DeleteRequest("nope", {1})), ErrorCode::kNotFound);
  ExpectError(c->Call({Op::kDescribeCollection, protocol::DescribeCollectionRequest{"nope"}}),
              ErrorCode::kNotFound);
  ExpectError(c->Call({Op::kDropCollection, protocol::DropCollectionRequest{"nope"}}),
              ErrorCode::kNotFound);
  ExpectError(c->Call({Op::kFlush, protocol::FlushRequest{"nope"}}), ErrorCode::kNotFound);
  const std::string m =
      ExpectError(c->Call({Op::kCompact, protocol::CompactRequest{"nope"}}), ErrorCode::kNotFound);
  EXPECT_NE(m.find("nope"), std::string::npos) << m;
}

TEST_F(ServerTest, BadMagicClosesThatConnectionOnly) {
  Start(Config());
  auto other = Connect();
  ExpectPing(*other);
  auto c = Connect();
  std::vector<uint8_t> frame = RawFrame(static_cast<uint16_t>(Op::kPing), 5, {});
  frame[0] = 'X';
  ASSERT_TRUE(c->SendRaw(frame));
  auto f = c->ReadFrame();
  const std::string m = ExpectError(f, ErrorCode::kMalformed);
  EXPECT_NE(m.find("magic"), std::string::npos) << m;
  EXPECT_EQ(f->header.request_id, 5u);
  EXPECT_TRUE(c->WaitClosed(5000));
  ExpectPing(*other);
  auto fresh = Connect();
  ExpectPing(*fresh);
}

TEST_F(ServerTest, OversizedOrBadHeaderClosesTheConnection) {
  ServerConfig config = Config();
  config.max_frame_bytes = 4096;
  Start(config);
  auto c = Connect();
  ASSERT_TRUE(c->SendRaw(RawFrame(static_cast<uint16_t>(Op::kUpsert), 6, {}, 1u << 20)));
  const std::string m = ExpectError(c->ReadFrame(), ErrorCode::kTooLarge);
  EXPECT_NE(m.find("4096"), std::string::npos) << m;
  EXPECT_TRUE(c->WaitClosed(5000));

  auto v = Connect();
  std::vector<uint8_t> frame = RawFrame(static_cast<uint16_t>(Op::kPing), 7, {});
  frame[4] = 9;  // protocol version 9
  ASSERT_TRUE(v->SendRaw(frame));
  ExpectError(v->ReadFrame(), ErrorCode::kMalformed);
  EXPECT_TRUE(v->WaitClosed(5000));

  auto fresh = Connect();
  ExpectPing(*fresh);
}

TEST_F(ServerTest, RandomPayloadsForEveryOpcodeGetExactlyOneReplyEach) {
  ServerConfig config = Config();
  config.max_frame_bytes = 4096;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 4, 5);
  std::mt19937 rng(1234);
  std::vector<uint8_t> bytes;
  uint64_t id = 0;
  for (uint16_t opcode = 1; opcode <= 16; ++opcode) {
    for (int i = 0; i < 20; ++i) {
      std::vector<uint8_t> payload(rng() % 200);
      for (auto& b : payload) b = uint8_t(rng() % 4 == 0 ? 0 : rng());
      const auto frame = RawFrame(opcode, ++id, payload);
      bytes.insert(bytes.end(), frame.begin(), frame.end());
    }
  }
  ASSERT_TRUE(c->SendRaw(bytes));
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < id; ++i) {
    auto f = c->ReadFrame(30000);
    ASSERT_TRUE(f.has_value()) << c->last_error();
    EXPECT_TRUE(seen.insert(f->header.request_id).second);
  }
  EXPECT_EQ(seen.size(), id);
  ExpectPing(*c);
}

TEST_F(ServerTest, RepliesThatWouldNotFitInAFrameAreTooLarge) {
  ServerConfig config = Config();
  config.max_frame_bytes = 4096;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 256, 3);
  std::string m =
      ExpectError(c->Call(testing::GetRequest("docs", {1, 2, 3, 4, 5})), ErrorCode::kTooLarge);
  EXPECT_NE(m.find("max_frame_bytes"), std::string::npos) << m;
  std::vector<float> queries;
  for (VectorId q = 1; q <= 3; ++q) {
    const auto v = Vec(q, 256);
    queries.insert(queries.end(), v.begin(), v.end());
  }
  m = ExpectError(c->Call(testing::SearchRequest(Op::kSearchBatch, "docs", 256, queries, 200)),
                  ErrorCode::kTooLarge);
  EXPECT_NE(m.find("max_frame_bytes"), std::string::npos) << m;
  auto small = Reply<protocol::GetReply>(c->Call(testing::GetRequest("docs", {1, 2})), Op::kGet);
  ASSERT_TRUE(small.has_value());
  EXPECT_TRUE(small->records.at(1).has_value());
}

TEST_F(ServerTest, ReplySizeChecksCountEveryByteOfTheReply) {
  ServerConfig config = Config();
  config.max_frame_bytes = 4096;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 4, 5);
  // A search reply: u32 query count, u32 n, n x 12 bytes. k 341: 4 + 4 + 4092 = 4100 bytes
  // at most, over 4096 (whatever the collection holds, the check is an upper bound).
  std::string m = ExpectError(c->Call(testing::SearchRequest(Op::kSearch, "docs", 4, Vec(1, 4), 341)),
                              ErrorCode::kTooLarge);
  EXPECT_NE(m.find("could take up to 4100 bytes"), std::string::npos) << m;
  auto ok = Reply<protocol::SearchReply>(
      c->Call(testing::SearchRequest(Op::kSearch, "docs", 4, Vec(1, 4), 340)), Op::kSearch);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->results.at(0).size(), 5u);
  // A get reply of two found records of dim 508: 4 + 2 x (1 + 8 + 4 (dim) + 2032 + 2) =
  // 4098 bytes. Only id 1 exists, but the check is an upper bound: every id found.
  Fill(*c, "wide", 508, 1);
  m = ExpectError(c->Call(testing::GetRequest("wide", {1, 2})), ErrorCode::kTooLarge);
  EXPECT_NE(m.find("could take 4098 bytes if every id is found"), std::string::npos) << m;
  auto one = Reply<protocol::GetReply>(c->Call(testing::GetRequest("wide", {1})), Op::kGet);
  ASSERT_TRUE(one.has_value());
  EXPECT_TRUE(one->records.at(0).has_value());
  ExpectPing(*c);
}

// ---------------------------------------------------------------------------
// Timeouts and limits.
// ---------------------------------------------------------------------------

TEST_F(ServerTest, HalfAHeaderThenSilenceIsClosedAfterTheRequestTimeout) {
  ServerConfig config = Config();
  config.request_timeout_s = 0.3;
  config.idle_timeout_s = 60;
  Start(config);
  auto c = Connect();
  ExpectPing(*c);
  std::vector<uint8_t> frame = RawFrame(static_cast<uint16_t>(Op::kPing), 1, {});
  frame.resize(10);
  const auto start = testing::Clock::now();
  ASSERT_TRUE(c->SendRaw(frame));
  EXPECT_TRUE(c->WaitClosed(5000));
  EXPECT_GE(SecondsSince(start), 0.25);

  // A payload that stops short is closed the same way.
  auto p = Connect();
  std::vector<uint8_t> partial = RawFrame(static_cast<uint16_t>(Op::kDropCollection), 2, {}, 100);
  partial.resize(partial.size() + 10, 0);
  ASSERT_TRUE(p->SendRaw(partial));
  EXPECT_TRUE(p->WaitClosed(5000));

  auto fresh = Connect();
  ExpectPing(*fresh);
}

TEST_F(ServerTest, IdleConnectionIsClosedButABusyOneIsNot) {
  ServerConfig config = Config();
  config.idle_timeout_s = 0.8;
  config.request_timeout_s = 5;
  Start(config);
  auto busy = Connect();
  auto idle = Connect();
  ExpectPing(*idle);
  const auto start = testing::Clock::now();
  // Requests every 100 ms keep `busy` open well past the idle timeout.
  for (int i = 0; i < 12; ++i) {
    ExpectPing(*busy, 100 + i);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ExpectPing(*busy, 200);
  EXPECT_TRUE(idle->WaitClosed(5000));
  EXPECT_GE(SecondsSince(start), 0.75);
  EXPECT_TRUE(busy->WaitClosed(5000));  // and it too, once left alone
}

TEST_F(ServerTest, AClientThatDoesNotReadItsRepliesIsClosed) {
  ServerConfig config = Config();
  config.request_timeout_s = 0.5;
  Start(config);
  {
    auto filler = Connect();
    Fill(*filler, "wide", 2048, 64);  // a get of all 64 is a 512 KiB reply
  }
  auto c = TestClient::Connect(server_->port(), 64 * 1024);
  ASSERT_NE(c, nullptr);
  std::vector<VectorId> all;
  for (VectorId id = 1; id <= 64; ++id) all.push_back(id);
  std::vector<uint8_t> bytes;
  // 8 MiB of replies: more than the server's send buffer (4 MiB at most) and the
  // client's 64 KiB receive buffer together.
  for (uint64_t id = 1; id <= 16; ++id)
    protocol::EncodeRequest(testing::GetRequest("wide", all), id, bytes);
  ASSERT_TRUE(c->SendRaw(bytes));
  // Reading nothing: the buffers fill and a write stalls past request_timeout_s.
  EXPECT_TRUE(Eventually([&] { return server_->metrics().connections == 0; }, 15000));
  auto other = Connect();
  ExpectPing(*other);
}

TEST_F(ServerTest, ConnectionsPastMaxConnectionsAreRefused) {
  ServerConfig config = Config();
  config.max_connections = 2;
  Start(config);
  auto a = Connect();
  auto b = Connect();
  ExpectPing(*a);
  ExpectPing(*b);
  auto third = Connect();
  ASSERT_NE(third, nullptr);
  auto f = third->ReadFrame();
  const std::string m = ExpectError(f, ErrorCode::kBusy);
  EXPECT_EQ(m, "too many connections (2)");
  EXPECT_TRUE(third->WaitClosed(5000));
  EXPECT_GE(server_->metrics().busy_rejections, 1u);

  a.reset();
  ASSERT_TRUE(Eventually([&] { return server_->metrics().connections == 1; }));
  auto d = Connect();
  ExpectPing(*d);
}

TEST_F(ServerTest, TokenIsRequiredBeforeAnyOtherRequest) {
  ServerConfig config = Config();
  config.token = kToken;
  Start(config);
  auto c = Connect();
  std::string m = ExpectError(c->Call(testing::PingRequest()), ErrorCode::kUnauthenticated);
  EXPECT_NE(m.find("hello"), std::string::npos) << m;
  ExpectError(c->Call({Op::kListCollections, protocol::ListCollectionsRequest{}}),
              ErrorCode::kUnauthenticated);
  ExpectError(c->Call(testing::HelloRequest("wrong")), ErrorCode::kUnauthenticated);
  auto hello = Reply<protocol::HelloReply>(c->Call(testing::HelloRequest(kToken)), Op::kHello);
  ASSERT_TRUE(hello.has_value());
  EXPECT_TRUE(hello->auth_required);
  ExpectPing(*c);
  Reply<protocol::ListCollectionsReply>(
      c->Call({Op::kListCollections, protocol::ListCollectionsRequest{}}), Op::kListCollections);
}

TEST_F(ServerTest, ThreeWrongHellosCloseTheConnection) {
  ServerConfig config = Config();
  config.token = kToken;
  Start(config);
  auto c = Connect();
  for (int i = 0; i < 3; ++i) {
    ExpectError(c->Call(testing::HelloRequest("s3cre" + std::to_string(i)), 20 + i),
                ErrorCode::kUnauthenticated);
  }
  EXPECT_TRUE(c->WaitClosed(5000));
  auto fresh = Connect();
  Reply<protocol::HelloReply>(fresh->Call(testing::HelloRequest(kToken)), Op::kHello);
}

TEST_F(ServerTest, BeforeAHelloFramesAreSmallAndTheHelloMustComeInTime) {
  ServerConfig config = Config();
  config.token = kToken;
  config.request_timeout_s = 0.5;
  config.hello_timeout_s = 0.5;
  config.idle_timeout_s = 60;
  Start(config);
  // A 100 KB frame (well within max_frame_bytes) before the hello: a framing error.
  auto big = Connect();
  ASSERT_TRUE(big->SendRaw(RawFrame(static_cast<uint16_t>(Op::kUpsert), 3, {}, 100000)));
  auto f = big->ReadFrame();
  const std::string m = ExpectError(f, ErrorCode::kTooLarge);
  EXPECT_NE(m.find("65536"), std::string::npos) << m;
  EXPECT_NE(m.find("hello"), std::string::npos) << m;
  EXPECT_EQ(f->header.request_id, 3u);
  EXPECT_TRUE(big->WaitClosed(5000));

  // A connection that never sends a hello is closed after hello_timeout_s, even
  // though it is far from its idle timeout.
  auto silent = Connect();
  const auto start = testing::Clock::now();
  EXPECT_TRUE(silent->WaitClosed(5000));
  EXPECT_GE(SecondsSince(start), 0.4);

  // After a good hello neither applies.
  auto good = Connect();
  Reply<protocol::HelloReply>(good->Call(testing::HelloRequest(kToken)), Op::kHello);
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  ExpectPing(*good);
  Reply<protocol::EmptyReply>(good->Call(testing::CreateRequest("big", 256)),
                              Op::kCreateCollection);
  auto w = Reply<protocol::WriteReply>(
      good->Call(testing::UpsertRequest("big", 256, Records(1, 100, 256))), Op::kUpsert);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->applied, 100u);
}

TEST_F(ServerTest, AHelloWithoutATokenSaysTokenRequired) {
  ServerConfig config = Config();
  config.token = kToken;
  Start(config);
  auto c = Connect();
  const std::string missing =
      ExpectError(c->Call(testing::HelloRequest(""), 1), ErrorCode::kUnauthenticated);
  EXPECT_NE(missing.find("token required"), std::string::npos) << missing;
  const std::string wrong =
      ExpectError(c->Call(testing::HelloRequest(kToken + "x"), 2), ErrorCode::kUnauthenticated);
  EXPECT_NE(wrong.find("wrong token"), std::string::npos) << wrong;
  EXPECT_EQ(wrong.find("token required"), std::string::npos) << wrong;
  Reply<protocol::HelloReply>(c->Call(testing::HelloRequest(kToken), 3), Op::kHello);
  EXPECT_EQ(server_->metrics().failed_hellos, 2u);
}

TEST_F(ServerTest, TheHelloDeadlineIsShorterThanTheRequestTimeout) {
  ServerConfig config = Config();
  config.token = kToken;
  config.request_timeout_s = 30;
  config.hello_timeout_s = 0.3;
  Start(config);
  auto silent = Connect();
  const auto start = testing::Clock::now();
  EXPECT_TRUE(silent->WaitClosed(5000));  // hello_timeout_s, not request_timeout_s
  EXPECT_GE(SecondsSince(start), 0.25);
  EXPECT_TRUE(Eventually([&] { return server_->metrics().connections == 0; }));
}

TEST_F(ServerTest, ConnectionsWithoutAHelloCannotKeepOutOneThatSaysHello) {
  ServerConfig config = Config();
  config.token = kToken;
  config.max_connections = 8;
  config.max_unauthenticated_per_address = 64;
  config.hello_timeout_s = 60;
  Start(config);
  // Every slot held by connections that never say hello.
  std::vector<std::unique_ptr<TestClient>> silent;
  for (int i = 0; i < 8; ++i) silent.push_back(Connect());
  ASSERT_TRUE(Eventually([&] { return server_->metrics().connections == 8; }));
  // A client with the token still gets in: the oldest silent connection makes room.
  auto good = Connect();
  ASSERT_NE(good, nullptr);
  Reply<protocol::HelloReply>(good->Call(testing::HelloRequest(kToken)), Op::kHello);
  ExpectPing(*good);
  EXPECT_TRUE(silent.front()->WaitClosed(5000));
  EXPECT_EQ(server_->metrics().unauthenticated_displaced, 1u);
  EXPECT_TRUE(Eventually([&] { return server_->metrics().connections == 8; }));
  // Once every connection has said hello, a new one is refused as before.
  for (size_t i = 1; i < silent.size(); ++i) {
    Reply<protocol::HelloReply>(silent[i]->Call(testing::HelloRequest(kToken)), Op::kHello);
  }
  auto extra = Connect();
  ASSERT_NE(extra, nullptr);
  EXPECT_EQ(ExpectError(extra->ReadFrame(), ErrorCode::kBusy), "too many connections (8)");
}

TEST_F(ServerTest, ConnectionsWithoutAHelloHaveTheirOwnSmallerLimit) {
  ServerConfig config = Config();
  config.token = kToken;
  config.max_unauthenticated_connections = 4;
  config.max_unauthenticated_per_address = 64;
  config.hello_timeout_s = 60;
  Start(config);
  auto authenticated = Connect();
  Reply<protocol::HelloReply>(authenticated->Call(testing::HelloRequest(kToken)), Op::kHello);
  // Eight connections without a hello: at most four are kept, the oldest closed first.
  std::vector<std::unique_ptr<TestClient>> silent;
  for (int i = 0; i < 8; ++i) silent.push_back(Connect());
  ASSERT_TRUE(Eventually([&] { return server_->metrics().connections == 5; }));
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(silent[i]->WaitClosed(5000)) << i;
  EXPECT_EQ(server_->metrics().unauthenticated_displaced, 4u);
  // Connections that said hello are never displaced.
  ExpectPing(*authenticated);
  Reply<protocol::HelloReply>(silent[7]->Call(testing::HelloRequest(kToken)), Op::kHello);
}

TEST_F(ServerTest, ConnectionsWithoutAHelloAreLimitedPerAddress) {
  ServerConfig config = Config();
  config.token = kToken;
  config.max_unauthenticated_connections = 16;
  config.max_unauthenticated_per_address = 2;
  Start(config);
  auto a = Connect();
  auto b = Connect();
  ASSERT_TRUE(Eventually([&] { return server_->metrics().connections == 2; }));
  auto third = Connect();
  ASSERT_NE(third, nullptr);
  const std::string m = ExpectError(third->ReadFrame(), ErrorCode::kBusy);
  EXPECT_NE(m.find("127.0.0.1"), std::string::npos) << m;
  EXPECT_NE(m.find("max_unauthenticated_per_address"), std::string::npos) << m;
  // Another address is not held back by this one.
  auto other = TestClient::Connect(server_->port(), 0, "127.0.0.2");
  ASSERT_NE(other, nullptr);
  Reply<protocol::HelloReply>(other->Call(testing::HelloRequest(kToken)), Op::kHello);
  // Once one of the first two has said hello, 127.0.0.1 may open another.
  Reply<protocol::HelloReply>(a->Call(testing::HelloRequest(kToken)), Op::kHello);
  auto fourth = Connect();
  Reply<protocol::HelloReply>(fourth->Call(testing::HelloRequest(kToken)), Op::kHello);
}

TEST_F(ServerTest, FailedHellosFromAnAddressAreBackedOff) {
  ServerConfig config = Config();
  config.token = kToken;
  config.max_failed_hellos = 4;
  Start(config);
  // Three wrong hellos close a connection; the fourth failure, on the next one, puts
  // 127.0.0.1 in back-off (1 s).
  auto first = Connect();
  for (int i = 0; i < 3; ++i) {
    ExpectError(first->Call(testing::HelloRequest("guess-" + std::to_string(i)), 10 + i),
                ErrorCode::kUnauthenticated);
  }
  EXPECT_TRUE(first->WaitClosed(5000));
  auto second = Connect();
  const auto backoff_start = testing::Clock::now();
  ExpectError(second->Call(testing::HelloRequest("guess-3"), 13), ErrorCode::kUnauthenticated);
  // Even the right token is refused now, without being compared, and the connection closes.
  std::string m =
      ExpectError(second->Call(testing::HelloRequest(kToken), 14), ErrorCode::kUnauthenticated);
  EXPECT_NE(m.find("too many failed hellos"), std::string::npos) << m;
  EXPECT_TRUE(second->WaitClosed(5000));
  // New connections from the address are refused at once.
  auto third = Connect();
  ASSERT_NE(third, nullptr);
  m = ExpectError(third->ReadFrame(), ErrorCode::kUnauthenticated);
  EXPECT_NE(m.find("too many failed hellos from 127.0.0.1"), std::string::npos) << m;
  EXPECT_TRUE(third->WaitClosed(5000));
  const ServerMetricsSnapshot during = server_->metrics();
  EXPECT_EQ(during.failed_hellos, 4u);
  EXPECT_GE(during.hello_backoff_refusals, 2u);
  // Another address is not affected.
  auto other = TestClient::Connect(server_->port(), 0, "127.0.0.2");
  ASSERT_NE(other, nullptr);
  Reply<protocol::HelloReply>(other->Call(testing::HelloRequest(kToken)), Op::kHello);
  // After the back-off the right token works again.
  std::this_thread::sleep_until(backoff_start + std::chrono::milliseconds(1100));
  auto later = Connect();
  Reply<protocol::HelloReply>(later->Call(testing::HelloRequest(kToken)), Op::kHello);
}

TEST_F(ServerTest, InflightBytesOverTheBudgetAreBusy) {
  ServerConfig config = Config();
  config.worker_threads = 1;
  config.max_frame_bytes = 1024 * 1024;
  config.max_inflight_bytes = 1024 * 1024;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 16, 1000);
  Reply<protocol::EmptyReply>(c->Call(testing::CreateRequest("wide", 256)),
                              Op::kCreateCollection);
  const std::vector<float> queries = SlowQueries(*c, "docs", 16, 0.5);
  // One slow search runs (at most 4000 queries: 256 KB); a ~400 KB upsert waits behind
  // it; a 700 KB frame would take the bytes held past 1 MiB: refused at once, without
  // being decoded.
  std::vector<uint8_t> bytes;
  protocol::EncodeRequest(testing::SearchRequest(Op::kSearchBatch, "docs", 16, queries, 10,
                                                 SearchStrategy::kScan),
                          1, bytes);
  protocol::EncodeRequest(testing::UpsertRequest("wide", 256, Records(1, 390, 256)), 2, bytes);
  const auto garbage = RawFrame(static_cast<uint16_t>(Op::kUpsert), 3,
                                std::vector<uint8_t>(700 * 1024, 0xab));
  bytes.insert(bytes.end(), garbage.begin(), garbage.end());
  ASSERT_TRUE(c->SendRaw(bytes));
  std::map<uint64_t, std::optional<Frame>> replies;
  for (int i = 0; i < 3; ++i) {
    auto f = c->ReadFrame(60000);
    ASSERT_TRUE(f.has_value()) << c->last_error();
    replies[f->header.request_id] = f;
  }
  ASSERT_EQ(replies.size(), 3u);
  Reply<protocol::SearchReply>(replies[1], Op::kSearchBatch);
  Reply<protocol::WriteReply>(replies[2], Op::kUpsert);
  const std::string m = ExpectError(replies[3], ErrorCode::kBusy);
  EXPECT_NE(m.find("max_inflight_bytes"), std::string::npos) << m;
  EXPECT_GE(server_->metrics().busy_rejections, 1u);
  // The bytes are given back: the same frame is now decoded (and found malformed).
  ASSERT_TRUE(c->SendRaw(garbage));
  ExpectError(c->ReadFrame(), ErrorCode::kMalformed);
}

// The experiment of issue 14 (R2), scaled down for a sanitizer build: 20 pipelined
// search_batch requests (dim 1, 50 queries, k 10,000: 6 MB of reply each, more than the
// socket buffers take) whose replies are never read. The server used to read them all,
// run them on every worker and hold every reply (the full-size experiment, 60 MB replies:
// 1.1 GiB; tests/server/reply_memory.sh runs it against the real binary). Now a connection
// holds at most max_connection_reply_bytes (here 4 MiB) plus one reply: the server runs
// one request, stops reading, and holds one reply until the connection goes.
TEST_F(ServerTest, PipelinedRepliesThatAreNeverReadDoNotPileUp) {
  ServerConfig config = Config();
  config.worker_threads = 4;
  config.max_connection_reply_bytes = 4 << 20;
  Start(config);
  {
    // 10,000 distinct one-dimensional vectors (Fill's repeat every 101 ids, which makes
    // the graph slow to build in one dimension).
    auto filler = Connect();
    Reply<protocol::EmptyReply>(filler->Call(testing::CreateRequest("one", 1)),
                                Op::kCreateCollection);
    for (VectorId first = 1; first <= 10000; first += 1000) {
      std::vector<Record> records;
      for (VectorId id = first; id < first + 1000; ++id) {
        records.push_back({id, {float(id) / 1000.0f}, {}});
      }
      Reply<protocol::WriteReply>(filler->Call(testing::UpsertRequest("one", 1, records)),
                                  Op::kUpsert);
    }
  }
  constexpr uint32_t kQueries = 50;
  constexpr uint32_t kK = 10000;
  std::vector<float> queries(kQueries);
  for (uint32_t i = 0; i < kQueries; ++i) queries[i] = float(i * 200) / 1000.0f;
  std::vector<uint8_t> bytes;
  for (uint64_t id = 1; id <= 20; ++id) {
    protocol::EncodeRequest(testing::SearchRequest(Op::kSearchBatch, "one", 1, queries, kK,
                                                   SearchStrategy::kScan),
                            id, bytes);
  }
  const uint64_t reply_bytes = protocol::kHeaderSize + 4 + kQueries * (4 + uint64_t{kK} * 12);
  const uint64_t answered_before = AnsweredOf(*server_, "search_batch");
  auto ran = [&] { return AnsweredOf(*server_, "search_batch") - answered_before; };
  const uint64_t rss_before = ResidentBytes();
  auto c = TestClient::Connect(server_->port(), 64 * 1024);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->SendRaw(bytes));
  // Never read. Once the first reply is out, give the server two more seconds: before,
  // the other workers had run three more by then.
  uint64_t rss_peak = rss_before;
  const auto sample_until = [&](auto done, double seconds) {
    const auto start = testing::Clock::now();
    while (!done() && SecondsSince(start) < seconds) {
      rss_peak = std::max(rss_peak, ResidentBytes());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  sample_until([&] { return ran() >= 1; }, 120);
  ASSERT_GE(ran(), 1u);
  sample_until([] { return false; }, 2);
  const ServerMetricsSnapshot m = server_->metrics();
  const uint64_t growth = rss_peak > rss_before ? rss_peak - rss_before : 0;
  std::fprintf(stderr,
               "20 unread search_batch replies of %llu bytes: %llu run, reply bytes held %llu "
               "(at most %llu), resident set %llu -> %llu MiB (+%llu MiB)\n",
               (unsigned long long)reply_bytes, (unsigned long long)ran(),
               (unsigned long long)m.reply_bytes, (unsigned long long)m.reply_bytes_peak,
               (unsigned long long)(rss_before >> 20), (unsigned long long)(rss_peak >> 20),
               (unsigned long long)(growth >> 20));
  EXPECT_EQ(ran(), 1u);
  EXPECT_EQ(server_->metrics().in_progress, 0u);  // nothing else admitted
  EXPECT_LE(m.reply_bytes_peak, config.max_connection_reply_bytes + reply_bytes);
  EXPECT_GE(m.reply_bytes, reply_bytes);  // the one reply, waiting
  // One reply and the engine's results of one request (16 bytes a neighbor), and in a
  // sanitizer build memory in quarantine: well under the 20 replies of before.
  EXPECT_LT(growth, 20 * reply_bytes);
  // The reply bytes are given back with the connection.
  Reset(c);
  EXPECT_TRUE(Eventually([&] { return server_->metrics().connections == 0; }));
  EXPECT_TRUE(Eventually([&] { return server_->metrics().reply_bytes == 0; }));
}

TEST_F(ServerTest, AConnectionHoldingItsReplyBudgetIsNotRead) {
  ServerConfig config = Config();
  config.max_connection_reply_bytes = 1 << 20;
  config.request_timeout_s = 30;
  Start(config);
  {
    auto filler = Connect();
    Fill(*filler, "wide", 2048, 1);
    Reply<protocol::GetReply>(filler->Call(testing::GetRequest("wide", {1})), Op::kGet);
  }
  auto c = TestClient::Connect(server_->port(), 64 * 1024);
  ASSERT_NE(c, nullptr);
  // A 16 MB reply, more than the socket buffers take, then five pings.
  constexpr size_t kIds = 2000;
  std::vector<uint8_t> bytes;
  protocol::EncodeRequest(testing::GetRequest("wide", std::vector<VectorId>(kIds, 1)), 1, bytes);
  for (uint64_t id = 2; id <= 6; ++id) protocol::EncodeRequest(testing::PingRequest(), id, bytes);
  const uint64_t pings_before = AnsweredOf(*server_, "ping");
  ASSERT_TRUE(c->SendRaw(bytes));
  ASSERT_TRUE(Eventually([&] { return AnsweredOf(*server_, "get") >= 2; }));
  // The reply waits to be written: the connection is not read, the pings wait unanswered.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(AnsweredOf(*server_, "ping"), pings_before);
  EXPECT_GE(server_->metrics().reply_bytes, kIds * 2048 * 4);
  // Reading the reply lets the server go on: every request is answered.
  std::set<uint64_t> seen;
  for (int i = 0; i < 6; ++i) {
    auto f = c->ReadFrame(30000);
    ASSERT_TRUE(f.has_value()) << c->last_error();
    EXPECT_EQ(AsError(f), nullptr);
    seen.insert(f->header.request_id);
  }
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_TRUE(Eventually([&] { return server_->metrics().reply_bytes == 0; }));
}

TEST_F(ServerTest, RepliesOverTheServerReplyBudgetAreBusy) {
  ServerConfig config = Config();
  config.max_frame_bytes = 24 << 20;
  config.max_inflight_bytes = 24 << 20;
  config.max_reply_bytes = 24 << 20;
  config.max_connection_reply_bytes = 24 << 20;
  config.request_timeout_s = 30;
  Start(config);
  auto reader = Connect();
  Fill(*reader, "wide", 2048, 1);
  Reply<protocol::GetReply>(reader->Call(testing::GetRequest("wide", {1})), Op::kGet);
  // A 16 MB reply that stays unwritten (its client does not read).
  constexpr size_t kIds = 2000;
  auto stalled = TestClient::Connect(server_->port(), 64 * 1024);
  ASSERT_NE(stalled, nullptr);
  ASSERT_TRUE(stalled->Send(testing::GetRequest("wide", std::vector<VectorId>(kIds, 1)), 1));
  ASSERT_TRUE(Eventually([&] { return server_->metrics().reply_bytes >= kIds * 2048 * 4; }));
  // Another of the same size would pass max_reply_bytes: busy, before it runs.
  const uint64_t gets = AnsweredOf(*server_, "get");
  const std::string m =
      ExpectError(reader->Call(testing::GetRequest("wide", std::vector<VectorId>(kIds, 1)), 2),
                  ErrorCode::kBusy);
  EXPECT_NE(m.find("max_reply_bytes"), std::string::npos) << m;
  EXPECT_EQ(AnsweredOf(*server_, "get"), gets + 1);  // the busy reply only
  // A small one still fits.
  Reply<protocol::GetReply>(reader->Call(testing::GetRequest("wide", {1}), 3), Op::kGet);
  // Once the first reply is read, the large one is served.
  auto f = stalled->ReadFrame(30000);
  ASSERT_TRUE(f.has_value()) << stalled->last_error();
  EXPECT_EQ(AsError(f), nullptr);
  ASSERT_TRUE(Eventually([&] { return server_->metrics().reply_bytes == 0; }));
  auto big = Reply<protocol::GetReply>(
      reader->Call(testing::GetRequest("wide", std::vector<VectorId>(kIds, 1)), 4, 60000),
      Op::kGet);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->records.size(), kIds);
}

// upsert_keyed_ids answers with every record's id (8 bytes each): a write's reply budget is
// taken for that many ids before it runs (from the payload's head), not the fixed allowance
// of an acknowledgement (4 KiB), which such a reply passes from about 500 records on.
TEST_F(ServerTest, UpsertKeyedIdsTakeTheirIdsFromTheReplyBudget) {
  // A 16 MB get reply that stays unwritten holds all of max_reply_bytes but 16 KiB.
  constexpr size_t kIds = 2000;
  constexpr uint32_t kDim = 2048;
  const uint64_t stalled_reply =
      protocol::kHeaderSize + 4 + kIds * (1 + 8 + 4 + 2 + uint64_t{kDim} * sizeof(float));
  constexpr uint64_t kFree = 16 * 1024;
  ServerConfig config = Config();
  config.max_frame_bytes = uint32_t(stalled_reply + kFree);
  config.max_inflight_bytes = config.max_frame_bytes;
  config.max_reply_bytes = config.max_frame_bytes;
  config.max_connection_reply_bytes = config.max_frame_bytes;
  config.request_timeout_s = 30;
  Start(config);
  auto writer = Connect();
  Fill(*writer, "wide", kDim, 1);
  Reply<protocol::GetReply>(writer->Call(testing::GetRequest("wide", {1})), Op::kGet);
  Reply<protocol::EmptyReply>(writer->Call(testing::CreateRequest("keyed", 1)), Op::kCreateCollection);
  auto stalled = TestClient::Connect(server_->port(), 64 * 1024);
  ASSERT_NE(stalled, nullptr);
  ASSERT_TRUE(stalled->Send(testing::GetRequest("wide", std::vector<VectorId>(kIds, 1)), 1));
  ASSERT_TRUE(Eventually([&] { return server_->metrics().reply_bytes == stalled_reply; }))
      << server_->metrics().reply_bytes;
  auto keyed_ids = [](size_t n) {
    protocol::UpsertRequest m{"keyed", 1, {}};
    for (size_t i = 0; i < n; ++i) {
      m.records.push_back({kInvalidVectorId, {float(i)}, {}, "key:" + std::to_string(i)});
    }
    return protocol::Request{Op::kUpsertKeyedIds, std::move(m)};
  };
  // 2,049 ids take more than the 16 KiB left: busy before it runs.
  const uint64_t upserts = AnsweredOf(*server_, "upsert_keyed_ids");
  const std::string m = ExpectError(writer->Call(keyed_ids(kFree / 8 + 1), 2), ErrorCode::kBusy);
  EXPECT_NE(m.find("max_reply_bytes"), std::string::npos) << m;
  EXPECT_EQ(AnsweredOf(*server_, "upsert_keyed_ids"), upserts + 1);  // the busy reply only
  // 1,500 (12 KB of ids and the allowance for an error) fit, and every id comes back.
  auto ids = Reply<protocol::IdsReply>(writer->Call(keyed_ids(1500), 3, 60000), Op::kUpsertKeyedIds);
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(ids->ids.size(), 1500u);
  // Once the stalled reply is read, the larger one runs too.
  auto f = stalled->ReadFrame(30000);
  ASSERT_TRUE(f.has_value()) << stalled->last_error();
  EXPECT_EQ(AsError(f), nullptr);
  ASSERT_TRUE(Eventually([&] { return server_->metrics().reply_bytes == 0; }));
  ids = Reply<protocol::IdsReply>(writer->Call(keyed_ids(kFree / 8 + 1), 4, 60000), Op::kUpsertKeyedIds);
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(ids->ids.size(), kFree / 8 + 1);
}

TEST_F(ServerTest, PayloadsBeingReadCountInTheInflightBudget) {
  ServerConfig config = Config();
  config.max_frame_bytes = 1 << 20;
  config.max_inflight_bytes = 1 << 20;
  config.request_timeout_s = 30;
  Start(config);
  // A frame announcing 900 KB of which only the header and 10 bytes arrive: its payload
  // is budgeted from its header on.
  auto slow = Connect();
  ASSERT_TRUE(slow->SendRaw(
      RawFrame(static_cast<uint16_t>(Op::kUpsert), 1, std::vector<uint8_t>(10, 0xab), 900000)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // Another connection's 500 KB frame would pass max_inflight_bytes: read, dropped, busy;
  // that connection stays usable.
  auto other = Connect();
  const auto garbage =
      RawFrame(static_cast<uint16_t>(Op::kUpsert), 2, std::vector<uint8_t>(500000, 0xab));
  ASSERT_TRUE(other->SendRaw(garbage));
  const std::string m = ExpectError(other->ReadFrame(), ErrorCode::kBusy);
  EXPECT_NE(m.find("being read"), std::string::npos) << m;
  EXPECT_NE(m.find("max_inflight_bytes"), std::string::npos) << m;
  ExpectPing(*other);
  // The first frame completes (and is malformed): its bytes are given back, and the same
  // 500 KB frame is now read and decoded.
  ASSERT_TRUE(slow->SendRaw(std::vector<uint8_t>(900000 - 10, 0xab)));
  ExpectError(slow->ReadFrame(), ErrorCode::kMalformed);
  ASSERT_TRUE(other->SendRaw(garbage));
  ExpectError(other->ReadFrame(), ErrorCode::kMalformed);
}

// upsert_typed and search_typed of uint8 vectors: the server widens them to float32, 4x
// their bytes on the wire. That width is taken from max_inflight_bytes with the payload: a
// request that could never fit is TooLarge, one that does not fit now is Busy.
TEST_F(ServerTest, TypedVectorsTakeTheirFloat32WidthFromTheInflightBudget) {
  ServerConfig config = Config();
  config.max_frame_bytes = 1 << 20;
  config.max_inflight_bytes = 1 << 20;
  config.request_timeout_s = 30;
  Start(config);
  constexpr uint32_t kDim = 256;
  auto typed_upsert = [](size_t rows) {
    protocol::UpsertRequest m{"u8", kDim, {}};
    m.element = ElementType::kUint8;
    for (size_t i = 0; i < rows; ++i) {
      m.records.push_back({VectorId(i + 1), {}, {}});
      for (uint32_t j = 0; j < kDim; ++j) m.elements.push_back(uint8_t((i * 31 + j * 7) % 251));
    }
    return protocol::Request{Op::kUpsertTyped, std::move(m)};
  };
  auto typed_search = [](uint32_t count) {
    protocol::SearchRequest m;
    m.collection = "u8";
    m.options.k = 1;
    m.dim = kDim;
    m.count = count;
    m.element = ElementType::kUint8;
    m.elements.assign(size_t{count} * kDim, uint8_t{7});
    return protocol::Request{Op::kSearchTyped, std::move(m)};
  };
  auto c = Connect();
  Reply<protocol::EmptyReply>(c->Call(testing::CreateRequest("u8", kDim)), Op::kCreateCollection);
  // 300 rows: 80 KB on the wire, 300 KB widened; they fit.
  auto w = Reply<protocol::WriteReply>(c->Call(typed_upsert(300)), Op::kUpsertTyped);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->applied, 300u);
  // 1,000 rows: 266 KB on the wire, which max_inflight_bytes (1 MiB) takes, but over 1 MB
  // widened: never admitted, so too large rather than busy.
  std::string m = ExpectError(c->Call(typed_upsert(1000)), ErrorCode::kTooLarge);
  EXPECT_NE(m.find("widened to float32"), std::string::npos) << m;
  EXPECT_NE(m.find("max_inflight_bytes"), std::string::npos) << m;
  // A frame of 700 KB being read holds its bytes: the 300 rows' payload still fits beside it,
  // their float32 width does not. The same for 300 queries.
  auto slow = Connect();
  ASSERT_TRUE(slow->SendRaw(
      RawFrame(static_cast<uint16_t>(Op::kUpsert), 1, std::vector<uint8_t>(10, 0xab), 700000)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  m = ExpectError(c->Call(typed_upsert(300), 2), ErrorCode::kBusy);
  EXPECT_NE(m.find("widened to float32"), std::string::npos) << m;
  m = ExpectError(c->Call(typed_search(300), 3), ErrorCode::kBusy);
  EXPECT_NE(m.find("widened to float32"), std::string::npos) << m;
  // Once that frame is read (and found malformed), both run.
  ASSERT_TRUE(slow->SendRaw(std::vector<uint8_t>(700000 - 10, 0xab)));
  ExpectError(slow->ReadFrame(), ErrorCode::kMalformed);
  w = Reply<protocol::WriteReply>(c->Call(typed_upsert(300), 4), Op::kUpsertTyped);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->applied, 300u);
  auto hits = Reply<protocol::SearchWithReply>(c->Call(typed_search(300), 5), Op::kSearchTyped);
  ASSERT_TRUE(hits.has_value());
  EXPECT_EQ(hits->results.size(), 300u);
  // Every byte taken was given back: a frame of all but 48 KB of the budget is read and
  // decoded (malformed), not refused as busy.
  ASSERT_TRUE(c->SendRaw(RawFrame(static_cast<uint16_t>(Op::kUpsert), 6, std::vector<uint8_t>(1000000, 0xab))));
  ExpectError(c->ReadFrame(), ErrorCode::kMalformed);
}

TEST_F(ServerTest, AClientThatReadsTooSlowlyIsClosed) {
  ServerConfig config = Config();
  config.request_timeout_s = 5;
  config.idle_timeout_s = 60;
  config.min_write_bytes_per_s = 2 << 20;
  Start(config);
  {
    auto filler = Connect();
    Fill(*filler, "wide", 2048, 1);
  }
  auto c = TestClient::Connect(server_->port(), 64 * 1024);
  ASSERT_NE(c, nullptr);
  // A 16 MB reply read at most 64 KiB every 100 ms: the server's write makes progress
  // every few seconds, within request_timeout_s (the old rule kept such a client for the
  // 25 s of the transfer), but the rate is under min_write_bytes_per_s.
  constexpr size_t kIds = 2000;
  ASSERT_TRUE(c->Send(testing::GetRequest("wide", std::vector<VectorId>(kIds, 1)), 1));
  const size_t expected = protocol::kHeaderSize + 4 + kIds * (1 + 8 + 4 + 2048 * 4 + 2);
  const auto start = testing::Clock::now();
  size_t received = 0;
  bool closed = false;
  std::vector<uint8_t> buf(64 * 1024);
  while (!closed && received < expected && SecondsSince(start) < 60) {
    pollfd p{c->fd(), POLLIN, 0};
    if (::poll(&p, 1, 1000) > 0) {
      const ssize_t n = ::recv(c->fd(), buf.data(), buf.size(), 0);
      if (n <= 0) {
        closed = true;
        break;
      }
      received += size_t(n);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(closed) << received << " of " << expected << " bytes received";
  EXPECT_LT(received, expected);
  EXPECT_LT(SecondsSince(start), 20);
  EXPECT_EQ(server_->metrics().slow_client_closes, 1u);
  EXPECT_TRUE(Eventually([&] { return server_->metrics().reply_bytes == 0; }));
}

TEST_F(ServerTest, RequestsOfAConnectionThatWentAwayAreNotRun) {
  ServerConfig config = Config();
  config.worker_threads = 1;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 16, 1000);
  const std::vector<float> queries = SlowQueries(*c, "docs", 16, 0.3);
  const uint64_t answered_before = AnsweredOf(*server_, "search_batch");
  auto gone = Connect();
  std::vector<uint8_t> bytes = ScanBatches("docs", queries, 10, 10);
  ASSERT_TRUE(gone->SendRaw(bytes));
  ASSERT_TRUE(Eventually([&] {
    return server_->metrics().in_progress + AnsweredOf(*server_, "search_batch") -
               answered_before ==
           10;
  }));
  Reset(gone);
  // The one running finishes (and perhaps one more, started before the reset was
  // noticed); the rest are dropped without running, long before 10 x 0.3 s.
  ASSERT_TRUE(Eventually([&] { return server_->metrics().in_progress == 0; }, 30000));
  EXPECT_LE(AnsweredOf(*server_, "search_batch") - answered_before, 3u);
  ExpectPing(*c);
}

TEST_F(ServerTest, ShutdownTimeoutSkipsRequestsNotStarted) {
  ServerConfig config = Config();
  config.worker_threads = 1;
  config.shutdown_timeout_s = 0.3;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 16, 4000);  // enough rows that 4000 queries take a Release build ~0.2 s
  double batch_s = 0;
  const std::vector<float> queries = SlowQueries(*c, "docs", 16, 0.3, &batch_s);
  const uint64_t answered_before = AnsweredOf(*server_, "search_batch");
  std::vector<uint8_t> bytes = ScanBatches("docs", queries, 12, 10);
  ASSERT_TRUE(c->SendRaw(bytes));
  ASSERT_TRUE(Eventually([&] {
    return server_->metrics().in_progress + AnsweredOf(*server_, "search_batch") -
               answered_before ==
           12;
  }));
  const auto start = testing::Clock::now();
  server_->Shutdown();
  server_->Wait();
  // 12 batches of work were queued; the drain stops after 0.3 s plus the request running:
  // the one running, those that fit 0.3 s (with a batch's time off by up to half), and one
  // more started as the timeout fell -- fewer than the 12 queued.
  EXPECT_LT(SecondsSince(start), 2.5);
  const size_t most = 2 + size_t(std::ceil(0.3 / (0.5 * batch_s)));
  ASSERT_LT(most, 12u) << "batches of " << batch_s << " s are too short to tell";
  EXPECT_LE(AnsweredOf(*server_, "search_batch") - answered_before, most) << "batches of " << batch_s << " s";
  EXPECT_TRUE(c->WaitClosed(5000));
}

TEST_F(ServerTest, AFrameBeingReadWhenShutdownBeginsIsAnswered) {
  Start(Config());
  auto c = Connect();
  ExpectPing(*c);
  // Half of a describe_collection frame: the header and part of the payload.
  protocol::Request describe{Op::kDescribeCollection,
                             protocol::DescribeCollectionRequest{std::string(100, 'x')}};
  std::vector<uint8_t> frame;
  protocol::EncodeRequest(describe, 31, frame);
  const size_t half = protocol::kHeaderSize + 50;
  ASSERT_TRUE(c->SendRaw(std::span<const uint8_t>(frame).first(half)));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server_->Shutdown();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(c->SendRaw(std::span<const uint8_t>(frame).subspan(half)));
  auto f = c->ReadFrame();
  ASSERT_TRUE(f.has_value()) << c->last_error();
  EXPECT_EQ(f->header.request_id, 31u);
  ExpectError(f, ErrorCode::kShuttingDown);
  EXPECT_TRUE(c->WaitClosed(5000));
}

TEST_F(ServerTest, AClientThatReadsSlowlyButSteadilyIsKept) {
  ServerConfig config = Config();
  config.request_timeout_s = 1.0;
  config.idle_timeout_s = 60;
  Start(config);
  {
    auto filler = Connect();
    Fill(*filler, "wide", 2048, 1);
  }
  auto c = TestClient::Connect(server_->port(), 64 * 1024);
  ASSERT_NE(c, nullptr);
  // One reply of 16 MB (id 1, 2000 times): a single write that takes seconds at the pace
  // below, but makes progress all the time.
  constexpr size_t kIds = 2000;
  ASSERT_TRUE(c->Send(testing::GetRequest("wide", std::vector<VectorId>(kIds, 1)), 1));
  const size_t expected = protocol::kHeaderSize + 4 + kIds * (1 + 8 + 4 + 2048 * 4 + 2);
  // 256 KiB every 50 ms: at most 5 MB/s, so the write takes about 3 s, three times
  // request_timeout_s; the kernel lets the server write again each time a few hundred
  // KB have been taken.
  const auto start = testing::Clock::now();
  size_t received = 0;
  std::vector<uint8_t> buf(256 * 1024);
  while (received < expected && SecondsSince(start) < 60) {
    size_t chunk = 0;
    while (chunk < buf.size() && received + chunk < expected) {
      pollfd p{c->fd(), POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) break;
      const ssize_t n = ::recv(c->fd(), buf.data() + chunk, buf.size() - chunk, 0);
      if (n <= 0) break;
      chunk += size_t(n);
    }
    if (chunk == 0) break;  // closed, or nothing for 5 s
    received += chunk;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(received, expected);
  EXPECT_GT(SecondsSince(start), 1.0);  // the point: longer than request_timeout_s
  EXPECT_EQ(server_->metrics().connections, 1u);
  ExpectPing(*c);
}

TEST_F(ServerTest, BusyServerRefusesSomeButAnswersEveryRequestOnce) {
  ServerConfig config = Config();
  config.worker_threads = 1;
  config.queue_limit = 0;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 16, 1000);
  // 20 slow requests at once (exact-scan batches of about 0.2 s each): one runs, the
  // others arrive while it does.
  const std::vector<float> queries = SlowQueries(*c, "docs", 16, 0.2);
  const size_t num_queries = queries.size() / 16;
  std::vector<uint8_t> bytes = ScanBatches("docs", queries, 20, 10);
  ASSERT_TRUE(c->SendRaw(bytes));
  std::set<uint64_t> answered;
  size_t busy = 0, ok = 0;
  for (int i = 0; i < 20; ++i) {
    auto f = c->ReadFrame(60000);
    ASSERT_TRUE(f.has_value()) << c->last_error();
    EXPECT_TRUE(answered.insert(f->header.request_id).second)
        << "answered twice: " << f->header.request_id;
    if (const auto* e = AsError(f)) {
      EXPECT_EQ(e->code, ErrorCode::kBusy) << e->message;
      ++busy;
    } else {
      auto r = Reply<protocol::SearchReply>(f, Op::kSearchBatch);
      ASSERT_TRUE(r.has_value());
      EXPECT_EQ(r->results.size(), num_queries);
      ++ok;
    }
  }
  EXPECT_EQ(answered.size(), 20u);
  EXPECT_EQ(*answered.begin(), 1u);
  EXPECT_EQ(*answered.rbegin(), 20u);
  EXPECT_GE(busy, 1u);
  EXPECT_GE(ok, 1u);
  EXPECT_EQ(server_->metrics().busy_rejections, busy);
  ExpectPing(*c);  // nothing more in the pipe
}

// slow_request_ms: a request at least that slow is logged with where its time went; a
// quick one is not.
TEST_F(ServerTest, SlowRequestsAreLoggedWithWhereTheTimeWent) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  ServerLog().sinks().push_back(sink);
  const spdlog::level::level_enum level = ServerLog().level();
  ServerLog().set_level(spdlog::level::warn);
  ServerConfig config = Config();
  config.slow_request_ms = 50;
  Start(config);
  auto c = Connect();
  Fill(*c, "a", 32, 2000);
  auto lines = [&] {
    std::string all;
    for (const std::string& l : sink->last_formatted()) all += l;
    return all;
  };
  // A ping is answered on the I/O thread and never logged; a small search is quick.
  const auto s0 = testing::Clock::now();
  auto f = c->Call(testing::SearchRequest(Op::kSearch, "a", 32, Vec(1, 32), 5), 7);
  ASSERT_TRUE(Reply<protocol::SearchReply>(f, Op::kSearch).has_value());
  const double search_s = SecondsSince(s0);
  // A flush that seals 2,000 rows (records, graph, calibration) takes well over 50 ms.
  const auto t0 = testing::Clock::now();
  // Maintenance runs at nice 19: on a loaded machine the flush may take long.
  auto ff = c->Call({Op::kFlush, protocol::FlushRequest{"a"}}, 8, 180000);
  ASSERT_TRUE(Reply<protocol::EmptyReply>(ff, Op::kFlush).has_value());
  const double flush_s = SecondsSince(t0);
  const std::string log = lines();
  ServerLog().sinks().pop_back();
  ServerLog().set_level(level);
  if (search_s < 0.04) {
    EXPECT_EQ(log.find("slow request: search"), std::string::npos) << log;
  }
  if (flush_s > 0.2) {
    EXPECT_NE(log.find("slow request: flush"), std::string::npos) << log;
    EXPECT_NE(log.find("waiting for a maintenance thread"), std::string::npos) << log;
    EXPECT_NE(log.find("+ running"), std::string::npos) << log;
  } else {
    GTEST_SKIP() << "the flush took only " << flush_s << " s";
  }
}

// Issue 14 R1: searches, writes and maintenance used to share one worker pool, so a
// compaction (or a big upsert) of one collection held a search of another until it
// finished. Now maintenance and writes have their own (lower-priority) pools: with one
// worker, a search of B is answered while a compaction of A is still running.
TEST_F(ServerTest, MaintenanceAndWritesDoNotQueueAheadOfSearches) {
  ServerConfig config = Config();
  config.worker_threads = 1;
  Start(config);
  auto admin = Connect();
  Fill(*admin, "b", 16, 300);
  Reply<protocol::EmptyReply>(admin->Call(testing::CreateRequest("a", 32)), Op::kCreateCollection);
  VectorId next = 1;
  for (int segment = 0; segment < 3; ++segment) {
    for (int batch = 0; batch < 2; ++batch) {
      auto f = admin->Call(testing::UpsertRequest("a", 32, Records(next, 500, 32)));
      ASSERT_TRUE(Reply<protocol::WriteReply>(f, Op::kUpsert).has_value());
      next += 500;
    }
    auto f = admin->Call({Op::kFlush, protocol::FlushRequest{"a"}});
    ASSERT_TRUE(Reply<protocol::EmptyReply>(f, Op::kFlush).has_value());
  }
  auto maintenance = Connect();
  auto searcher = Connect();
  std::vector<uint8_t> bytes;
  protocol::EncodeRequest({Op::kCompact, protocol::CompactRequest{"a"}}, 1, bytes);
  const auto t0 = testing::Clock::now();
  ASSERT_TRUE(maintenance->SendRaw(bytes));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the compaction is under way
  // A few searches of B, one after another, each answered while A compacts.
  double searches_done_s = 0;
  for (int i = 0; i < 3; ++i) {
    auto f = searcher->Call(testing::SearchRequest(Op::kSearch, "b", 16, Vec(i + 1, 16), 5), 10 + i);
    ASSERT_TRUE(Reply<protocol::SearchReply>(f, Op::kSearch).has_value());
    searches_done_s = SecondsSince(t0);
  }
  auto cf = maintenance->ReadFrame(300000);
  const double compact_s = SecondsSince(t0);
  ASSERT_TRUE(Reply<protocol::EmptyReply>(cf, Op::kCompact).has_value());
  // 3,000 vectors of 32 dimensions take well over 0.2 s to merge and calibrate in the sanitizer
  // build the suite runs in; an optimized build may finish first, which tells nothing.
  if (compact_s <= 0.2) GTEST_SKIP() << "the compaction took only " << compact_s << " s";
  EXPECT_LT(searches_done_s, 0.5 * compact_s)
      << "searches answered after " << searches_done_s << " s, the compaction after " << compact_s << " s";
}

// A request hook that leaves the collections it is told of to the engine (a cluster node's
// shard replicas) and would take every other one (RequestHook::PlaceOf).
class LeavingHook : public RequestHook {
 public:
  explicit LeavingHook(std::string left) : left_(std::move(left)) {}
  std::optional<protocol::Response> Handle(const protocol::Request&) override { return std::nullopt; }
  Place PlaceOf(const std::string& collection) const override {
    return collection == left_ ? Place::kEngine : Place::kHere;
  }

 private:
  const std::string left_;
};

// ServerConfig::inline_reads: a search of one query (search, or search_batch of one, as a
// cluster's router sends each shard) runs on the I/O thread that read it, so it does not
// queue behind the worker's long batch; with inline_reads off it does, and so it does behind
// a request hook that does not leave its collection to the engine (a cluster's router may
// wait on other nodes), but not behind one that does.
TEST_F(ServerTest, ASmallSearchRunsOnTheIoThreadInsteadOfQueueingBehindTheWorkers) {
  enum Case { kInline, kOff, kHookLeaves, kHookTakes };
  for (const Case which : {kInline, kOff, kHookLeaves, kHookTakes}) {
    const char* names[] = {"inline_reads on", "inline_reads off", "a hook that leaves it", "a hook that may take it"};
    SCOPED_TRACE(names[which]);
    ServerConfig config = Config();
    config.worker_threads = 1;
    config.io_threads = 2;
    config.inline_reads = which != kOff;
    Start(config);
    const std::string docs = fmt::format("docs-{}", int(which));
    if (which == kHookLeaves) server_->SetRequestHook(std::make_shared<LeavingHook>(docs));
    if (which == kHookTakes) server_->SetRequestHook(std::make_shared<LeavingHook>("another"));
    const bool inline_reads = which == kInline || which == kHookLeaves;
    auto c = Connect();
    Fill(*c, docs, 16, 1000);
    const std::vector<float> queries = SlowQueries(*c, docs, 16, 0.3);
    const uint64_t batches_before = AnsweredOf(*server_, "search_batch");
    auto busy = Connect();
    std::vector<uint8_t> bytes = ScanBatches(docs, queries, 3, 10);
    ASSERT_TRUE(busy->SendRaw(bytes));
    // The one worker is running the first batch; two more wait for it.
    ASSERT_TRUE(Eventually([&] { return server_->metrics().in_progress >= 3; }));
    auto searcher = Connect();
    // A search_batch of one query, as a cluster's router sends a shard, under the hooks.
    const Op op = which >= kHookLeaves ? Op::kSearchBatch : Op::kSearch;
    auto f = searcher->Call(testing::SearchRequest(op, docs, 16, Vec(7, 16), 3), 99);
    auto hits = Reply<protocol::SearchReply>(f, op);
    ASSERT_TRUE(hits.has_value());
    EXPECT_EQ(hits->results.at(0).at(0).id, 7u);
    const uint64_t batches_done = AnsweredOf(*server_, "search_batch") - batches_before -
                                  (op == Op::kSearchBatch ? 1 : 0);
    if (inline_reads) {
      // About 0.9 s of batches were queued; the search did not wait for them.
      EXPECT_LT(batches_done, 3u);
      // A search that asks for an exact scan may cost as much as a batch: to the worker,
      // behind the batches queued before it.
      auto g = searcher->Call(testing::SearchRequest(Op::kSearch, docs, 16, Vec(8, 16), 3,
                                                     SearchStrategy::kScan),
                              100);
      ASSERT_TRUE(Reply<protocol::SearchReply>(g, Op::kSearch).has_value());
      EXPECT_EQ(AnsweredOf(*server_, "search_batch") - batches_before, op == Op::kSearchBatch ? 4u : 3u);
    } else {
      // Behind every batch queued before it (one worker, first come first served).
      EXPECT_EQ(batches_done, 3u);
    }
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(busy->ReadFrame(30000).has_value());
    busy.reset();
    c.reset();
    searcher.reset();
    server_->Shutdown();
    server_->Wait();
    server_.reset();
    engine_.reset();
  }
}

// The first search of a collection that has only been written so far (the first search after
// an ingest) runs inline like the next ones: the I/O thread looks the collection up in the
// engine's catalog instead of sending a search of a collection it has not seen to a worker --
// where it would queue behind the worker's long batch, as here.
TEST_F(ServerTest, TheFirstSearchOfACollectionOnlyWrittenSoFarRunsOnTheIoThreadToo) {
  ServerConfig config = Config();
  config.worker_threads = 1;
  config.io_threads = 2;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 16, 1000);
  const std::vector<float> queries = SlowQueries(*c, "docs", 16, 0.3);
  Fill(*c, "fresh", 16, 100);  // created and upserted, never read
  const uint64_t batches_before = AnsweredOf(*server_, "search_batch");
  auto busy = Connect();
  std::vector<uint8_t> bytes = ScanBatches("docs", queries, 3, 10);
  ASSERT_TRUE(busy->SendRaw(bytes));
  ASSERT_TRUE(Eventually([&] { return server_->metrics().in_progress >= 3; }));
  auto searcher = Connect();
  auto f = searcher->Call(testing::SearchRequest(Op::kSearch, "fresh", 16, Vec(7, 16), 3), 99);
  auto hits = Reply<protocol::SearchReply>(f, Op::kSearch);
  ASSERT_TRUE(hits.has_value());
  EXPECT_EQ(hits->results.at(0).at(0).id, 7u);
  // About 0.9 s of batches were queued on the one worker; the search did not wait for them.
  EXPECT_LT(AnsweredOf(*server_, "search_batch") - batches_before, 3u);
  // A collection the engine does not hold still gets its error (from a worker).
  ExpectError(searcher->Call(testing::SearchRequest(Op::kSearch, "nowhere", 16, Vec(7, 16), 3), 100),
              ErrorCode::kNotFound);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(busy->ReadFrame(30000).has_value());
}

// ---------------------------------------------------------------------------
// Pipelining.
// ---------------------------------------------------------------------------

void PipelineHundred(TestClient& c) {
  std::vector<uint8_t> bytes;
  std::map<uint64_t, Op> sent;
  for (uint64_t i = 0; i < 100; ++i) {
    const uint64_t id = 1000 + i;
    protocol::Request r;
    switch (i % 4) {
      case 0:
        r = testing::SearchRequest(Op::kSearch, "docs", 8, Vec(i % 50 + 1, 8), 1);
        break;
      case 1:
        r = testing::PingRequest();
        break;
      case 2:
        r = testing::GetRequest("docs", {i % 50 + 1});
        break;
      default:
        r = testing::SearchRequest(Op::kSearchBatch, "docs", 8, Vec(i % 50 + 1, 8), 1);
        break;
    }
    sent[id] = r.op;
    protocol::EncodeRequest(r, id, bytes);
  }
  ASSERT_TRUE(c.SendRaw(bytes));
  std::set<uint64_t> seen;
  for (int i = 0; i < 100; ++i) {
    auto f = c.ReadFrame(30000);
    ASSERT_TRUE(f.has_value()) << c.last_error();
    const uint64_t id = f->header.request_id;
    ASSERT_TRUE(sent.count(id)) << id;
    EXPECT_TRUE(seen.insert(id).second) << "answered twice: " << id;
    ASSERT_EQ(AsError(f), nullptr) << AsError(f)->message;
    EXPECT_EQ(f->response.op, sent[id]);
    const VectorId expect = (id - 1000) % 50 + 1;
    if (const auto* s = std::get_if<protocol::SearchReply>(&f->response.body)) {
      EXPECT_EQ(s->results.at(0).at(0).id, expect);
    } else if (const auto* g = std::get_if<protocol::GetReply>(&f->response.body)) {
      ASSERT_TRUE(g->records.at(0).has_value());
      EXPECT_EQ(g->records[0]->id, expect);
    }
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST_F(ServerTest, HundredPipelinedRequestsAreEachAnsweredOnce) {
  Start(Config());
  auto c = Connect();
  Fill(*c, "docs", 8, 50);
  PipelineHundred(*c);
  ExpectPing(*c);
}

TEST_F(ServerTest, PipelineLimitPausesReadingButLosesNothing) {
  ServerConfig config = Config();
  config.max_pipeline = 4;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 8, 50);
  PipelineHundred(*c);
  ExpectPing(*c);
}

// Three I/O threads, each with its connections; the same with I/O threads that poll before
// they sleep (ServerConfig::io_spin_us): everything is answered (inline searches, worker
// replies, pings) and the threads still stop at shutdown.
TEST_F(ServerTest, SeveralIoThreadsServeManyConnectionsAtOnce) {
  for (const uint32_t spin_us : {0u, 200u}) {
    SCOPED_TRACE(spin_us);
    ServerConfig config = Config();
    config.io_threads = 3;
    config.io_spin_us = spin_us;
    config.max_pipeline = 8;
    config.data_dir = (dir_.path() / fmt::format("spin-{}", spin_us)).string();  // a fresh engine each
    Start(config);
    {
      auto c = Connect();
      Fill(*c, "docs", 8, 50);
    }
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([this] {
        auto c = TestClient::Connect(server_->port());
        ASSERT_NE(c, nullptr);
        PipelineHundred(*c);
      });
    }
    for (auto& t : clients) t.join();
    EXPECT_GE(server_->metrics().requests, 400u);
    server_->Shutdown();
    server_->Wait();
    server_.reset();
    engine_.reset();
  }
}

TEST_F(ServerTest, ClientThatStopsSendingStillGetsItsReplies) {
  Start(Config());
  auto c = Connect();
  Fill(*c, "docs", 8, 50);
  std::vector<uint8_t> bytes;
  for (uint64_t id = 1; id <= 10; ++id) {
    protocol::EncodeRequest(testing::SearchRequest(Op::kSearch, "docs", 8, Vec(id, 8), 1), id,
                            bytes);
  }
  ASSERT_TRUE(c->SendRaw(bytes));
  ASSERT_EQ(::shutdown(c->fd(), SHUT_WR), 0);
  std::set<uint64_t> seen;
  for (int i = 0; i < 10; ++i) {
    auto f = c->ReadFrame();
    ASSERT_TRUE(f.has_value()) << c->last_error();
    seen.insert(f->header.request_id);
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_TRUE(c->WaitClosed(5000));
}

// ---------------------------------------------------------------------------
// Shutdown.
// ---------------------------------------------------------------------------

// With an io_context per I/O thread, a connection on a context other than the one holding the
// acceptors and the control strand still gets the replies of its requests in flight after
// Shutdown (the pool's job keeps that context running), and every I/O thread ends.
TEST_F(ServerTest, GracefulShutdownAnswersAConnectionOnAnotherIoThread) {
  ServerConfig config = Config();
  config.worker_threads = 1;
  config.io_threads = 3;
  Start(config);
  auto first = Connect();   // on the acceptors' io_context
  auto second = Connect();  // on the second
  ExpectPing(*first);
  ExpectPing(*second);
  auto c = Connect();  // on the third
  Fill(*c, "docs", 16, 1000);
  const std::vector<float> queries = SlowQueries(*c, "docs", 16, 0.3);
  const uint64_t answered_before = AnsweredOf(*server_, "search_batch");
  std::vector<uint8_t> bytes = ScanBatches("docs", queries, 3, 5);
  ASSERT_TRUE(c->SendRaw(bytes));
  ASSERT_TRUE(Eventually([&] {
    return server_->metrics().in_progress + AnsweredOf(*server_, "search_batch") - answered_before == 3;
  }));
  server_->Shutdown();
  std::set<uint64_t> seen;
  for (int i = 0; i < 3; ++i) {
    auto f = c->ReadFrame(60000);
    ASSERT_TRUE(f.has_value()) << c->last_error();
    ASSERT_TRUE(Reply<protocol::SearchReply>(f, Op::kSearchBatch).has_value());
    seen.insert(f->header.request_id);
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_TRUE(c->WaitClosed(10000));
  EXPECT_TRUE(first->WaitClosed(10000));
  EXPECT_TRUE(second->WaitClosed(10000));
  server_->Wait();
}

TEST_F(ServerTest, GracefulShutdownAnswersRequestsInFlightThenCloses) {
  ServerConfig config = Config();
  config.worker_threads = 1;
  Start(config);
  auto c = Connect();
  Fill(*c, "docs", 16, 1000);
  auto idle = Connect();
  ExpectPing(*idle);
  const std::vector<float> queries = SlowQueries(*c, "docs", 16, 0.3);
  const size_t num_queries = queries.size() / 16;
  std::vector<uint8_t> bytes = ScanBatches("docs", queries, 3, 5);
  auto search_batches_answered = [&] {
    for (const auto& [op, n] : server_->metrics().requests_by_op) {
      if (op == "search_batch") return n;
    }
    return uint64_t{0};
  };
  const uint64_t answered_before = search_batches_answered();  // the calibration
  ASSERT_TRUE(c->SendRaw(bytes));
  // Wait until the server holds all three (queued, running or answered).
  ASSERT_TRUE(Eventually([&] {
    return server_->metrics().in_progress + search_batches_answered() - answered_before == 3;
  }));
  const uint64_t in_progress = server_->metrics().in_progress;
  server_->Shutdown();
  std::set<uint64_t> seen;
  for (int i = 0; i < 3; ++i) {
    auto f = c->ReadFrame(60000);
    ASSERT_TRUE(f.has_value()) << c->last_error();
    auto r = Reply<protocol::SearchReply>(f, Op::kSearchBatch);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->results.size(), num_queries);
    seen.insert(f->header.request_id);
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_TRUE(c->WaitClosed(10000));
  EXPECT_TRUE(idle->WaitClosed(10000));
  server_->Wait();
  EXPECT_EQ(TestClient::Connect(server_->port()), nullptr);  // no longer listening
  // The point of the test: some were still queued or running when Shutdown was called.
  EXPECT_GE(in_progress, 1u);
  RecordProperty("in_progress_at_shutdown", std::to_string(in_progress));
}

TEST_F(ServerTest, ShutdownWithIdleConnectionsIsPrompt) {
  Start(Config());
  auto a = Connect();
  auto b = Connect();
  ExpectPing(*a);
  ExpectPing(*b);
  const auto start = testing::Clock::now();
  server_->Shutdown();
  server_->Shutdown();  // idempotent
  server_->Wait();
  EXPECT_LT(SecondsSince(start), 5.0);
  EXPECT_TRUE(a->WaitClosed(1000));
  EXPECT_TRUE(b->WaitClosed(1000));
}

// ---------------------------------------------------------------------------
// Metrics over HTTP.
// ---------------------------------------------------------------------------

// A port that was free a moment ago (bind to 0, read it, close).
uint16_t FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string HttpExchange(uint16_t port, const std::string& request) {
  auto c = TestClient::Connect(port);
  if (!c) return "connect failed";
  if (!c->SendRaw(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(request.data()),
                                           request.size()))) {
    return "send failed";
  }
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{c->fd(), POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) return out + "\n<timed out>";
    const ssize_t n = ::recv(c->fd(), buf, sizeof buf, 0);
    if (n <= 0) return out;  // the server closes after one response
    out.append(buf, size_t(n));
  }
}

// Starts the server of `test` with a metrics port: the port has no "ephemeral" setting
// (0 is off), so free ports are tried.
void StartWithMetrics(ServerConfig config, std::unique_ptr<Engine>& engine_out,
                      std::unique_ptr<Server>& server_out) {
  for (int attempt = 0; attempt < 5 && !server_out; ++attempt) {
    config.metrics_port = FreePort();
    auto engine = Engine::Open(config.data_dir, EngineOptionsFor(config));
    ASSERT_TRUE(engine.has_value());
    engine_out = std::move(*engine);
    auto server = Server::Start(config, *engine_out);
    if (server)
      server_out = std::move(*server);
    else
      engine_out.reset();
  }
  ASSERT_NE(server_out, nullptr);
}

// The value of the sample `name` in Prometheus text, or "" when absent.
std::string Sample(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return "";
  const size_t begin = at + 1 + name.size() + 1;
  return text.substr(begin, text.find('\n', begin) - begin);
}

TEST_F(ServerTest, MetricsEndpointServesPrometheusText) {
  ServerConfig config = Config();
  StartWithMetrics(config, engine_, server_);
  ASSERT_NE(server_, nullptr);
  auto c = Connect();
  ExpectPing(*c);
  Fill(*c, "docs", 4, 3);
  ExpectError(c->Call(testing::SearchRequest(Op::kSearch, "nope", 4, Vec(1, 4), 1)),
              ErrorCode::kNotFound);

  const std::string ok =
      HttpExchange(server_->metrics_port(), "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(ok.find("\nstrata_server_requests_total{op=\"ping\"} 1\n"), std::string::npos) << ok;
  EXPECT_NE(ok.find("\nstrata_server_errors_total{code=\"not_found\"} 1\n"), std::string::npos)
      << ok;
  EXPECT_NE(ok.find("\nstrata_upserts_total 3\n"), std::string::npos) << ok;
  EXPECT_NE(ok.find("\nstrata_vectors 3\n"), std::string::npos) << ok;
  EXPECT_NE(ok.find("\nstrata_server_connections 1\n"), std::string::npos) << ok;
  EXPECT_NE(ok.find("strata_server_request_duration_seconds_bucket{le=\"+Inf\"}"),
            std::string::npos);

  const std::string missing = HttpExchange(server_->metrics_port(), "GET /other HTTP/1.1\r\n\r\n");
  EXPECT_EQ(missing.rfind("HTTP/1.1 404 ", 0), 0u) << missing;
  const std::string bad = HttpExchange(server_->metrics_port(), "nonsense\r\n\r\n");
  EXPECT_EQ(bad.rfind("HTTP/1.1 400 ", 0), 0u) << bad;
  // Liveness and readiness probes (issue 13).
  const std::string health = HttpExchange(server_->metrics_port(), "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(health.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << health;
  const std::string ready = HttpExchange(server_->metrics_port(), "GET /readyz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(ready.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ready;
  EXPECT_NE(ready.find("\r\n\r\nready\n"), std::string::npos) << ready;
}

TEST_F(ServerTest, MetricsAreRenderedAtMostOnceASecond) {
  StartWithMetrics(Config(), engine_, server_);
  ASSERT_NE(server_, nullptr);
  const std::string get = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
  const std::string pings = "strata_server_requests_total{op=\"ping\"}";
  auto c = Connect();
  ExpectPing(*c);
  const auto start = testing::Clock::now();
  const std::string first = HttpExchange(server_->metrics_port(), get);
  EXPECT_EQ(Sample(first, pings), "1") << first;
  ExpectPing(*c);
  ExpectPing(*c);
  const std::string second = HttpExchange(server_->metrics_port(), get);
  if (SecondsSince(start) < 0.9) {
    EXPECT_EQ(Sample(second, pings), "1") << "not the cached text: " << second;
  }
  // Once the cache is stale, scrapes at once share one rendering, and all see the pings.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  std::vector<std::string> texts(8);
  std::vector<std::thread> scrapers;
  for (auto& text : texts) {
    scrapers.emplace_back([&, this] { text = HttpExchange(server_->metrics_port(), get); });
  }
  for (auto& t : scrapers) t.join();
  for (const std::string& text : texts) {
    EXPECT_EQ(text.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << text;
    EXPECT_EQ(Sample(text, pings), "3") << text;
  }
}

}  // namespace
}  // namespace strata::server
