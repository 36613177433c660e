// A cluster collection's reads and drop through plain clients of real strata-server nodes and
// a real etcd (docs/CLUSTER.md): EXPLAIN lists every shard with the node that answered and its
// own plan (also in strata-cli's text); a shard whose only replica is SIGSTOPped leaves a
// search partial when the request allows it (the other shards' hits, the missing shard named)
// and fails it otherwise, naming the shard; dropping the collection through any node deletes
// its record and placement in etcd and every node's shard collections.

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <fmt/core.h>

#include <gtest/gtest.h>

#include "client/client.h"
#include "cluster/admin.h"
#include "cluster/etcd_client.h"
#include "cluster/model.h"
#include "cluster/router.h"
#include "tests/cluster/cluster_fixture.h"

namespace strata::cluster {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using testing::Eventually;
using testing::RunCommand;

constexpr uint32_t kDim = 8;

std::vector<float> VectorFor(uint64_t seed) {
  std::vector<float> v(kDim);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (uint32_t i = 0; i < kDim; ++i) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 29;
    v[i] = float(double(x >> 11) / double(1ull << 53) * 2.0 - 1.0);
  }
  return v;
}

class ShardReplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A long lease (a node stopped for a few seconds stays registered) and a short shard
    // timeout for the requests that do not set their own.
    ASSERT_TRUE(cluster.Start(3, {"--lease-ttl", "20", "--cluster-shard-timeout-ms", "1500"}));
    ASSERT_TRUE(cluster.WaitForNodes(3, 10000));
  }
  // Creates `name` (shards x replicas) and waits until every replica is ready.
  void Create(const std::string& name, uint32_t shards, uint32_t replicas) {
    CollectionRecord record;
    record.name = name;
    record.dim = kDim;
    record.shards = shards;
    record.replicas = replicas;
    ASSERT_TRUE(CreateClusterCollection(*etcd, "t", record).ok());
    ASSERT_TRUE(Eventually([&] {
      auto st = ReadClusterStatus(*etcd, "t");
      if (!st) return false;
      for (const auto& c : st->collections) {
        if (c.record.name != name || !c.placement_epoch) continue;
        for (const ShardStatus& s : c.shards) {
          if (s.reports.size() != replicas) return false;
          for (const auto& r : s.reports) {
            if (r.state != "ready") return false;
          }
        }
        return true;
      }
      return false;
    }, 15000));
    // And every node's routing view has it (a separate watch of etcd, which may lag the
    // replicas' reports by a few milliseconds): until then a node answers for its engine alone.
    for (size_t i = 0; i < nodes.size(); ++i) {
      auto c = client::Client::Connect("127.0.0.1", nodes[i]->port(), {.io_timeout_ms = 30000});
      ASSERT_TRUE(c.has_value()) << c.error().ToString();
      ASSERT_TRUE(Eventually([&] { return (*c)->DescribeCollection(name).has_value(); }, 5000))
          << "node n" << i << " does not route collection '" << name << "' after 5 s";
    }
  }
  std::unique_ptr<client::Client> Connect(int node) {
    auto c = client::Client::Connect("127.0.0.1", nodes[node]->port(), {.io_timeout_ms = 30000});
    EXPECT_TRUE(c.has_value()) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  }
  // The node holding shard `shard` of `name` (first replica).
  std::string NodeOf(const std::string& name, uint32_t shard) {
    auto st = ReadClusterStatus(*etcd, "t");
    if (!st) return {};
    for (const auto& c : st->collections) {
      if (c.record.name == name) return c.shards[shard].placement.replicas.front();
    }
    return {};
  }

  testing::TestCluster cluster;
  std::unique_ptr<EtcdClient>& etcd = cluster.etcd;
  std::vector<std::unique_ptr<testing::ServerProcess>>& nodes = cluster.nodes;
};

