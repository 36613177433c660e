// strata-server processes joining a cluster (--cluster-etcd) through a real etcd, all on
// loopback: registration, one leader, leaving on SIGTERM, a SIGKILLed node lapsing and the
// leadership moving, a SIGSTOPped node registering again, and the flags' checks.

#include <chrono>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "cluster/etcd_client.h"
#include "cluster/node.h"
#include "tests/cluster/etcd_process.h"
#include "tests/cluster/server_process.h"

namespace strata::cluster {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

template <typename Pred>
bool Eventually(Pred pred, uint32_t timeout_ms) {
  const auto until = Clock::now() + milliseconds(timeout_ms);
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return pred();
}

class ClusterServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto process = testing::EtcdProcess::Start();
    ASSERT_TRUE(process.has_value()) << process.error().ToString();
    etcd_ = std::move(*process);
    etcd = std::move(*EtcdClient::Create(etcd_->url()));
  }
  std::vector<std::string> ClusterArgs(const std::string& id, int ttl_s) const {
    return {"--cluster-etcd", etcd_->url(), "--node-id", id, "--advertise", "127.0.0.1",
            "--cluster", "t", "--lease-ttl", std::to_string(ttl_s)};
  }
  // The registered nodes: id -> record.
  std::map<std::string, NodeRecord> Nodes() {
    std::map<std::string, NodeRecord> out;
    auto range = etcd->GetPrefix("/strata/t/nodes/");
    if (!range) return out;
    for (const auto& kv : range->kvs) {
      if (auto r = NodeRecord::FromJson(kv.value)) out[r->id] = *r;
    }
    return out;
  }
  std::string Leader() {
    auto l = etcd->Leader("/strata/t/leader");
    return l && l->has_value() ? (*l)->value : std::string();
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::EtcdProcess> etcd_;
  std::unique_ptr<EtcdClient> etcd;
};

TEST_F(ClusterServerTest, NodesRegisterElectLeaveAndLapse) {
  std::vector<std::unique_ptr<testing::ServerProcess>> nodes;
  for (int i = 0; i < 3; ++i) {
    const std::string id = "n" + std::to_string(i);
    auto p = testing::ServerProcess::Start(dir_.path(), id, ClusterArgs(id, 2));
    ASSERT_TRUE(p.has_value()) << p.error().ToString();
    nodes.push_back(std::move(*p));
  }
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
  EXPECT_GT(takeover, milliseconds(1000));  // not before the lease could lapse
  EXPECT_LT(takeover, milliseconds(8000));
  EXPECT_EQ(Leader(), "n" + std::to_string(3 - leader_index - follower));

  // The killed node comes back on its address: it takes its registration over at once.
  ASSERT_TRUE(nodes[leader_index]->Restart(ClusterArgs(leader, 2)).ok());
  ASSERT_TRUE(Eventually([&] { return Nodes().count(leader) == 1; }, 5000))
      << nodes[leader_index]->Log();
  EXPECT_EQ(Nodes()[leader].advertise, nodes[leader_index]->address());
}

TEST_F(ClusterServerTest, AStoppedNodeLapsesAndRegistersAgainWhenItRuns) {
  auto p = testing::ServerProcess::Start(dir_.path(), "n1", ClusterArgs("n1", 1));
  ASSERT_TRUE(p.has_value()) << p.error().ToString();
  ASSERT_TRUE(Eventually([&] { return Nodes().count("n1") == 1; }, 10000));
  const int64_t lease = Nodes()["n1"].lease;
  (*p)->Signal(SIGSTOP);
  ASSERT_TRUE(Eventually([&] { return Nodes().count("n1") == 0; }, 8000));
  (*p)->Signal(SIGCONT);
  ASSERT_TRUE(Eventually([&] { return Nodes().count("n1") == 1; }, 8000)) << (*p)->Log();
  EXPECT_NE(Nodes()["n1"].lease, lease);
  EXPECT_EQ(Nodes()["n1"].incarnation, 2u);
  EXPECT_NE((*p)->Log().find("lapsed"), std::string::npos);
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
      {{"--cluster-etcd", etcd_->url(), "--advertise", "127.0.0.1"}, 2, "needs --node-id"},
      {{"--cluster-etcd", "https://x:1", "--node-id", "n1", "--advertise", "h"}, 2, "https"},
      {{"--cluster-etcd", etcd_->url(), "--node-id", "a/b", "--advertise", "h"}, 2, "a/b"},
      {{"--cluster-etcd", dead, "--node-id", "n1", "--advertise", "127.0.0.1"}, 1, dead},
  };
  int i = 0;
  for (const Case& c : cases) {
    auto p = testing::ServerProcess::Start(dir_.path(), "bad" + std::to_string(i++), c.args);
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
