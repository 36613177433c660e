// Client against a scripted fake server (tests/client/fake_server.h): the handshake, error
// frames, pipelining with out-of-order answers, and every way a connection can break.
//
// Each test puts the FakeServer in a block with the client declared after it, so the client is
// closed first and the server's thread (joined by its destructor) has finished before the test
// reads what the script recorded.

#include "client/client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/client/fake_server.h"

namespace strata::client {
namespace {

using protocol::ErrorCode;
using protocol::Op;
using protocol::Response;
using testing::FakeConnection;
using testing::FakeServer;
using Clock = std::chrono::steady_clock;

std::unique_ptr<Client> MustConnect(uint16_t port, const ClientOptions& options = {}) {
  auto client = Client::Connect("127.0.0.1", port, options);
  EXPECT_TRUE(client.has_value()) << client.error().ToString();
  return client ? std::move(*client) : nullptr;
}

bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

Record MakeRecord(VectorId id, std::vector<float> vector) {
  Record r;
  r.id = id;
  r.vector = std::move(vector);
  return r;
}

// A kSearch request for one query of dimension 1.
protocol::Request OneQuery(float value) {
  protocol::SearchRequest search;
  search.collection = "c";
  search.dim = 1;
  search.count = 1;
  search.queries = {value};
  return {.op = Op::kSearch, .body = std::move(search)};
}

Response Empty(Op op) { return {.op = op, .body = protocol::EmptyReply{}}; }

// A search answer whose one neighbour encodes the query: id = 10 * query[0].
Response EchoSearch(const protocol::Request& request) {
  const auto& search = std::get<protocol::SearchRequest>(request.body);
  protocol::SearchReply reply;
  reply.results.push_back(
      {Neighbor{.id = VectorId(search.queries[0]) * 10, .distance = search.queries[0]}});
  return {.op = request.op, .body = std::move(reply)};
}

// Queries of dimension 4 whose first component is the query's index.
std::vector<float> IndexedQueries(uint32_t count) {
  std::vector<float> q(size_t(count) * 4, 0.5f);
  for (uint32_t i = 0; i < count; ++i) q[size_t(i) * 4] = float(i);
  return q;
}

// Checks that every call on a broken client fails at once with the "closed" error.
void ExpectClosed(Client& client) {
  EXPECT_FALSE(client.is_open());
  const auto start = Clock::now();
  Status ping = client.Ping();
  ASSERT_FALSE(ping.ok());
  EXPECT_EQ(ping.code(), StatusCode::kIOError);
  EXPECT_TRUE(Contains(ping.message(), "is closed")) << ping.ToString();
  auto list = client.ListCollections();
  ASSERT_FALSE(list.has_value());
  EXPECT_TRUE(Contains(list.error().message(), "is closed"));
  const float q[2] = {1, 2};
  EXPECT_FALSE(client.Search("c", q, {}).has_value());
  EXPECT_FALSE(client.SearchPipelined("c", q, 2, 1, {}, 4).has_value());
  EXPECT_FALSE(client.Send({.op = Op::kPing, .body = protocol::PingRequest{}}).has_value());
  EXPECT_FALSE(client.Receive().has_value());
  EXPECT_FALSE(client.Poll(std::chrono::milliseconds(10)).has_value());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
}

TEST(Client, HelloSendsNameAndTokenAndKeepsServerLimits) {
  std::string seen_name, seen_token;
  {
    FakeServer server([&](FakeConnection& c) {
      auto hello = c.AcceptHello({.server_version = "fake 9.9",
                                  .max_payload = 1u << 20,
                                  .max_batch = 500,
                                  .max_k = 77,
                                  .auth_required = true});
      if (hello) {
        seen_name = hello->client_name;
        seen_token = hello->token;
      }
      auto ping = c.Expect(Op::kPing);
      if (ping) c.Reply(ping->header.request_id, Empty(Op::kPing));
      c.WaitForClose();
    });
    auto client = MustConnect(server.port(), {.token = "secret", .client_name = "unit-test"});
    ASSERT_NE(client, nullptr);
    EXPECT_EQ(client->server().server_version, "fake 9.9");
    EXPECT_EQ(client->server().max_payload, 1u << 20);
    EXPECT_EQ(client->server().max_batch, 500u);
    EXPECT_EQ(client->server().max_k, 77u);
    EXPECT_TRUE(client->server().auth_required);
    Status s = client->Ping();
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(client->is_open());
  }
  EXPECT_EQ(seen_name, "unit-test");
  EXPECT_EQ(seen_token, "secret");
}

TEST(Client, RefusedHelloFailsConnectWithTheServersMessage) {
  FakeServer server([](FakeConnection& c) {
    auto hello = c.Expect(Op::kHello);
    if (hello) c.ReplyError(hello->header.request_id, ErrorCode::kUnauthenticated, "bad token 'x'");
    c.WaitForClose();
  });
  auto client = Client::Connect("127.0.0.1", server.port(), {.token = "x"});
  ASSERT_FALSE(client.has_value());
  EXPECT_TRUE(Contains(client.error().message(), "bad token 'x'")) << client.error().ToString();
  EXPECT_TRUE(Contains(client.error().message(), "hello")) << client.error().ToString();
}

TEST(Client, ConnectionRefusedByTheServerKeepsItsMessage) {
  // What a server at its connection limit does: an error frame outside any request, then close.
  FakeServer server([](FakeConnection& c) {
    c.ReplyError(0, ErrorCode::kBusy, "too many connections (1)");
  });
  auto client = Client::Connect("127.0.0.1", server.port());
  ASSERT_FALSE(client.has_value());
  EXPECT_EQ(client.error().code(), StatusCode::kIOError);
  EXPECT_TRUE(Contains(client.error().message(), "too many connections (1)"))
      << client.error().ToString();
}

TEST(Client, ErrorFrameBecomesStatusAndTheConnectionStaysUsable) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    auto describe = c.Expect(Op::kDescribeCollectionWith);
    if (describe) {
      EXPECT_EQ(std::get<protocol::DescribeCollectionRequest>(describe->request.body).name, "nope");
      c.ReplyError(describe->header.request_id, ErrorCode::kNotFound,
                   "collection 'nope' does not exist");
    }
    auto search = c.Expect(Op::kSearch);
    if (search) c.ReplyError(search->header.request_id, ErrorCode::kBusy, "queue full");
    auto ping = c.Expect(Op::kPing);
    if (ping) c.Reply(ping->header.request_id, Empty(Op::kPing));
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  auto info = client->DescribeCollection("nope");
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(info.error().message(), "collection 'nope' does not exist"))
      << info.error().ToString();
  const float q[3] = {1, 2, 3};
  auto hits = client->Search("c", q, {});
  ASSERT_FALSE(hits.has_value());
  EXPECT_TRUE(Contains(hits.error().message(), "queue full")) << hits.error().ToString();
  EXPECT_TRUE(client->is_open());
  Status ping = client->Ping();
  EXPECT_TRUE(ping.ok()) << ping.ToString();
}

