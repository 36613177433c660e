// Re-replication (docs/CLUSTER.md, model.h Rereplicate) with a real etcd and 4 real
// strata-server nodes: a 2-shard x 2-replica collection, one node holding a replica SIGKILLed
// under a writer; after --cluster-rereplicate-after-s (1 s here) the leader gives its shard to
// another node, which catches up from the in-sync peer and joins the in-sync set; the shard then
// has the same records on both replicas, every acknowledged write among them, and
// `strata-cli cluster status` lists the new replica. The killed node, restarted, stays out of
// the placement (its stale shard collection is left unused and logged).

#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
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
using testing::RunCommand;

constexpr uint32_t kDim = 16;

std::vector<float> VectorFor(uint64_t seed) { return test_vectors::SeededVector(seed, kDim); }

TEST(ClusterRereplicateTest, AKilledReplicaIsReplacedByAnotherNodeThatCatchesUp) {
  testing::TestCluster cluster;
  ASSERT_TRUE(cluster.Start(4, {"--lease-ttl", "2", "--cluster-rereplicate-after-s", "1"}));
  const std::string url = cluster.url();
  auto& etcd = cluster.etcd;
  auto& nodes = cluster.nodes;
  ASSERT_TRUE(cluster.WaitForNodes(4, 15000));
  ASSERT_TRUE(cluster.CreateCollection("vec", kDim, 2, 2));
  auto before = ReadClusterStatus(*etcd, "t");
  ASSERT_TRUE(before.has_value());
  const std::string leader = before->leader;
  // The victim: a node holding a replica, not the leader; the writer: a node that is neither.
  int victim = -1;
  uint32_t shard = 0;
  for (const ShardStatus& s : before->collections[0].shards) {
    for (const std::string& n : s.placement.replicas) {
      if (victim < 0 && n != leader) {
        victim = n[1] - '0';
        shard = s.placement.shard;
      }
    }
  }
  ASSERT_GE(victim, 0);
  const std::string gone = "n" + std::to_string(victim);
  const auto& held = before->collections[0].shards[shard].placement.replicas;
  ASSERT_EQ(held.size(), 2u);
  const std::string peer = held[0] == gone ? held[1] : held[0];
  // The node expected to get the replica: the least loaded node without one of this shard
  // (one replica each here: the smallest id).
  std::string expected;
  for (int i = 0; i < 4; ++i) {
    const std::string id = "n" + std::to_string(i);
    if (id != gone && std::find(held.begin(), held.end(), id) == held.end() &&
        (expected.empty() || id < expected)) {
      expected = id;
    }
  }
  const int writer_node = (leader[1] - '0') != victim ? leader[1] - '0' : (victim + 1) % 4;

  constexpr uint64_t kPreloaded = 1500;
  std::map<VectorId, uint64_t> acked;  // id -> the seed of its last acknowledged vector
  {
    auto c = client::Client::Connect("127.0.0.1", nodes[writer_node]->port());
    ASSERT_TRUE(c.has_value());
    std::vector<Record> rows;
    for (uint64_t id = 0; id < kPreloaded; ++id) rows.push_back({.id = id, .vector = VectorFor(id)});
    ASSERT_TRUE(Eventually([&] { return (*c)->Upsert("vec", kDim, rows).has_value(); }, 5000));
    for (uint64_t id = 0; id < kPreloaded; ++id) acked[id] = id;
  }

  std::atomic<bool> stop{false};
  std::mutex mu;  // guards `acked` and `acknowledged` while the writer runs
  size_t acknowledged = 0;
  std::thread writer([&] {
    auto c = client::Client::Connect("127.0.0.1", nodes[writer_node]->port());
    if (!c) return;
    for (uint64_t next = kPreloaded, generation = 1; !stop; ++generation) {
      std::vector<Record> batch;
      std::vector<std::pair<VectorId, uint64_t>> seeds;
      for (int i = 0; i < 8; ++i, ++next) seeds.push_back({next, next});
      for (int i = 0; i < 2; ++i) {
        const VectorId id = (generation * 7919 + uint64_t(i) * 104729) % next;
        seeds.push_back({id, 10000000 * generation + id});
      }
      for (const auto& [id, seed] : seeds) batch.push_back({.id = id, .vector = VectorFor(seed)});
      while (!stop) {  // a refused batch is retried as it was until it is acknowledged
        if ((*c)->Upsert("vec", kDim, batch).has_value()) {
          std::lock_guard lock(mu);
          for (const auto& [id, seed] : seeds) acked[id] = seed;
          ++acknowledged;
          break;
        }
        std::this_thread::sleep_for(milliseconds(20));
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Joiner() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } joiner{stop, writer};

  std::this_thread::sleep_for(milliseconds(500));
  nodes[victim]->Kill();
  const auto killed = Clock::now();
  // Its lease lapses (2 s), the shard runs on one replica for the grace period (1 s), then the
  // expected node joins it, catches up and is in sync: the shard has its 2 replicas again.
  auto full = [&] {
    auto st = ReadClusterStatus(*etcd, "t");
    if (!st || st->collections.empty()) return false;
    const ShardPlacement& p = st->collections[0].shards[shard].placement;
    return p.replicas.size() == 2 && p.in_sync.size() == 2 && p.catching_up.empty() &&
           std::find(p.replicas.begin(), p.replicas.end(), expected) != p.replicas.end();
  };
  ASSERT_TRUE(Eventually(full, 20000)) << ReadClusterStatus(*etcd, "t")->ToText() << nodes[0]->Log();
  const auto restored_ms =
      std::chrono::duration_cast<milliseconds>(Clock::now() - killed).count();
  std::this_thread::sleep_for(milliseconds(500));  // writes go on with the new replica in sync
  stop = true;
  writer.join();
  std::printf("re-replication: node %s SIGKILLed (lease TTL 2 s, rereplicate after 1 s); shard %u "
              "had 2 in-sync replicas again (%s caught up from %s) %lld ms after the kill; %zu "
              "write batches acknowledged meanwhile\n",
              gone.c_str(), shard, expected.c_str(), peer.c_str(),
              static_cast<long long>(restored_ms), acknowledged);
  EXPECT_GT(acknowledged, 10u);
  {
    // The new replica's own account of its catch-up, and the leader's of the replacement.
    std::istringstream log(nodes[expected[1] - '0']->Log() + nodes[leader[1] - '0']->Log());
    for (std::string line; std::getline(log, line);) {
      if (line.find("caught up") != std::string::npos || line.find(" replaces ") != std::string::npos) {
        std::printf("%s\n", line.c_str());
      }
    }
  }

  auto st = ReadClusterStatus(*etcd, "t");
  ASSERT_TRUE(st.has_value());
  for (const ShardStatus& s : st->collections[0].shards) {
    EXPECT_EQ(s.placement.replicas.size(), 2u);
    EXPECT_EQ(std::find(s.placement.replicas.begin(), s.placement.replicas.end(), gone),
              s.placement.replicas.end()) << "the killed node is still placed";
  }
  // Both replicas of every shard hold the same records; together, exactly the acknowledged
  // writes with their last vectors.
  std::map<VectorId, std::vector<float>> all;
  for (const ShardStatus& s : st->collections[0].shards) {
    const auto copies = cluster.ReplicaContents(s, "vec");
    ASSERT_EQ(copies.size(), 2u);
    EXPECT_TRUE(copies[0] == copies[1]) << "shard " << s.placement.shard << ": "
                                        << copies[0].size() << " vs " << copies[1].size();
    EXPECT_GT(copies[0].size(), 0u);
    all.insert(copies[0].begin(), copies[0].end());
  }
  EXPECT_EQ(all.size(), acked.size());
  size_t wrong = 0;
  for (const auto& [id, seed] : acked) {
    auto it = all.find(id);
    if (it == all.end() || it->second != VectorFor(seed)) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "acknowledged writes missing or not their last value";

  // strata-cli shows the new replica in the shard's replicas and in-sync set.
  auto [rc, out] = RunCommand(std::string(STRATA_CLI_BINARY) + " cluster --etcd " + url +
                              " --cluster t status");
  ASSERT_EQ(rc, 0) << out;
  const std::string line_start = fmt::format("  shard {:<3} replicas ", shard);
  const size_t at = out.find(line_start);
  ASSERT_NE(at, std::string::npos) << out;
  const std::string line = out.substr(at, out.find('\n', at) - at);
  EXPECT_NE(line.find(expected + "#"), std::string::npos) << line;
  EXPECT_NE(line.find(expected + "=ready/"), std::string::npos) << line;
  EXPECT_EQ(line.find(gone), std::string::npos) << line;

  // The killed node comes back: it gets no replica beyond `replicas`; its old shard collection
  // stays unused (logged).
  ASSERT_TRUE(cluster.RestartNode(victim).ok());
  ASSERT_TRUE(Eventually([&] {
    return nodes[victim]->Log().find("drop it by hand") != std::string::npos;
  }, 10000)) << nodes[victim]->Log();
  std::this_thread::sleep_for(milliseconds(1500));  // more than the grace period
  auto after = ReadClusterStatus(*etcd, "t");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->nodes.size(), 4u);
  for (const ShardStatus& s : after->collections[0].shards) {
    EXPECT_EQ(s.placement.replicas.size(), 2u);
    EXPECT_EQ(s.placement.in_sync.size(), 2u);
    EXPECT_EQ(std::find(s.placement.replicas.begin(), s.placement.replicas.end(), gone),
              s.placement.replicas.end()) << after->ToText();
    for (const ReplicaReport& r : s.reports) EXPECT_NE(r.node, gone) << after->ToText();
  }
}

}  // namespace
}  // namespace strata::cluster
