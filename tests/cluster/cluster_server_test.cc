// strata-server processes joining a cluster (--cluster-etcd) through a real etcd, all on
// loopback: registration, one leader, leaving on SIGTERM, a SIGKILLed node lapsing and the
// leadership moving, a SIGSTOPped node registering again, and the flags' checks.

#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "client/client.h"
#include "cluster/admin.h"
#include "cluster/etcd_client.h"
#include "cluster/keys.h"
#include "cluster/node.h"
#include "tests/cluster/cluster_fixture.h"

namespace strata::cluster {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using testing::Eventually;
using testing::RunCommand;

class ClusterServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster.StartEtcd()); }
  std::vector<std::string> ClusterArgs(const std::string& id, int ttl_s) const {
    return cluster.NodeArgs(id, {"--lease-ttl", std::to_string(ttl_s)});
  }
  // The registered nodes: id -> record.
  std::map<std::string, NodeRecord> Nodes() {
    std::map<std::string, NodeRecord> out;
    auto range = etcd->GetPrefix("/strata/t/nodes/");
    if (!range) return out;
    for (const auto& kv : range->kvs) {
      if (auto r = NodeRecord::FromKeyValue(kv)) out[r->id] = *r;
    }
    return out;
  }
  std::string Leader() {
    auto l = etcd->Leader("/strata/t/leader");
    return l && l->has_value() ? (*l)->value : std::string();
  }

  testing::TestCluster cluster;
  std::unique_ptr<EtcdClient>& etcd = cluster.etcd;
};

