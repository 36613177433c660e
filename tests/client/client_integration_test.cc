// The client against a real server (server::Server over an Engine in a temporary directory, on
// an ephemeral loopback port): every operation round-trips, concurrent clients read their own
// writes, a server-side error leaves the connection usable, and the load generator measures.

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "client/client.h"
#include "client/measure.h"
#include "tests/client/integration_util.h"

namespace strata::client {
namespace {

using testing::L2;
using testing::ServerFixture;
using testing::VectorFor;

constexpr uint32_t kDim = 8;

Record MakeRecord(VectorId id, std::vector<float> vector, Attributes attrs = {}) {
  Record r;
  r.id = id;
  r.vector = std::move(vector);
  r.attributes = std::move(attrs);
  return r;
}

Attributes SortedByName(Attributes a) {
  std::sort(a.begin(), a.end(), [](const auto& x, const auto& y) { return x.name < y.name; });
  return a;
}

SearchOptions Scan(uint32_t k, std::string filter = "") {
  SearchOptions o;
  o.k = k;
  o.filter = std::move(filter);
  o.strategy = SearchStrategy::kScan;
  return o;
}

// Exact top-k ids among `rows` (id -> vector) accepted by `keep`.
template <typename Keep>
std::vector<VectorId> ExactTopK(const std::map<VectorId, std::vector<float>>& rows,
                                const std::vector<float>& query, size_t k, Keep keep) {
  std::vector<Neighbor> all;
  for (const auto& [id, v] : rows) {
    if (keep(id)) all.push_back({.id = id, .distance = L2(query, v.data())});
  }
  std::sort(all.begin(), all.end());
  std::vector<VectorId> ids;
  for (size_t i = 0; i < std::min(k, all.size()); ++i) ids.push_back(all[i].id);
  return ids;
}

std::vector<VectorId> Ids(const std::vector<Neighbor>& list) {
  std::vector<VectorId> ids;
  for (const Neighbor& n : list) ids.push_back(n.id);
  return ids;
}

class ClientIntegration : public ServerFixture {};

TEST_F(ClientIntegration, EveryOperationRoundTrips) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_GT(client->server().max_payload, 0u);
  EXPECT_GT(client->server().max_batch, 0u);
  ASSERT_TRUE(client->Ping().ok());

  CollectionSpec spec;
  spec.name = "docs";
  spec.dim = kDim;
  spec.metric = Metric::kL2;
  spec.hnsw_M = 12;
  spec.hnsw_ef_construction = 100;
  spec.seal_threshold = 5000;
  Status created = client->CreateCollection(spec);
  ASSERT_TRUE(created.ok()) << created.ToString();
  Status again = client->CreateCollection(spec);
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists) << again.ToString();