TEST_F(ShardReplyTest, ExplainShowsEachShardAndAStoppedShardMakesTheReplyPartialOrFail) {
  // 3 shards x 1 replica: each shard on one node (the placement spreads them).
  Create("vec", 3, 1);
  std::map<std::string, uint32_t> shard_on;  // node -> its shard
  for (uint32_t s = 0; s < 3; ++s) shard_on[NodeOf("vec", s)] = s;
  ASSERT_EQ(shard_on.size(), 3u) << "one shard per node";
  auto c = Connect(0);
  ASSERT_NE(c, nullptr);
  std::vector<Record> records;
  for (uint64_t id = 0; id < 300; ++id) records.push_back({.id = id, .vector = VectorFor(id)});
  ASSERT_TRUE(c->Upsert("vec", kDim, records).has_value());

  // A keyed search with a bad filter: InvalidArgument from the first shard that says so (the
  // request's fault), not an IOError after asking every replica.
  {
    const std::vector<float> q = VectorFor(7);
    auto bad = c->SearchKeyed("vec", q.data(), kDim, 1, {.k = 5, .filter = "year >>= 3"});
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code(), StatusCode::kInvalidArgument) << bad.error().ToString();
    EXPECT_EQ(bad.error().message().find("no in-sync replica answered"), std::string::npos)
        << bad.error().ToString();
    // A router's keyed search with search_with's options: the shards get their own defaults
    // (search_keyed cannot carry them).
    auto router = ClusterRouter::Open({.etcd = cluster.url(), .cluster = "t"});
    ASSERT_TRUE(router.has_value()) << router.error().ToString();
    auto hits = (*router)->SearchKeyed("vec", q.data(), kDim, 1,
                                      {.k = 5, .allow_partial = true, .shard_timeout_ms = 5000});
    ASSERT_TRUE(hits.has_value()) << hits.error().ToString();
    ASSERT_EQ(hits->size(), 1u);
    ASSERT_FALSE((*hits)[0].empty());
    EXPECT_EQ((*hits)[0][0].id, 7u);
  }

  // EXPLAIN through n0: the merged hits (the same as a search's) and, per shard, the node that
  // answered, its address and its own plan.
  const std::vector<float> query = VectorFor(7);
  auto explained = c->Explain("vec", query, {.k = 5});
  ASSERT_TRUE(explained.has_value()) << explained.error().ToString();
  auto searched = c->Search("vec", query, {.k = 5});
  ASSERT_TRUE(searched.has_value()) << searched.error().ToString();
  EXPECT_EQ(explained->first, *searched);
  EXPECT_EQ(explained->first.front().id, 7u);
  const Explain& plan = explained->second;
  ASSERT_EQ(plan.shards.size(), 3u) << plan.ToJson();
  uint64_t results = 0;
  for (uint32_t s = 0; s < 3; ++s) {
    const ShardExplain& sh = plan.shards[s];
    EXPECT_EQ(sh.shard, s);
    EXPECT_EQ(sh.node, NodeOf("vec", s));
    EXPECT_EQ(sh.address, nodes[sh.node[1] - '0']->address());
    auto own = Explain::FromJson(sh.plan);
    ASSERT_TRUE(own.has_value()) << sh.plan;
    ASSERT_FALSE(own->segments.empty());
    uint64_t rows = 0;
    for (const auto& seg : own->segments) rows += seg.rows;
    EXPECT_GT(rows, 40u);  // the shard's share of 300 rows
    EXPECT_LT(rows, 200u);
    results += sh.results;
  }
  EXPECT_GE(results, 5u);
  EXPECT_EQ(plan.k, 5u);
  // strata-cli's text output names every shard and node.
  std::string vec;
  for (float f : query) vec += (vec.empty() ? "" : ",") + std::to_string(f);
  auto [rc, out] = RunCommand(fmt::format("{} --port {} search vec --vector {} -k 5 --explain",
                                          STRATA_CLI_BINARY, nodes[1]->port(), vec));
  EXPECT_EQ(rc, 0) << out;
  for (uint32_t s = 0; s < 3; ++s) {
    const std::string n = NodeOf("vec", s);
    EXPECT_NE(out.find(fmt::format("shard {} on node {} ({})", s, n, nodes[n[1] - '0']->address())),
              std::string::npos)
        << out;
  }

  // Searches through n0 (its routers hold connections to every node now); then n2 stops.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c->Search("vec", query, {.k = 5}).has_value());
  const uint32_t stopped = shard_on["n2"];
  nodes[2]->Signal(SIGSTOP);
  ASSERT_TRUE(nodes[2]->Stopped());

  // Allowed: partial, the other shards' hits, the missing shard named with the reason.
  SearchOptions partial{.k = 10};
  partial.allow_partial = true;
  partial.shard_timeout_ms = 400;
  auto t0 = Clock::now();
  auto r = c->SearchWith("vec", query.data(), kDim, 1, partial);
  const auto partial_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_TRUE(r->partial()) << "every shard answered within 400 ms although n2 is stopped (state T: "
                            << nodes[2]->Stopped() << ")";
  ASSERT_EQ(r->missing.size(), 1u);
  EXPECT_EQ(r->missing[0].shard, stopped);
  EXPECT_NE(r->missing[0].reason.find("n2"), std::string::npos) << r->missing[0].reason;
  EXPECT_NE(r->missing[0].reason.find("in time"), std::string::npos) << r->missing[0].reason;
  ASSERT_EQ(r->results.size(), 1u);
  EXPECT_EQ(r->results[0].size(), 10u);
  for (const KeyedNeighbor& n : r->results[0]) EXPECT_NE(ShardOfId(n.id, 3), stopped) << n.id;
  EXPECT_LT(partial_ms, 3000);
  std::printf("partial reply with shard %u stopped: %lld ms (shard timeout 400 ms)\n", stopped,
              static_cast<long long>(partial_ms));

  // Not allowed: the reply fails, naming the shard.
  SearchOptions strict{.k = 10};
  strict.shard_timeout_ms = 400;
  auto failed = c->SearchWith("vec", query.data(), kDim, 1, strict);
  ASSERT_FALSE(failed.has_value());
  EXPECT_NE(failed.error().message().find(fmt::format("shard {}", stopped)), std::string::npos)
      << failed.error().ToString();
  // A plain search, under the server's --cluster-shard-timeout-ms (1500).
  t0 = Clock::now();
  auto plain = c->Search("vec", query, {.k = 10});
  const auto plain_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  ASSERT_FALSE(plain.has_value());
  EXPECT_NE(plain.error().message().find(fmt::format("shard {}", stopped)), std::string::npos)
      << plain.error().ToString();
  EXPECT_GE(plain_ms, 1400);
  EXPECT_LT(plain_ms, 6000);
  // strata-cli --allow-partial prints the hits and says which shard is missing.
  auto [rc2, out2] = RunCommand(fmt::format(
      "{} --port {} search vec --vector {} -k 5 --allow-partial --shard-timeout-ms 400",
      STRATA_CLI_BINARY, nodes[0]->port(), vec));
  EXPECT_EQ(rc2, 0) << out2;
  EXPECT_NE(out2.find(fmt::format("partial: shard {} missing", stopped)), std::string::npos) << out2;

  // Continued: whole replies again (the late answers on the old connection are skipped).
  nodes[2]->Signal(SIGCONT);
  auto whole = c->SearchWith("vec", query.data(), kDim, 1, strict);
  ASSERT_TRUE(whole.has_value()) << whole.error().ToString();
  EXPECT_FALSE(whole->partial());
  EXPECT_EQ(whole->results[0].front().id, 7u);
  auto again = c->Search("vec", query, {.k = 5});
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_EQ(*again, *searched);
}