TEST(Client, RequestsCarryTheArgumentsAndRepliesComeBack) {
  CollectionInfo info{.spec = {.name = "docs", .dim = 2,
                                         .metric = Metric::kCosine, .hnsw_M = 24},
                                .id = 7, .num_vectors = 2};
  Record stored{.id = 5, .vector = {1.5f, -2}, .attributes = {{"lang", std::string("en")}}};
  FakeServer server([&](FakeConnection& c) {
    c.AcceptHello();
    if (auto f = c.Expect(Op::kCreateCollection)) {
      EXPECT_EQ(std::get<protocol::CreateCollectionRequest>(f->request.body).spec, info.spec);
      c.Reply(f->header.request_id, Empty(Op::kCreateCollection));
    }
    if (auto f = c.Expect(Op::kUpsert)) {
      const auto& up = std::get<protocol::UpsertRequest>(f->request.body);
      EXPECT_EQ(up.collection, "docs");
      EXPECT_EQ(up.dim, 2u);
      EXPECT_EQ(up.records.size(), 2u);
      if (up.records.size() == 2) {
        EXPECT_EQ(up.records[0], stored);
      }
      c.Reply(f->header.request_id, {.op = Op::kUpsert, .body = protocol::WriteReply{2}});
    }
    if (auto f = c.Expect(Op::kGet)) {
      EXPECT_EQ(std::get<protocol::GetRequest>(f->request.body).ids, (std::vector<VectorId>{5, 6}));
      c.Reply(f->header.request_id,
              {.op = Op::kGet, .body = protocol::GetReply{{stored, std::nullopt}}});
    }
    if (auto f = c.Expect(Op::kListCollectionsWith)) {
      c.Reply(f->header.request_id,
              {.op = Op::kListCollectionsWith, .body = protocol::ListCollectionsReply{{info}}});
    }
    if (auto f = c.Expect(Op::kSearchBatch)) {
      const auto& s = std::get<protocol::SearchRequest>(f->request.body);
      EXPECT_EQ(s.count, 2u);
      EXPECT_EQ(s.dim, 2u);
      EXPECT_EQ(s.options.k, 3u);
      EXPECT_EQ(s.options.filter, "lang == \"en\"");
      protocol::SearchReply reply;
      reply.results = {{{.id = 5, .distance = 0.25f}}, {}};
      c.Reply(f->header.request_id, {.op = Op::kSearchBatch, .body = reply});
    }
    if (auto f = c.Expect(Op::kExplain)) {
      protocol::SearchReply reply;
      reply.results = {{{.id = 5, .distance = 1}}};
      reply.explain.k = 1;
      reply.explain.segments.push_back({.segment = "memory", .kind = "hnsw", .strategy = "scan"});
      c.Reply(f->header.request_id, {.op = Op::kExplain, .body = reply});
    }
    if (auto f = c.Expect(Op::kDelete)) {
      EXPECT_EQ(std::get<protocol::DeleteRequest>(f->request.body).ids, (std::vector<VectorId>{5}));
      c.Reply(f->header.request_id, {.op = Op::kDelete, .body = protocol::WriteReply{1}});
    }
    if (auto f = c.Expect(Op::kStats)) {
      protocol::StatsReply stats;
      stats.searches = 42;
      c.Reply(f->header.request_id, {.op = Op::kStats, .body = stats});
    }
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->CreateCollection(info.spec).ok());
  std::vector<Record> records = {stored, MakeRecord(6, {0, 1})};
  auto applied = client->Upsert("docs", 2, records);
  ASSERT_TRUE(applied.has_value()) << applied.error().ToString();
  EXPECT_EQ(*applied, 2u);
  const VectorId ids[] = {5, 6};
  auto got = client->Get("docs", ids);
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  ASSERT_EQ(got->size(), 2u);
  ASSERT_TRUE((*got)[0].has_value());
  EXPECT_EQ(*(*got)[0], stored);
  EXPECT_FALSE((*got)[1].has_value());
  auto list = client->ListCollections();
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0], info);
  const float queries[] = {1, 2, 3, 4};
  auto batch = client->SearchBatch("docs", queries, 2, 2, {.k = 3, .filter = "lang == \"en\""});
  ASSERT_TRUE(batch.has_value()) << batch.error().ToString();
  ASSERT_EQ(batch->size(), 2u);
  EXPECT_EQ((*batch)[0], (std::vector<Neighbor>{{.id = 5, .distance = 0.25f}}));
  EXPECT_TRUE((*batch)[1].empty());
  auto explained = client->Explain("docs", std::span<const float>(queries, 2), {});
  ASSERT_TRUE(explained.has_value()) << explained.error().ToString();
  EXPECT_EQ(explained->first.size(), 1u);
  EXPECT_EQ(explained->second.k, 1u);
  ASSERT_EQ(explained->second.segments.size(), 1u);
  EXPECT_EQ(explained->second.segments[0].segment, "memory");
  EXPECT_EQ(explained->second.segments[0].strategy, "scan");
  const VectorId del[] = {5};
  auto deleted = client->Delete("docs", del);
  ASSERT_TRUE(deleted.has_value());
  EXPECT_EQ(*deleted, 1u);
  auto stats = client->Stats();
  ASSERT_TRUE(stats.has_value());
  EXPECT_EQ(stats->searches, 42u);
}