  auto list = client->ListCollections();
  ASSERT_TRUE(list.has_value()) << list.error().ToString();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].spec, spec);
  auto info = client->DescribeCollection("docs");
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->spec, spec);
  EXPECT_EQ(info->num_vectors, 0u);

  // 300 records with attributes of every kind.
  constexpr VectorId kN = 300;
  std::map<VectorId, std::vector<float>> rows;
  std::vector<Record> records;
  for (VectorId id = 0; id < kN; ++id) {
    rows[id] = VectorFor(id, kDim);
    records.push_back(MakeRecord(
        id, rows[id],
        {{"parity", int64_t(id % 2)},
         {"lang", std::string(id % 3 == 0 ? "en" : "de")},
         {"score", double(id) / 8},
         {"tags", TagList{"t" + std::to_string(id % 5), "all"}}}));
  }
  auto applied = client->Upsert("docs", kDim, records);
  ASSERT_TRUE(applied.has_value()) << applied.error().ToString();
  EXPECT_EQ(*applied, kN);

  const std::vector<VectorId> get_ids = {0, 7, 299, 100000};
  auto got = client->Get("docs", get_ids);
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  ASSERT_EQ(got->size(), 4u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE((*got)[i].has_value()) << "id " << get_ids[i];
    EXPECT_EQ((*got)[i]->id, get_ids[i]);
    EXPECT_EQ((*got)[i]->vector, rows[get_ids[i]]);
    EXPECT_EQ(SortedByName((*got)[i]->attributes), SortedByName(records[get_ids[i]].attributes));
  }
  EXPECT_FALSE((*got)[3].has_value());

  // Search: a stored vector finds itself first; an exact scan matches brute force.
  SearchOptions options;
  options.k = 5;
  auto hits = client->Search("docs", rows[17], options);
  ASSERT_TRUE(hits.has_value()) << hits.error().ToString();
  ASSERT_EQ(hits->size(), 5u);
  EXPECT_EQ((*hits)[0].id, 17u);
  EXPECT_NEAR((*hits)[0].distance, 0.0f, 1e-6);
  const std::vector<float> probe = VectorFor(999999, kDim);
  auto exact = client->Search("docs", probe, Scan(10));
  ASSERT_TRUE(exact.has_value()) << exact.error().ToString();
  EXPECT_EQ(Ids(*exact), ExactTopK(rows, probe, 10, [](VectorId) { return true; }));

  // Filtered search.
  auto odd = client->Search("docs", probe, Scan(10, "parity == 1"));
  ASSERT_TRUE(odd.has_value()) << odd.error().ToString();
  EXPECT_EQ(Ids(*odd), ExactTopK(rows, probe, 10, [](VectorId id) { return id % 2 == 1; }));
  auto en = client->Search("docs", probe, Scan(10, "lang == \"en\" AND score >= 10"));
  ASSERT_TRUE(en.has_value()) << en.error().ToString();
  EXPECT_EQ(Ids(*en), ExactTopK(rows, probe, 10, [](VectorId id) {
              return id % 3 == 0 && double(id) / 8 >= 10;
            }));
  SearchOptions default_filtered;
  default_filtered.k = 10;
  default_filtered.filter = "parity == 0";
  auto even = client->Search("docs", probe, default_filtered);
  ASSERT_TRUE(even.has_value()) << even.error().ToString();
  EXPECT_EQ(even->size(), 10u);
  for (const Neighbor& n : *even) EXPECT_EQ(n.id % 2, 0u) << n.id;

  // Batch, pipelined and one by one agree.
  constexpr uint32_t kQueries = 40;
  std::vector<float> queries;
  for (uint32_t q = 0; q < kQueries; ++q) {
    const auto v = VectorFor(500000 + q, kDim);
    queries.insert(queries.end(), v.begin(), v.end());
  }
  auto batch = client->SearchBatch("docs", queries.data(), kDim, kQueries, options);
  ASSERT_TRUE(batch.has_value()) << batch.error().ToString();
  auto piped = client->SearchPipelined("docs", queries.data(), kDim, kQueries, options, 8);
  ASSERT_TRUE(piped.has_value()) << piped.error().ToString();
  ASSERT_EQ(batch->size(), kQueries);
  ASSERT_EQ(piped->size(), kQueries);
  for (uint32_t q = 0; q < kQueries; ++q) {
    auto one = client->Search("docs", std::span<const float>(queries.data() + q * kDim, kDim),
                              options);
    ASSERT_TRUE(one.has_value()) << one.error().ToString();
    EXPECT_EQ((*piped)[q], *one) << "query " << q;
    EXPECT_EQ((*batch)[q], *one) << "query " << q;
  }

  // Explain: the same results, and the engine's Explain naming the segments searched.
  auto explained = client->Explain("docs", probe, Scan(10));
  ASSERT_TRUE(explained.has_value()) << explained.error().ToString();
  EXPECT_EQ(explained->first, *exact);
  const strata::Explain& plan = explained->second;
  EXPECT_EQ(plan.k, 10u);
  ASSERT_FALSE(plan.segments.empty()) << plan.ToString();
  for (const SegmentExplain& segment : plan.segments) {
    EXPECT_FALSE(segment.segment.empty()) << plan.ToJson();
    EXPECT_EQ(segment.strategy, "scan") << plan.ToJson();
  }

  // A prepared filter is the embedded engine's: refused before anything is sent.
  SearchOptions prepared = Scan(10);
  prepared.prepared_filter = reinterpret_cast<const PreparedFilter*>(&prepared);  // not read
  auto refused = client->Search("docs", probe, prepared);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), StatusCode::kInvalidArgument) << refused.error().ToString();
  EXPECT_TRUE(client->is_open());

  // Delete: gone from Get and from search results.
  const std::vector<VectorId> doomed = {17, 18, 19};
  auto deleted = client->Delete("docs", doomed);
  ASSERT_TRUE(deleted.has_value()) << deleted.error().ToString();
  EXPECT_GE(*deleted, 3u);
  for (VectorId id : doomed) rows.erase(id);
  got = client->Get("docs", doomed);
  ASSERT_TRUE(got.has_value());
  for (const auto& r : *got) EXPECT_FALSE(r.has_value());
  hits = client->Search("docs", VectorFor(17, kDim), Scan(10));
  ASSERT_TRUE(hits.has_value());
  EXPECT_EQ(Ids(*hits), ExactTopK(rows, VectorFor(17, kDim), 10, [](VectorId) { return true; }));

  auto stats = client->Stats();
  ASSERT_TRUE(stats.has_value()) << stats.error().ToString();
  EXPECT_GE(stats->upserts, kN);
  EXPECT_GE(stats->deletes, 3u);
  EXPECT_GE(stats->searches, 2u * kQueries);
  EXPECT_EQ(stats->vectors, rows.size());
  EXPECT_GE(stats->connections, 1u);
  EXPECT_GT(stats->requests, 0u);

  // Flush seals the memory segment; compaction merges; the data stays the same.
  Status flushed = client->Flush("docs");
  ASSERT_TRUE(flushed.ok()) << flushed.ToString();
  info = client->DescribeCollection("docs");
  ASSERT_TRUE(info.has_value());
  EXPECT_GE(info->sealed_segments, 1u);
  EXPECT_EQ(info->num_vectors, rows.size());
  std::vector<Record> more;
  for (VectorId id = kN; id < kN + 50; ++id) {
    rows[id] = VectorFor(id, kDim);
    more.push_back(MakeRecord(id, rows[id]));
  }
  ASSERT_TRUE(client->Upsert("docs", kDim, more).has_value());
  ASSERT_TRUE(client->Flush("docs").ok());
  Status compacted = client->Compact("docs");
  ASSERT_TRUE(compacted.ok()) << compacted.ToString();
  info = client->DescribeCollection("docs");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->num_vectors, rows.size());
  exact = client->Search("docs", probe, Scan(10));
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(Ids(*exact), ExactTopK(rows, probe, 10, [](VectorId) { return true; }));

  Status dropped = client->DropCollection("docs");
  ASSERT_TRUE(dropped.ok()) << dropped.ToString();
  list = client->ListCollections();
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->empty());
  info = client->DescribeCollection("docs");
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code(), StatusCode::kNotFound);
}