TEST_F(ShardReplyTest, DropThroughAnyNodeRemovesThePlacementAndEveryShard) {
  Create("gone", 2, 2);
  auto c = Connect(1);
  ASSERT_NE(c, nullptr);
  std::vector<Record> records;
  for (uint64_t id = 0; id < 50; ++id) records.push_back({.id = id, .vector = VectorFor(id)});
  ASSERT_TRUE(c->Upsert("gone", kDim, records).has_value());
  auto shard_collections = [&] {
    size_t n = 0;
    for (int i = 0; i < 3; ++i) {
      auto ci = Connect(i);
      if (ci == nullptr) return size_t(1000);
      auto list = ci->ListCollections();
      if (!list) return size_t(1000);
      for (const auto& info : *list) n += info.spec.name.starts_with("gone__s");
    }
    return n;
  };
  ASSERT_EQ(shard_collections(), 4u);  // 2 shards x 2 replicas

  ASSERT_TRUE(c->DropCollection("gone").ok());
  // Once the drop has answered: no record, no placement, no report, no shard collection.
  EXPECT_FALSE(etcd->Get("/strata/t/collections/gone")->has_value());
  EXPECT_FALSE(etcd->Get("/strata/t/placement/gone")->has_value());
  EXPECT_TRUE(etcd->GetPrefix("/strata/t/replicas/gone/")->kvs.empty());
  EXPECT_EQ(shard_collections(), 0u);
  auto search = c->Search("gone", VectorFor(1), {.k = 1});
  ASSERT_FALSE(search.has_value());
  EXPECT_EQ(search.error().code(), StatusCode::kNotFound) << search.error().ToString();
  EXPECT_EQ(c->DropCollection("gone").code(), StatusCode::kNotFound);

  // The name may be used again: new, empty shards.
  Create("gone", 1, 2);
  auto info = c->DescribeCollection("gone");
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->num_vectors, 0u);
  EXPECT_EQ(shard_collections(), 2u);
}