TEST(Client, PipelinedSearchPutsOutOfOrderAnswersBackInQueryOrder) {
  constexpr uint32_t kCount = 50;
  constexpr uint32_t kWindow = 8;
  size_t most_in_flight = 0;
  bool over_window = false;
  {
    FakeServer server([&](FakeConnection& c) {
      c.AcceptHello();
      uint32_t left = kCount;
      while (left > 0) {
        // Take a whole window, then answer it backwards.
        std::vector<FakeConnection::Frame> batch;
        const uint32_t take = std::min(left, kWindow);
        for (uint32_t i = 0; i < take; ++i) {
          auto f = c.Expect(Op::kSearch);
          if (!f) return;
          batch.push_back(std::move(*f));
        }
        // Nothing more may arrive until an answer goes out.
        if (c.HasPendingBytes()) over_window = true;
        most_in_flight = std::max(most_in_flight, batch.size());
        left -= take;
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
          c.Reply(it->header.request_id, EchoSearch(it->request));
        }
      }
      c.WaitForClose();
    });
    auto client = MustConnect(server.port());
    ASSERT_NE(client, nullptr);
    const std::vector<float> queries = IndexedQueries(kCount);
    auto results = client->SearchPipelined("c", queries.data(), 4, kCount, {}, kWindow);
    ASSERT_TRUE(results.has_value()) << results.error().ToString();
    ASSERT_EQ(results->size(), kCount);
    for (uint32_t i = 0; i < kCount; ++i) {
      ASSERT_EQ((*results)[i].size(), 1u) << "query " << i;
      EXPECT_EQ((*results)[i][0].id, VectorId(i) * 10) << "query " << i;
    }
  }
  EXPECT_EQ(most_in_flight, kWindow);
  EXPECT_FALSE(over_window);
}

TEST(Client, PipelinedSearchFailsOnTheFirstErrorAfterDrainingAndStaysUsable) {
  constexpr uint32_t kCount = 40;
  constexpr uint32_t kWindow = 4;
  uint32_t searches_seen = 0;
  {
    FakeServer server([&](FakeConnection& c) {
      c.AcceptHello();
      for (;;) {
        auto f = c.Read();
        if (!f) return;
        if (f->request.op == Op::kPing) {
          c.Reply(f->header.request_id, Empty(Op::kPing));
          break;
        }
        ++searches_seen;
        const float first = std::get<protocol::SearchRequest>(f->request.body).queries[0];
        if (first == 5) {
          c.ReplyError(f->header.request_id, ErrorCode::kInvalidArgument, "query has a NaN");
        } else {
          c.Reply(f->header.request_id, EchoSearch(f->request));
        }
      }
      c.WaitForClose();
    });
    auto client = MustConnect(server.port());
    ASSERT_NE(client, nullptr);
    const std::vector<float> queries = IndexedQueries(kCount);
    auto results = client->SearchPipelined("c", queries.data(), 4, kCount, {}, kWindow);
    ASSERT_FALSE(results.has_value());
    EXPECT_EQ(results.error().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(results.error().message(), "query 5")) << results.error().ToString();
    EXPECT_TRUE(Contains(results.error().message(), "query has a NaN"));
    EXPECT_TRUE(client->is_open());
    // The answers still in flight were drained: the next call gets its own answer.
    Status ping = client->Ping();
    EXPECT_TRUE(ping.ok()) << ping.ToString();
  }
  // Sending stopped at the error: at most a window's worth went out after query 5.
  EXPECT_GE(searches_seen, 6u);
  EXPECT_LE(searches_seen, 6u + kWindow);
}