TEST_F(ClientIntegration, ServerSideErrorsLeaveTheConnectionUsable) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  auto missing = client->Search("missing", VectorFor(1, kDim), {});
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound) << missing.error().ToString();
  EXPECT_NE(missing.error().message().find("missing"), std::string::npos)
      << missing.error().ToString();
  EXPECT_EQ(client->DescribeCollection("missing").error().code(), StatusCode::kNotFound);
  EXPECT_FALSE(client->Flush("missing").ok());

  CollectionSpec spec;
  spec.name = "c";
  spec.dim = kDim;
  ASSERT_TRUE(client->CreateCollection(spec).ok());
  // Wrong dimension, a bad filter, a k over the server's limit: refused, connection fine.
  std::vector<Record> wrong = {MakeRecord(1, VectorFor(1, kDim + 1))};
  auto up = client->Upsert("c", kDim + 1, wrong);
  ASSERT_FALSE(up.has_value());
  EXPECT_EQ(up.error().code(), StatusCode::kInvalidArgument) << up.error().ToString();
  SearchOptions bad_filter;
  bad_filter.filter = "year >>= 3";
  EXPECT_FALSE(client->Search("c", VectorFor(1, kDim), bad_filter).has_value());
  SearchOptions huge_k;
  huge_k.k = client->server().max_k + 1;
  EXPECT_FALSE(client->Search("c", VectorFor(1, kDim), huge_k).has_value());
  EXPECT_TRUE(client->is_open());
  Status ping = client->Ping();
  EXPECT_TRUE(ping.ok()) << ping.ToString();
  auto list = client->ListCollections();
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->size(), 1u);
}

