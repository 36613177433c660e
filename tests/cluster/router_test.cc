// ClusterRouter (cluster/router.h) over 3 real strata-server nodes and a real etcd: a 4 x 2
// collection written by id hash to every in-sync replica and searched across the shards, its
// recall against one node holding the same data; then a replica SIGKILLed: searches keep
// answering through the other replicas, writes to its shards fail until the leader has taken it
// out of the in-sync sets, and succeed after (the measured outages are printed).

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "client/client.h"
#include "cluster/admin.h"
#include "cluster/router.h"
#include "tests/cluster/cluster_fixture.h"

namespace strata::cluster {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using testing::Eventually;
using testing::ShardContents;

constexpr uint32_t kDim = 16;

std::vector<float> VectorFor(uint64_t seed) { return test_vectors::SeededVector(seed, kDim); }

std::vector<Record> Records(uint64_t from, uint64_t to) {
  std::vector<Record> out;
  for (uint64_t id = from; id < to; ++id) out.push_back({.id = id, .vector = VectorFor(id)});
  return out;
}

// recall@10 of `got` against the exact top 10 over ids [0, n).
double Recall(const std::vector<std::vector<Neighbor>>& got, const std::vector<float>& queries,
              uint64_t n) {
  size_t hit = 0, total = 0;
  for (size_t q = 0; q < got.size(); ++q) {
    std::vector<Neighbor> exact;
    for (uint64_t id = 0; id < n; ++id) {
      const std::vector<float> v = VectorFor(id);
      float d = 0;
      for (uint32_t i = 0; i < kDim; ++i) d += (v[i] - queries[q * kDim + i]) * (v[i] - queries[q * kDim + i]);
      exact.push_back({id, d});
    }
    std::partial_sort(exact.begin(), exact.begin() + 10, exact.end());
    std::set<VectorId> truth;
    for (int i = 0; i < 10; ++i) truth.insert(exact[i].id);
    for (const Neighbor& h : got[q]) hit += truth.count(h.id);
    total += 10;
  }
  return double(hit) / double(total);
}

// The keyed records of engine collection `local` on the node at `port` (as ShardContents):
// key -> id.
std::map<std::string, VectorId> ShardKeys(uint16_t port, const std::string& local) {
  std::map<std::string, VectorId> out;
  auto c = client::Client::Connect("127.0.0.1", port);
  EXPECT_TRUE(c.has_value());
  if (!c) return out;
  uint64_t cursor = 0;
  do {
    auto page = (*c)->ListKeys(local + "@0", cursor, 1000);
    EXPECT_TRUE(page.has_value()) << page.error().ToString();
    if (!page) return out;
    cursor = page->next_cursor;
    for (size_t i = 0; i < page->ids.size(); ++i) {
      if (!page->keys[i].empty()) out[page->keys[i]] = page->ids[i];
    }
  } while (cursor != 0);
  return out;
}

// Records by key, `seed` + i the vector of key prefix + i.
std::vector<Record> KeyedRecords(const std::string& prefix, int from, int to, uint64_t seed) {
  std::vector<Record> out;
  for (int i = from; i < to; ++i) {
    out.push_back({.id = kInvalidVectorId, .vector = VectorFor(seed + i), .key = prefix + std::to_string(i)});
  }
  return out;
}

// Whether every replica of every shard is in sync (none catching up).
bool AllInSync(EtcdClient& etcd) {
  auto st = ReadClusterStatus(etcd, "t");
  if (!st || st->collections.empty() || !st->collections[0].placement_epoch) return false;
  for (const ShardStatus& s : st->collections[0].shards) {
    if (s.placement.in_sync.size() != s.placement.replicas.size() || !s.placement.catching_up.empty()) {
      return false;
    }
  }
  return true;
}

class ClusterRouterTest : public ::testing::Test {
 protected:
  // etcd, `count` nodes (lease TTL 2 s) registered with a leader, and a collection "vec" of
  // `shards` x `replicas`, placed and ready.
  ::testing::AssertionResult StartWithVec(int count, uint32_t shards, uint32_t replicas,
                                          std::vector<std::string> flags = {}) {
    flags.insert(flags.begin(), {"--lease-ttl", "2"});
    if (auto r = cluster.Start(count, flags); !r) return r;
    if (!cluster.WaitForNodes(count, 10000)) {
      return ::testing::AssertionFailure() << count << " nodes not registered with a leader in 10 s";
    }
    return cluster.CreateCollection("vec", kDim, shards, replicas);
  }

  // A replica SIGKILLed under a writer and a reader, its shards written meanwhile (by id and by
  // key), restarted: it catches up (--cluster-catch-up `mode`) and rejoins; every replica then
  // holds exactly the acknowledged records.
  void KilledReplicaRestartsCatchesUpAndRejoinsUnderLoad(const std::string& mode);