TEST(Client, SendAndReceiveMatchAnswersById) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    std::vector<FakeConnection::Frame> frames;
    for (int i = 0; i < 3; ++i) {
      if (auto f = c.Expect(Op::kSearch)) frames.push_back(std::move(*f));
    }
    // The second answer is an error frame; all are sent backwards.
    for (int i = int(frames.size()) - 1; i >= 0; --i) {
      if (i == 1) {
        c.ReplyError(frames[i].header.request_id, ErrorCode::kBusy, "busy");
      } else {
        c.Reply(frames[i].header.request_id, EchoSearch(frames[i].request));
      }
    }
    // A search sent with Send and a ping (Call) behind it: the ping's answer comes last, the
    // search's answer must be kept for Receive.
    auto s = c.Expect(Op::kSearch);
    auto p = c.Expect(Op::kPing);
    if (s) c.Reply(s->header.request_id, EchoSearch(s->request));
    if (p) c.Reply(p->header.request_id, Empty(Op::kPing));
    // A search for Poll.
    auto s2 = c.Expect(Op::kSearch);
    if (s2) c.Reply(s2->header.request_id, EchoSearch(s2->request));
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  auto no_request = client->Receive();
  ASSERT_FALSE(no_request.has_value());
  EXPECT_EQ(no_request.error().code(), StatusCode::kInvalidArgument);

  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto id = client->Send(OneQuery(float(i + 1)));
    ASSERT_TRUE(id.has_value()) << id.error().ToString();
    ids.push_back(*id);
  }
  EXPECT_EQ(client->outstanding(), 3u);
  for (int i = 2; i >= 0; --i) {
    auto got = client->Receive();
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    EXPECT_EQ(got->first, ids[i]);
    if (i == 1) {
      ASSERT_EQ(got->second.op, Op::kError);
      EXPECT_EQ(std::get<protocol::ErrorReply>(got->second.body).message, "busy");
    } else {
      ASSERT_EQ(got->second.op, Op::kSearch);
      EXPECT_EQ(std::get<protocol::SearchReply>(got->second.body).results[0][0].id,
                VectorId(i + 1) * 10);
    }
  }
  EXPECT_EQ(client->outstanding(), 0u);

  auto id = client->Send(OneQuery(9));
  ASSERT_TRUE(id.has_value());
  ASSERT_TRUE(client->Ping().ok());
  EXPECT_EQ(client->outstanding(), 1u);
  auto kept = client->Receive();
  ASSERT_TRUE(kept.has_value()) << kept.error().ToString();
  EXPECT_EQ(kept->first, *id);
  EXPECT_EQ(std::get<protocol::SearchReply>(kept->second.body).results[0][0].id, 90u);

  id = client->Send(OneQuery(3));
  ASSERT_TRUE(id.has_value());
  std::optional<std::pair<uint64_t, Response>> polled;
  for (int tries = 0; tries < 1000 && !polled; ++tries) {
    auto p = client->Poll(std::chrono::milliseconds(20));
    ASSERT_TRUE(p.has_value()) << p.error().ToString();
    polled = std::move(*p);
  }
  ASSERT_TRUE(polled.has_value());
  EXPECT_EQ(polled->first, *id);
  EXPECT_TRUE(client->is_open());
}

TEST(Client, LargeAnswerArrivesWhole) {
  // About 1.2 MB: far past the first receive buffer, so it grows while the frame arrives.
  constexpr uint32_t kQueries = 1000;
  constexpr uint32_t kK = 100;
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    auto f = c.Expect(Op::kSearchBatch);
    if (!f) return;
    protocol::SearchReply reply;
    for (uint32_t q = 0; q < kQueries; ++q) {
      std::vector<Neighbor> list;
      for (uint32_t j = 0; j < kK; ++j) list.push_back({.id = q * 1000 + j, .distance = float(j)});
      reply.results.push_back(std::move(list));
    }
    c.Reply(f->header.request_id, {.op = Op::kSearchBatch, .body = std::move(reply)});
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  std::vector<float> queries(kQueries * 2, 1.0f);
  auto results = client->SearchBatch("c", queries.data(), 2, kQueries, {});
  ASSERT_TRUE(results.has_value()) << results.error().ToString();
  ASSERT_EQ(results->size(), kQueries);
  for (uint32_t q = 0; q < kQueries; ++q) {
    ASSERT_EQ((*results)[q].size(), kK);
    EXPECT_EQ((*results)[q][kK - 1].id, q * 1000 + kK - 1);
  }
}