TEST_F(ClusterServerTest, NodesRegisterElectLeaveAndLapse) {
  ASSERT_TRUE(cluster.StartNodes(3, {"--lease-ttl", "2"}));
  auto& nodes = cluster.nodes;
  ASSERT_TRUE(Eventually([&] { return Nodes().size() == 3; }, 10000));
  for (int i = 0; i < 3; ++i) {
    // --advertise HOST: the port the server bound.
    EXPECT_EQ(Nodes()["n" + std::to_string(i)].advertise, nodes[i]->address());
  }
  ASSERT_TRUE(Eventually([&] { return !Leader().empty(); }, 5000));
  const std::string leader = Leader();
  const int leader_index = leader[1] - '0';
  const int follower = (leader_index + 1) % 3;

  // SIGTERM: the node leaves at once (it revokes its lease), long before the TTL.
  auto t0 = Clock::now();
  nodes[follower]->Signal(SIGTERM);
  ASSERT_EQ(nodes[follower]->WaitExit(10000), 0) << nodes[follower]->Log();
  EXPECT_EQ(Nodes().count("n" + std::to_string(follower)), 0u);
  EXPECT_LT(Clock::now() - t0, milliseconds(2000));

  // SIGKILL the leader: its key stays until the lease lapses, then another node leads.
  t0 = Clock::now();
  nodes[leader_index]->Kill();
  EXPECT_EQ(Nodes().count(leader), 1u);
  ASSERT_TRUE(Eventually([&] { return Nodes().count(leader) == 0; }, 8000));
  ASSERT_TRUE(Eventually([&] { return !Leader().empty() && Leader() != leader; }, 5000));
  const auto takeover = Clock::now() - t0;
  // The measured outage of the leadership (docs/CLUSTER.md quotes it).
  std::printf("leader SIGKILLed: registration gone and another leader after %lld ms (lease TTL 2 s)\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(takeover).count()));
  EXPECT_GT(takeover, milliseconds(300));  // not at once: when the lease lapsed
  EXPECT_LT(takeover, milliseconds(8000));
  EXPECT_EQ(Leader(), "n" + std::to_string(3 - leader_index - follower));

  // The killed node comes back on its address: it takes its registration over at once.
  ASSERT_TRUE(cluster.RestartNode(leader_index).ok());
  ASSERT_TRUE(Eventually([&] { return Nodes().count(leader) == 1; }, 5000))
      << nodes[leader_index]->Log();
  EXPECT_EQ(Nodes()[leader].advertise, nodes[leader_index]->address());
}

TEST_F(ClusterServerTest, AStoppedNodeLapsesAndRegistersAgainWhenItRuns) {
  auto p = testing::ServerProcess::Start(cluster.dir.path(), "n1", ClusterArgs("n1", 1));
  ASSERT_TRUE(p.has_value()) << p.error().ToString();
  ASSERT_TRUE(Eventually([&] { return Nodes().count("n1") == 1; }, 10000));
  const int64_t lease = Nodes()["n1"].lease;
  const uint64_t incarnation = Nodes()["n1"].incarnation;
  (*p)->Signal(SIGSTOP);
  ASSERT_TRUE(Eventually([&] { return Nodes().count("n1") == 0; }, 8000));
  (*p)->Signal(SIGCONT);
  ASSERT_TRUE(Eventually([&] { return Nodes().count("n1") == 1; }, 8000)) << (*p)->Log();
  EXPECT_NE(Nodes()["n1"].lease, lease);
  EXPECT_GT(Nodes()["n1"].incarnation, incarnation);
  EXPECT_NE((*p)->Log().find("lapsed"), std::string::npos);
}

TEST_F(ClusterServerTest, ShardedCollectionIsPlacedHostedAndFollowsTheRegistry) {
  ASSERT_TRUE(cluster.StartNodes(3, {"--lease-ttl", "2"}));
  auto& nodes = cluster.nodes;
  ASSERT_TRUE(Eventually([&] { return Nodes().size() == 3 && !Leader().empty(); }, 10000));
  const std::string cli = std::string(STRATA_CLI_BINARY) + " cluster --etcd " + cluster.url() +
                          " --cluster t ";
  // Every shard's engine collection takes create's options (codes, rerank, seal threshold).
  auto [rc, out] = RunCommand(cli + "create docs --dim 8 --metric cosine --shards 4 --replicas 2 "
                                    "--codes sq8 --rerank 30 --seal-threshold 5000 --wait 30");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("every replica reports its shard ready"), std::string::npos) << out;

  auto status = ReadClusterStatus(*etcd, "t");
  ASSERT_TRUE(status.has_value()) << status.error().ToString();
  EXPECT_TRUE(status->AllReady()) << status->ToText();
  ASSERT_EQ(status->collections.size(), 1u);
  const CollectionStatus& docs = status->collections[0];
  // Its epochs start at the etcd revision that created its record (model.h, PlaceCollection).
  auto created = etcd->Get(ClusterKeys("t").collection("docs"));
  ASSERT_TRUE(created.has_value() && created->has_value());
  const uint64_t first_epoch = uint64_t((*created)->create_revision);
  EXPECT_GT(first_epoch, 1u);
  EXPECT_EQ(docs.placement_epoch, first_epoch);
  for (const ShardStatus& s : docs.shards) EXPECT_EQ(s.placement.write_epoch, first_epoch);
  ASSERT_EQ(docs.shards.size(), 4u);
  // Every node holds, in its engine, exactly the shards placed on it.
  std::map<std::string, std::set<std::string>> expected;
  for (const ShardStatus& s : docs.shards) {
    ASSERT_EQ(s.placement.replicas.size(), 2u);
    EXPECT_EQ(s.placement.in_sync.size(), 2u);
    for (const std::string& n : s.placement.replicas) {
      expected[n].insert(LocalShardName("docs", s.placement.shard));
    }
  }
  EXPECT_EQ(expected.size(), 3u);  // 8 replicas spread over the 3 nodes
  for (int i = 0; i < 3; ++i) {
    auto c = client::Client::Connect("127.0.0.1", nodes[i]->port());
    ASSERT_TRUE(c.has_value()) << c.error().ToString();
    auto list = (*c)->ListCollections();
    ASSERT_TRUE(list.has_value()) << list.error().ToString();
    std::set<std::string> names;
    for (const CollectionInfo& info : *list) {
      names.insert(info.spec.name);
      EXPECT_EQ(info.spec.dim, 8u);
      EXPECT_EQ(info.spec.metric, Metric::kCosine);
      EXPECT_EQ(info.spec.codes, VectorCodes::kSq8);
      EXPECT_EQ(info.spec.rerank, 30u);
      EXPECT_EQ(info.spec.seal_threshold, 5000u);
    }
    EXPECT_EQ(names, expected["n" + std::to_string(i)]) << "n" << i;
    // Described through any node, the cluster collection has its shards' spec and its own name.
    auto described = (*c)->DescribeCollection("docs");
    ASSERT_TRUE(described.has_value()) << described.error().ToString();
    EXPECT_EQ(described->spec.name, "docs");
    EXPECT_EQ(described->spec.codes, VectorCodes::kSq8);
    EXPECT_EQ(described->spec.rerank, 30u);
    EXPECT_EQ(described->spec.seal_threshold, 5000u);
  }

  // strata-cli cluster status, as text and JSON.
  auto [text_rc, text] = RunCommand(cli + "status");
  ASSERT_EQ(text_rc, 0) << text;
  EXPECT_NE(text.find("3 nodes, leader " + Leader()), std::string::npos) << text;
  EXPECT_NE(text.find("dim 8 cosine, codes sq8, 4 shards x 2 replicas, placement epoch " +
                      std::to_string(first_epoch)),
            std::string::npos)
      << text;
  auto [json_rc, json_text] = RunCommand(cli + "status --json");
  ASSERT_EQ(json_rc, 0) << json_text;
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << json_text;
  EXPECT_EQ(j["nodes"].size(), 3u);
  EXPECT_EQ(j["all_ready"], true);
  EXPECT_EQ(j["collections"][0]["shard_status"].size(), 4u);
  EXPECT_EQ(j["collections"][0]["codes"], "sq8");

  // Create's flags are checked before etcd is asked: usage errors (exit 2) naming the flag.
  auto [rerank_rc, rerank_out] = RunCommand(cli + "create other --dim 8 --rerank 5");
  EXPECT_EQ(rerank_rc, 2) << rerank_out;
  EXPECT_NE(rerank_out.find("--rerank needs --codes"), std::string::npos) << rerank_out;
  auto [codes_rc, codes_out] = RunCommand(cli + "create other --dim 8 --codes pq");
  EXPECT_EQ(codes_rc, 2) << codes_out;
  EXPECT_NE(codes_out.find("--codes"), std::string::npos) << codes_out;

  // The name is taken now.
  auto [again_rc, again] = RunCommand(cli + "create docs --dim 8 --shards 1");
  EXPECT_EQ(again_rc, 1) << again;
  EXPECT_NE(again.find("already"), std::string::npos) << again;

  // SIGKILL a node: once its lease lapses the leader takes it out of every in-sync set
  // (epoch +1), and never empties one.
  const std::string leader = Leader();
  const int victim = leader == "n0" ? 1 : 0;
  nodes[victim]->Kill();
  const std::string gone = "n" + std::to_string(victim);
  const auto killed = Clock::now();
  ASSERT_TRUE(Eventually([&] { return cluster.OutOfEveryInSyncSet(gone); }, 10000));
  std::printf("replica SIGKILLed: out of every in-sync set after %lld ms (lease TTL 2 s)\n",
              static_cast<long long>(
                  std::chrono::duration_cast<milliseconds>(Clock::now() - killed).count()));
  status = ReadClusterStatus(*etcd, "t");
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->collections[0].placement_epoch, first_epoch + 1) << status->ToText();
  EXPECT_FALSE(status->AllReady());
  for (const ShardStatus& s : status->collections[0].shards) {
    EXPECT_FALSE(s.placement.in_sync.empty());
    EXPECT_EQ(s.placement.replicas.size(), 2u);  // placement itself unchanged
  }
}