TEST_F(ClientIntegration, ConcurrentClientsReadTheirOwnWrites) {
  {
    auto admin = Connect();
    ASSERT_NE(admin, nullptr);
    CollectionSpec spec;
    spec.name = "shared";
    spec.dim = kDim;
    spec.seal_threshold = 400;  // seals happen during the run
    ASSERT_TRUE(admin->CreateCollection(spec).ok());
  }
  constexpr int kThreads = 8;
  constexpr int kSteps = 40;
  constexpr VectorId kRange = 1000;
  // What each client left: id -> vector (absent: deleted or never written).
  std::vector<std::map<VectorId, std::vector<float>>> models(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = Connect();
      ASSERT_NE(client, nullptr);
      auto& model = models[t];
      std::mt19937_64 rng(1234 + t);
      const VectorId base = VectorId(t) * kRange;
      uint64_t version = 0;
      for (int step = 0; step < kSteps; ++step) {
        const int op = int(rng() % 4);
        std::vector<VectorId> touched;
        if (op < 3 || model.empty()) {
          // Upsert 1..8 ids of this client's range (new ones or overwrites).
          std::vector<Record> batch;
          const int n = 1 + int(rng() % 8);
          std::set<VectorId> chosen;
          for (int i = 0; i < n; ++i) chosen.insert(base + rng() % 64);
          for (VectorId id : chosen) {
            auto v = VectorFor((id << 20) + ++version, kDim);
            batch.push_back(MakeRecord(id, v, {{"owner", int64_t(t)}}));
            model[id] = v;
            touched.push_back(id);
          }
          auto applied = client->Upsert("shared", kDim, batch);
          ASSERT_TRUE(applied.has_value()) << applied.error().ToString();
        } else {
          // Delete 1..4 ids, live or not.
          const int n = 1 + int(rng() % 4);
          std::set<VectorId> chosen;
          for (int i = 0; i < n; ++i) chosen.insert(base + rng() % 64);
          std::vector<VectorId> ids(chosen.begin(), chosen.end());
          for (VectorId id : ids) model.erase(id);
          touched = ids;
          auto applied = client->Delete("shared", ids);
          ASSERT_TRUE(applied.has_value()) << applied.error().ToString();
        }
        // Read-your-writes: Get sees exactly what this client wrote.
        auto got = client->Get("shared", touched);
        ASSERT_TRUE(got.has_value()) << got.error().ToString();
        for (size_t i = 0; i < touched.size(); ++i) {
          auto it = model.find(touched[i]);
          if (it == model.end()) {
            EXPECT_FALSE((*got)[i].has_value()) << "deleted id " << touched[i] << " still there";
          } else {
            ASSERT_TRUE((*got)[i].has_value()) << "id " << touched[i] << " missing";
            EXPECT_EQ((*got)[i]->vector, it->second) << "id " << touched[i];
          }
        }
        // And search: an exact scan over this client's rows finds each touched live id first.
        for (VectorId id : touched) {
          auto it = model.find(id);
          const std::vector<float> query = it != model.end() ? it->second : VectorFor(id, kDim);
          auto hits = client->Search("shared", query,
                                     Scan(1, "owner == " + std::to_string(t)));
          ASSERT_TRUE(hits.has_value()) << hits.error().ToString();
          if (it != model.end()) {
            ASSERT_EQ(hits->size(), 1u);
            EXPECT_EQ((*hits)[0].id, id);
            EXPECT_EQ((*hits)[0].distance, 0.0f);
          } else {
            for (const Neighbor& n : *hits) EXPECT_NE(n.id, id) << "deleted id found by search";
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  if (HasFatalFailure()) return;

  // The collection holds exactly the union of what each client left.
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  size_t live = 0;
  for (int t = 0; t < kThreads; ++t) {
    live += models[t].size();
    std::vector<VectorId> ids;
    for (VectorId id = VectorId(t) * kRange; id < VectorId(t) * kRange + 64; ++id) ids.push_back(id);
    auto got = client->Get("shared", ids);
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = models[t].find(ids[i]);
      if (it == models[t].end()) {
        EXPECT_FALSE((*got)[i].has_value()) << "id " << ids[i];
      } else {
        ASSERT_TRUE((*got)[i].has_value()) << "id " << ids[i];
        EXPECT_EQ((*got)[i]->vector, it->second) << "id " << ids[i];
      }
    }
  }
  auto info = client->DescribeCollection("shared");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->num_vectors, live);
}

TEST(LoadConfigChecks, ARateTooHighForTheClockIsRefused) {
  // connections / rate under 1 us per connection would round the schedule's interval to 0
  // clock ticks, and the loop that advances it would never end: refused up front (before
  // any connection is made, so no server is needed here).
  const std::vector<float> queries(kDim, 0.5f);
  LoadConfig config;
  config.host = "127.0.0.1";
  config.port = 1;  // nothing listens; never reached
  config.collection = "c";
  config.queries = queries.data();
  config.dim = kDim;
  config.num_queries = 1;
  config.duration_s = 0.1;
  config.connections = 4;
  for (double rate : {4e9, 1e12, 4.0000001e6}) {
    config.rate = rate;
    auto report = RunLoad(config);
    ASSERT_FALSE(report.has_value()) << rate;
    EXPECT_EQ(report.error().code(), StatusCode::kInvalidArgument) << rate;
    EXPECT_NE(report.error().message().find("1 us"), std::string::npos)
        << report.error().ToString();
    EXPECT_NE(report.error().message().find("--connections"), std::string::npos)
        << report.error().ToString();
  }
  // At exactly 1 us per connection the run is attempted (and fails to connect to port 1).
  config.rate = 4e6;
  auto report = RunLoad(config);
  ASSERT_FALSE(report.has_value());
  EXPECT_EQ(report.error().code(), StatusCode::kIOError) << report.error().ToString();
}

TEST_F(ClientIntegration, LoadGeneratorMeasuresRecallAndKeepsTheSchedule) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  CollectionSpec spec;
  spec.name = "bench";
  spec.dim = kDim;
  ASSERT_TRUE(client->CreateCollection(spec).ok());
  std::map<VectorId, std::vector<float>> rows;
  std::vector<Record> records;
  constexpr uint64_t kOffset = 1000;  // ids = row + offset, as `strata-cli upsert --id-offset`
  for (VectorId row = 0; row < 200; ++row) {
    rows[row] = VectorFor(row, kDim);
    records.push_back(MakeRecord(row + kOffset, rows[row]));
  }
  ASSERT_TRUE(client->Upsert("bench", kDim, records).has_value());

  // Queries and their exact top-10 (ground truth ids are rows).
  constexpr uint32_t kQueries = 20;
  std::vector<float> queries;
  storage::GroundTruth truth;
  truth.num_queries = kQueries;
  truth.k = 10;
  for (uint32_t q = 0; q < kQueries; ++q) {
    const auto v = VectorFor(700000 + q, kDim);
    queries.insert(queries.end(), v.begin(), v.end());
    for (VectorId id : ExactTopK(rows, v, 10, [](VectorId) { return true; })) {
      truth.ids.push_back(int32_t(id));
    }
  }

  // RunQueries (what `search --queries` does) agrees with the pipelined call, recall 1 exact.
  auto run = RunQueries(*client, "bench", queries.data(), kDim, kQueries, Scan(10), 4);
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  auto piped = client->SearchPipelined("bench", queries.data(), kDim, kQueries, Scan(10), 4);
  ASSERT_TRUE(piped.has_value());
  EXPECT_EQ(run->results, *piped);
  for (uint32_t q = 0; q < kQueries; ++q) {
    EXPECT_EQ(RecallAtK(truth, q, run->results[q], 10, kOffset), 1.0) << "query " << q;
    EXPECT_GT(run->latency_ms[q], 0.0);
  }
  EXPECT_EQ(RecallAtK(truth, 0, run->results[0], 10, 0), 0.0);  // offset not removed: no hits

  LoadConfig config;
  config.port = port();
  config.collection = "bench";
  config.queries = queries.data();
  config.dim = kDim;
  config.num_queries = kQueries;
  config.search = Scan(10);
  config.connections = 2;
  config.duration_s = 0.5;
  config.pipeline = 2;
  config.truth = &truth;
  config.id_offset = kOffset;
  auto closed = RunLoad(config);
  ASSERT_TRUE(closed.has_value()) << closed.error().ToString();
  EXPECT_GT(closed->ok, 0u);
  EXPECT_EQ(closed->ok, closed->sent);
  EXPECT_TRUE(closed->errors.empty());
  EXPECT_TRUE(closed->connection_errors.empty());
  ASSERT_TRUE(closed->recall.has_value());
  EXPECT_EQ(*closed->recall, 1.0);
  EXPECT_EQ(closed->latency.count, closed->ok);
  EXPECT_LE(closed->latency.p50_ms, closed->latency.p99_ms);
  EXPECT_GT(closed->qps, 0.0);

  // Open loop: 2 connections at 100 QPS in total for 1 s schedule exactly 100 requests.
  config.rate = 100;
  config.duration_s = 1;
  config.pipeline = 4;
  auto open = RunLoad(config);
  ASSERT_TRUE(open.has_value()) << open.error().ToString();
  EXPECT_EQ(open->sent + open->unsent, 100u);
  EXPECT_EQ(open->ok, open->sent);
  EXPECT_GE(open->elapsed_s, 0.9);

  // Errors answered by the server are counted by code, not fatal.
  config.collection = "missing";
  config.rate = 0;
  config.duration_s = 0.2;
  auto failing = RunLoad(config);
  ASSERT_TRUE(failing.has_value()) << failing.error().ToString();
  EXPECT_EQ(failing->ok, 0u);
  ASSERT_EQ(failing->errors.count("NotFound"), 1u);
  EXPECT_EQ(failing->errors.at("NotFound"), failing->sent);
}

}  // namespace
}  // namespace strata::client