TEST(Client, SendingKeepsReadingSoLargeFramesBothWaysDoNotDeadlock) {
  // 32 queries of 256 KiB each go out while the server, having read the first, writes a 16 MiB
  // answer before reading on. Socket buffers hold neither, so a client that only read after
  // sending would wait on the server while the server waits on it, until the I/O timeout.
  constexpr uint32_t kCount = 32;
  constexpr uint32_t kDim = 65536;
  constexpr size_t kBig = (size_t(16) << 20) / 12;
  FakeServer server([&](FakeConnection& c) {
    c.AcceptHello();
    auto first = c.Expect(Op::kSearch);
    if (!first) return;
    protocol::SearchReply big;
    big.results.emplace_back(kBig, Neighbor{.id = 7, .distance = 1});
    c.Reply(first->header.request_id, {.op = Op::kSearch, .body = std::move(big)});
    for (uint32_t i = 1; i < kCount; ++i) {
      auto f = c.Expect(Op::kSearch);
      if (!f) return;
      c.Reply(f->header.request_id, EchoSearch(f->request));
    }
    c.WaitForClose();
  });
  auto client = MustConnect(server.port(), {.io_timeout_ms = 5000});
  ASSERT_NE(client, nullptr);
  std::vector<float> queries(size_t(kCount) * kDim, 0.25f);
  for (uint32_t i = 0; i < kCount; ++i) queries[size_t(i) * kDim] = float(i);
  auto results = client->SearchPipelined("c", queries.data(), kDim, kCount, {}, kCount);
  ASSERT_TRUE(results.has_value()) << results.error().ToString();
  ASSERT_EQ(results->size(), kCount);
  EXPECT_EQ((*results)[0].size(), kBig);
  for (uint32_t i = 1; i < kCount; ++i) EXPECT_EQ((*results)[i][0].id, VectorId(i) * 10);
}

TEST(Client, PollReturnsNothingWhileTheAnswerIsIncomplete) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    auto f = c.Expect(Op::kPing);
    if (!f) return;
    std::vector<uint8_t> bytes;
    protocol::EncodeResponse(Empty(Op::kPing), f->header.request_id, bytes);
    // Half a header now; the rest once the client says (with a second ping) it polled.
    c.WriteRaw(std::span<const uint8_t>(bytes).first(10));
    auto second = c.Expect(Op::kPing);
    c.WriteRaw(std::span<const uint8_t>(bytes).subspan(10));
    if (second) c.Reply(second->header.request_id, Empty(Op::kPing));
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  auto first = client->Send({.op = Op::kPing, .body = protocol::PingRequest{}});
  ASSERT_TRUE(first.has_value());
  auto nothing = client->Poll(std::chrono::milliseconds(50));
  ASSERT_TRUE(nothing.has_value()) << nothing.error().ToString();
  EXPECT_FALSE(nothing->has_value());
  auto second = client->Send({.op = Op::kPing, .body = protocol::PingRequest{}});
  ASSERT_TRUE(second.has_value());
  auto a = client->Receive();
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  EXPECT_EQ(a->first, *first);
  auto b = client->Receive();
  ASSERT_TRUE(b.has_value()) << b.error().ToString();
  EXPECT_EQ(b->first, *second);
}

TEST(Client, TruncatedAnswerBreaksTheConnectionForGood) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    auto f = c.Expect(Op::kListCollectionsWith);
    if (!f) return;
    protocol::ListCollectionsReply reply;
    reply.collections.push_back({.spec = {.name = "x", .dim = 3}});
    std::vector<uint8_t> bytes;
    protocol::EncodeResponse({.op = Op::kListCollectionsWith, .body = reply}, f->header.request_id,
                             bytes);
    c.WriteRaw(std::span<const uint8_t>(bytes).first(bytes.size() - 5));
    // Returning closes the connection with the frame unfinished.
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  auto list = client->ListCollections();
  ASSERT_FALSE(list.has_value());
  EXPECT_EQ(list.error().code(), StatusCode::kIOError);
  EXPECT_TRUE(Contains(list.error().message(), "middle of a response")) << list.error().ToString();
  ExpectClosed(*client);
}

TEST(Client, PeerThatHangsUpBreaksTheConnectionForGood) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    c.Expect(Op::kFlush);
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  Status flush = client->Flush("c");
  ASSERT_FALSE(flush.ok());
  EXPECT_EQ(flush.code(), StatusCode::kIOError);
  EXPECT_TRUE(Contains(flush.message(), "closed the connection")) << flush.ToString();
  ExpectClosed(*client);
  EXPECT_TRUE(Contains(client->Ping().message(), "closed the connection"));
}

TEST(Client, UndecodableFrameBreaksTheConnection) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    c.Expect(Op::kPing);
    const std::string junk = "HTTP/1.1 400 Bad Request\r\n\r\n";
    c.WriteRaw(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(junk.data()), junk.size()));
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  Status ping = client->Ping();
  ASSERT_FALSE(ping.ok());
  EXPECT_TRUE(Contains(ping.message(), "undecodable frame")) << ping.ToString();
  ExpectClosed(*client);
}