TEST_F(ClusterServerTest, BadClusterFlagsExitWithUsageErrors) {
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::string dead = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  const std::vector<Case> cases = {
      {{"--node-id", "n1"}, 2, "--node-id and --advertise need --cluster-etcd"},
      {{"--cluster-etcd", cluster.url(), "--advertise", "127.0.0.1"}, 2, "needs --node-id"},
      {{"--cluster-etcd", "https://x:1", "--node-id", "n1", "--advertise", "h"}, 2, "https"},
      {{"--cluster-etcd", cluster.url(), "--node-id", "a/b", "--advertise", "h"}, 2, "a/b"},
      {{"--cluster-etcd", dead, "--node-id", "n1", "--advertise", "127.0.0.1"}, 1, dead},
      {{"--cluster-etcd", cluster.url(), "--node-id", "n1", "--advertise", "h",
        "--cluster-rereplicate-after-s", "-1"}, 2, "--cluster-rereplicate-after-s must be within"},
      {{"--cluster-etcd", cluster.url(), "--node-id", "n1", "--advertise", "h",
        "--cluster-catch-up", "segments"}, 2, "--cluster-catch-up must be files or records, got 'segments'"},
  };
  int i = 0;
  for (const Case& c : cases) {
    auto p = testing::ServerProcess::Start(cluster.dir.path(), "bad" + std::to_string(i++), c.args);
    std::optional<int> code;
    std::string log;
    if (p.has_value()) {
      code = (*p)->WaitExit(20000);
      log = (*p)->Log();
    } else {
      log = p.error().message();
      const size_t at = log.find("exited with ");
      if (at != std::string::npos) code = std::stoi(log.substr(at + 12));
    }
    EXPECT_EQ(code, c.code) << log;
    EXPECT_NE(log.find(c.message), std::string::npos) << log;
  }
}

}  // namespace
}  // namespace strata::cluster