  testing::TestCluster cluster;
  std::unique_ptr<EtcdClient>& etcd = cluster.etcd;
  std::vector<std::unique_ptr<testing::ServerProcess>>& nodes = cluster.nodes;
};

TEST(ClusterKeyedIdTest, NamesTheShardAndRefusesALocalIdBeyond40Bits) {
  EXPECT_EQ(*ClusterKeyedId(3, 42), 42u);  // ids by id: as they are
  EXPECT_EQ(*ClusterKeyedId(0, kKeyedIdBase), kKeyedIdBase);
  const VectorId id = *ClusterKeyedId(3, kKeyedIdBase + 5);
  EXPECT_EQ(id, kKeyedIdBase | (VectorId{3} << 40) | 5);
  EXPECT_TRUE(IsKeyedId(id));
  EXPECT_EQ(SplitClusterKeyedId(id), std::make_pair(3u, kKeyedIdBase + 5));
  const VectorId last = *ClusterKeyedId(kMaxShards - 1, kKeyedIdBase + (VectorId{1} << 40) - 1);
  EXPECT_EQ(SplitClusterKeyedId(last), std::make_pair(kMaxShards - 1, kKeyedIdBase + (VectorId{1} << 40) - 1));
  auto beyond = ClusterKeyedId(1, kKeyedIdBase + (VectorId{1} << 40));
  ASSERT_FALSE(beyond.has_value());
  EXPECT_EQ(beyond.error().code(), StatusCode::kOutOfRange);
  EXPECT_NE(beyond.error().message().find("shard 1"), std::string::npos) << beyond.error().ToString();
}

TEST_F(ClusterRouterTest, WritesReachEveryInSyncReplicaAndSearchesMergeTheShards) {
  ASSERT_TRUE(StartWithVec(3, 4, 2));
  const std::string url = cluster.url();
  // One node outside the cluster with the same data, for the recall comparison.
  auto single = testing::ServerProcess::Start(cluster.dir.path(), "single", {});
  ASSERT_TRUE(single.has_value()) << single.error().ToString();

  auto router = ClusterRouter::Open({.etcd = url, .cluster = "t"});
  ASSERT_TRUE(router.has_value()) << router.error().ToString();
  ASSERT_TRUE(Eventually([&] { return (*router)->Search("vec", VectorFor(1), {.k = 1}).has_value(); }, 5000));
  constexpr uint64_t kN = 2000;
  auto one = client::Client::Connect("127.0.0.1", (*single)->port());
  ASSERT_TRUE(one.has_value());
  ASSERT_TRUE((*one)->CreateCollection({.name = "vec", .dim = kDim}).ok());
  for (uint64_t from = 0; from < kN; from += 500) {
    const auto batch = Records(from, from + 500);
    auto n = (*router)->Upsert("vec", batch);
    ASSERT_TRUE(n.has_value()) << n.error().ToString();
    EXPECT_EQ(*n, 500u);
    ASSERT_TRUE((*one)->Upsert("vec", kDim, batch).has_value());
  }

  // Every replica of a shard holds the same rows; the shards hold every row once.
  auto status = ReadClusterStatus(*etcd, "t");
  ASSERT_TRUE(status.has_value());
  std::map<std::string, uint16_t> port_of;
  for (int i = 0; i < 3; ++i) port_of["n" + std::to_string(i)] = nodes[i]->port();
  size_t total = 0;
  for (const ShardStatus& s : status->collections[0].shards) {
    std::set<size_t> counts;
    for (const std::string& n : s.placement.replicas) {
      auto c = client::Client::Connect("127.0.0.1", port_of[n]);
      ASSERT_TRUE(c.has_value());
      auto info = (*c)->DescribeCollection(LocalShardName("vec", s.placement.shard));
      ASSERT_TRUE(info.has_value()) << info.error().ToString();
      counts.insert(info->num_vectors);
    }
    ASSERT_EQ(counts.size(), 1u) << "shard " << s.placement.shard;
    EXPECT_GT(*counts.begin(), kN / 8);  // the hash spreads the ids
    total += *counts.begin();
  }
  EXPECT_EQ(total, kN);

  // Searches: recall@10 at target 0.95 through the cluster, against one node.
  constexpr uint32_t kQueries = 50;
  std::vector<float> queries;
  for (uint32_t q = 0; q < kQueries; ++q) {
    const auto v = VectorFor(1000000 + q);
    queries.insert(queries.end(), v.begin(), v.end());
  }
  const SearchOptions options{.k = 10, .recall = 0.95};
  auto clustered = (*router)->SearchBatch("vec", queries.data(), kDim, kQueries, options);
  ASSERT_TRUE(clustered.has_value()) << clustered.error().ToString();
  auto alone = (*one)->SearchBatch("vec", queries.data(), kDim, kQueries, options);
  ASSERT_TRUE(alone.has_value()) << alone.error().ToString();
  const double r_cluster = Recall(*clustered, queries, kN);
  const double r_single = Recall(*alone, queries, kN);
  std::printf("recall@10 at target 0.95: cluster (4 shards x 2) %.4f, one node %.4f\n", r_cluster,
              r_single);
  EXPECT_GE(r_cluster, r_single - 0.01);
  for (const auto& hits : *clustered) {
    ASSERT_EQ(hits.size(), 10u);
    EXPECT_TRUE(std::is_sorted(hits.begin(), hits.end()));
  }

  // Per-shard metrics: what the router sent each shard replica, by operation and result.
  {
    const std::string metrics = (*router)->view().MetricsText();
    for (uint32_t shard = 0; shard < 4; ++shard) {
      EXPECT_NE(metrics.find(fmt::format("strata_cluster_shard_requests_total{{collection=\"vec\",shard=\"{}\",", shard)),
                std::string::npos) << metrics;
    }
    EXPECT_NE(metrics.find("op=\"search_batch\",result=\"ok\"}"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("op=\"upsert\",result=\"ok\"}"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("strata_cluster_node_requests_in_flight{node=\"n0\"} 0"), std::string::npos) << metrics;
  }

  // Any node routes: a plain client sends the cluster collection's requests to one node.
  for (int i = 0; i < 3; ++i) {
    auto c = client::Client::Connect("127.0.0.1", nodes[i]->port());
    ASSERT_TRUE(c.has_value());
    auto through_node = (*c)->SearchBatch("vec", queries.data(), kDim, kQueries, options);
    ASSERT_TRUE(through_node.has_value()) << through_node.error().ToString();
    EXPECT_EQ(*through_node, *clustered) << "through n" << i;
    auto one_hit = (*c)->Search("vec", VectorFor(42), {.k = 1});
    ASSERT_TRUE(one_hit.has_value()) << one_hit.error().ToString();
    ASSERT_EQ(one_hit->size(), 1u);
    EXPECT_EQ((*one_hit)[0].id, 42u);
    // A write through the node, then read back through another.
    const auto extra = Records(kN + 1000 + i, kN + 1001 + i);
    auto written = (*c)->Upsert("vec", kDim, extra);
    ASSERT_TRUE(written.has_value()) << written.error().ToString();
    EXPECT_EQ(*written, 1u);
    auto other = client::Client::Connect("127.0.0.1", nodes[(i + 1) % 3]->port());
    auto back = (*other)->Search("vec", extra[0].vector, {.k = 1});
    ASSERT_TRUE(back.has_value()) << back.error().ToString();
    EXPECT_EQ((*back)[0].id, extra[0].id);
    // Describe: the collection as one, its vectors summed over the shards.
    auto info = (*c)->DescribeCollection("vec");
    ASSERT_TRUE(info.has_value()) << info.error().ToString();
    EXPECT_EQ(info->spec.name, "vec");
    EXPECT_EQ(info->spec.dim, kDim);
    EXPECT_EQ(info->num_vectors, kN + i + 1);
    // Get by id, each id from its shard: in order, a missing id as nullopt.
    const VectorId ids[] = {42, kN + 5000, 7, extra[0].id};
    auto got = (*c)->Get("vec", ids);
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    ASSERT_EQ(got->size(), 4u);
    ASSERT_TRUE((*got)[0].has_value());
    EXPECT_EQ((*got)[0]->id, 42u);
    EXPECT_EQ((*got)[0]->vector, VectorFor(42));
    EXPECT_FALSE((*got)[1].has_value());
    ASSERT_TRUE((*got)[2].has_value());
    EXPECT_EQ((*got)[2]->vector, VectorFor(7));
    ASSERT_TRUE((*got)[3].has_value());
    EXPECT_EQ((*got)[3]->vector, extra[0].vector);
    // Not routed: the ids of keyed records are the cluster's to give.
    auto given = (*c)->Send(protocol::Request{
        protocol::Op::kUpsertKeyedIds,
        protocol::UpsertRequest{"vec", kDim, {{.id = kKeyedIdBase, .vector = VectorFor(1), .key = "a"}}}});
    ASSERT_TRUE(given.has_value());
    auto refused = (*c)->Receive();
    ASSERT_TRUE(refused.has_value());
    ASSERT_EQ(refused->second.op, protocol::Op::kError);
    EXPECT_NE(std::get<protocol::ErrorReply>(refused->second.body).message.find("not routed"), std::string::npos);
  }

  // Typed vectors (upsert_typed, search_typed: what strata-cli and Python send for uint8 or
  // float16 files) are widened by the node that routes them and found through another.
  {
    auto c = client::Client::Connect("127.0.0.1", nodes[0]->port());
    ASSERT_TRUE(c.has_value());
    std::vector<uint8_t> rows(2 * kDim);
    for (size_t j = 0; j < rows.size(); ++j) rows[j] = uint8_t(200 + (j * 7) % 50);
    const std::vector<Record> by_id = {{.id = kN + 9000}, {.id = kN + 9001}};
    auto typed = (*c)->UpsertTyped("vec", kDim, ElementType::kUint8, rows, by_id);
    ASSERT_TRUE(typed.has_value()) << typed.error().ToString();
    EXPECT_EQ(*typed, 2u);
    const std::vector<Record> by_key = {{.key = "typed-key"}};
    auto keyed = (*c)->UpsertTyped("vec", kDim, ElementType::kUint8, std::span(rows).subspan(kDim), by_key, true);
    ASSERT_TRUE(keyed.has_value()) << keyed.error().ToString();
    auto other = client::Client::Connect("127.0.0.1", nodes[1]->port());
    ASSERT_TRUE(other.has_value());
    auto found = (*other)->SearchTyped("vec", ElementType::kUint8, std::span(rows).first(kDim), kDim, 1, {.k = 1});
    ASSERT_TRUE(found.has_value()) << found.error().ToString();
    ASSERT_EQ(found->results.size(), 1u);
    ASSERT_EQ(found->results[0].size(), 1u);
    EXPECT_EQ(found->results[0][0].id, kN + 9000);
    const VectorId typed_id = kN + 9001;
    auto got = (*other)->Get("vec", std::span(&typed_id, 1));
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    ASSERT_TRUE((*got)[0].has_value());
    EXPECT_EQ((*got)[0]->vector, std::vector<float>(rows.begin() + kDim, rows.end()));
    auto by_key_back = (*other)->GetKeyed("vec", std::vector<std::string>{"typed-key"});
    ASSERT_TRUE(by_key_back.has_value()) << by_key_back.error().ToString();
    ASSERT_TRUE((*by_key_back)[0].has_value());
    EXPECT_EQ((*by_key_back)[0]->vector, std::vector<float>(rows.begin() + kDim, rows.end()));
    // A float16 infinity is refused by the routing node, naming the record.
    std::vector<uint8_t> inf(kDim * 2, 0);
    inf[1] = 0x7c;  // 0x7c00: +inf
    auto bad = (*c)->UpsertTyped("vec", kDim, ElementType::kFloat16, inf, std::vector<Record>{{.id = kN + 9002}});
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(bad.error().message().find("record 0"), std::string::npos) << bad.error().ToString();
    // Back to the collection the checks below expect.
    const VectorId typed_ids[] = {kN + 9000, kN + 9001};
    ASSERT_TRUE((*c)->Delete("vec", typed_ids).has_value());
    ASSERT_TRUE((*c)->DeleteKeyed("vec", std::vector<std::string>{"typed-key"}).has_value());
  }

  // Records by key, written through every node: each key lands in its shard (ShardOfKey) on
  // every replica, under one id everywhere.
  auto keys_by_replica = [&](const ShardStatus& s) {
    std::vector<std::map<std::string, VectorId>> out;
    for (const std::string& n : s.placement.replicas) {
      out.push_back(ShardKeys(port_of[n], LocalShardName("vec", s.placement.shard)));
    }
    return out;
  };
  {
    for (int i = 0; i < 3; ++i) {
      auto c = client::Client::Connect("127.0.0.1", nodes[i]->port());
      ASSERT_TRUE(c.has_value());
      auto n = (*c)->UpsertKeyed("vec", kDim, KeyedRecords("doc:", i * 100, i * 100 + 100, 9000000));
      ASSERT_TRUE(n.has_value()) << n.error().ToString();
      EXPECT_EQ(*n, 100u);
    }
    std::map<std::string, VectorId> ids;          // every key's id in its shard collection
    std::map<std::string, VectorId> cluster_ids;  // and through the cluster (ClusterKeyedId)
    std::map<VectorId, std::string> key_of;       // cluster id -> key
    std::map<VectorId, std::vector<std::string>> local_users;  // local id -> its keys, any shard
    for (const ShardStatus& s : status->collections[0].shards) {
      auto copies = keys_by_replica(s);
      ASSERT_EQ(copies.size(), 2u);
      EXPECT_EQ(copies[0], copies[1]) << "shard " << s.placement.shard;
      EXPECT_GT(copies[0].size(), 300u / 8);  // the hash spreads the keys
      for (const auto& [key, id] : copies[0]) {
        EXPECT_EQ(ShardOfKey(key, 4), s.placement.shard) << key;
        EXPECT_TRUE(IsKeyedId(id));
        EXPECT_TRUE(ids.emplace(key, id).second) << key << " in two shards";
        auto cluster_id = ClusterKeyedId(s.placement.shard, id);
        ASSERT_TRUE(cluster_id.has_value());
        EXPECT_EQ(SplitClusterKeyedId(*cluster_id), std::make_pair(s.placement.shard, id));
        cluster_ids[key] = *cluster_id;
        EXPECT_TRUE(key_of.emplace(*cluster_id, key).second) << key << ": cluster id not unique";
        local_users[id].push_back(key);
      }
    }
    ASSERT_EQ(ids.size(), 300u);
    ASSERT_EQ(key_of.size(), 300u);
    // list_keys through a node: every key once, under its cluster id, in pages that span shards.
    {
      auto c = client::Client::Connect("127.0.0.1", nodes[1]->port());
      ASSERT_TRUE(c.has_value());
      std::map<std::string, VectorId> listed;
      uint64_t cursor = 0;
      int pages = 0;
      do {
        auto page = (*c)->ListKeys("vec", cursor, 37);
        ASSERT_TRUE(page.has_value()) << page.error().ToString();
        ASSERT_EQ(page->keys.size(), page->ids.size());
        EXPECT_LE(page->keys.size(), 37u);
        for (size_t j = 0; j < page->keys.size(); ++j) {
          EXPECT_TRUE(listed.emplace(page->keys[j], page->ids[j]).second) << page->keys[j] << " listed twice";
        }
        cursor = page->next_cursor;
        ASSERT_LT(++pages, 100) << "the cursor does not advance";
      } while (cursor != 0);
      EXPECT_EQ(listed, cluster_ids);
      EXPECT_GE(pages, 300 / 37);
      auto bad = (*c)->ListKeys("vec", uint64_t{9} << kClusterKeyedLocalBits, 10);
      ASSERT_FALSE(bad.has_value());
      EXPECT_NE(bad.error().message().find("shard 9"), std::string::npos) << bad.error().ToString();
    }
    // Each shard collection counts its keyed ids from kKeyedIdBase: the same local id in
    // several shards, told apart only by the cluster id.
    ASSERT_GE(local_users[kKeyedIdBase].size(), 2u);
    // Written again through another node (new vectors): the ids stay, on every replica.
    auto c0 = client::Client::Connect("127.0.0.1", nodes[0]->port());
    auto c1 = client::Client::Connect("127.0.0.1", nodes[1]->port());
    auto c2 = client::Client::Connect("127.0.0.1", nodes[2]->port());
    ASSERT_TRUE(c0.has_value() && c1.has_value() && c2.has_value());
    ASSERT_TRUE((*c2)->UpsertKeyed("vec", kDim, KeyedRecords("doc:", 0, 50, 9500000)).has_value());
    std::map<std::string, VectorId> again;
    for (const ShardStatus& s : status->collections[0].shards) {
      auto copies = keys_by_replica(s);
      EXPECT_EQ(copies[0], copies[1]) << "shard " << s.placement.shard;
      again.insert(copies[0].begin(), copies[0].end());
    }
    EXPECT_EQ(again, ids);
    // Get and delete by a keyed id (the one get by key and search give) touch that record
    // only, though another shard has a key under the same local id.
    const std::string victim = local_users[kKeyedIdBase][1];
    const std::string bystander = local_users[kKeyedIdBase][0];
    {
      const std::string by_key[] = {victim, bystander, key_of[kKeyedIdBase]};
      auto want = (*c0)->GetKeyed("vec", by_key);
      ASSERT_TRUE(want.has_value()) << want.error().ToString();
      ASSERT_EQ(want->size(), 3u);
      for (size_t i = 0; i < 3; ++i) {
        ASSERT_TRUE((*want)[i].has_value()) << by_key[i];
        EXPECT_EQ((*want)[i]->id, cluster_ids[by_key[i]]) << by_key[i];
      }
      // The third: kKeyedIdBase as a cluster id, shard 0's first key.
      const VectorId by_id[] = {cluster_ids[victim], cluster_ids[bystander], ids[victim]};
      EXPECT_EQ(ids[victim], kKeyedIdBase);
      auto got = (*c1)->Get("vec", by_id);
      ASSERT_TRUE(got.has_value()) << got.error().ToString();
      ASSERT_EQ(got->size(), 3u);
      for (size_t i = 0; i < 3; ++i) {
        ASSERT_TRUE((*got)[i].has_value()) << by_key[i];
        EXPECT_EQ((*got)[i]->id, by_id[i]) << by_key[i];
        EXPECT_EQ((*got)[i]->vector, (*want)[i]->vector) << by_key[i];
      }
      const Record victim_record = *(*want)[0];
      const VectorId doomed_id[] = {cluster_ids[victim]};
      auto deleted = (*c2)->Delete("vec", doomed_id);
      ASSERT_TRUE(deleted.has_value()) << deleted.error().ToString();
      std::vector<std::string> all_keys;
      for (const auto& [key, id] : ids) all_keys.push_back(key);
      auto after = (*c0)->GetKeyed("vec", all_keys);
      ASSERT_TRUE(after.has_value()) << after.error().ToString();
      for (size_t i = 0; i < all_keys.size(); ++i) {
        EXPECT_EQ((*after)[i].has_value(), all_keys[i] != victim) << all_keys[i];
      }
      // Written again by key (as it was; a new id) for what follows.
      const Record back[] = {{.id = kInvalidVectorId, .vector = victim_record.vector, .key = victim}};
      ASSERT_TRUE((*c2)->UpsertKeyed("vec", kDim, back).has_value());
      const std::string victim_key[] = {victim};
      auto again_got = (*c0)->GetKeyed("vec", victim_key);
      ASSERT_TRUE(again_got.has_value() && (*again_got)[0].has_value());
      EXPECT_NE((*again_got)[0]->id, cluster_ids[victim]);
      cluster_ids[victim] = (*again_got)[0]->id;
    }
    // Get by key through another node: in order, each with its key; a missing key as nullopt.
    const std::string wanted[] = {"doc:3", "doc:nope", "doc:250"};
    auto got = (*c0)->GetKeyed("vec", wanted);
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    ASSERT_EQ(got->size(), 3u);
    ASSERT_TRUE((*got)[0].has_value());
    EXPECT_EQ((*got)[0]->key, "doc:3");
    EXPECT_EQ((*got)[0]->id, cluster_ids["doc:3"]);
    EXPECT_EQ((*got)[0]->vector, VectorFor(9500000 + 3));  // the second write's
    EXPECT_FALSE((*got)[1].has_value());
    ASSERT_TRUE((*got)[2].has_value());
    EXPECT_EQ((*got)[2]->vector, VectorFor(9000000 + 250));
    // A keyed search merges the shards; hits carry their keys (empty for records by id).
    const auto q = VectorFor(9000000 + 123);
    auto hits = (*c1)->SearchKeyed("vec", q.data(), kDim, 1, {.k = 5});
    ASSERT_TRUE(hits.has_value()) << hits.error().ToString();
    ASSERT_EQ(hits->size(), 1u);
    ASSERT_EQ((*hits)[0].size(), 5u);
    EXPECT_EQ((*hits)[0][0].key, "doc:123");
    EXPECT_EQ((*hits)[0][0].id, cluster_ids["doc:123"]);
    auto plain = (*c1)->Search("vec", q, {.k = 1});  // by id or not, ids are cluster ids
    ASSERT_TRUE(plain.has_value()) << plain.error().ToString();
    ASSERT_EQ(plain->size(), 1u);
    EXPECT_EQ((*plain)[0].id, cluster_ids["doc:123"]);
    const auto q42 = VectorFor(42);
    auto by_id = (*c1)->SearchKeyed("vec", q42.data(), kDim, 1, {.k = 1});
    ASSERT_TRUE(by_id.has_value()) << by_id.error().ToString();
    EXPECT_EQ((*by_id)[0][0].id, 42u);
    EXPECT_EQ((*by_id)[0][0].key, "");
    // Delete by key through another node: gone from every replica.
    std::vector<std::string> doomed;
    for (int i = 0; i < 300; ++i) doomed.push_back("doc:" + std::to_string(i));
    auto deleted = (*c1)->DeleteKeyed("vec", std::span(doomed).subspan(0, 10));
    ASSERT_TRUE(deleted.has_value()) << deleted.error().ToString();
    EXPECT_EQ(*deleted, 10u);
    auto after = (*c2)->GetKeyed("vec", std::span(doomed).subspan(0, 10));
    ASSERT_TRUE(after.has_value()) << after.error().ToString();
    for (const auto& r : *after) EXPECT_FALSE(r.has_value());
    size_t left = 0;
    for (const ShardStatus& s : status->collections[0].shards) {
      auto copies = keys_by_replica(s);
      EXPECT_EQ(copies[0], copies[1]) << "shard " << s.placement.shard;
      left += copies[0].size();
      for (int i = 0; i < 10; ++i) EXPECT_EQ(copies[0].count(doomed[i]), 0u);
    }
    EXPECT_EQ(left, 290u);
    // The rest go too (what follows counts the records by id).
    ASSERT_TRUE((*c0)->DeleteKeyed("vec", doomed).has_value());
    auto info = (*c0)->DescribeCollection("vec");
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->num_vectors, kN + 3);
  }
  // Delete by id through a node: gone from every replica of its shard.
  {
    auto c = client::Client::Connect("127.0.0.1", nodes[2]->port());
    ASSERT_TRUE(c.has_value());
    const VectorId doomed[] = {kN + 1000, kN + 1001};
    auto deleted = (*c)->Delete("vec", doomed);
    ASSERT_TRUE(deleted.has_value()) << deleted.error().ToString();
    EXPECT_EQ(*deleted, 2u);
    auto after_delete = (*c)->Get("vec", doomed);
    ASSERT_TRUE(after_delete.has_value()) << after_delete.error().ToString();
    EXPECT_FALSE((*after_delete)[0].has_value());
    EXPECT_FALSE((*after_delete)[1].has_value());
    for (VectorId id : doomed) {
      const uint32_t shard = ShardOfId(id, 4);
      for (const ShardStatus& s : status->collections[0].shards) {
        if (s.placement.shard != shard) continue;
        for (const std::string& n : s.placement.replicas) {
          EXPECT_EQ(ShardContents(port_of[n], LocalShardName("vec", shard)).count(id), 0u)
              << "id " << id << " on " << n;
        }
      }
    }
    auto info = (*c)->DescribeCollection("vec");
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->num_vectors, kN + 1);
    // Put them back, for what follows.
    ASSERT_TRUE((*c)->Upsert("vec", kDim, Records(kN + 1000, kN + 1002)).has_value());
    // Flush seals every shard replica's memory segment; compact merges them; the data stays.
    ASSERT_TRUE((*c)->Flush("vec").ok());
    for (const ShardStatus& s : status->collections[0].shards) {
      for (const std::string& n : s.placement.replicas) {
        auto rc = client::Client::Connect("127.0.0.1", port_of[n]);
        auto shard_info = (*rc)->DescribeCollection(LocalShardName("vec", s.placement.shard));
        ASSERT_TRUE(shard_info.has_value());
        EXPECT_GE(shard_info->sealed_segments, 1u) << "shard " << s.placement.shard << " on " << n;
      }
    }
    ASSERT_TRUE((*c)->Compact("vec").ok());
    auto after_compact = (*c)->DescribeCollection("vec");
    ASSERT_TRUE(after_compact.has_value());
    EXPECT_EQ(after_compact->num_vectors, kN + 3);
    // EXPLAIN through a plain client: one entry per shard (shard_reply_test has the rest;
    // dropping a cluster collection too).
    auto explained = (*c)->Explain("vec", VectorFor(3), {.k = 5});
    ASSERT_TRUE(explained.has_value()) << explained.error().ToString();
    EXPECT_EQ(explained->second.shards.size(), 4u);
    EXPECT_EQ(explained->first.front().id, 3u);
  }

  // SIGKILL a replica that is not the leader: writes to its shards are refused (not
  // acknowledged without it) until the leader takes it out of the in-sync sets.
  const std::string leader = status->leader;
  const int victim = leader == "n0" ? 1 : 0;
  const std::string gone = "n" + std::to_string(victim);
  nodes[victim]->Kill();
  const auto killed = Clock::now();
  // Records for every shard.
  const auto probe = Records(kN, kN + 64);
  auto refused = (*router)->Upsert("vec", probe);
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message().find(gone), std::string::npos) << refused.error().message();
  auto write_ok = Clock::time_point{};
  auto read_ok = Clock::time_point{};
  // Searches keep answering at once (the other in-sync replica of each shard).
  auto at_once = (*router)->SearchBatch("vec", queries.data(), kDim, kQueries, options);
  ASSERT_TRUE(at_once.has_value()) << at_once.error().ToString();
  ASSERT_TRUE(Eventually([&] {
    if (write_ok == Clock::time_point{} && (*router)->Upsert("vec", probe).has_value()) {
      write_ok = Clock::now();
    }
    if (read_ok == Clock::time_point{} &&
        (*router)->SearchBatch("vec", queries.data(), kDim, kQueries, options).has_value()) {
      read_ok = Clock::now();
    }
    return write_ok != Clock::time_point{} && read_ok != Clock::time_point{};
  }, 15000));
  std::printf("replica SIGKILLed (lease TTL 2 s): writes refused for %lld ms; searches kept "
              "answering (the first one right after the kill succeeded)\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(write_ok - killed).count()));
  // Nothing acknowledged was lost: every row is still found by id-exact search of its vector.
  auto after = (*router)->SearchBatch("vec", queries.data(), kDim, kQueries, options);
  ASSERT_TRUE(after.has_value()) << after.error().ToString();
  EXPECT_GE(Recall(*after, queries, kN + 64), r_single - 0.05);
  for (uint64_t id : {uint64_t{0}, uint64_t{777}, kN + 3}) {
    auto hit = (*router)->Search("vec", VectorFor(id), {.k = 1});
    ASSERT_TRUE(hit.has_value()) << hit.error().ToString();
    ASSERT_EQ(hit->size(), 1u);
    EXPECT_EQ((*hit)[0].id, id);
  }
}

// etcd stopped under reads and writes: searches through a node keep answering from its last view;
// writes go on while the nodes' leases hold, then are refused (a node that cannot renew its lease
// acknowledges nothing), and resume once etcd is back (leases survive an etcd restart).
TEST_F(ClusterRouterTest, EtcdDownKeepsReadsAndPausesWritesUntilItIsBack) {
  ASSERT_TRUE(StartWithVec(2, 2, 2));
  auto c = client::Client::Connect("127.0.0.1", nodes[0]->port());
  ASSERT_TRUE(c.has_value());
  ASSERT_TRUE(Eventually([&] { return (*c)->Upsert("vec", kDim, Records(0, 200)).has_value(); }, 5000));

  cluster.etcd_process->Stop();
  const auto stopped = Clock::now();
  // Reads: every search answers while etcd is down.
  uint64_t next = 200;
  auto write_refused = Clock::time_point{};
  while (Clock::now() - stopped < milliseconds(4000)) {
    auto hit = (*c)->Search("vec", VectorFor(7), {.k = 1});
    ASSERT_TRUE(hit.has_value()) << hit.error().ToString();
    EXPECT_EQ((*hit)[0].id, 7u);
    if (write_refused == Clock::time_point{}) {
      auto w = (*c)->Upsert("vec", kDim, Records(next, next + 1));
      if (w.has_value()) {
        ++next;
      } else {
        EXPECT_NE(w.error().message().find("lease"), std::string::npos) << w.error().message();
        write_refused = Clock::now();
      }
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_NE(write_refused, Clock::time_point{}) << "writes went on without etcd past the lease";
  EXPECT_LE(write_refused - stopped, milliseconds(3000));  // within the lease TTL (+ margin)

  ASSERT_TRUE(cluster.etcd_process->Restart().ok());
  const auto restarted = Clock::now();
  ASSERT_TRUE(Eventually([&] { return (*c)->Upsert("vec", kDim, Records(next, next + 1)).has_value(); },
                         10000));
  std::printf("etcd stopped: writes went on for %lld ms (lease TTL 2 s), then were refused; "
              "resumed %lld ms after etcd restarted; searches never failed\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(write_refused - stopped).count()),
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(Clock::now() - restarted).count()));
  // Every acknowledged write is there.
  auto info = (*c)->DescribeCollection("vec");
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->num_vectors, next + 1);
}

// A node stopped (SIGSTOP) past its lease, then continued: the leader (another node, if the
// stopped one led) takes it out of the in-sync sets; meanwhile writes through the other nodes
// go on; once continued it acknowledges no write before it has registered again, and then
// writes only to the replicas in sync -- never to its own, stale copy (no split brain).
TEST_F(ClusterRouterTest, AStoppedNodeLosesItsShardsAndNeverAcknowledgesForThem) {
  ASSERT_TRUE(StartWithVec(3, 2, 3));  // every node holds every shard
  // The stopped node is the leader: its successor must take over the placement too.
  const std::string leader = ReadClusterStatus(*etcd, "t")->leader;
  const int stopped = leader[1] - '0';
  const int other = (stopped + 1) % 3;
  auto c_stopped = client::Client::Connect("127.0.0.1", nodes[stopped]->port());
  auto c_other = client::Client::Connect("127.0.0.1", nodes[other]->port());
  ASSERT_TRUE(c_stopped.has_value() && c_other.has_value());
  ASSERT_TRUE(Eventually([&] { return (*c_other)->Upsert("vec", kDim, Records(0, 100)).has_value(); }, 5000));

  nodes[stopped]->Signal(SIGSTOP);
  const std::string gone = "n" + std::to_string(stopped);
  auto out_of_sync = [&] {
    auto st = ReadClusterStatus(*etcd, "t");
    if (!st || st->collections.empty() || st->leader.empty() || st->leader == gone) return false;
    for (const ShardStatus& s : st->collections[0].shards) {
      for (const ReplicaRef& r : s.placement.in_sync) {
        if (r.node == gone) return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(Eventually(out_of_sync, 15000));
  // Writes through the others go on without it.
  ASSERT_TRUE(Eventually([&] { return (*c_other)->Upsert("vec", kDim, Records(100, 200)).has_value(); }, 5000));

  nodes[stopped]->Signal(SIGCONT);
  // Whatever it acknowledges from now on is on the in-sync replicas.
  uint64_t next = 200;
  const auto until = Clock::now() + milliseconds(5000);
  int acknowledged = 0;
  while (Clock::now() < until) {
    auto w = (*c_stopped)->Upsert("vec", kDim, Records(next, next + 1));
    if (w.has_value()) {
      ++acknowledged;
      auto found = (*c_other)->Search("vec", VectorFor(next), {.k = 1});
      ASSERT_TRUE(found.has_value()) << found.error().ToString();
      ASSERT_EQ((*found)[0].id, next) << "an acknowledged write is missing from the in-sync replicas";
      ++next;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_GT(acknowledged, 0) << "the continued node never routed a write again";
  // Registered again, it catches up from an in-sync peer and rejoins every in-sync set; then
  // its copy of each shard holds exactly what the others hold.
  ASSERT_TRUE(Eventually([&] { return AllInSync(*etcd); }, 20000));
  for (uint32_t s = 0; s < 2; ++s) {
    const auto mine = ShardContents(nodes[stopped]->port(), LocalShardName("vec", s));
    const auto theirs = ShardContents(nodes[other]->port(), LocalShardName("vec", s));
    EXPECT_GT(mine.size(), 0u);
    EXPECT_TRUE(mine == theirs) << "shard " << s << ": " << mine.size() << " vs " << theirs.size();
  }
  auto info = (*c_other)->DescribeCollection("vec");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->num_vectors, next);
}

// A replica SIGKILLed under concurrent reads and writes through the other nodes: searches keep
// answering, writes to its shards pause until the leader has taken it out of the in-sync sets,
// no acknowledged write is lost; restarted, it catches up from the in-sync replicas while the
// writes go on and rejoins; then every replica of every shard holds the same records, and
// exactly the acknowledged ones. The outages and the catch-up time are printed.
void ClusterRouterTest::KilledReplicaRestartsCatchesUpAndRejoinsUnderLoad(const std::string& mode) {
  ASSERT_TRUE(StartWithVec(3, 4, 2, {"--cluster-catch-up", mode}));
  const std::string leader = ReadClusterStatus(*etcd, "t")->leader;
  const int victim = leader == "n0" ? 1 : 0;
  const int writer_node = leader[1] - '0';
  const int reader_node = 3 - victim - writer_node;
  // What was acknowledged: id -> the seed of its vector (VectorFor). Ids are written again
  // with new vectors too; a failed batch is retried as it was until it is acknowledged, so
  // the last acknowledged vector of each id is what every replica must end with.
  std::map<VectorId, uint64_t> acked;
  constexpr uint64_t kPreloaded = 2000;
  {
    auto c = client::Client::Connect("127.0.0.1", nodes[writer_node]->port());
    ASSERT_TRUE(c.has_value());
    ASSERT_TRUE(Eventually([&] { return (*c)->Upsert("vec", kDim, Records(0, 1)).has_value(); }, 5000));
    ASSERT_TRUE((*c)->Upsert("vec", kDim, Records(0, kPreloaded)).has_value());
    for (uint64_t id = 0; id < kPreloaded; ++id) acked[id] = id;
    // Records by key too: their catch-up keeps their ids and keys.
    ASSERT_TRUE((*c)->UpsertKeyed("vec", kDim, KeyedRecords("k", 0, 100, 7000000)).has_value());
  }
  std::map<std::string, uint64_t> acked_keys;  // key -> the seed of its vector
  for (int i = 0; i < 100; ++i) acked_keys["k" + std::to_string(i)] = 7000000 + i;
  // A write the cluster never acknowledged, on the victim's copy of a shard only: a key under
  // an id of its own. Its catch-up must give the key the in-sync peer's id.
  std::string stray;
  {
    auto st = ReadClusterStatus(*etcd, "t");
    ASSERT_TRUE(st.has_value());
    const std::string victim_id = "n" + std::to_string(victim);
    for (int i = 0; stray.empty(); ++i) {
      const std::string key = "stray" + std::to_string(i);
      for (const ShardStatus& s : st->collections[0].shards) {
        const auto& replicas = s.placement.replicas;
        if (s.placement.shard == ShardOfKey(key, 4) &&
            std::find(replicas.begin(), replicas.end(), victim_id) != replicas.end()) {
          stray = key;
        }
      }
    }
    auto c = client::Client::Connect("127.0.0.1", nodes[victim]->port());
    ASSERT_TRUE(c.has_value());
    ASSERT_TRUE((*c)->Send(protocol::Request{
                            protocol::Op::kUpsertKeyedIds,
                            protocol::UpsertRequest{LocalShardName("vec", ShardOfKey(stray, 4)), kDim,
                                                    {{.id = kKeyedIdBase + 1000000, .vector = VectorFor(1), .key = stray}}}})
                    .has_value());
    auto reply = (*c)->Receive();
    ASSERT_TRUE(reply.has_value());
    ASSERT_EQ(reply->second.op, protocol::Op::kUpsertKeyedIds)
        << std::get<protocol::ErrorReply>(reply->second.body).message;
  }

  std::atomic<bool> stop{false};
  std::mutex mu;  // guards the figures below and `acked` while the threads run
  using TP = Clock::time_point;
  TP killed{}, restarted{};
  std::vector<TP> write_ok, read_ok;
  uint64_t read_errors = 0, write_errors = 0;
  std::string last_read_error;
  std::thread writer([&] {
    auto c = client::Client::Connect("127.0.0.1", nodes[writer_node]->port());
    ASSERT_TRUE(c.has_value());
    uint64_t next_id = kPreloaded, generation = 1;
    while (!stop) {
      // 16 new ids and 4 ids written again with new vectors.
      std::vector<Record> batch;
      std::vector<std::pair<VectorId, uint64_t>> seeds;
      for (int i = 0; i < 16; ++i, ++next_id) seeds.push_back({next_id, next_id});
      for (int i = 0; i < 4; ++i) {
        const VectorId id = (generation * 7919 + uint64_t(i) * 104729) % next_id;
        seeds.push_back({id, 10000000 * generation + id});
      }
      ++generation;
      for (const auto& [id, seed] : seeds) batch.push_back({.id = id, .vector = VectorFor(seed)});
      while (!stop) {
        auto w = (*c)->Upsert("vec", kDim, batch);
        std::lock_guard lock(mu);
        if (w.has_value()) {
          write_ok.push_back(Clock::now());
          for (const auto& [id, seed] : seeds) acked[id] = seed;
          break;
        }
        ++write_errors;
        std::this_thread::sleep_for(milliseconds(20));
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
  });
  std::thread reader([&] {
    auto c = client::Client::Connect("127.0.0.1", nodes[reader_node]->port());
    ASSERT_TRUE(c.has_value());
    for (uint64_t q = 0; !stop; ++q) {
      auto hits = (*c)->Search("vec", VectorFor(q % 1000 + 5000000), {.k = 10});
      std::lock_guard lock(mu);
      if (hits.has_value() && hits->size() == 10) {
        read_ok.push_back(Clock::now());
      } else {
        ++read_errors;
        last_read_error = hits.has_value() ? "short reply" : hits.error().ToString();
      }
    }
  });
  // The threads stop and are joined on every way out (a failed ASSERT returns early).
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& a;
    std::thread& b;
    ~Joiner() {
      stop = true;
      if (a.joinable()) a.join();
      if (b.joinable()) b.join();
    }
  } joiner{stop, writer, reader};
  // The longest time without a success in [from, to) (from the first success on).
  auto longest_gap = [&](const std::vector<TP>& oks, TP from, TP to) {
    std::lock_guard lock(mu);
    TP prev = from;
    Clock::duration gap{};
    for (TP t : oks) {
      if (t < from) continue;
      if (t > to) break;
      gap = std::max(gap, t - prev);
      prev = t;
    }
    gap = std::max(gap, to - prev);
    return std::chrono::duration_cast<milliseconds>(gap).count();
  };
  std::this_thread::sleep_for(milliseconds(1000));
  nodes[victim]->Kill();
  killed = Clock::now();
  const std::string gone = "n" + std::to_string(victim);
  // Its lease lapses and the leader takes it out of the in-sync sets.
  ASSERT_TRUE(Eventually([&] { return cluster.OutOfEveryInSyncSet(gone); }, 15000));
  std::this_thread::sleep_for(milliseconds(1000));  // writes go on without it
  {
    // Keyed writes it misses: new keys, keys written again, keys deleted.
    auto c = client::Client::Connect("127.0.0.1", nodes[writer_node]->port());
    ASSERT_TRUE(c.has_value());
    auto retried = [&](auto write) { return Eventually([&] { return write().has_value(); }, 5000); };
    ASSERT_TRUE(retried([&] { return (*c)->UpsertKeyed("vec", kDim, KeyedRecords("k", 100, 150, 7000000)); }));
    ASSERT_TRUE(retried([&] { return (*c)->UpsertKeyed("vec", kDim, KeyedRecords("k", 0, 20, 8000000)); }));
    std::vector<std::string> doomed;
    for (int i = 20; i < 30; ++i) doomed.push_back("k" + std::to_string(i));
    ASSERT_TRUE(retried([&] { return (*c)->DeleteKeyed("vec", doomed); }));
    const std::vector<Record> strays{{.id = kInvalidVectorId, .vector = VectorFor(6000000), .key = stray}};
    ASSERT_TRUE(retried([&] { return (*c)->UpsertKeyed("vec", kDim, strays); }));
    acked_keys[stray] = 6000000;
    for (int i = 100; i < 150; ++i) acked_keys["k" + std::to_string(i)] = 7000000 + i;
    for (int i = 0; i < 20; ++i) acked_keys["k" + std::to_string(i)] = 8000000 + i;
    for (const std::string& k : doomed) acked_keys.erase(k);
  }
  const TP before_restart = Clock::now();
  ASSERT_TRUE(cluster.RestartNode(victim).ok());
  restarted = Clock::now();
  ASSERT_TRUE(Eventually([&] { return AllInSync(*etcd); }, 30000)) << nodes[victim]->Log();
  const TP rejoined = Clock::now();
  {
    // The node's own account of each catch-up (by files: files, bytes, records carried over;
    // by records: copied / already written live / deleted), in the mode asked for.
    std::istringstream log(nodes[victim]->Log());
    int caught_up = 0;
    for (std::string line; std::getline(log, line);) {
      if (line.find("caught up") == std::string::npos) continue;
      std::printf("%s\n", line.c_str());
      ++caught_up;
      EXPECT_NE(line.find(mode == "files" ? " files, " : " ids listed, "), std::string::npos) << line;
    }
    EXPECT_GT(caught_up, 0) << "no catch-up logged";
  }
  std::this_thread::sleep_for(milliseconds(1000));  // writes go on with it back
  stop = true;
  writer.join();
  reader.join();
  const TP end = Clock::now();

  const auto write_outage = longest_gap(write_ok, killed - milliseconds(1), before_restart);
  const auto write_gap_catch_up = longest_gap(write_ok, restarted, end);
  const auto read_outage = longest_gap(read_ok, killed - milliseconds(1), end);
  const auto catch_up_ms = std::chrono::duration_cast<milliseconds>(rejoined - restarted).count();
  std::printf("replica SIGKILLed under load (lease TTL 2 s): writes paused %lld ms, reads' longest "
              "gap %lld ms (%llu failed searches, %llu refused write tries); restarted, it caught "
              "up and rejoined every in-sync set in %lld ms, writes' longest gap meanwhile %lld ms; "
              "%zu writes and %zu searches acknowledged\n",
              static_cast<long long>(write_outage), static_cast<long long>(read_outage),
              static_cast<unsigned long long>(read_errors),
              static_cast<unsigned long long>(write_errors), static_cast<long long>(catch_up_ms),
              static_cast<long long>(write_gap_catch_up), write_ok.size(), read_ok.size());
  EXPECT_EQ(read_errors, 0u) << last_read_error;
  EXPECT_LT(write_outage, 10000);
  EXPECT_LT(write_gap_catch_up, 5000);
  EXPECT_GT(write_ok.size(), 20u);

  // Every replica of every shard holds the same records, exactly the acknowledged ones.
  auto st = ReadClusterStatus(*etcd, "t");
  ASSERT_TRUE(st.has_value());
  std::map<VectorId, std::vector<float>> all;
  for (const ShardStatus& s : st->collections[0].shards) {
    const auto copies = cluster.ReplicaContents(s, "vec");
    ASSERT_EQ(copies.size(), 2u);
    EXPECT_TRUE(copies[0] == copies[1]) << "shard " << s.placement.shard << ": "
                                        << copies[0].size() << " vs " << copies[1].size();
    all.insert(copies[0].begin(), copies[0].end());
  }
  std::erase_if(all, [](const auto& kv) { return IsKeyedId(kv.first); });  // checked below
  EXPECT_EQ(all.size(), acked.size());
  // The keyed records: the same keys under the same ids on both replicas of each shard,
  // exactly the acknowledged keys with their last vectors.
  std::map<std::string, VectorId> keys;
  for (const ShardStatus& s : st->collections[0].shards) {
    std::vector<std::map<std::string, VectorId>> copies;
    for (const std::string& n : s.placement.replicas) {
      copies.push_back(ShardKeys(nodes[n[1] - '0']->port(), LocalShardName("vec", s.placement.shard)));
    }
    EXPECT_EQ(copies[0], copies[1]) << "shard " << s.placement.shard;
    for (const auto& [key, id] : copies[0]) {
      auto cluster_id = ClusterKeyedId(s.placement.shard, id);  // as the cluster gives it
      ASSERT_TRUE(cluster_id.has_value());
      keys[key] = *cluster_id;
    }
  }
  EXPECT_EQ(keys.size(), acked_keys.size());
  {
    auto c = client::Client::Connect("127.0.0.1", nodes[reader_node]->port());
    ASSERT_TRUE(c.has_value());
    std::vector<std::string> names;
    for (const auto& [key, seed] : acked_keys) names.push_back(key);
    auto got = (*c)->GetKeyed("vec", names);
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    size_t wrong_keys = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      const auto& r = (*got)[i];
      if (!r || r->vector != VectorFor(acked_keys[names[i]]) || r->id != keys[names[i]]) ++wrong_keys;
    }
    EXPECT_EQ(wrong_keys, 0u) << "acknowledged keyed writes missing, not the last value or not under one id";
  }
  size_t wrong = 0;
  for (const auto& [id, seed] : acked) {
    auto it = all.find(id);
    if (it == all.end() || it->second != VectorFor(seed)) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "acknowledged writes missing or not the last value";
}

TEST_F(ClusterRouterTest, AKilledReplicaRestartsCatchesUpFromFilesAndRejoinsUnderLoad) {
  KilledReplicaRestartsCatchesUpAndRejoinsUnderLoad("files");
}

TEST_F(ClusterRouterTest, AKilledReplicaRestartsCatchesUpRecordByRecordAndRejoinsUnderLoad) {
  KilledReplicaRestartsCatchesUpAndRejoinsUnderLoad("records");
}

}  // namespace
}  // namespace strata::cluster