TEST(Client, AnswerToNoRequestInFlightBreaksTheConnection) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    auto f = c.Expect(Op::kPing);
    if (f) c.Reply(f->header.request_id + 1000, Empty(Op::kPing));
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  Status ping = client->Ping();
  ASSERT_FALSE(ping.ok());
  EXPECT_TRUE(Contains(ping.message(), "no request in flight")) << ping.ToString();
  ExpectClosed(*client);
}

TEST(Client, AnswerOfTheWrongKindBreaksTheConnection) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    auto f = c.Expect(Op::kStats);
    if (f) c.Reply(f->header.request_id, Empty(Op::kPing));
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  auto stats = client->Stats();
  ASSERT_FALSE(stats.has_value());
  EXPECT_TRUE(Contains(stats.error().message(), "answered with a ping reply"))
      << stats.error().ToString();
  ExpectClosed(*client);
}

TEST(Client, ConnectToAClosedPortFailsCleanly) {
  // A port that was free a moment ago: bind, read the port, close.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  const uint16_t port = ntohs(addr.sin_port);
  auto client = Client::Connect("127.0.0.1", port, {.connect_timeout_ms = 2000});
  ASSERT_FALSE(client.has_value());
  EXPECT_EQ(client.error().code(), StatusCode::kIOError);
  EXPECT_TRUE(Contains(client.error().message(), std::to_string(port))) << client.error().ToString();
  EXPECT_TRUE(Contains(client.error().message(), "refused")) << client.error().ToString();

  auto zero = Client::Connect("127.0.0.1", 0);
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.error().code(), StatusCode::kInvalidArgument);
}

TEST(Client, IoTimeoutWhenThePeerNeverAnswers) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    c.Expect(Op::kPing);
    c.WaitForClose();  // never answers; returns when the client gives up and closes
  });
  auto client = MustConnect(server.port(), {.io_timeout_ms = 200});
  ASSERT_NE(client, nullptr);
  const auto start = Clock::now();
  Status ping = client->Ping();
  const auto waited = Clock::now() - start;
  ASSERT_FALSE(ping.ok());
  EXPECT_EQ(ping.code(), StatusCode::kIOError);
  EXPECT_TRUE(Contains(ping.message(), "200 ms")) << ping.ToString();
  EXPECT_GE(waited, std::chrono::milliseconds(190));
  EXPECT_LT(waited, std::chrono::seconds(5));
  ExpectClosed(*client);
}

TEST(Client, AdminCallsAreNotCutShortByTheIoTimeout) {
  // Create, drop, flush and compact may keep the server busy for minutes: they wait under
  // admin_timeout_ms (no limit by default), not io_timeout_ms.
  {
    FakeServer server([](FakeConnection& c) {
      c.AcceptHello();
      for (Op op : {Op::kCreateCollection, Op::kFlush, Op::kCompact, Op::kDropCollection}) {
        auto f = c.Expect(op);
        if (!f) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
        c.Reply(f->header.request_id, Empty(op));
      }
      auto ping = c.Expect(Op::kPing);
      if (ping) c.Reply(ping->header.request_id, Empty(Op::kPing));
      c.WaitForClose();
    });
    auto client = MustConnect(server.port(), {.io_timeout_ms = 150});
    ASSERT_NE(client, nullptr);
    EXPECT_TRUE(client->CreateCollection({.name = "c", .dim = 2}).ok());
    Status flush = client->Flush("c");
    EXPECT_TRUE(flush.ok()) << flush.ToString();
    Status compact = client->Compact("c");
    EXPECT_TRUE(compact.ok()) << compact.ToString();
    EXPECT_TRUE(client->DropCollection("c").ok());
    // Other calls still use io_timeout_ms (the ping is answered at once here).
    EXPECT_TRUE(client->Ping().ok());
  }
  // A per-call limit, when set, applies.
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    c.Expect(Op::kCompact);
    c.WaitForClose();  // never answers
  });
  auto client = MustConnect(server.port(), {.io_timeout_ms = 60000, .admin_timeout_ms = 200});
  ASSERT_NE(client, nullptr);
  const auto start = Clock::now();
  Status compact = client->Compact("c");
  ASSERT_FALSE(compact.ok());
  EXPECT_TRUE(Contains(compact.message(), "200 ms")) << compact.ToString();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

TEST(Client, WhyTheServerHungUpWhileARequestWasSentIsKept) {
  // The server refuses a frame from its header (e.g. too large before a hello), says so in
  // an error frame and hangs up while the client is still sending the payload.
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    auto header = c.ReadHeader();
    if (!header) return;
    c.ReplyError(header->request_id, ErrorCode::kTooLarge,
                 "frame header: payload_size exceeds the limit");
    c.ShutdownWrite();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  // 32 MiB: more than the socket buffers hold, so the client is still sending at the FIN.
  std::vector<Record> records(8192, MakeRecord(1, std::vector<float>(1024, 0.5f)));
  auto up = client->Upsert("c", 1024, records);
  ASSERT_FALSE(up.has_value());
  EXPECT_EQ(up.error().code(), StatusCode::kIOError);
  EXPECT_TRUE(Contains(up.error().message(), "payload_size exceeds the limit"))
      << up.error().ToString();
  EXPECT_TRUE(Contains(up.error().message(), "TooLarge")) << up.error().ToString();
  ExpectClosed(*client);
}