// Nodes with one worker thread per pool. Every node routes its clients' requests to the
// other nodes' shard replicas, so with routed requests and the requests between nodes on the
// same pool, node A's worker waiting on B's shard replica while B's worker waits on A's is a
// wait that never ends (seen before the routed pools: 6 of 9 writers through 3 nodes timed
// out). Writers and searchers through every node at once must all be answered.
// What the threads of a load test failed at: how many, and the first (any thread).
class Failures {
 public:
  void Add(const std::string& what) {
    std::lock_guard lock(mu_);
    if (count_++ == 0) first_ = what;
  }
  int count() {
    std::lock_guard lock(mu_);
    return count_;
  }
  std::string first() {
    std::lock_guard lock(mu_);
    return first_;
  }

 private:
  std::mutex mu_;
  int count_ = 0;        // guarded by mu_
  std::string first_;    // guarded by mu_
};

class RoutedLoadTest : public ShardReplyTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster.Start(3, {"--workers", "1"}));
    ASSERT_TRUE(cluster.WaitForNodes(3, 10000));
  }
};

TEST_F(RoutedLoadTest, WritesAndSearchesThroughEveryNodeAtOnceAreAllAnswered) {
  Create("load", 4, 2);
  constexpr int kWritersPerNode = 2, kBatches = 15, kBatch = 20;
  Failures failures;
  auto fail = [&](const std::string& what) { failures.Add(what); };
  std::vector<std::thread> threads;
  for (int node = 0; node < 3; ++node) {
    for (int w = 0; w < kWritersPerNode; ++w) {
      threads.emplace_back([&, node, w] {
        // A deadlock shows as a reply that never comes: 20 s, then an I/O timeout.
        auto c = client::Client::Connect("127.0.0.1", nodes[node]->port(), {.io_timeout_ms = 20000});
        if (!c) return fail(c.error().ToString());
        for (int b = 0; b < kBatches; ++b) {
          std::vector<Record> records;
          for (int i = 0; i < kBatch; ++i) {
            const uint64_t id = uint64_t(((node * kWritersPerNode + w) * kBatches + b) * kBatch + i);
            records.push_back({.id = id, .vector = VectorFor(id)});
          }
          auto r = (*c)->Upsert("load", kDim, records);
          if (!r) return fail(fmt::format("writer {} through n{}: {}", w, node, r.error().ToString()));
        }
      });
    }
    threads.emplace_back([&, node] {
      auto c = client::Client::Connect("127.0.0.1", nodes[node]->port(), {.io_timeout_ms = 20000});
      if (!c) return fail(c.error().ToString());
      for (int q = 0; q < 30; ++q) {
        auto r = (*c)->Search("load", VectorFor(uint64_t(q)), {.k = 5});
        if (!r) return fail(fmt::format("searcher through n{}: {}", node, r.error().ToString()));
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.count(), 0) << failures.first();
  // Every write acknowledged is there, through any node.
  auto c = Connect(2);
  ASSERT_NE(c, nullptr);
  auto info = c->DescribeCollection("load");
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->num_vectors, uint64_t(3 * kWritersPerNode * kBatches * kBatch));
}

TEST_F(RoutedLoadTest, RacingWritesOfTheSameIdsAndKeysThroughEveryNodeLeaveTheReplicasEqual) {
  // Every write of a shard is ordered by its primary (docs/CLUSTER.md, "Writes through the
  // primary"): writers through different nodes upserting and deleting the same ids and keys at
  // once must leave both replicas of every shard with the same records. Before, each router
  // sent a write to both replicas itself, and two routers' writes of one id could reach the
  // replicas in different orders.
  Create("race", 2, 2);
  constexpr int kWritersPerNode = 2, kRounds = 25, kIds = 12, kKeys = 6;
  Failures failures;
  auto fail = [&](const std::string& what) { failures.Add(what); };
  std::vector<std::thread> threads;
  for (int node = 0; node < 3; ++node) {
    for (int w = 0; w < kWritersPerNode; ++w) {
      threads.emplace_back([&, node, w] {
        auto c = client::Client::Connect("127.0.0.1", nodes[node]->port(), {.io_timeout_ms = 20000});
        if (!c) return fail(c.error().ToString());
        const uint64_t writer = uint64_t(node * kWritersPerNode + w);
        for (int round = 0; round < kRounds; ++round) {
          std::vector<Record> records;
          for (int i = 0; i < kIds; ++i) {
            records.push_back({.id = uint64_t(i), .vector = VectorFor((writer * 100 + uint64_t(round)) * 100 + uint64_t(i))});
          }
          if (auto r = (*c)->Upsert("race", kDim, records); !r) {
            return fail(fmt::format("upsert through n{}: {}", node, r.error().ToString()));
          }
          std::vector<Record> keyed;
          for (int i = 0; i < kKeys; ++i) {
            keyed.push_back({.id = kInvalidVectorId,
                             .vector = VectorFor(~((writer * 100 + uint64_t(round)) * 100 + uint64_t(i))),
                             .key = "key" + std::to_string(i)});
          }
          if (auto r = (*c)->UpsertKeyed("race", kDim, keyed); !r) {
            return fail(fmt::format("keyed upsert through n{}: {}", node, r.error().ToString()));
          }
          if ((round + int(writer)) % 3 == 0) {
            const std::vector<VectorId> ids = {0, 1, 2, 3, 4, 5};
            if (auto r = (*c)->Delete("race", ids); !r) {
              return fail(fmt::format("delete through n{}: {}", node, r.error().ToString()));
            }
            const std::vector<std::string> keys = {"key0", "key1", "key2"};
            if (auto r = (*c)->DeleteKeyed("race", keys); !r) {
              return fail(fmt::format("keyed delete through n{}: {}", node, r.error().ToString()));
            }
          }
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.count(), 0) << failures.first();
  auto st = ReadClusterStatus(*etcd, "t");
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  for (const auto& c : st->collections) {
    if (c.record.name != "race") continue;
    for (const ShardStatus& s : c.shards) {
      const auto copies = cluster.ReplicaContents(s, "race");
      ASSERT_EQ(copies.size(), 2u);
      EXPECT_FALSE(copies[0].empty()) << "shard " << s.placement.shard;
      size_t differ = 0;
      for (const auto& [id, vector] : copies[0]) {
        auto other = copies[1].find(id);
        if (other == copies[1].end() || other->second != vector) ++differ;
      }
      for (const auto& [id, vector] : copies[1]) differ += copies[0].contains(id) ? 0 : 1;
      EXPECT_EQ(differ, 0u) << "shard " << s.placement.shard << ": " << differ << " of "
                            << copies[0].size() << " / " << copies[1].size()
                            << " records differ between its replicas";
    }
  }
}

}  // namespace
}  // namespace strata::cluster
