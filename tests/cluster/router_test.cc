// ClusterRouter (cluster/router.h) over 3 real strata-server nodes and a real etcd: a 4 x 2
// collection written by id hash to every in-sync replica and searched across the shards, its
// recall against one node holding the same data; then a replica SIGKILLed: searches keep
// answering through the other replicas, writes to its shards fail until the leader has taken it
// out of the in-sync sets, and succeed after (the measured outages are printed).

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "client/client.h"
#include "cluster/admin.h"
#include "cluster/router.h"
#include "tests/cluster/etcd_process.h"
#include "tests/cluster/server_process.h"

namespace strata::cluster {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kDim = 16;

std::vector<float> VectorFor(uint64_t seed) {
  std::vector<float> v(kDim);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  for (uint32_t i = 0; i < kDim; ++i) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    v[i] = float(double(z >> 11) / double(1ull << 53) * 2.0 - 1.0);
  }
  return v;
}

template <typename Pred>
bool Eventually(Pred pred, uint32_t timeout_ms) {
  const auto until = Clock::now() + milliseconds(timeout_ms);
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return pred();
}

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

TEST(ClusterRouterTest, WritesReachEveryInSyncReplicaAndSearchesMergeTheShards) {
  testing::TempDir dir;
  auto etcd_process = testing::EtcdProcess::Start();
  ASSERT_TRUE(etcd_process.has_value()) << etcd_process.error().ToString();
  const std::string url = (*etcd_process)->url();
  auto etcd = std::move(*EtcdClient::Create(url));
  std::vector<std::unique_ptr<testing::ServerProcess>> nodes;
  for (int i = 0; i < 3; ++i) {
    const std::string id = "n" + std::to_string(i);
    auto p = testing::ServerProcess::Start(
        dir.path(), id,
        {"--cluster-etcd", url, "--node-id", id, "--advertise", "127.0.0.1", "--cluster", "t",
         "--lease-ttl", "2"});
    ASSERT_TRUE(p.has_value()) << p.error().ToString();
    nodes.push_back(std::move(*p));
  }
  // One node outside the cluster with the same data, for the recall comparison.
  auto single = testing::ServerProcess::Start(dir.path(), "single", {});
  ASSERT_TRUE(single.has_value()) << single.error().ToString();

  CollectionRecord record;
  record.name = "vec";
  record.dim = kDim;
  record.shards = 4;
  record.replicas = 2;
  ASSERT_TRUE(Eventually([&] {
    auto st = ReadClusterStatus(*etcd, "t");
    return st && st->nodes.size() == 3 && !st->leader.empty();
  }, 10000));
  ASSERT_TRUE(CreateClusterCollection(*etcd, "t", record).ok());
  ASSERT_TRUE(Eventually([&] {
    auto st = ReadClusterStatus(*etcd, "t");
    return st && st->collections.size() == 1 && st->AllReady();
  }, 15000));

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
    // Not routed yet: refused with a clear error, not sent to the engine.
    const VectorId ids[] = {1};
    auto get = (*c)->Get("vec", ids);
    ASSERT_FALSE(get.has_value());
    EXPECT_EQ(get.error().code(), StatusCode::kUnimplemented) << get.error().ToString();
    EXPECT_NE(get.error().message().find("not routed yet"), std::string::npos);
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
TEST(ClusterRouterTest, EtcdDownKeepsReadsAndPausesWritesUntilItIsBack) {
  testing::TempDir dir;
  auto etcd_process = testing::EtcdProcess::Start();
  ASSERT_TRUE(etcd_process.has_value()) << etcd_process.error().ToString();
  const std::string url = (*etcd_process)->url();
  auto etcd = std::move(*EtcdClient::Create(url));
  std::vector<std::unique_ptr<testing::ServerProcess>> nodes;
  for (int i = 0; i < 2; ++i) {
    const std::string id = "n" + std::to_string(i);
    auto p = testing::ServerProcess::Start(
        dir.path(), id,
        {"--cluster-etcd", url, "--node-id", id, "--advertise", "127.0.0.1", "--cluster", "t",
         "--lease-ttl", "2"});
    ASSERT_TRUE(p.has_value()) << p.error().ToString();
    nodes.push_back(std::move(*p));
  }
  CollectionRecord record;
  record.name = "vec";
  record.dim = kDim;
  record.shards = 2;
  record.replicas = 2;
  ASSERT_TRUE(Eventually([&] {
    auto st = ReadClusterStatus(*etcd, "t");
    return st && st->nodes.size() == 2 && !st->leader.empty();
  }, 10000));
  ASSERT_TRUE(CreateClusterCollection(*etcd, "t", record).ok());
  ASSERT_TRUE(Eventually([&] {
    auto st = ReadClusterStatus(*etcd, "t");
    return st && st->collections.size() == 1 && st->AllReady();
  }, 15000));
  auto c = client::Client::Connect("127.0.0.1", nodes[0]->port());
  ASSERT_TRUE(c.has_value());
  ASSERT_TRUE(Eventually([&] { return (*c)->Upsert("vec", kDim, Records(0, 200)).has_value(); }, 5000));

  (*etcd_process)->Stop();
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

  ASSERT_TRUE((*etcd_process)->Restart().ok());
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
TEST(ClusterRouterTest, AStoppedNodeLosesItsShardsAndNeverAcknowledgesForThem) {
  testing::TempDir dir;
  auto etcd_process = testing::EtcdProcess::Start();
  ASSERT_TRUE(etcd_process.has_value()) << etcd_process.error().ToString();
  const std::string url = (*etcd_process)->url();
  auto etcd = std::move(*EtcdClient::Create(url));
  std::vector<std::unique_ptr<testing::ServerProcess>> nodes;
  for (int i = 0; i < 3; ++i) {
    const std::string id = "n" + std::to_string(i);
    auto p = testing::ServerProcess::Start(
        dir.path(), id,
        {"--cluster-etcd", url, "--node-id", id, "--advertise", "127.0.0.1", "--cluster", "t",
         "--lease-ttl", "2"});
    ASSERT_TRUE(p.has_value()) << p.error().ToString();
    nodes.push_back(std::move(*p));
  }
  // Every node holds every shard.
  CollectionRecord record;
  record.name = "vec";
  record.dim = kDim;
  record.shards = 2;
  record.replicas = 3;
  ASSERT_TRUE(Eventually([&] {
    auto st = ReadClusterStatus(*etcd, "t");
    return st && st->nodes.size() == 3 && !st->leader.empty();
  }, 10000));
  ASSERT_TRUE(CreateClusterCollection(*etcd, "t", record).ok());
  ASSERT_TRUE(Eventually([&] {
    auto st = ReadClusterStatus(*etcd, "t");
    return st && st->collections.size() == 1 && st->AllReady();
  }, 15000));
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
  // It stays out of the in-sync sets (no catch-up yet), and its own copy never got the writes
  // made while it was out.
  EXPECT_TRUE(out_of_sync());
  for (uint32_t s = 0; s < 2; ++s) {
    auto mine = (*c_stopped)->DescribeCollection(LocalShardName("vec", s));
    auto theirs = (*c_other)->DescribeCollection(LocalShardName("vec", s));
    ASSERT_TRUE(mine.has_value() && theirs.has_value());
    EXPECT_LT(mine->num_vectors, theirs->num_vectors) << "shard " << s;
  }
  auto info = (*c_other)->DescribeCollection("vec");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->num_vectors, next);
}

}  // namespace
}  // namespace strata::cluster