TEST(Client, BadRequestsAreRefusedBeforeSending) {
  std::vector<Op> seen;
  {
    FakeServer server([&](FakeConnection& c) {
      c.AcceptHello({.server_version = "small", .max_payload = 1024, .max_batch = 10, .max_k = 10});
      while (auto f = c.Read()) {
        seen.push_back(f->request.op);
        c.Reply(f->header.request_id, Empty(Op::kPing));
      }
    });
    auto client = MustConnect(server.port());
    ASSERT_NE(client, nullptr);
    // Over the server's frame limit (100 x 16 floats > 1024 bytes).
    std::vector<Record> big(100, MakeRecord(0, std::vector<float>(16, 1)));
    auto up = client->Upsert("c", 16, big);
    ASSERT_FALSE(up.has_value());
    EXPECT_EQ(up.error().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(up.error().message(), "frame limit of 1024")) << up.error().ToString();
    // A vector that is not `dim` long.
    std::vector<Record> odd = {MakeRecord(3, {1, 2, 3})};
    up = client->Upsert("c", 2, odd);
    ASSERT_FALSE(up.has_value());
    EXPECT_TRUE(Contains(up.error().message(), "id 3")) << up.error().ToString();
    // A body that is not the op's.
    auto sent = client->Send({.op = Op::kSearch, .body = protocol::PingRequest{}});
    ASSERT_FALSE(sent.has_value());
    EXPECT_EQ(sent.error().code(), StatusCode::kInvalidArgument);
    // Empty query, window 0.
    EXPECT_FALSE(client->Search("c", std::span<const float>(), {}).has_value());
    const float q[2] = {1, 2};
    EXPECT_FALSE(client->SearchPipelined("c", q, 2, 1, {}, 0).has_value());
    // Pipelined queries over the frame limit: refused, nothing left in flight.
    std::vector<float> wide(400, 1.0f);
    auto piped = client->SearchPipelined("c", wide.data(), 400, 1, {}, 4);
    ASSERT_FALSE(piped.has_value());
    EXPECT_TRUE(Contains(piped.error().message(), "frame limit")) << piped.error().ToString();
    EXPECT_TRUE(client->is_open());
    EXPECT_EQ(client->outstanding(), 0u);
    Status ping = client->Ping();
    EXPECT_TRUE(ping.ok()) << ping.ToString();
  }
  EXPECT_EQ(seen, std::vector<Op>{Op::kPing});
}

}  // namespace
}  // namespace strata::client

namespace strata::client {
namespace {

// A spec with codes goes out as create_collection_with (23) and comes back whole from
// describe_collection_with (24); against an older server (UnknownOp) a spec without codes
// still goes out as create_collection (3), one with codes fails naming opcode 23, and
// describe falls back to describe_collection (6).
TEST(ClientCodes, SpecWithCodesRoundTripsAndAnOldServerStillServesPlainSpecs) {
  CollectionSpec spec{.name = "c", .dim = 4};
  spec.codes = VectorCodes::kSq8;
  spec.rerank = 30;
  FakeServer server([spec](FakeConnection& c) {
    c.AcceptHello();
    if (auto f = c.Expect(Op::kCreateCollectionWith)) {
      EXPECT_EQ(std::get<protocol::CreateCollectionRequest>(f->request.body).spec, spec);
      c.Reply(f->header.request_id, Empty(Op::kCreateCollectionWith));
    }
    if (auto f = c.Expect(Op::kDescribeCollectionWith)) {
      CollectionInfo info;
      info.spec = spec;
      c.Reply(f->header.request_id, {.op = Op::kDescribeCollectionWith, .body = protocol::DescribeCollectionReply{info}});
    }
    // An older server from here on.
    if (auto f = c.Expect(Op::kCreateCollectionWith)) {
      c.ReplyError(f->header.request_id, ErrorCode::kUnknownOp, "opcode 23 is not a request");
    }
    if (auto f = c.Expect(Op::kCreateCollection)) c.Reply(f->header.request_id, Empty(Op::kCreateCollection));
    if (auto f = c.Expect(Op::kDescribeCollectionWith)) {
      c.ReplyError(f->header.request_id, ErrorCode::kUnknownOp, "opcode 24 is not a request");
    }
    if (auto f = c.Expect(Op::kDescribeCollection)) {
      CollectionInfo info;
      info.spec = CollectionSpec{.name = "d", .dim = 4};
      c.Reply(f->header.request_id, {.op = Op::kDescribeCollection, .body = protocol::DescribeCollectionReply{info}});
    }
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->CreateCollection(spec).ok());
  auto info = client->DescribeCollection("c");
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->spec, spec);
  Status old = client->CreateCollection(spec);
  EXPECT_EQ(old.code(), StatusCode::kUnimplemented);
  EXPECT_NE(old.message().find("opcode 23"), std::string::npos) << old.ToString();
  EXPECT_TRUE(client->CreateCollection(CollectionSpec{.name = "d", .dim = 4}).ok());
  auto plain = client->DescribeCollection("d");
  ASSERT_TRUE(plain.has_value()) << plain.error().ToString();
  EXPECT_EQ(plain->spec.codes, VectorCodes::kNone);
}

// list_collections_with (26) brings back every collection's whole spec, codes included; an
// older server answers UnknownOp and the client asks list_collections (5) instead.
TEST(ClientCodes, ListCarriesCodesAndFallsBackForAnOldServer) {
  CollectionInfo coded{.spec = {.name = "c", .dim = 4}};
  coded.spec.codes = VectorCodes::kSq8;
  coded.spec.rerank = 30;
  CollectionInfo plain{.spec = {.name = "d", .dim = 4}};
  FakeServer server([&](FakeConnection& c) {
    c.AcceptHello();
    if (auto f = c.Expect(Op::kListCollectionsWith)) {
      c.Reply(f->header.request_id,
              {.op = Op::kListCollectionsWith, .body = protocol::ListCollectionsReply{{coded, plain}}});
    }
    // An older server from here on.
    if (auto f = c.Expect(Op::kListCollectionsWith)) {
      c.ReplyError(f->header.request_id, ErrorCode::kUnknownOp, "unknown opcode 26 (0x001a)");
    }
    if (auto f = c.Expect(Op::kListCollections)) {
      c.Reply(f->header.request_id, {.op = Op::kListCollections, .body = protocol::ListCollectionsReply{{plain}}});
    }
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  auto list = client->ListCollections();
  ASSERT_TRUE(list.has_value()) << list.error().ToString();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].spec, coded.spec);
  EXPECT_EQ((*list)[1].spec, plain.spec);
  auto old = client->ListCollections();
  ASSERT_TRUE(old.has_value()) << old.error().ToString();
  ASSERT_EQ(old->size(), 1u);
  EXPECT_EQ((*old)[0].spec.name, "d");
  EXPECT_TRUE(client->is_open());
}

// search_with (opcode 22) carries with_attributes to the server and brings back the hits'
// attributes and the filter's warnings; an older server that answers UnknownOp is named as
// such, and the connection stays usable for the older searches (docs/PROTOCOL.md#versioning).
TEST(ClientSearchWith, AttributesAndWarningsComeBackAndAnOldServerIsNamed) {
  FakeServer server([](FakeConnection& c) {
    c.AcceptHello();
    auto with = c.Expect(Op::kSearchWith);
    if (with) {
      const auto& m = std::get<protocol::SearchRequest>(with->request.body);
      EXPECT_TRUE(m.options.with_attributes);
      EXPECT_EQ(m.options.filter, "lnag == 1");
      EXPECT_EQ(m.count, 2u);
      protocol::SearchWithReply r;
      r.with_attributes = true;
      r.results = {{{5, 0.5f, "", {{"lang", std::string("en")}}}}, {}};
      r.warnings = {"no record of collection 'c' has the attribute 'lnag' (misspelt?)"};
      c.Reply(with->header.request_id, {.op = Op::kSearchWith, .body = r});
    }
    // An older server: it does not know opcode 22.
    auto old = c.Expect(Op::kSearchWith);
    if (old) c.ReplyError(old->header.request_id, ErrorCode::kUnknownOp, "opcode 22 is not a request");
    auto keyed = c.Expect(Op::kSearchKeyed);
    if (keyed) {
      c.Reply(keyed->header.request_id,
              {.op = Op::kSearchKeyed, .body = protocol::KeyedSearchReply{{{{7, 1.0f, "", {}}}}}});
    }
    c.WaitForClose();
  });
  auto client = MustConnect(server.port());
  ASSERT_NE(client, nullptr);
  const float q[4] = {1, 2, 3, 4};
  SearchOptions o;
  o.filter = "lnag == 1";
  o.with_attributes = true;
  auto r = client->SearchWith("c", q, 2, 2, o);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_EQ(r->results.size(), 2u);
  ASSERT_EQ(r->results[0].size(), 1u);
  EXPECT_EQ(r->results[0][0].attributes, (Attributes{{"lang", std::string("en")}}));
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("lnag"), std::string::npos);
  auto old = client->SearchWith("c", q, 2, 1, o);
  ASSERT_FALSE(old.has_value());
  EXPECT_EQ(old.error().code(), StatusCode::kUnimplemented);
  EXPECT_NE(old.error().message().find("predates search_with"), std::string::npos) << old.error().ToString();
  EXPECT_TRUE(client->is_open());
  // The older request still works; with_attributes has no room in it and is refused unsent.
  EXPECT_FALSE(client->SearchKeyed("c", q, 2, 1, o).has_value());
  o.with_attributes = false;
  auto keyed = client->SearchKeyed("c", q, 2, 1, o);
  ASSERT_TRUE(keyed.has_value()) << keyed.error().ToString();
  EXPECT_EQ((*keyed)[0][0].id, 7u);
}

}  // namespace
}  // namespace strata::client
